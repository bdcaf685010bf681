"""One llama.cpp server (xllamacpp) for one model: its slots, its adapters, its blocking calls.

xllamacpp runs llama.cpp's server engine in process: :meth:`Engine.stream`
blocks the calling thread (without the GIL) while the engine's own loop
batches every running sequence together, and hands each token to a callback on
that thread. The engine also always listens on a loopback HTTP port; it is
locked with a random key known only to this process, and used for what the
Python API lacks (tokenizing, rendering the chat template).

Slots are chosen here, not by llama.cpp: a sequence's KV cache stays in its
slot after it ends and is reused when the next prompt starts the same way
(the same conversation), but only if it was computed under the same LoRA
adapter, which llama.cpp does not check. :class:`SlotPool` gives each request
a free slot, preferring one last used with the same adapter and the longest
run of the same messages, and says whether its cache may be reused.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mongars_core.errors import BackendError, CorruptModelError, InvalidInputError

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class EngineConfig:
    """How the engine runs: threads, slots, context (all slots), batch, polling, prompt cache."""

    threads: int
    slots: int
    context: int
    batch_size: int = 512
    poll: int = 0
    prompt_cache_mib: int = 0
    kv_cache_type: str = "q8_0"


@dataclass
class Slot:
    """One of the engine's parallel sequences, and what its KV cache holds."""

    id: int
    adapter: str | None = None
    messages: tuple[tuple[str, str], ...] = ()
    used: int = 0
    busy: bool = False


@dataclass
class Lease:
    """A slot given to one request: send ``id_slot`` and ``cache_prompt`` with it."""

    slot: Slot
    cache_prompt: bool


class SlotPool:
    """The engine's slots, lent one request at a time (asyncio side)."""

    def __init__(self, slots: int) -> None:
        self.slots = [Slot(index) for index in range(slots)]
        self._free = asyncio.Condition()
        self._clock = 0

    @asynccontextmanager
    async def lease(
        self, adapter: str | None, messages: Sequence[tuple[str, str]]
    ) -> AsyncIterator[Lease]:
        async with self._free:
            while all(slot.busy for slot in self.slots):
                await self._free.wait()
            slot = self.choose(adapter, tuple(messages))
            slot.busy = True
        # A slot last used with another adapter holds a KV cache that adapter computed.
        lease = Lease(slot, cache_prompt=slot.adapter == adapter)
        try:
            yield lease
        finally:
            self._clock += 1
            slot.adapter, slot.messages, slot.used = adapter, tuple(messages), self._clock
            async with self._free:
                slot.busy = False
                self._free.notify()

    def choose(self, adapter: str | None, messages: tuple[tuple[str, str], ...]) -> Slot:
        """The free slot whose cache serves ``messages`` best: same adapter first, then the
        most leading messages in common, then the least recently used."""
        free = [slot for slot in self.slots if not slot.busy]

        def score(slot: Slot) -> tuple[bool, int, int]:
            common = 0
            for mine, theirs in zip(slot.messages, messages, strict=False):
                if mine != theirs:
                    break
                common += 1
            return (slot.adapter == adapter, common, -slot.used)

        return max(free, key=score)


@dataclass
class Result:
    """How one generation ended, as llama.cpp reported it."""

    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    stopped: bool = False
    """The caller asked it to stop (the stream was closed) before it ended."""


