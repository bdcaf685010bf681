"""Shared fixtures: settings in a temporary data dir, real databases, small fake plugins."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import platformdirs
import pytest
from sqlalchemy.engine import make_url

from mongars_core import hookimpl
from mongars_core.hookspecs import Register
from mongars_core.pipeline import Assistant
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.types import GenerationRequest

POSTGRES_URL = os.environ.get(
    "MONGARS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MONGARS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL_CACHE = Path(
    os.environ.get("MONGARS_TEST_CACHE_DIR") or platformdirs.user_cache_dir("mongars")
)


def command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``mongars`` subprocess: this one's, less any ``MONGARS_*``,
    with its own data and cache folders, no model and no embedder (``extra`` added)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    base.update(
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_CACHE_DIR=str(tmp_path / "cache"),
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_DISABLE_PLUGINS="cuda",
        **extra,
    )
    return base


def run_mongars(
    *args: str, env: dict[str, str], timeout: float = 120, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The ``mongars`` command in a subprocess, as a user runs it (``stdin`` typed in)."""
    return subprocess.run(
        [sys.executable, "-m", "mongars_core", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from each test, never from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("MONGARS_") and not name.startswith("MONGARS_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


async def _admin(statement: str) -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    connection = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database,
    )
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def _postgres_reachable() -> bool:
    try:
        asyncio.run(_admin("SELECT 1"))
    except (OSError, ImportError):
        return False
    return True


@pytest.fixture(scope="session")
def postgres_available() -> bool:
    return _postgres_reachable()


@pytest.fixture
def redis_url() -> str:
    """The Redis server at MONGARS_TEST_REDIS_URL, answering (skipped without it; CI fails)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is not reachable in CI")
        pytest.skip(f"needs the Redis server at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def postgres_url(postgres_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (no schema), dropped afterwards."""
    if not postgres_available:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable in CI")
        pytest.skip(f"needs the PostgreSQL server at {POSTGRES_URL}")
    name = f"mongars_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _upgrade(url: str) -> None:
    from mongars_core.storage.store import Store

    store = Store.connect(url)
    try:
        await store.upgrade()
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'mongars.sqlite3'}"
    url = str(request.getfixturevalue("postgres_url"))
    asyncio.run(_upgrade(url))  # what `mongars db upgrade` does before a server starts
    return url


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        llm={"backend": "instant", "timeout_s": 10, "first_token_timeout_s": 5},
        memory={"embedder": "none"},
    )


class InstantBackend:
    """An LLM stand-in that answers at once: echoes what it was given, word by word."""

    def __init__(self, reply: Callable[[GenerationRequest], str] | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.reply = reply or (lambda request: f"You said: {request.messages[-1].content}")

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        for index, word in enumerate(self.reply(request).split(" ")):
            yield word if index == 0 else " " + word


class InstantBackendPlugin:
    """Registers an :class:`InstantBackend` as ``instant``."""

    def __init__(self, backend: InstantBackend | None = None) -> None:
        self.backend = backend or InstantBackend()

    @hookimpl
    def mongars_register_llm_backends(self, register: Register, settings: Settings) -> None:
        register("instant", self.backend)


@pytest.fixture
def instant() -> InstantBackendPlugin:
    return InstantBackendPlugin()


BUNDLED_WITHOUT_MODELS = ["memory", "reasoning", "curiosity", "personality", "speech"]


@pytest.fixture
async def make_assistant(
    settings: Settings, database_url: str, instant: InstantBackendPlugin
) -> AsyncIterator[Callable[..., Any]]:
    """Build assistants with the bundled plugins (minus the cuda one) plus ``extra``.

    Each is closed when the test ends.
    """
    made: list[Assistant] = []

    async def make(*extra: tuple[str, object], **overrides: Any) -> Assistant:
        chosen = settings.model_copy(update={"database_url": database_url, **overrides})
        chosen.load_plugins = [
            *BUNDLED_WITHOUT_MODELS,
            "instant",
            *(name for name, _ in extra),
        ]
        pm = build_plugin_manager(chosen, plugins=[("instant", instant), *extra])
        assistant = await Assistant.from_settings(chosen, plugin_manager=pm)
        made.append(assistant)
        return assistant

    yield make
    for assistant in made:
        await assistant.aclose()
