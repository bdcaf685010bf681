"""The backend called ``local``: the first local engine that can run on this machine.

Two bundled plugins run the bundled model in process: ``llamacpp`` (llama.cpp,
the fast engine on CPUs with AVX2) and ``torch`` (PyTorch: CUDA, training, CPUs
without AVX2). ``llm.local_engines`` orders them (``["llamacpp", "torch"]``);
:class:`LocalEngine` serves as ``local`` through the first registered one that
is :class:`~mongars_core.capabilities.Runnable` here. An engine that cannot run
is skipped with its reason, and one whose model fails to load hands over to the
next, so a machine without AVX2 or a model llama.cpp refuses still answers.
The reasons are logged and shown by ``mongars backends``.

A plugin that registers a backend named ``local`` itself replaces all of this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, cast

from mongars_core.capabilities import (
    ConstrainsOutput,
    Fetchable,
    HealthChecked,
    Loadable,
    Progress,
    ReportsProgress,
    Runnable,
    ServesAdapters,
    TokenCounter,
    has_ability,
)
from mongars_core.errors import MissingDependencyError, ModelNotFoundError
from mongars_core.types import AdapterRef, ChatMessage, GenerationRequest, OutputConstraint

if TYPE_CHECKING:
    from mongars_core.llm import LLMBackend

logger = logging.getLogger(__name__)

LOCAL = "local"


class LocalEngine:
    """An :class:`~mongars_core.llm.LLMBackend` that delegates to the chosen local engine.

    ``engines`` are ``(name, backend)`` in order of preference. The choice is
    made on first use (:attr:`engine`): engines whose ``unavailable_reason()``
    says they cannot run are skipped; :meth:`load` moves on to the next engine
    when one fails to load. :attr:`skipped` keeps every reason.
    """

    def __init__(self, engines: Sequence[tuple[str, LLMBackend]]) -> None:
        if not engines:
            raise ValueError("LocalEngine needs at least one engine")
        self.engines = list(engines)
        self.skipped: dict[str, str] = {}
        """Engine name -> why it is not the one serving."""
        self._index: int | None = None
        self._load_lock = asyncio.Lock()
        self._progress: Progress | None = None

    # -- the choice ------------------------------------------------------------------

    @property
    def engine_name(self) -> str:
        return self.engines[self._chosen()][0]

    @property
    def engine(self) -> LLMBackend:
        return self.engines[self._chosen()][1]

    def describe(self) -> str:
        """``llamacpp``, or ``torch (llamacpp: the CPU lacks AVX2)``: for ``mongars backends``."""
        name = self.engine_name
        return f"{name} ({self._reasons()})" if self.skipped else name

    def _chosen(self) -> int:
        if self._index is None:
            self._index = self._next_runnable(0)
        return self._index

    def _next_runnable(self, start: int) -> int:
        for index in range(start, len(self.engines)):
            name, backend = self.engines[index]
            reason = _unavailable_reason(backend)
            if reason is None:
                if self.skipped:
                    logger.warning("the local engine is %s (%s)", name, self._reasons())
                else:
                    logger.info("the local engine is %s", name)
                return index
            self.skipped[name] = reason
        # Nothing can run: keep the last one, whose errors then say why.
        logger.error("no local engine can run here (%s)", self._reasons())
        return len(self.engines) - 1

    def _reasons(self) -> str:
        return "; ".join(f"{name}: {reason}" for name, reason in self.skipped.items())

    # -- Loadable, Fetchable, ReportsProgress ----------------------------------------------

    @property
    def loaded(self) -> bool:
        backend = self.engine
        return not has_ability(backend, Loadable) or cast(Loadable, backend).loaded

    async def load(self) -> None:
        """Load the chosen engine; when it fails, the next runnable engine takes over.
        The last engine's error is raised when none loads. A missing package or a
        missing model file is raised at once: every engine would miss it too."""
        async with self._load_lock:
            while True:
                index = self._chosen()
                name, backend = self.engines[index]
                if not has_ability(backend, Loadable):
                    return
                try:
                    await cast(Loadable, backend).load()
                    return
                except (asyncio.CancelledError, MissingDependencyError, ModelNotFoundError):
                    raise
                except Exception as exc:
                    if index == len(self.engines) - 1:
                        raise
                    self.skipped[name] = f"failed to load: {exc}"
                    logger.warning("the %s engine failed to load (%s); trying the next", name, exc)
                    self._index = self._next_runnable(index + 1)

    async def fetch(self) -> object:
        backend = self.engine
        if has_ability(backend, Fetchable):
            return await cast(Fetchable, backend).fetch()
        return None

    @property
    def progress(self) -> Progress | None:
        return self._progress

    @progress.setter
    def progress(self, value: Progress | None) -> None:
        self._progress = value
        for _name, backend in self.engines:
            if has_ability(backend, ReportsProgress):
                cast(ReportsProgress, backend).progress = value

    # -- generation ---------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> str:
        await self.load()
        return await self.engine.generate(request)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        await self.load()
        async for delta in self.engine.stream(request):
            yield delta

    # -- the other abilities, answered by the chosen engine ----------------------------------

    async def health(self) -> bool:
        backend = self.engine
        if has_ability(backend, HealthChecked):
            return await cast(HealthChecked, backend).health()
        return True

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        backend = self.engine
        if has_ability(backend, TokenCounter):
            return cast(TokenCounter, backend).count_prompt_tokens(messages)
        return None

    def count_tokens(self, text: str) -> int | None:
        backend = self.engine
        if has_ability(backend, TokenCounter):
            return cast(TokenCounter, backend).count_tokens(text)
        return None

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        backend = self.engine
        return has_ability(backend, ConstrainsOutput) and cast(
            ConstrainsOutput, backend
        ).can_constrain(constraint)

    def can_serve_adapter(self, adapter: AdapterRef) -> bool:
        backend = self.engine
        return has_ability(backend, ServesAdapters) and cast(
            ServesAdapters, backend
        ).can_serve_adapter(adapter)

    def unavailable_reason(self) -> str | None:
        index = self._chosen()
        return _unavailable_reason(self.engines[index][1])


def _unavailable_reason(backend: object) -> str | None:
    if not has_ability(backend, Runnable):
        return None
    try:
        return cast(Runnable, backend).unavailable_reason()
    except Exception as exc:  # a broken check must not hide the other engines
        logger.warning("%s could not say whether it can run", type(backend).__name__, exc_info=True)
        return f"its check failed: {exc}"


def with_local_engine(
    backends: dict[str, LLMBackend], engines: Sequence[str]
) -> dict[str, LLMBackend]:
    """``backends`` plus ``local``, served by the first of ``engines`` that is registered
    and can run; unchanged when a plugin registered ``local`` itself or none of
    ``engines`` is registered."""
    if LOCAL in backends:
        return backends
    present = [(name, backends[name]) for name in engines if name in backends]
    if not present:
        return backends
    return {**backends, LOCAL: cast("LLMBackend", LocalEngine(present))}


__all__ = ["LOCAL", "LocalEngine", "with_local_engine"]
