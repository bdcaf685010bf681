"""The ``mongars`` pytest plugin: fixtures for testing monGARS plugins.

pytest loads it in every run where mongars-assistant is installed (the
``pytest11`` entry point ``mongars``; ``-p no:mongars`` turns it off). It only
defines fixtures and a marker, none of them autouse, and imports monGARS
itself only when a fixture is used. docs/writing_a_plugin.md describes each
fixture.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mongars_testkit.backends import InstantBackend

if TYPE_CHECKING:
    from mongars_core.settings import Settings
    from mongars_testkit.assistants import AssistantFactory
    from mongars_testkit.ollama_standin import StandinServer

STANDIN_MARKER = "ollama_standin"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{STANDIN_MARKER}(**options): options of echo_standin() for the ollama_standin "
        "fixture (pullable=[...], delay_s=..., max_queue=...)",
    )


def _async_fixture(function: Callable[..., Any]) -> Any:
    """An async fixture, through pytest-asyncio (which its strict mode requires).

    Without pytest-asyncio, pytest reports the fixture as unhandled when a
    test asks for it; the plugin itself still loads.
    """
    if importlib.util.find_spec("pytest_asyncio") is None:
        return pytest.fixture(function)
    import pytest_asyncio

    return pytest_asyncio.fixture(function)


@pytest.fixture
def mongars_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings in the test's ``tmp_path``: SQLite under ``data/``, the ``instant``
    backend, no embedding model. The machine's ``MONGARS_*`` variables are
    removed for the test (``MONGARS_TEST_*`` ones stay), so they never leak in."""
    from mongars_testkit.assistants import isolated_settings

    for name in list(os.environ):
        if name.startswith("MONGARS_") and not name.startswith("MONGARS_TEST_"):
            monkeypatch.delenv(name)
    return isolated_settings(tmp_path)


@pytest.fixture
def instant_backend() -> InstantBackend:
    """The backend ``make_assistant`` registers as ``instant``: it answers at once
    with ``You said: <message>`` and keeps every request in ``requests``."""
    return InstantBackend()


@_async_fixture
async def make_assistant(
    mongars_settings: Settings, instant_backend: InstantBackend
) -> AsyncIterator[AssistantFactory]:
    """``await make_assistant(*plugins, backend=None, **settings)``: an open assistant
    with exactly ``plugins`` over ``mongars_settings``, closed when the test ends."""
    from mongars_testkit.assistants import AssistantFactory

    factory = AssistantFactory(mongars_settings, instant_backend)
    try:
        yield factory
    finally:
        await factory.aclose()


@pytest.fixture
def ollama_standin(request: pytest.FixtureRequest) -> Iterator[StandinServer]:
    """The Ollama stand-in with its echo backend, served on a free loopback port
    for the test: ``.url``, and ``.standin`` (``stats``, ``fail_next``). The
    ``ollama_standin`` marker's keyword arguments go to ``echo_standin``."""
    from mongars_testkit.ollama_standin import StandinServer, echo_standin

    marker = request.node.get_closest_marker(STANDIN_MARKER)
    with StandinServer(echo_standin(**(marker.kwargs if marker else {}))) as server:
        yield server


@pytest.fixture
def ollama_url(ollama_standin: StandinServer) -> str:
    """The base URL of the ``ollama_standin`` server (``http://127.0.0.1:PORT``)."""
    return ollama_standin.url
