"""What LLM backends and embedders provide.

A backend is any object with async ``generate`` and ``stream`` methods (the
protocol below); plugins register them through
``mongars_register_llm_backends``. :mod:`mongars_core.router` chooses among
them, owns deadlines, retries and failover, and translates backend failures
into :class:`~mongars_core.errors.BackendError`, so a failing model is a clear
error, never a hang.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeGuard, cast, runtime_checkable

import numpy as np
import numpy.typing as npt

from mongars_core.capabilities import Loadable, TokenCounter, has_ability
from mongars_core.types import (
    ChatMessage,
    GenerationOutcome,
    GenerationRequest,
    GenerationStats,
    TokenUsage,
)

Vectors = npt.NDArray[np.float32]

logger = logging.getLogger(__name__)


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
    """Let a backend that loads lazily (:class:`~mongars_core.capabilities.Loadable`,
    a local model) do so; the router calls this before the generation deadlines
    start, so a first-use model fetch isn't a timeout."""
    if not has_ability(backend, Loadable):
        return
    loadable = cast(Loadable, backend)
    if not loadable.loaded:
        await loadable.load()


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
    tokenizer when it has one (:class:`~mongars_core.capabilities.TokenCounter`), else estimated.

    The reply has streamed by now, so a counter that raises or answers anything
    but a count is logged and the estimate used: it costs the count, not the turn.
    """
    if has_ability(backend, TokenCounter):
        counted = _counted_usage(cast(TokenCounter, backend), messages, completion)
        if counted is not None:
            return counted
    prompt_estimate = sum(
        estimate_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS for message in messages
    )
    return TokenUsage(prompt_tokens=prompt_estimate, completion_tokens=estimate_tokens(completion))


def generation_usage(
    backend: object | None, request: GenerationRequest, completion: str, endpoints: int
) -> TokenUsage:
    """The usage of a generation: as the backend reported it in ``request.outcome``
    when one endpoint served the whole reply (a failover's counts would cover
    only its part), else :func:`count_usage`."""
    outcome = request.outcome
    if endpoints == 1 and outcome.prompt_tokens is not None and outcome.tokens is not None:
        return TokenUsage(
            prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.tokens, counted=True
        )
    return count_usage(backend, request.messages, completion)


def generation_stats(
    outcome: GenerationOutcome,
    usage: TokenUsage,
    first_token_ms: float | None,
    generate_ms: float,
) -> GenerationStats:
    """Time to first token (measured by the caller) and decode speed: the backend's
    figure where it reports one, else the tokens after the first over the time after it."""
    speed = outcome.tokens_per_second
    if speed is None and first_token_ms is not None and usage.completion_tokens > 1:
        decoding_s = (generate_ms - first_token_ms) / 1000
        if decoding_s > 0:
            speed = (usage.completion_tokens - 1) / decoding_s
    return GenerationStats(
        time_to_first_token_ms=None if first_token_ms is None else round(first_token_ms, 2),
        tokens_per_second=None if speed is None else round(speed, 2),
    )


def _counted_usage(
    counter: TokenCounter, messages: Sequence[ChatMessage], completion: str
) -> TokenUsage | None:
    """The counter's usage; ``None`` when it cannot count (not loaded, failing, nonsense)."""
    name = type(counter).__name__
    try:
        prompt: object = counter.count_prompt_tokens(messages)
        written: object = counter.count_tokens(completion)
    except Exception:
        logger.warning("%s failed to count tokens; usage is estimated", name, exc_info=True)
        return None
    if _is_count(prompt) and _is_count(written):
        return TokenUsage(prompt_tokens=prompt, completion_tokens=written, counted=True)
    if prompt is not None and written is not None:  # None: the tokenizer is not loaded yet
        logger.warning(
            "%s counted %r prompt and %r completion tokens, not token counts; usage is estimated",
            name,
            prompt,
            written,
        )
    return None


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@runtime_checkable
class Embedder(Protocol):
    """What a text embedder provides. ``embed`` blocks; callers use a worker thread."""

    dimension: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return one L2-normalised float32 row per text, shape ``(len(texts), dimension)``."""
        ...
