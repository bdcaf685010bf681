"""LLM backends, embedders, and the router that picks a backend for a turn.

A backend is any object with async ``generate`` and ``stream`` methods (the
protocol below); plugins register them through
``mongars_register_llm_backends``. The router owns deadlines and translates
every backend failure into :class:`~mongars_core.errors.BackendError`, so a
failing model is a clear error, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mongars_core.errors import (
    BackendError,
    GenerationTimeoutError,
    MongarsError,
    UnknownBackendError,
)
from mongars_core.types import GenerationRequest

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class LLMBackend(Protocol):
    """What an LLM backend provides."""

    async def generate(self, request: GenerationRequest) -> str:
        """Return the whole reply text."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        """Yield the reply as text deltas. Closing the iterator stops generation."""
        ...


async def prepare_backend(backend: LLMBackend) -> None:
    """Let a backend that loads lazily (a local model) do so, outside any deadline.

    A backend may define ``async load()``; the router calls it before the
    generation deadlines start, so a first-use model fetch isn't a timeout.
    """
    load = getattr(backend, "load", None)
    if load is not None:
        await load()


@runtime_checkable
class Embedder(Protocol):
    """What a text embedder provides. ``embed`` blocks; callers use a worker thread."""

    dimension: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text, shape ``(len(texts), dimension)``."""
        ...


class LLMRouter:
    """Chooses the backend for a request and enforces deadlines."""

    def __init__(
        self,
        backends: Mapping[str, LLMBackend],
        default: str,
        *,
        timeout_s: float = 120.0,
        first_token_timeout_s: float = 60.0,
    ) -> None:
        self._backends = dict(backends)
        self.default = default
        self.timeout_s = timeout_s
        self.first_token_timeout_s = first_token_timeout_s

    @property
    def names(self) -> list[str]:
        return sorted(self._backends)

    def get(self, name: str | None = None) -> tuple[str, LLMBackend]:
        """The backend called ``name`` (default: the configured one)."""
        chosen = name or self.default
        try:
            return chosen, self._backends[chosen]
        except KeyError:
            known = ", ".join(self.names) or "none; install mongars[local] or a backend plugin"
            raise UnknownBackendError(
                f"no LLM backend named {chosen!r} (registered: {known})"
            ) from None

    async def prepare(self, backend: str | None = None) -> None:
        """Load the backend now (a local model), so the first turn doesn't wait for it."""
        await prepare_backend(self.get(backend)[1])

    async def stream(
        self, request: GenerationRequest, backend: str | None = None
    ) -> AsyncGenerator[str, None]:
        """Stream deltas from the backend, within the first-token and total deadlines."""
        name, chosen = self.get(backend)
        await prepare_backend(chosen)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        first_deadline = loop.time() + self.first_token_timeout_s
        iterator = chosen.stream(request).__aiter__()
        received = False
        try:
            while True:
                limit = deadline if received else min(deadline, first_deadline)
                remaining = limit - loop.time()
                if remaining <= 0:
                    raise GenerationTimeoutError(
                        f"backend {name!r} did not answer within {self._deadline(received)} s"
                    )
                try:
                    delta = await asyncio.wait_for(iterator.__anext__(), remaining)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise GenerationTimeoutError(
                        f"backend {name!r} did not answer within {self._deadline(received)} s"
                    ) from None
                except MongarsError:
                    raise
                except Exception as exc:
                    logger.exception("LLM backend %r failed", name)
                    raise BackendError(f"backend {name!r} failed: {exc}") from exc
                received = True
                yield delta
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def generate(self, request: GenerationRequest, backend: str | None = None) -> str:
        """The whole reply text, collected from :meth:`stream`."""
        return "".join([delta async for delta in self.stream(request, backend)])

    def _deadline(self, received: bool) -> float:
        return self.timeout_s if received else min(self.timeout_s, self.first_token_timeout_s)
