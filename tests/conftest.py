"""Shared fixtures: real databases, the test kit's assistants with the bundled plugins,
the ``mongars`` command in a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import platformdirs
import pytest
from sqlalchemy.engine import make_url

from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings
from mongars_testkit.assistants import AssistantFactory, PluginChoice

POSTGRES_URL = os.environ.get(
    "MONGARS_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MONGARS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL_CACHE = Path(
    os.environ.get("MONGARS_TEST_CACHE_DIR") or platformdirs.user_cache_dir("mongars")
)


def command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``mongars`` subprocess: this one's, less any ``MONGARS_*``,
    with its own data and cache folders, no model (neither local engine) and no
    embedder (``extra`` added)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    base.update(
        MONGARS_DATA_DIR=str(tmp_path / "data"),
        MONGARS_CACHE_DIR=str(tmp_path / "cache"),
        MONGARS_MEMORY__EMBEDDER="none",
        MONGARS_DISABLE_PLUGINS="cuda,llamacpp",
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


def service_unavailable(service: str, needs: str) -> NoReturn:
    """End a test whose ``service`` (postgres, redis, chromium) does not answer.

    scripts/test exports ``MONGARS_TEST_UNAVAILABLE`` (``redis=not installed and not
    root;...``) naming the services it could not bring up: those tests skip with that
    reason, in CI too. Any other missing service fails in CI and skips elsewhere.
    """
    reported = dict(
        entry.partition("=")[::2]
        for entry in os.environ.get("MONGARS_TEST_UNAVAILABLE", "").split(";")
        if entry
    )
    if service in reported:
        pytest.skip(f"{needs}: {service} is not available ({reported[service]})")
    if os.environ.get("CI"):
        pytest.fail(f"{needs}: not reachable in CI")
    pytest.skip(needs)


@pytest.fixture
def redis_url() -> str:
    """The Redis server at MONGARS_TEST_REDIS_URL, answering (see service_unavailable)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        service_unavailable("redis", f"needs the Redis server at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def postgres_url(postgres_available: bool) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (no schema), dropped afterwards."""
    if not postgres_available:
        service_unavailable("postgres", f"needs the PostgreSQL server at {POSTGRES_URL}")
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


# The test kit's fixtures (mongars_testkit.plugin) come through its pytest11 entry
# point; naming the plugin in `pytest_plugins` too would register it twice.


@pytest.fixture
def mongars_settings(mongars_settings: Settings) -> Settings:
    """The kit's settings, with the shared model cache (``model`` tests reuse downloads)."""
    return mongars_settings.model_copy(update={"cache_dir": MODEL_CACHE})


@pytest.fixture
def settings(mongars_settings: Settings) -> Settings:
    return mongars_settings


BUNDLED_WITHOUT_MODELS = [
    "memory",
    "reasoning",
    "curiosity",
    "personality",
    "speech",
    "knowledge",
    "research",
]


@pytest.fixture
def make_assistant(
    make_assistant: AssistantFactory, database_url: str
) -> Callable[..., Awaitable[Assistant]]:
    """The kit's ``make_assistant`` with the bundled plugins (minus the cuda one) on
    ``database_url``: ``await make_assistant(*plugins, **settings)``."""

    def make(*plugins: PluginChoice, **overrides: Any) -> Awaitable[Assistant]:
        return make_assistant(
            *BUNDLED_WITHOUT_MODELS, *plugins, **{"database_url": database_url, **overrides}
        )

    return make