class Engine:
    """An xllamacpp ``Server`` for the GGUF at ``path``, with ``adapters`` (LoRA GGUF files)
    loaded at scale 0 and applied per request. Building it blocks (about a second)."""

    def __init__(self, path: Path, config: EngineConfig, adapters: Sequence[Path] = ()) -> None:
        import xllamacpp  # type: ignore[import-untyped]  # no stubs

        self.path = path
        self.config = config
        self.adapters = list(adapters)
        self.api_key = secrets.token_urlsafe(24)
        self.pool = SlotPool(config.slots)
        self.active = 0
        """Generations running on this engine (kept by the backend)."""
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = config.context
        params.n_parallel = config.slots
        params.n_batch = config.batch_size
        params.n_ubatch = min(config.batch_size, 512)
        for cpu in (params.cpuparams, params.cpuparams_batch):
            cpu.n_threads = config.threads
            cpu.poll = config.poll
        params.cache_ram_mib = config.prompt_cache_mib
        kv_type = getattr(xllamacpp.ggml_type, f"GGML_TYPE_{config.kv_cache_type.upper()}")
        params.cache_type_k = kv_type
        params.cache_type_v = kv_type
        params.warmup = False
        params.api_keys = [self.api_key]
        params.verbosity = 3 if logger.isEnabledFor(logging.DEBUG) else 0
        if self.adapters:
            loras = []
            for adapter in self.adapters:
                info = xllamacpp.CommonAdapterLoraInfo()
                info.path = str(adapter)
                info.scale = 0.0
                loras.append(info)
            params.lora_adapters = loras
            params.lora_init_without_apply = True
        try:
            self._server: Any = xllamacpp.Server(params)
        except RuntimeError as exc:
            names = ", ".join(str(adapter) for adapter in self.adapters)
            raise CorruptModelError(
                f"llama.cpp could not load {path}"
                + (f" with the adapters {names}" if names else "")
                + f" ({exc})"
            ) from exc
        self.address: str = self._server.listening_address

    # -- generation (blocking: call from a worker thread) -------------------------------

    def lora(self, adapter: Path | None) -> list[dict[str, Any]]:
        """The request's ``lora`` field: every loaded adapter, at scale 1 for ``adapter``
        and 0 for the others (a missing field would apply the server's defaults)."""
        return [
            {"id": index, "scale": 1.0 if path == adapter else 0.0}
            for index, path in enumerate(self.adapters)
        ]

    def stream(
        self,
        body: dict[str, Any],
        on_text: Callable[[str], object],
        stop: threading.Event,
        *,
        chat: bool,
    ) -> Result:
        """Generate ``body`` (an OpenAI chat or completions request), calling ``on_text``
        with each piece of text; returns at the end, or at the first token after ``stop``
        is set. A request llama.cpp refuses is an :class:`InvalidInputError`."""
        result = Result()
        failure: list[BaseException] = []
        error: list[dict[str, Any]] = []

        def callback(chunk: Any) -> bool:
            # An exception here would be swallowed by xllamacpp: keep it, stop the stream.
            try:
                if stop.is_set():
                    result.stopped = True
                    return True
                if not isinstance(chunk, dict):
                    return False
                if "error" in chunk:
                    error.append(chunk["error"])
                    return True
                for choice in chunk.get("choices") or ():
                    text = (
                        (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    )
                    if text:
                        on_text(text)
                    if choice.get("finish_reason"):
                        result.finish_reason = choice["finish_reason"]
                if chunk.get("usage"):
                    result.usage = chunk["usage"]
                if chunk.get("timings"):
                    result.timings = chunk["timings"]
                return False
            except BaseException as exc:
                failure.append(exc)
                return True

        # llama.cpp parses the request as UTF-8 JSON: a lone surrogate would make it fail.
        request = clean({**body, "stream": True, "stream_options": {"include_usage": True}})
        handle = self._server.handle_chat_completions if chat else self._server.handle_completions
        try:
            returned = handle(request, callback)
        except ValueError as exc:  # a schema it cannot compile, a malformed request
            raise InvalidInputError(f"llama.cpp refused the request: {exc}") from None
        except RuntimeError as exc:
            if "parse_error" in str(exc) or "json.exception" in str(exc):
                raise InvalidInputError(f"llama.cpp could not read the request: {exc}") from None
            raise
        if failure:
            raise failure[0]
        if isinstance(returned, dict) and "error" in returned:
            error.append(returned["error"])
        if error:
            raise _refusal(error[0], constrained="grammar" in body or "json_schema" in body)
        return result

    # -- the HTTP side: tokenizer, chat template, health (blocking) ----------------------

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of ``text``; ``special``: ``<|im_start|>`` and the like are read as the
        special tokens they name (a rendered template), not as text."""
        answer = self._post(
            "/tokenize", {"content": text, "add_special": special, "parse_special": special}
        )
        return list(answer["tokens"])

    def apply_template(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt the model reads for ``messages``: the GGUF's chat template, rendered
        with the generation prompt (the assistant's turn) at the end."""
        answer = self._post("/apply-template", {"messages": list(messages)})
        return str(answer["prompt"])

    def health(self) -> bool:
        try:
            answer = self._request("GET", "/health", None)
        except BackendError:
            return False
        return answer.get("status") == "ok"

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.address + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read()[:300].decode(errors="replace")
            raise BackendError(f"llama.cpp's {path} answered {exc.code}: {detail}") from None
        except (OSError, ValueError) as exc:
            raise BackendError(f"llama.cpp's {path} failed: {exc}") from None
        if not isinstance(answer, dict):
            raise BackendError(f"llama.cpp's {path} answered {answer!r}")
        return answer

    def close(self) -> None:
        """Stop the server (its loop and threads) and free the model."""
        server, self._server = self._server, None
        del server


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate (not valid UTF-8) replaced by U+FFFD; valid text
    is returned as it is, and a surrogate pair becomes the character it encodes."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def clean(value: Any) -> Any:
    """``value`` (a JSON request) with :func:`clean_text` applied to every string in it."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean(key): clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [clean(item) for item in value]
    return value


def _refusal(error: dict[str, Any], *, constrained: bool = False) -> Exception:
    message = str(error.get("message") or error)
    kind = error.get("type")
    if constrained and "grammar" in message.lower():
        # A grammar that no text can match: llama.cpp reports it as its own failure (500).
        return InvalidInputError(f"the output constraint cannot be satisfied: {message}")
    if kind == "exceed_context_size_error":
        return InvalidInputError(
            f"the prompt is too long for llama.cpp's context ({message}); raise "
            "MONGARS_LLAMACPP__CONTEXT_SIZE or lower MONGARS_LLAMACPP__SLOTS"
        )
    if error.get("code") == 400 or kind == "invalid_request_error":
        return InvalidInputError(f"llama.cpp refused the request: {message}")
    return BackendError(f"llama.cpp failed: {message}")
