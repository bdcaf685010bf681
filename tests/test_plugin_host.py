"""The typed PluginHost facade: wrappers rejected, results type-checked, no hook by name."""

from __future__ import annotations

import ast
import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from mongars_core import hookimpl, hookspecs
from mongars_core.errors import DuplicateRegistrationError, HookValidationError, PluginError
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.services import Stash, StashKey
from mongars_core.settings import Section, Settings
from mongars_core.types import Memory, Turn
from mongars_testkit.backends import InstantBackend
from tests.test_plugins import install_distribution, names

SRC = Path(__file__).resolve().parents[1] / "src"


class OldStyleWrapper:
    @hookimpl(hookwrapper=True)
    def mongars_recall(self, turn: Any) -> Any:
        yield


class NewStyleWrapper:
    @hookimpl(wrapper=True)
    def mongars_adapt_reply(self, turn: Any, text: str) -> Any:
        return (yield)


@pytest.mark.parametrize(
    ("plugin", "hook"),
    [(OldStyleWrapper(), "mongars_recall"), (NewStyleWrapper(), "mongars_adapt_reply")],
)
def test_a_hook_wrapper_is_rejected_naming_the_plugin(
    settings: Settings, plugin: object, hook: str
) -> None:
    with pytest.raises(HookValidationError) as caught:
        build_plugin_manager(settings, load_entrypoints=False, plugins=[("wrapping", plugin)])
    assert "'wrapping'" in str(caught.value)
    assert hook in str(caught.value) and "wrapper" in str(caught.value)


