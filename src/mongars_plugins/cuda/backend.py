"""The local LLM backend: SmolLM2 on PyTorch, CUDA (bf16) when present, else CPU.

Generation runs in a worker thread; tokens reach the event loop through a
streamer that hands decoded text to an asyncio queue. Closing the stream sets
a stop flag that a stopping criterion checks after every token, so a client
that goes away stops the model within one token.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from mongars_core.errors import ConfigurationError, MissingDependencyError
from mongars_core.settings import Settings
from mongars_core.types import GenerationRequest
from mongars_plugins.cuda import model as model_files

logger = logging.getLogger(__name__)

_DONE = object()


def require_torch() -> Any:
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

    def __init__(self, settings: Settings, progress: model_files.Progress | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.device: str | None = None
        self.load_seconds: float | None = None
        self.stopped_generations = 0
        """Generations cut short because their stream was closed."""
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_lock = asyncio.Lock()
        # One generation at a time: a second would only halve the speed of both.
        self._generate_lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

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
        pick_device(self.settings.local.device)
        path: Path = await asyncio.to_thread(
            model_files.ensure_model, self.settings, self.progress or model_files._log_progress
        )
        return path

    def _load_blocking(self) -> None:
        torch = require_torch()
        require_transformers()
        started = time.perf_counter()
        if self.settings.local.threads:
            torch.set_num_threads(self.settings.local.threads)
        # A device that can't be used should fail before a download, not after.
        device = pick_device(self.settings.local.device)
        path: Path = model_files.ensure_model(
            self.settings, self.progress or model_files._log_progress
        )
        self.device = device
        self._model, self._tokenizer = model_files.load(path, self.device)
        self.load_seconds = time.perf_counter() - started
        logger.info("loaded %s on %s in %.2f s", path, self.device, self.load_seconds)

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        await self.load()
        async with self._generate_lock:
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Any] = asyncio.Queue()
            stop = threading.Event()
            worker = loop.run_in_executor(None, self._generate_blocking, request, queue, loop, stop)
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                stop.set()
                # Let the worker notice the flag before the next generation starts.
                await asyncio.shield(worker)

    def _generate_blocking(
        self,
        request: GenerationRequest,
        queue: asyncio.Queue[Any],
        loop: asyncio.AbstractEventLoop,
        stop: threading.Event,
    ) -> None:
        torch = require_torch()
        from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

        tokenizer = self._tokenizer

        class QueueStreamer(TextStreamer):  # type: ignore[misc]
            def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
                if text:
                    loop.call_soon_threadsafe(queue.put_nowait, text)

        backend = self

        class StopWhenAsked(StoppingCriteria):  # type: ignore[misc]
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                if stop.is_set():
                    backend.stopped_generations += 1
                    return True
                return False

        try:
            messages = [message.model_dump() for message in request.messages]
            if request.prefix:
                # Failover mid-stream: continue the reply another backend began.
                messages.append({"role": "assistant", "content": request.prefix})
            encoded = tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=not request.prefix,
                continue_final_message=bool(request.prefix),
                return_tensors="pt",
                return_dict=True,
            )
            encoded = {key: value.to(self.device) for key, value in encoded.items()}
            options: dict[str, Any] = {
                "max_new_tokens": request.max_new_tokens,
                "do_sample": request.temperature > 0,
                "pad_token_id": tokenizer.eos_token_id,
                "streamer": QueueStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True),
                "stopping_criteria": StoppingCriteriaList([StopWhenAsked()]),
            }
            if request.temperature > 0:
                options.update(temperature=request.temperature, top_p=request.top_p)
            if request.stop:
                options.update(stop_strings=request.stop, tokenizer=tokenizer)
            with torch.inference_mode():
                self._model.generate(**encoded, **options)
        except Exception as exc:  # handed to the event loop, which raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)


def require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("transformers", "local") from exc
