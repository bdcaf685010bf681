"""The test kit for plugin authors: its pytest plugin, fixtures and stand-in backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

import mongars_testkit.plugin
from mongars_core import hookimpl
from mongars_core.errors import BackendError
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest, Turn
from mongars_testkit import BackendPlugin, InstantBackend, ScriptedBackend
from mongars_testkit.assistants import AssistantFactory, with_overrides
from mongars_testkit.ollama_standin import StandinServer

pytest_plugins = ["pytester"]


@pytest.fixture
def author(pytester: pytest.Pytester) -> pytest.Pytester:
    """A plugin author's project: no conftest, pytest-asyncio in its strict mode."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


@pytest.fixture
async def kit_make_assistant(
    mongars_settings: Settings, instant_backend: InstantBackend
) -> AsyncIterator[AssistantFactory]:
    """The kit's own ``make_assistant`` (this project's conftest adds the bundled plugins)."""
    factory = AssistantFactory(mongars_settings, instant_backend)
    yield factory
    await factory.aclose()


def ask(text: str) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content=text)])


async def deltas(backend: Any, text: str) -> list[str]:
    return [delta async for delta in backend.stream(ask(text))]


class Shout:
    @hookimpl
    def mongars_adapt_reply(self, turn: Turn, text: str) -> str:
        return text.upper()


# -- the pytest plugin -----------------------------------------------------------------


def test_the_plugin_is_loaded_once_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    manager = pytestconfig.pluginmanager
    assert manager.get_plugin("mongars") is mongars_testkit.plugin
    assert [p for p in manager.get_plugins() if p is mongars_testkit.plugin] == [
        mongars_testkit.plugin
    ]


def test_the_plugin_imports_no_part_of_monGARS_that_a_fixture_does_not_need() -> None:
    heavy = ["fastapi", "torch", "starlette", "sqlalchemy", "mongars_core.settings"]
    probe = f"import sys, mongars_testkit.plugin; print([m for m in {heavy!r} if m in sys.modules])"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "[]"


AUTHOR_TESTS = """
import pytest

from mongars_core import hookimpl
from mongars_testkit import ScriptedBackend

class Shout:
    @hookimpl
    def mongars_adapt_reply(self, text):
        return text.upper()

@pytest.mark.asyncio
async def test_my_plugin_shouts(make_assistant, instant_backend):
    assistant = await make_assistant(Shout())
    reply = await assistant.chat("ada", "hello")
    assert reply.text == "YOU SAID: HELLO"
    assert instant_backend.requests[-1].messages[-1].content == "hello"

@pytest.mark.asyncio
async def test_my_plugin_shouts_a_scripted_reply(make_assistant):
    assistant = await make_assistant(Shout(), backend=ScriptedBackend("good day"))
    assert (await assistant.chat("ada", "hello")).text == "GOOD DAY"

def test_settings_live_in_the_test_folder(mongars_settings, tmp_path):
    assert mongars_settings.data_dir == tmp_path / "data"
"""


def test_a_plugin_authors_tests_pass_with_the_fixtures_alone(author: pytest.Pytester) -> None:
    author.makepyfile(test_author=AUTHOR_TESTS)
    result = author.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


# -- the backends ----------------------------------------------------------------------


async def test_the_instant_backend_echoes_word_by_word_and_keeps_requests() -> None:
    backend = InstantBackend()
    assert await deltas(backend, "one two") == ["You", " said:", " one", " two"]
    backend.reply = lambda request: "fixed"
    assert await backend.generate(ask("anything")) == "fixed"
    assert [r.messages[-1].content for r in backend.requests] == ["one two", "anything"]


async def test_the_scripted_backend_replies_in_order_then_refuses() -> None:
    backend = ScriptedBackend("first reply", ["se", "cond"])
    assert await deltas(backend, "a") == ["first", " reply"]
    assert await deltas(backend, "b") == ["se", "cond"]
    with pytest.raises(LookupError, match="no reply left for 'c'"):
        await deltas(backend, "c")


async def test_the_scripted_backend_answers_known_messages_every_time() -> None:
    backend = ScriptedBackend("in turn", by_message={"ping": "pong"})
    assert await backend.generate(ask(" ping ")) == "pong"
    assert await backend.generate(ask("ping")) == "pong"
    assert await backend.generate(ask("other")) == "in turn"