def test_an_installed_plugin_with_a_wrapper_is_logged_and_skipped(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_distribution(
        tmp_path,
        monkeypatch,
        "mongars-wrapping",
        "wrapping_plugin",
        """
        from mongars_core import hookimpl

        @hookimpl(hookwrapper=True)
        def mongars_recall(turn):
            yield
        """,
    )
    with caplog.at_level(logging.ERROR, logger="mongars_core.plugins"):
        loaded = names(settings)
    assert "wrapping_plugin" not in loaded
    assert "wrapper" in caplog.text and "mongars-wrapping" in caplog.text


class NotABackend:
    @hookimpl
    def mongars_register_llm_backends(self, register: Any, settings: Any) -> None:
        register("broken", object())


def test_registering_an_object_that_is_not_a_backend_names_the_plugin(
    settings: Settings,
) -> None:
    pm = build_plugin_manager(settings, load_entrypoints=False, plugins=[("odd", NotABackend())])
    with pytest.raises(HookValidationError, match=r"'odd'.*'broken'.*LLMBackend"):
        PluginHost(pm, settings).llm_backends()


class Knobs(BaseModel):
    level: int = 1


def _sections_plugin(section: Section[Any]) -> object:
    class Plugin:
        @hookimpl
        def mongars_register_settings(self, register: hookspecs.RegisterSection) -> None:
            register(section)

    return Plugin()


def test_two_plugins_registering_one_section_name_name_both(settings: Settings) -> None:
    pm = build_plugin_manager(
        settings,
        load_entrypoints=False,
        plugins=[
            ("first", _sections_plugin(Section("knobs", Knobs))),
            ("second", _sections_plugin(Section("knobs", Knobs))),
        ],
    )
    with pytest.raises(DuplicateRegistrationError) as caught:
        PluginHost(pm, settings).settings_sections()
    assert "'knobs'" in str(caught.value)
    assert "'first'" in str(caught.value) and "'second'" in str(caught.value)


def test_a_plugin_cannot_take_over_a_core_section(settings: Settings) -> None:
    pm = build_plugin_manager(
        settings,
        load_entrypoints=False,
        plugins=[("thief", _sections_plugin(Section("llm", Knobs)))],
    )
    with pytest.raises(DuplicateRegistrationError, match=r"'llm'.*mongars_core.*'thief'"):
        PluginHost(pm, settings).settings_sections()


class WrongRecall:
    @hookimpl
    async def mongars_recall(self, turn: Turn) -> Any:
        return {"text": "not a list of memories"}


class RightRecall:
    @hookimpl
    async def mongars_recall(self, turn: Turn) -> list[Memory]:
        return [Memory(id="m1", text="The cat is called Tom", score=0.9, source="test")]


async def test_a_result_of_the_wrong_type_is_that_plugins_failure(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant(("wrong", WrongRecall()), ("right", RightRecall()))
    reply = await assistant.chat("alice", "What is my cat called?")
    assert [memory.id for memory in reply.memories] == ["m1"]
    assert any(
        "mongars_recall in plugin 'wrong'" in warning and "expected list[Memory]" in warning
        for warning in reply.warnings
    )


def _hook_names() -> set[str]:
    return {
        name
        for name in dir(hookspecs)
        if name.startswith("mongars_") and isinstance(getattr(hookspecs, name), type(lambda: 0))
    }


def test_no_code_outside_the_facade_calls_a_hook_by_its_name() -> None:
    """Only hookspecs.py (the specs) and plugins.py (PluginHost) may spell a hook name
    as a string; everything else goes through PluginHost's typed methods."""
    hooks = _hook_names()
    assert "mongars_recall" in hooks and len(hooks) > 15
    allowed = {SRC / "mongars_core" / "hookspecs.py", SRC / "mongars_core" / "plugins.py"}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in hooks:
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value}")
            elif isinstance(node, ast.Attribute) and node.attr in hooks:  # pm.hook.<name>
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: .{node.attr}")
    assert offenders == []


def test_every_hook_has_a_typed_facade_method() -> None:
    """One PluginHost method per hook (assembly hooks by what they register)."""
    facade = {
        "mongars_register_settings": "settings_sections",
        "mongars_register_llm_backends": "llm_backends",
        "mongars_register_embedders": "embedders",
        "mongars_register_routers": "routers",
        "mongars_register_commands": "commands",
        "mongars_register_peer_transports": "peer_transports",
    }
    for hook in _hook_names():
        method = facade.get(hook, hook.removeprefix("mongars_"))
        assert callable(getattr(PluginHost, method, None)), f"{hook}: no PluginHost.{method}"


class Observer:
    def __init__(self) -> None:
        self.completed = 0

    @hookimpl
    async def mongars_turn_completed(self, turn: Turn) -> None:
        self.completed += 1


@pytest.mark.parametrize("sync", [True, False], ids=["def", "async-def"])
@pytest.mark.parametrize(
    "error",
    [KeyboardInterrupt(), SystemExit(3), asyncio.CancelledError(), GeneratorExit()],
    ids=["KeyboardInterrupt", "SystemExit", "CancelledError", "GeneratorExit"],
)
async def test_a_hook_raising_a_signal_like_exception_is_only_that_plugins_failure(
    make_assistant: Any, error: BaseException, sync: bool
) -> None:
    observer = Observer()
    assistant = await make_assistant(
        ("raising", _only_recall(error, sync=sync)), ("observer", observer)
    )
    reply = await assistant.chat("alice", "Hello there")
    assert reply.text
    assert any(
        "mongars_recall in plugin 'raising'" in warning and type(error).__name__ in warning
        for warning in reply.warnings
    ), reply.warnings
    assert observer.completed == 1, "the other plugins' stages still ran"


def _only_recall(error: BaseException, *, sync: bool) -> object:
    if sync:

        class SyncRecall:
            @hookimpl
            def mongars_recall(self, turn: Turn) -> list[Memory]:
                raise error

        return SyncRecall()

    class AsyncRecall:
        @hookimpl
        async def mongars_recall(self, turn: Turn) -> list[Memory]:
            raise error

    return AsyncRecall()


class Hanging:
    """A plain-def hook that blocks until released: Python cannot stop its thread."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    @hookimpl
    def mongars_reason(self, turn: Turn) -> list[Any]:
        self.calls += 1
        self.release.wait(30)
        return []


class QuickSync:
    @hookimpl
    def mongars_find_gaps(self, turn: Turn) -> list[Any]:
        return []


async def test_a_hanging_plain_hook_is_not_called_again_and_starves_nobody(
    make_assistant: Any,
) -> None:
    hanging = Hanging()
    assistant = await make_assistant(
        ("hanging", hanging), ("quick", QuickSync()), stage_timeout_s=0.2
    )
    try:
        for _ in range(12):  # more turns than the default executor has threads here
            reply = await assistant.chat("alice", "Hello there")
            assert not any("'quick'" in warning for warning in reply.warnings), reply.warnings
        assert hanging.calls == 1, "a stuck implementation is skipped until it returns"
        assert any("HookStuckError" in w and "'hanging'" in w for w in reply.warnings)
        # The loop's default executor (password hashing, embeddings) is untouched.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 2) == 42
    finally:
        hanging.release.set()
    await asyncio.sleep(0.05)
    reply = await assistant.chat("alice", "Hello again")
    assert not any("'hanging'" in warning for warning in reply.warnings)
    assert hanging.calls == 2, "called again once its stuck call returned"


class FailingAssembly:
    @hookimpl
    def mongars_register_llm_backends(self, register: Any, settings: Any) -> None:
        raise ZeroDivisionError("division by zero")


class ReturningAssembly:
    @hookimpl
    def mongars_register_llm_backends(self, register: Any, settings: Any) -> Any:
        return [InstantBackend()]


class BadlyNamed:
    @hookimpl
    def mongars_register_llm_backends(self, register: Any, settings: Any) -> None:
        register("a b\n\x1b[31mred", InstantBackend())


@pytest.mark.parametrize(
    ("plugin", "error", "expected"),
    [
        (FailingAssembly(), PluginError, r"mongars_register_llm_backends in plugin 'p'.*Zero"),
        (ReturningAssembly(), HookValidationError, r"plugin 'p' returned list.*register"),
        (BadlyNamed(), HookValidationError, r"plugin 'p' registered the name"),
    ],
    ids=["raises", "returns-instead-of-registering", "bad-name"],
)
def test_an_assembly_hook_that_misbehaves_is_an_error_naming_the_plugin(
    settings: Settings, plugin: object, error: type[Exception], expected: str
) -> None:
    pm = build_plugin_manager(settings, load_entrypoints=False, plugins=[("p", plugin)])
    with pytest.raises(error, match=expected):
        PluginHost(pm, settings).llm_backends()


def test_the_stash_takes_only_stash_keys() -> None:
    stash = Stash()
    key = StashKey[int]("count")
    stash[key] = 1
    assert stash[key] == 1 and stash.get(StashKey[int]("count"), 0) == 0
    with pytest.raises(TypeError, match="StashKey"):
        stash["count"] = 2  # type: ignore[index]
    with pytest.raises(TypeError, match="StashKey"):
        stash.get("count", 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        iter(stash)  # type: ignore[call-overload]
