"""Text embeddings from an Ollama server's ``/api/embed``, as a monGARS embedder.

:class:`~mongars_core.llm.Embedder` is blocking (callers use a worker
thread), so this uses the client's synchronous ``ollama.Client``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from mongars_core.errors import BackendError
from mongars_core.llm import Vectors
from mongars_plugins.ollama.backend import (
    keep_alive_value,
    new_ssl_context,
    require_ollama,
    sync_status_hook,
    translate_errors,
)
from mongars_plugins.ollama.hosts import OllamaHost
from mongars_plugins.ollama.settings import OllamaSettings

if TYPE_CHECKING:
    import ssl

    import ollama

_PROBE = "dimension probe"


class OllamaEmbedder:
    """An :class:`~mongars_core.llm.Embedder` on one Ollama server and ``embed_model``.

    Ollama does not say a model's width up front: the first read of
    :attr:`dimension` before any :meth:`embed` embeds a probe text to learn it.
    """

    def __init__(self, host: OllamaHost, settings: OllamaSettings, model: str) -> None:
        self.host = host
        self.name = host.backend_name
        self.url = host.url
        self.model = model
        self.timeout_s = settings.timeout_s
        self.keep_alive = keep_alive_value(settings.keep_alive)
        self._dimension: int | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OllamaEmbedder({self.name!r}, {self.host.display_url!r}, model={self.model!r})"

    @property
    def where(self) -> str:
        return f"the embedder {self.name!r} (Ollama at {self.host.display_url})"

    @property
    def dimension(self) -> int:
        """Width of the vectors; asks the server once if no embedding was made yet."""
        if self._dimension is None:
            self.embed([_PROBE])
        assert self._dimension is not None
        return self._dimension

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._client() as client:
            response = client.embed(model=self.model, input=list(texts), keep_alive=self.keep_alive)
        vectors = np.asarray(response.embeddings, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or vectors.shape[1] == 0:
            raise BackendError(
                f"{self.where} returned embeddings of shape {vectors.shape} for {len(texts)} texts"
            )
        if self._dimension is None:
            self._dimension = int(vectors.shape[1])
        elif vectors.shape[1] != self._dimension:
            raise BackendError(
                f"{self.where}: {self.model!r} returned {vectors.shape[1]} dimensions, "
                f"not {self._dimension} as before"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)

    @contextmanager
    def _client(self) -> Iterator[ollama.Client]:
        client_module = require_ollama()
        with (
            translate_errors(self.where, self.timeout_s),
            client_module.Client(
                host=self.url,
                auth=self.host.auth,
                timeout=self.timeout_s,
                verify=self._context(),
                event_hooks={"response": [sync_status_hook(self.where)]},
            ) as client,
        ):
            yield client

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl_context is None:
                self._ssl_context = new_ssl_context()
            return self._ssl_context
