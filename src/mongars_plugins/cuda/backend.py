"""The local LLM backend: SmolLM2 on PyTorch, CUDA (bf16) when present, else CPU.

On CUDA, generation uses a static KV cache (``cache_implementation="static"``),
which lets transformers compile the decoding step; its length is rounded up to
a power of two so that a new prompt length rarely means a new compilation. The
CPU path keeps the default dynamic cache.

Generation runs in a worker thread; tokens reach the event loop through a
:class:`DeltaStreamer` that hands decoded text to an asyncio queue and never
splits a character. Closing the stream sets a stop flag that a stopping
criterion checks after every token, so a client that goes away stops the model
within one token. When generation ends by itself, the backend reports why in
``request.outcome`` (``"length"`` at ``max_new_tokens``, else ``"stop"``).

``request.adapter`` (a peft LoRA) is applied to that request only, with the
model wrapped by peft and the adapter's merged weights swapped in under the
generation lock, the base's put back after it
(:mod:`mongars_plugins.cuda.adapters`); ``outcome.adapter`` names it. An
adapter trained on another base model, or one without peft installed, is not
applied: the base model answers (logged once). On CUDA a request with an
adapter is decoded without ``torch.compile``: each adapter would otherwise be
a compilation of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from mongars_core.capabilities import (
    Fetchable,
    Loadable,
    Progress,
    ReportsProgress,
    ServesAdapters,
    TokenCounter,
)
from mongars_core.errors import ConfigurationError, MissingDependencyError
from mongars_core.reply_text import OwedSpace, StopStrings
from mongars_core.settings import Settings
from mongars_core.types import AdapterRef, ChatMessage, GenerationRequest
from mongars_plugins.cuda import model as model_files
from mongars_plugins.cuda.adapters import LoadedAdapters, is_peft_lora, peft_available
from mongars_plugins.cuda.settings import LOCAL

if TYPE_CHECKING:
    from torch import Tensor

logger = logging.getLogger(__name__)

_DONE = object()
_INCOMPLETE = "\ufffd"
"""What decoding writes for the bytes of a character whose last token has not come yet."""


class TokenDecoder(Protocol):
    """What :class:`DeltaStreamer` needs of a tokenizer."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = False) -> str:
        """The text of one sequence of token ids."""
        ...


class DeltaStreamer:
    """Turns generated token ids into text deltas that never split a character.

    The ``streamer`` of ``model.generate``: ``put`` receives the prompt once,
    then each new token. A multi-byte character (an accent, an emoji) may span
    several tokens; until its last token arrives, decoding ends in U+FFFD, and
    that part is held back. Text is released up to the last whitespace (a later
    token may still change the current word), whole lines at once, and at the
    end everything left except an unfinished character: a reply cut at the
    length limit ends on a whole character.
    """

    def __init__(self, tokenizer: TokenDecoder, emit: Callable[[str], object]) -> None:
        self.tokenizer = tokenizer
        self.emit = emit
        self.generated = 0
        """Tokens received after the prompt."""
        self._prompt_pending = True
        self._ids: list[int] = []
        self._sent = 0  # characters of the decoded ``_ids`` already emitted

    def put(self, value: Any) -> None:
        ids = value.tolist() if hasattr(value, "tolist") else list(value)
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        if self._prompt_pending:
            self._prompt_pending = False
            return
        self.generated += len(ids)
        self._ids.extend(ids)
        text = self._decode()
        if text.endswith("\n"):
            self._release(text, len(text))
            self._ids, self._sent = [], 0  # a new line starts a fresh decode
            return
        complete = text.rstrip(_INCOMPLETE)
        if complete and _stands_alone(complete[-1]) and len(complete) == len(text):
            self._release(text, len(text))
        else:
            self._release(text, max(complete.rfind(" "), complete.rfind("\n")) + 1)

    def end(self) -> None:
        text = self._decode()
        self._release(text, len(text.rstrip(_INCOMPLETE)))
        self._ids, self._sent = [], 0

    def _decode(self) -> str:
        return self.tokenizer.decode(self._ids, skip_special_tokens=True)

    def _release(self, text: str, upto: int) -> None:
        if upto > self._sent:
            # A stray U+FFFD inside complete text is a byte sequence that never
            # became a character: it is dropped, not shown.
            piece = text[self._sent : upto].replace(_INCOMPLETE, "")
            self._sent = upto
            if piece:
                self.emit(piece)