async def test_the_scripted_backend_fails_where_the_script_says() -> None:
    backend = ScriptedBackend(ConnectionError("gone"), ["half", RuntimeError("crashed")])
    with pytest.raises(ConnectionError):
        await deltas(backend, "a")
    received: list[str] = []
    with pytest.raises(RuntimeError, match="crashed"):
        async for delta in backend.stream(ask("b")):
            received.append(delta)
    assert received == ["half"]


# -- make_assistant --------------------------------------------------------------------


async def test_make_assistant_loads_exactly_the_plugins_given(
    kit_make_assistant: AssistantFactory,
) -> None:
    assistant = await kit_make_assistant(("shout", Shout()))
    names = {info.name for info in assistant.plugins.plugin_infos()}
    assert names == {"instant", "shout"}
    reply = await assistant.chat("ada", "hi")
    assert reply.text == "YOU SAID: HI" and reply.backend == "instant"


async def test_make_assistant_loads_installed_plugins_named(
    kit_make_assistant: AssistantFactory,
) -> None:
    assistant = await kit_make_assistant("memory", BackendPlugin(InstantBackend(), "second"))
    infos = {info.name: info for info in assistant.plugins.plugin_infos()}
    assert set(infos) == {"instant", "memory", "second"}
    assert infos["memory"].distribution == "mongars-assistant"
    with pytest.raises(LookupError, match="no-such-plugin"):
        await kit_make_assistant("no-such-plugin")


async def test_a_scripted_backend_replaces_the_instant_one(
    kit_make_assistant: AssistantFactory,
) -> None:
    failing = ScriptedBackend(ConnectionError("model server gone"))
    assistant = await kit_make_assistant(backend=failing, llm={"retries": 0})
    with pytest.raises(BackendError, match="model server gone"):
        await assistant.chat("ada", "hi")
    with pytest.raises(TypeError, match="both given"):
        await kit_make_assistant(BackendPlugin(InstantBackend()), backend=failing)


def test_settings_overrides_update_sections_and_are_validated(
    mongars_settings: Settings,
) -> None:
    changed = with_overrides(mongars_settings, {"llm": {"timeout_s": 2}, "history_turns": 1})
    assert changed.llm.timeout_s == 2 and changed.llm.backend == "instant"
    assert changed.history_turns == 1 and mongars_settings.llm.timeout_s == 10
    with pytest.raises(ValidationError):
        with_overrides(mongars_settings, {"llm": {"timeout_s": "soon"}})


def test_the_assistants_made_are_closed_when_the_test_ends(author: pytest.Pytester) -> None:
    author.makepyfile(
        textwrap.dedent(
            """
            import pytest
            from mongars_core import hookimpl

            class Watcher:
                shut_down = 0

                @hookimpl
                def mongars_shutdown(self):
                    Watcher.shut_down += 1

            @pytest.mark.asyncio
            async def test_makes_two(make_assistant):
                await make_assistant(Watcher())
                await make_assistant(Watcher())
                assert Watcher.shut_down == 0

            def test_after():
                assert Watcher.shut_down == 2
            """
        )
    )
    author.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_the_machines_mongars_variables_do_not_reach_the_settings(
    author: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGARS_HISTORY_TURNS", "1")
    author.makepyfile(
        textwrap.dedent(
            """
            import os

            def test_settings(mongars_settings):
                assert mongars_settings.history_turns == 6
                assert "MONGARS_HISTORY_TURNS" not in os.environ
            """
        )
    )
    author.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert os.environ["MONGARS_HISTORY_TURNS"] == "1"


# -- the Ollama stand-in ---------------------------------------------------------------


def test_ollama_url_is_a_running_stand_in(ollama_url: str, ollama_standin: StandinServer) -> None:
    assert ollama_url == ollama_standin.url
    assert httpx.get(f"{ollama_url}/api/version", timeout=5).json() == {"version": "0.0.0-standin"}


@pytest.mark.ollama_standin(pullable=["tinyllama"], max_queue=3)
def test_the_marker_configures_the_stand_in(ollama_standin: StandinServer) -> None:
    assert ollama_standin.standin.max_queue == 3
    pulled = httpx.post(
        f"{ollama_standin.url}/api/pull", json={"model": "tinyllama", "stream": False}, timeout=5
    )
    assert pulled.json() == {"status": "success"}
