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

from mongars_core.types import GenerationRequest

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
