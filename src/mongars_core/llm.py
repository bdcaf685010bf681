"""What LLM backends and embedders provide.

A backend is any object with async ``generate`` and ``stream`` methods (the
protocol below); plugins register them through
``mongars_register_llm_backends``. :mod:`mongars_core.router` chooses among
them, owns deadlines, retries and failover, and translates backend failures
into :class:`~mongars_core.errors.BackendError`, so a failing model is a clear
error, never a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mongars_core.types import ChatMessage, GenerationRequest, TokenUsage

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
class TokenCounter(Protocol):
    """A backend that can count tokens with its own tokenizer (optional ability)."""

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        """Tokens of ``messages`` as the model reads them (chat template included);
        ``None`` when the tokenizer is not loaded."""
        ...

    def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text``; ``None`` when the tokenizer is not loaded."""
        ...


CHARS_PER_TOKEN = 4
"""The estimate where no tokenizer counts: about four characters a token
(English text through a BPE tokenizer), at least one token for any text."""

MESSAGE_OVERHEAD_TOKENS = 3
"""Estimated tokens the chat template adds around each message."""


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) if text else 0


def count_usage(
    backend: object | None, messages: Sequence[ChatMessage], completion: str
) -> TokenUsage:
    """Prompt and completion tokens of a generation: counted by ``backend``'s
    tokenizer when it has one (:class:`TokenCounter`), else estimated."""
    if isinstance(backend, TokenCounter):
        prompt = backend.count_prompt_tokens(messages)
        written = backend.count_tokens(completion)
        if prompt is not None and written is not None:
            return TokenUsage(prompt_tokens=prompt, completion_tokens=written, counted=True)
    prompt_estimate = sum(
        estimate_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS for message in messages
    )
    return TokenUsage(prompt_tokens=prompt_estimate, completion_tokens=estimate_tokens(completion))


@runtime_checkable
class Embedder(Protocol):
    """What a text embedder provides. ``embed`` blocks; callers use a worker thread."""

    dimension: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text, shape ``(len(texts), dimension)``."""
        ...