def _stands_alone(char: str) -> bool:
    """Characters written without spaces between words (CJK): released at once."""
    return unicodedata.east_asian_width(char) in {"W", "F"}


def require_torch() -> ModuleType:
    """Import torch, or name the extra that provides it."""
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("torch", "local") from exc
    return torch


def pick_device(wanted: str) -> str:
    """The torch device for ``wanted`` ("auto", "cpu", "cuda", "cuda:N")."""
    torch = require_torch()
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigurationError(
                f"MONGARS_LOCAL__DEVICE is {wanted!r} but torch sees no CUDA device here; "
                "use auto or cpu"
            )
        index = int(wanted.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigurationError(
                f"MONGARS_LOCAL__DEVICE is {wanted!r} but there are only "
                f"{torch.cuda.device_count()} CUDA devices"
            )
    return wanted


class LocalModelBackend:
    """An :class:`~mongars_core.llm.LLMBackend` running the bundled model in process."""

    def __init__(self, settings: Settings, progress: Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.device: str | None = None
        self.load_seconds: float | None = None
        self.stopped_generations = 0
        """Generations cut short because their stream was closed."""
        self._model: Any = None
        self._tokenizer: Any = None
        self._spared: Tensor | None = None  # per token id: spared by the repetition penalty
        self.adapters: LoadedAdapters | None = None
        """The LoRA adapters loaded on the model (once it is loaded)."""
        self._unapplied: set[str] = set()  # adapters already logged as not applicable
        self._load_lock = asyncio.Lock()
        # One generation at a time: a second would only halve the speed of both.
        self._generate_lock = asyncio.Lock()
        self._model_lock = threading.Lock()  # held by the thread that generates

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        """Tokens of ``messages`` through the chat template (``TokenCounter``)."""
        if self._tokenizer is None:
            return None
        encoded = self._tokenizer.apply_chat_template(
            [message.model_dump() for message in messages],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )
        return len(encoded["input_ids"])

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` (``TokenCounter``)."""
        if self._tokenizer is None:
            return None
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    async def load(self) -> None:
        """Fetch, convert and load the model if that has not happened yet."""
        if self._model is not None:
            return
        async with self._load_lock:
            if self._model is None:
                await asyncio.to_thread(self._load_blocking)

    async def fetch(self) -> Path:
        """Fetch and convert the model files without loading them (``mongars serve``
        does this with progress bars before the server starts)."""
        require_torch()
        require_transformers()
        pick_device(self.settings.section(LOCAL).device)
        path: Path = await asyncio.to_thread(
            model_files.ensure_model, self.settings, self.progress or model_files._log_progress
        )
        return path

    def _load_blocking(self) -> None:
        torch = require_torch()
        require_transformers()
        started = time.perf_counter()
        local = self.settings.section(LOCAL)
        if local.threads:
            torch.set_num_threads(local.threads)
        # A device that can't be used should fail before a download, not after.
        device = pick_device(local.device)
        path: Path = model_files.ensure_model(
            self.settings, self.progress or model_files._log_progress
        )
        self.device = device
        self._model, self._tokenizer = model_files.load(path, self.device)
        self.adapters = LoadedAdapters(self._model, device, local.max_adapters)
        self.load_seconds = time.perf_counter() - started
        logger.info("loaded %s on %s in %.2f s", path, self.device, self.load_seconds)

    def can_serve_adapter(self, adapter: AdapterRef) -> bool:
        """Whether ``adapter`` is a peft LoRA for the bundled model, and peft is here
        (``ServesAdapters``; its weights are checked against the model when first used)."""
        return (
            adapter.base_model == model_files.MODEL_NAME
            and peft_available()
            and is_peft_lora(Path(adapter.path))
        )

    def _applicable(self, adapter: AdapterRef | None) -> AdapterRef | None:
        """``adapter``, or ``None`` when the base model must answer instead (logged once)."""
        if adapter is None:
            return None
        if adapter.base_model != model_files.MODEL_NAME:
            why = f"was trained on {adapter.base_model}, but torch serves {model_files.MODEL_NAME}"
        elif not peft_available():
            why = "needs peft (pip install 'mongars-assistant[train]')"
        else:
            return adapter
        if adapter.id not in self._unapplied:
            self._unapplied.add(adapter.id)
            logger.warning(
                "adapter %s %s: its turns are answered by the base model, without it",
                adapter.id,
                why,
            )
        return None

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        await self.load()
        adapter = self._applicable(request.adapter)
        async with self._generate_lock:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = threading.Event()
            worker = loop.run_in_executor(
                None, self._generate_blocking, request, adapter, queue, loop, stop
            )
            # A prefix ending in a space continues from the word before it (see
            # _generate_blocking): the space it already has is not sent again.
            owed_space = OwedSpace(request.prefix)
            # transformers ends at a stop string but keeps it: left out here, as
            # the llama.cpp engine, Ollama and OpenAI do.
            stops = StopStrings(request.stop)
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        if tail := stops.flush():
                            yield tail
                        break
                    if isinstance(item, BaseException):
                        raise item
                    item = owed_space.strip(item)
                    item = stops.feed(item)
                    if item:
                        yield item
                    if stops.stopped:
                        request.outcome.finish_reason = "stop"
                        break
            finally:
                stop.set()
                # Let the worker notice the flag before the next generation starts.
                await asyncio.shield(worker)

    def _generate_blocking(
        self,
        request: GenerationRequest,
        adapter: AdapterRef | None,
        queue: asyncio.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        torch = require_torch()
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        tokenizer = self._tokenizer
        streamer = DeltaStreamer(
            tokenizer, lambda text: loop.call_soon_threadsafe(queue.put_nowait, text)
        )
        backend = self

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                if stop.is_set():
                    backend.stopped_generations += 1
                    return True
                return False

        try:
            messages = [message.model_dump() for message in request.messages]
            if request.prefix:
                # Failover mid-stream: continue the reply another backend began.
                # Without its trailing space: "The " tokenizes as "The" and a lone
                # space, and the model then writes what it never would have
                # ("The 1980s..." for "The sea..."); the word token brings its space.
                messages.append({"role": "assistant", "content": request.prefix.rstrip()})
            encoded = tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=not request.prefix,
                continue_final_message=bool(request.prefix),
                return_tensors="pt",
                return_dict=True,
            )
            encoded = {key: value.to(self.device) for key, value in encoded.items()}
            prompt_tokens = int(encoded["input_ids"].shape[-1])
            options: dict[str, Any] = {
                "max_new_tokens": request.max_new_tokens,
                "do_sample": request.temperature > 0,
                "pad_token_id": tokenizer.eos_token_id,
                "streamer": streamer,
                "stopping_criteria": StoppingCriteriaList([StopWhenAsked()]),
                **kv_cache_options(str(self.device), prompt_tokens + request.max_new_tokens),
            }
            penalty = self.settings.section(LOCAL).repetition_penalty
            # Sampling only: greedy decoding stays reproducible, so a reply cut
            # by a failed replica continues elsewhere as the same text (loops
            # are still stopped by the pipeline's repetition guard).
            if penalty > 1 and request.temperature > 0:
                # A continued reply's prefix is reply, not prompt: penalised as
                # if this backend had written it, the continuation is the text
                # one uninterrupted generation would have written.
                reply_start = prompt_tokens
                if request.prefix:
                    reply_start = len(
                        tokenizer.apply_chat_template(
                            [message.model_dump() for message in request.messages],
                            add_generation_prompt=True,
                            return_dict=True,
                        )["input_ids"]
                    )
                options["logits_processor"] = LogitsProcessorList(
                    [self._repetition_penalty(penalty, reply_start)]
                )
            if request.temperature > 0:
                options.update(temperature=request.temperature, top_p=request.top_p)
            if request.stop:
                options.update(stop_strings=request.stop, tokenizer=tokenizer)
            if (
                adapter is not None
                and "cache_implementation" in options
                and _knows("disable_compile")
            ):
                # Compiled, each adapter would be a compilation (and a guard) of its own.
                options["disable_compile"] = True
            assert self.adapters is not None  # made with the model
            # The thread's own lock besides the event loop's: a stream whose closing
            # was itself cancelled leaves its worker running until its next token,
            # and the next request must not swap weights under it.
            with self._model_lock, self.adapters.use(adapter):
                # Set before generating: a stream closed early (a stop string, the
                # pipeline's repetition guard) was still written with the adapter.
                request.outcome.adapter = adapter.id if adapter is not None else None
                with torch.inference_mode():
                    output = self._model.generate(**encoded, **options)
            if not stop.is_set():
                generated = int(output.shape[-1]) - prompt_tokens
                last = int(output[0, -1]) if generated > 0 else None
                request.outcome.tokens = generated
                request.outcome.finish_reason = (
                    "length"
                    if generated >= request.max_new_tokens and last != tokenizer.eos_token_id
                    else "stop"
                )
        except Exception as exc:  # handed to the event loop, which raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    def _repetition_penalty(
        self, penalty: float, reply_start: int
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """A penalty on the tokens the reply already used, against loops.

        Unlike transformers' own ``repetition_penalty``, it spares the prompt
        (a verified fact there stays easy to state) and digits, spaces and
        punctuation ("17 * 23 = 391" reuses them; penalising them changes the
        number the model writes).
        """
        torch = require_torch()
        if self._spared is None:
            self._spared = torch.tensor(
                [_spared(self._tokenizer.decode([index])) for index in range(len(self._tokenizer))],
                dtype=torch.bool,
                device=self.device,
            )
        spared = self._spared

        def apply(input_ids: Tensor, scores: Tensor) -> Tensor:
            used = input_ids[:, reply_start:]  # one sequence: the backend batches none
            known = used[0] < len(spared)
            spare = torch.zeros_like(known)
            spare[known] = spared[used[0][known]]
            used = used[:, ~spare]
            if used.shape[-1] == 0:
                return scores
            chosen = torch.gather(scores, 1, used)
            chosen = torch.where(chosen < 0, chosen * penalty, chosen / penalty)
            return scores.scatter(1, used, chosen)

        return apply


STATIC_CACHE_MIN_LENGTH = 1024
STATIC_CACHE_MAX_LENGTH = 8192
"""SmolLM2-135M's context length: a static cache never needs more."""


def kv_cache_options(device: str, needed: int) -> dict[str, Any]:
    """``generate`` options for the KV cache on ``device``, for ``needed`` positions.

    CUDA gets a static cache sized to the next power of two (at least
    ``STATIC_CACHE_MIN_LENGTH``): transformers keeps the largest size it has
    seen, so the compiled decoding step is reused across requests. The CPU
    keeps the dynamic cache, which is faster there.
    """
    if not device.startswith("cuda"):
        return {}
    options: dict[str, Any] = {"cache_implementation": "static"}
    if _knows("max_cache_len"):  # transformers older than 5.2x sizes it per call only
        length = max(STATIC_CACHE_MIN_LENGTH, 1 << max(needed - 1, 0).bit_length())
        options["max_cache_len"] = min(length, max(STATIC_CACHE_MAX_LENGTH, needed))
    return options


@functools.cache
def _knows(option: str) -> bool:
    """Whether this transformers' ``GenerationConfig`` has ``option``."""
    from transformers import GenerationConfig

    return option in vars(GenerationConfig())


def _knows_max_cache_len() -> bool:
    return _knows("max_cache_len")


def _spared(token: str) -> bool:
    """Whether the repetition penalty spares a token: digits, spaces, punctuation only."""
    return all(not char.isalpha() for char in token)


def require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("transformers", "local") from exc


if TYPE_CHECKING:  # the backend's optional abilities, checked by mypy
    _loadable: type[Loadable] = LocalModelBackend
    _fetchable: type[Fetchable] = LocalModelBackend
    _reports_progress: type[ReportsProgress] = LocalModelBackend
    _token_counter: type[TokenCounter] = LocalModelBackend
    _serves_adapters: type[ServesAdapters] = LocalModelBackend
