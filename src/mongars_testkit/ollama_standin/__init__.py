"""A stand-in for an Ollama server, for tests. It is not Ollama.

It follows Ollama's documented REST API (``/api/chat``, ``/api/generate``,
``/api/embed``, ``/api/tags``, ``/api/show``, ``/api/pull``, ``/api/ps``,
``/api/version``; NDJSON streams; ``{"error": ...}`` bodies with Ollama's
status codes) and answers with a monGARS backend: the local SmolLM2 model
(:func:`local_standin`), a fast echo (:func:`echo_standin`), or any
:class:`~mongars_core.llm.LLMBackend` given to :class:`OllamaStandin`.

In a test::

    with StandinServer(echo_standin()) as server:
        settings = Settings(ollama={"hosts": [server.url]})
        ...

or as a process that can be killed mid-stream::

    with StandinProcess.start("--echo", "--delay-s", "0.05") as server:
        ...
        server.kill()

It needs Starlette and uvicorn (``mongars-assistant[server]``). docs/ollama.md says
what it does and does not do.
"""

from __future__ import annotations

import importlib.util

from mongars_core.errors import MissingDependencyError

if importlib.util.find_spec("starlette") is None:  # the ASGI app below is built on it
    raise MissingDependencyError("starlette", "server")

from mongars_testkit.ollama_standin.app import (
    BUSY,
    STANDIN_VERSION,
    OllamaStandin,
    StandinStats,
)
from mongars_testkit.ollama_standin.catalogue import (
    DEFAULT_EMBED_MODEL,
    DEFAULT_MODEL,
    StandinModel,
    chat_model,
    embedding_model,
)
from mongars_testkit.ollama_standin.echo import EchoBackend, HashingEmbedder
from mongars_testkit.ollama_standin.server import (
    StandinProcess,
    StandinServer,
    echo_standin,
    local_standin,
)

__all__ = [
    "BUSY",
    "DEFAULT_EMBED_MODEL",
    "DEFAULT_MODEL",
    "STANDIN_VERSION",
    "EchoBackend",
    "HashingEmbedder",
    "OllamaStandin",
    "StandinModel",
    "StandinProcess",
    "StandinServer",
    "StandinStats",
    "chat_model",
    "echo_standin",
    "embedding_model",
    "local_standin",
]
