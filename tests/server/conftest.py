"""A real server for the tests: the app under uvicorn on a free loopback port,
in a background thread, talked to over real HTTP and websockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_server import create_app
from mongars_server.app import ServerState
from mongars_server.settings import SERVER
from mongars_server.startup import uvicorn_options
from mongars_testkit import BackendPlugin, InstantBackend
from tests.conftest import BUNDLED_WITHOUT_MODELS, MODEL_CACHE

PASSWORD = "correct horse battery"


@dataclass
class LiveServer:
    url: str
    settings: Settings
    app: Any
    uvicorn: uvicorn.Server
    loop: asyncio.AbstractEventLoop

    @property
    def state(self) -> ServerState:
        """The app's lifespan state (assistant, hub, accounts...)."""
        state: ServerState = self.uvicorn.lifespan.state["server"]
        return state

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        """Run ``coroutine`` on the server's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + "/ws/chat/"


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    server = {"rate_limit_per_minute": 100_000, "rate_limit_burst": 10_000}
    server.update(overrides.pop("server", {}))
    llm = {"backend": "instant", "timeout_s": 10, "first_token_timeout_s": 5}
    llm.update(overrides.pop("llm", {}))
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        llm=llm,
        memory={"embedder": "none"},
        load_plugins=overrides.pop("load_plugins", [*BUNDLED_WITHOUT_MODELS, "server", "instant"]),
        server=server,
        **overrides,
    )


@contextmanager
def running(
    settings: Settings,
    backend: Any = None,
    plugins: Sequence[tuple[str, object]] = (),
    host: str = "127.0.0.1",
) -> Iterator[LiveServer]:
    """The app for ``settings`` served on ``host``:<free port> until the block ends
    (the URL says 127.0.0.1); ``plugins`` are (name, plugin) pairs loaded beside the
    backend (default: the kit's instant echo)."""
    pm = build_plugin_manager(
        settings, plugins=[("instant", BackendPlugin(backend or InstantBackend())), *plugins]
    )
    app = create_app(settings, plugin_manager=pm)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    # The options `mongars serve` runs with (frame size, connection cap, proxies...).
    options = uvicorn_options(settings.section(SERVER))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws_ping_interval=None, **options
    )
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        finally:
            loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        if not server.started:
            raise RuntimeError("the server did not start")
        yield LiveServer(f"http://127.0.0.1:{port}", settings, app, server, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers with setting overrides (``server={...}`` for the server section)."""
    stack: list[Any] = []

    def start(
        backend: Any = None, plugins: Sequence[tuple[str, object]] = (), **overrides: Any
    ) -> LiveServer:
        index = len(stack)
        context = running(
            server_settings(tmp_path / f"server{index}", **overrides), backend, plugins
        )
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)


@pytest.fixture
def live_server(make_server: Callable[..., LiveServer]) -> LiveServer:
    """The server with an echo backend that streams a word every 20 ms."""
    return make_server(InstantBackend(delay_s=0.02))


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        yield client


async def register(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Register ``username`` and return an access token for them."""
    created = await client.post(
        "/api/v1/user/register", json={"username": username, "password": password}
    )
    assert created.status_code == 201, created.text
    login = await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
