"""The llama.cpp LLM backend: GGUF models through xllamacpp, several users at once.

Each model served has one :class:`~mongars_plugins.llamacpp.engine.Engine`
(an in-process llama.cpp server), loaded on first use in a worker thread from
the GGUF file as it is, so a cold start takes about a second. Requests run
concurrently in the engine's slots (continuous batching); each one's blocking
call runs in a worker thread and hands text to the event loop with
``call_soon_threadsafe``. llama.cpp's own streaming never splits a character
and holds back text that could be the start of a stop string.

* Closing the stream sets a flag the engine's callback checks at every token:
  generation stops within one token (:attr:`LlamaCppBackend.stopped_generations`).
* ``request.prefix`` (failover mid-stream) renders the chat template to text,
  appends the prefix without its trailing space and runs a raw completion.
* ``request.constraint`` becomes llama.cpp's ``json_schema`` or ``grammar``;
  one it cannot compile is an :class:`~mongars_core.errors.InvalidInputError`.
* ``request.adapter`` is converted once to a GGUF LoRA and applied to that
  request only. LoRA files load when a server starts, so a new adapter means a
  new server. An idle old one is closed first (and started again if the new
  one fails), so memory never holds two idle engines; one still generating finishes its
  running generations beside the new one, then closes. A LoRA file is checked
  against the base model before any restart, and one llama.cpp could not load is
  refused at once until it changes.
  An adapter trained on another base model is not applied: the base model
  answers, and ``outcome.adapter`` stays ``None``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import logging
import platform
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
)
from mongars_core.errors import CorruptModelError, InvalidInputError, MissingDependencyError
from mongars_core.reply_text import OwedSpace
from mongars_core.settings import Settings
from mongars_core.types import AdapterRef, ChatMessage, GenerationRequest, OutputConstraint
from mongars_plugins.gguf_file import read_gguf
from mongars_plugins.llamacpp.engine import Engine, EngineConfig, Result
from mongars_plugins.llamacpp.gguf_check import check_fits
from mongars_plugins.llamacpp.settings import LLAMACPP

if TYPE_CHECKING:
    from mongars_plugins.model_store import ModelEntry

logger = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")

_DONE = object()

CLOSE_TIMEOUT_S = 30.0
"""How long a swap waits for an old server to stop before starting the new one anyway."""

PASSED_OPTIONS = frozenset(
    {
        "top_k",
        "min_p",
        "repeat_penalty",
        "repeat_last_n",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "typical_p",
        "ignore_eos",
    }
)
"""Endpoint ``params`` (``request.options``) handed to llama.cpp as they are."""


def avx2_missing(cpuinfo: Path = CPUINFO, machine: str | None = None) -> bool:
    """Whether this is an x86-64 Linux CPU without AVX2 (xllamacpp's build needs it).

    Other platforms and an unreadable ``cpuinfo`` answer ``False``: the engine
    then tries, and a failure hands over to the next engine.
    """
    machine = (machine or platform.machine()).lower()
    if not sys.platform.startswith("linux") or machine not in {"x86_64", "amd64"}:
        return False
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return "avx2" not in value.split()
    return False


@dataclass
class _Served:
    """A model being served: its store entry, its current engine, engines retiring."""

    entry: ModelEntry
    engine: Engine
    swapping: asyncio.Event | None = None
    """Set while a server with more adapters is being started."""
    retiring: list[Engine] = field(default_factory=list)
    broken: dict[tuple[str, int, int], str] = field(default_factory=dict)
    """LoRA files (path, size, mtime) llama.cpp could not load, with why."""


def _file_id(path: Path) -> tuple[str, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _refuse_broken(served: _Served, lora: Path, adapter: AdapterRef) -> None:
    failure = served.broken.get(_file_id(lora))
    if failure is not None:
        raise InvalidInputError(
            f"adapter {adapter.id}: llama.cpp could not load its LoRA {lora} "
            f"({failure}); it is refused until the file changes"
        )


def check_lora(path: Path, base_gguf: Path) -> None:
    """Refuse (:class:`InvalidInputError`) a file that is not a GGUF LoRA adapter whose
    tensors fit the model ``base_gguf``: what llama.cpp would otherwise find only when
    a server starts with it."""
    from mongars_plugins.llamacpp.lora import _check_cached, _StaleCacheError, read_base_model

    try:
        header = read_gguf(path)
    except CorruptModelError as exc:
        raise InvalidInputError(f"{path} is not a readable GGUF LoRA: {exc}") from exc
    kind, lora_type = header.metadata.get("general.type"), header.metadata.get("adapter.type")
    if kind != "adapter" or lora_type != "lora":
        raise InvalidInputError(
            f"{path} is not a GGUF LoRA adapter (general.type {kind!r}, adapter.type {lora_type!r})"
        )
    pairs: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in header.shapes.items():
        weight, separator, part = name.rpartition(".lora_")
        if not separator or part not in ("a", "b") or len(shape) != 2:
            raise InvalidInputError(f"{path}: {name} {list(shape)} is not a LoRA tensor")
        pairs.setdefault(weight, {})[part] = shape
    if not pairs:
        raise InvalidInputError(f"{path} holds no LoRA tensors")
    for weight, parts in pairs.items():
        if set(parts) != {"a", "b"}:
            raise InvalidInputError(f"{path}: {weight} lacks its lora_a or lora_b")
        if parts["a"][1] != parts["b"][0]:  # lora_a ne [in, rank], lora_b ne [rank, out]
            raise InvalidInputError(
                f"{path}: {weight} has lora_a {list(parts['a'])} and lora_b "
                f"{list(parts['b'])} of different ranks"
            )
    try:
        _check_cached(path, read_base_model(base_gguf))
    except _StaleCacheError as exc:
        raise InvalidInputError(f"{path} does not fit {base_gguf.name}: {exc}") from exc


class LlamaCppBackend:
    """An :class:`~mongars_core.llm.LLMBackend` on llama.cpp (the ``llamacpp`` engine)."""

    def __init__(
        self, settings: Settings, progress: Progress | None = None, *, cpuinfo: Path = CPUINFO
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.cpuinfo = cpuinfo
        self.load_seconds: float | None = None
        self.stopped_generations = 0
        """Generations cut short because their stream was closed."""
        self._served: dict[str, _Served] = {}
        self._load_lock: asyncio.Lock | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._foreign_adapters: set[tuple[str, str]] = set()
        """(adapter, model) pairs already logged as not applicable."""

    # -- Runnable --------------------------------------------------------------------

    def unavailable_reason(self) -> str | None:
        if not self.settings.section(LLAMACPP).enabled:
            return "disabled by MONGARS_LLAMACPP__ENABLED=false"
        if avx2_missing(self.cpuinfo):
            return "the CPU lacks AVX2, which llama.cpp's prebuilt engine needs"
        if importlib.util.find_spec("xllamacpp") is None:
            return str(MissingDependencyError("xllamacpp", "local"))
        return None

    # -- Loadable, Fetchable ---------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model served when a request names none."""
        from mongars_plugins.model_store import BUNDLED_MODEL

        return self.settings.section(LLAMACPP).model or BUNDLED_MODEL

    @property
    def loaded(self) -> bool:
        return self.model_name in self._served

    async def load(self) -> None:
        """Load the default model now; returns at once when it is loaded."""
        await self._model(None)

    async def fetch(self) -> Path:
        """Fetch the model file (the bundled one, the first time) without loading it."""
        self._require()
        entry = await asyncio.to_thread(self._entry, None)
        return entry.path

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is None:
            return
        if importlib.util.find_spec("xllamacpp") is None:
            raise MissingDependencyError("xllamacpp", "local")
        from mongars_core.errors import ConfigurationError

        raise ConfigurationError(f"the llama.cpp engine cannot run here: {reason}")

    def _entry(self, name: str | None) -> ModelEntry:
        from mongars_plugins.model_store import ModelStore, log_progress

        return ModelStore(self.settings).get(name, self.progress or log_progress)

    async def _model(self, name: str | None) -> _Served:
        key = name or self.model_name
        served = self._served.get(key)
        if served is not None:
            return served
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            served = self._served.get(key)
            if served is None:
                self._require()
                entry, engine = await asyncio.to_thread(self._load_blocking, key)
                served = self._served[key] = _Served(entry, engine)
        return served

    def _load_blocking(self, name: str) -> tuple[ModelEntry, Engine]:
        started = time.perf_counter()
        section = self.settings.section(LLAMACPP)
        entry = self._entry(name)
        model = read_gguf(entry.path)
        context = section.context_for(entry.context_length)
        check_fits(model, context, section.kv_cache_type)
        config = EngineConfig(
            threads=section.resolved_threads,
            slots=section.slots,
            context=context,
            batch_size=section.batch_size,
            poll=section.poll,
            prompt_cache_mib=section.prompt_cache_mib,
            kv_cache_type=section.kv_cache_type,
        )
        engine = Engine(entry.path, config)
        elapsed = time.perf_counter() - started
        if name == self.model_name:
            self.load_seconds = elapsed
        logger.info(
            "llama.cpp serves %s (%s): %d threads, %d slots of %d tokens, loaded in %.2f s",
            entry.name,
            entry.path,
            config.threads,
            config.slots,
            config.context // config.slots,
            elapsed,
        )
        return entry, engine

    # -- HealthChecked, TokenCounter, ConstrainsOutput, ServesAdapters ------------------

    async def health(self) -> bool:
        served = self._served.get(self.model_name)
        if served is None:
            return self.unavailable_reason() is None
        return await asyncio.to_thread(served.engine.health)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        """Tokens of ``messages`` through the model's chat template (``None`` before load)."""
        served = self._served.get(self.model_name)
        if served is None:
            return None
        prompt = served.engine.apply_template([message.model_dump() for message in messages])
        return len(served.engine.tokenize(prompt, special=True))

    def count_tokens(self, text: str) -> int | None:
        served = self._served.get(self.model_name)
        if served is None:
            return None
        return len(served.engine.tokenize(text))

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        return constraint.json_schema is not None or constraint.grammar is not None

    def can_serve_adapter(self, adapter: AdapterRef) -> bool:
        return adapter.base_model == self.model_name

    # -- generation ---------------------------------------------------------------------

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if request.max_new_tokens < 1:  # llama.cpp would read 0 as "no limit"
            raise InvalidInputError(
                f"max_new_tokens must be at least 1, got {request.max_new_tokens}"
            )
        served = await self._model(request.model)
        engine, lora, adapter = await self._engine_for(served, request.adapter)
        applied = adapter.id if adapter is not None else None
        # Said before the first token: a stream the consumer closes early (the
        # pipeline's repetition guard) was written with the adapter however it ends.
        request.outcome.adapter = applied
        try:
            messages = [(message.role, message.content) for message in request.messages]
            async with engine.pool.lease(applied, messages) as lease:
                body = self._body(request, engine, lora)
                body.update(id_slot=lease.slot.id, cache_prompt=lease.cache_prompt)
                async with aclosing(self._run(engine, request, body, applied)) as deltas:
                    async for delta in deltas:
                        yield delta
        except Exception:
            request.outcome.adapter = None  # failed: whoever answers instead says its own
            raise
        finally:
            engine.active -= 1
            self._close_retired(served)

    def _body(
        self, request: GenerationRequest, engine: Engine, lora: Path | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            key: value for key, value in request.options.items() if key in PASSED_OPTIONS
        }
        body.update(
            max_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
        )
        if request.stop:
            body["stop"] = list(request.stop)
        if engine.adapters:
            body["lora"] = engine.lora(lora)
        if request.constraint is not None:
            if request.constraint.json_schema is not None:
                body["json_schema"] = request.constraint.json_schema
            else:
                body["grammar"] = request.constraint.grammar
        return body

    async def _run(
        self, engine: Engine, request: GenerationRequest, body: dict[str, Any], applied: str | None
    ) -> AsyncGenerator[str, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()
        worker = loop.run_in_executor(
            self._pool(),
            self._generate_blocking,
            engine,
            request,
            body,
            queue,
            loop,
            stop,
            applied,
        )
        # A prefix ending in a space continues from the word before it (see
        # _generate_blocking): the space it already has is not sent again.
        owed_space = OwedSpace(request.prefix)
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                item = owed_space.strip(item)
                if item:
                    yield item
        finally:
            stop.set()
            # The slot is lent again only once the engine has let go of it.
            await asyncio.shield(worker)

    def _generate_blocking(
        self,
        engine: Engine,
        request: GenerationRequest,
        body: dict[str, Any],
        queue: asyncio.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
        applied: str | None,
    ) -> None:
        def emit(text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, text)

        try:
            if request.prefix:
                # Failover mid-stream: continue the reply another backend began, as
                # text after the rendered template. Without its trailing space: "The "
                # tokenizes as "The" and a lone space, and the model then writes what
                # it never would have; the next word's token brings its space.
                prompt = engine.apply_template([m.model_dump() for m in request.messages])
                body["prompt"] = prompt + request.prefix.rstrip()
                result = engine.stream(body, emit, stop, chat=False)
            else:
                body["messages"] = [message.model_dump() for message in request.messages]
                result = engine.stream(body, emit, stop, chat=True)
            self._report(request, result, applied)
        except Exception as exc:  # handed to the event loop, which raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    def _report(self, request: GenerationRequest, result: Result, applied: str | None) -> None:
        outcome = request.outcome
        outcome.adapter = applied  # a reply the pipeline stopped was still made with it
        if result.stopped:
            self.stopped_generations += 1
            return
        if result.finish_reason in ("stop", "length"):
            outcome.finish_reason = result.finish_reason  # type: ignore[assignment]
        tokens = result.usage.get("completion_tokens")
        prompt_tokens = result.usage.get("prompt_tokens")
        outcome.tokens = tokens if isinstance(tokens, int) else None
        outcome.prompt_tokens = prompt_tokens if isinstance(prompt_tokens, int) else None
        speed = result.timings.get("predicted_per_second")
        if isinstance(speed, int | float) and speed > 0 and (tokens or 0) > 1:
            outcome.tokens_per_second = float(speed)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """Worker threads for generations: one per slot (twice, for a server swap)."""
        if self._executor is None:
            slots = self.settings.section(LLAMACPP).slots
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=2 * slots, thread_name_prefix="llamacpp"
            )
        return self._executor

    # -- adapters ------------------------------------------------------------------------

    async def _engine_for(
        self, served: _Served, adapter: AdapterRef | None
    ) -> tuple[Engine, Path | None, AdapterRef | None]:
        """The engine to generate on, counted as active, with the GGUF LoRA of ``adapter``
        loaded, and the adapter applied (``None`` for one trained on another model)."""
        lora: Path | None = None
        if adapter is not None and adapter.base_model != served.entry.name:
            key = (adapter.id, served.entry.name)
            if key not in self._foreign_adapters:
                self._foreign_adapters.add(key)
                logger.warning(
                    "adapter %s was trained on %s, but llama.cpp serves %s: its turns are "
                    "answered by the base model, without it",
                    adapter.id,
                    adapter.base_model,
                    served.entry.name,
                )
            adapter = None
        if adapter is not None:
            lora = await asyncio.to_thread(self._adapter_file, served, adapter)
        while True:
            if served.swapping is not None:  # no engine to lend until the swap is done
                await served.swapping.wait()
                continue
            if lora is not None and lora not in served.engine.adapters:
                assert adapter is not None
                _refuse_broken(served, lora, adapter)  # a swap before this one may have failed
                kept = [path for path in served.engine.adapters if path.is_file()]  # erased ones go
                await self._swap(served, [*kept, lora], lora)
                continue
            engine = served.engine
            engine.active += 1  # no await since the checks: it cannot be retired meanwhile
            return engine, lora, adapter

    def _adapter_file(self, served: _Served, adapter: AdapterRef) -> Path:
        """``adapter``'s GGUF LoRA, checked against the served model (blocking)."""
        from mongars_plugins.llamacpp.lora import converted_adapter

        lora = converted_adapter(adapter, self.settings.cache_dir, served.entry.path)
        _refuse_broken(served, lora, adapter)
        if lora not in served.engine.adapters:
            try:
                check_lora(lora, served.entry.path)
            except InvalidInputError as exc:
                raise InvalidInputError(f"adapter {adapter.id}: {exc}") from exc
        return lora

    async def _swap(self, served: _Served, adapters: list[Path], new: Path) -> None:
        """Give ``served`` a server with ``adapters`` (``new`` the one added).

        Run as its own task: a request cancelled while it waits leaves the swap to
        finish, so ``served`` always ends with a working engine and no swap set.
        """
        swapping = served.swapping = asyncio.Event()
        task = asyncio.ensure_future(self._replace(served, adapters, new, swapping))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(task)

    async def _replace(
        self, served: _Served, adapters: list[Path], new: Path, swapping: asyncio.Event
    ) -> None:
        old = served.engine
        started = time.perf_counter()
        try:
            if old.active == 0:
                # Nothing runs on the old one (and requests wait for the swap either way):
                # stop it first, so the memory never holds two; start it again on failure.
                await self._close_engine(old)
                try:
                    served.engine = await asyncio.to_thread(Engine, old.path, old.config, adapters)
                except BaseException:
                    try:
                        still = [path for path in old.adapters if path.is_file()]
                        served.engine = await asyncio.to_thread(Engine, old.path, old.config, still)
                    except BaseException:
                        # No engine left: the next request loads the model afresh.
                        for key in [k for k, v in self._served.items() if v is served]:
                            del self._served[key]
                        raise
                    raise
            else:
                # The old engine serves on until the new one is up (or fails to start).
                served.engine = await asyncio.to_thread(Engine, old.path, old.config, adapters)
                served.retiring.append(old)
        except CorruptModelError as exc:
            served.broken[_file_id(new)] = str(exc)
            logger.warning("llama.cpp could not load the LoRA %s; refusing it: %s", new, exc)
            raise InvalidInputError(
                f"llama.cpp could not load the LoRA adapter {new} ({exc}); it is refused "
                "until the file changes"
            ) from exc
        finally:
            served.swapping = None
            swapping.set()
        self._close_retired(served)
        logger.info(
            "llama.cpp restarted %s with %d adapters in %.2f s",
            served.entry.name,
            len(adapters),
            time.perf_counter() - started,
        )

    async def _close_engine(self, engine: Engine) -> None:
        """Stop ``engine`` in a worker thread; one that won't stop is left to its thread."""
        closing = asyncio.get_running_loop().run_in_executor(None, engine.close)
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_TIMEOUT_S)
        except TimeoutError:
            logger.warning("llama.cpp's server for %s did not stop in time", engine.path)

    def _close_retired(self, served: _Served) -> None:
        for engine in [e for e in served.retiring if e.active == 0]:
            served.retiring.remove(engine)
            # Stopping a server joins its threads: not on the event loop.
            asyncio.get_running_loop().run_in_executor(None, engine.close)

    async def aclose(self) -> None:
        """Stop every engine (tests; the process exiting does the same)."""
        served_models, self._served = list(self._served.values()), {}
        for served in served_models:
            for engine in [served.engine, *served.retiring]:
                await asyncio.to_thread(engine.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


if TYPE_CHECKING:  # the backend's optional abilities, checked by mypy
    _runnable: type[Runnable] = LlamaCppBackend
    _loadable: type[Loadable] = LlamaCppBackend
    _fetchable: type[Fetchable] = LlamaCppBackend
    _reports_progress: type[ReportsProgress] = LlamaCppBackend
    _health: type[HealthChecked] = LlamaCppBackend
    _token_counter: type[TokenCounter] = LlamaCppBackend
    _constrains: type[ConstrainsOutput] = LlamaCppBackend
    _adapters: type[ServesAdapters] = LlamaCppBackend
