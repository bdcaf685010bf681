"""Plugin discovery, allow/block lists, broken plugins and registration rules."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mongars_core import hookimpl
from mongars_core.errors import (
    DuplicateRegistrationError,
    HookValidationError,
    PluginLoadError,
)
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.settings import Settings
from mongars_plugins.cuda.settings import LOCAL
from mongars_testkit.backends import InstantBackend

BUNDLED = {
    "memory",
    "reasoning",
    "curiosity",
    "personality",
    "speech",
    "cuda",
    "ollama",
    "ray_serve",
    "server",
}


def install_distribution(
    root: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str, source: str
) -> None:
    """Put a real (unpacked) distribution with a ``mongars`` entry point on sys.path."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mongars]\n{module} = {module}\n")
    monkeypatch.syspath_prepend(str(root))


def names(settings: Settings) -> set[str]:
    pm = build_plugin_manager(settings)
    return {name for name, plugin in pm.list_name_plugin() if plugin is not None}


def test_bundled_plugins_are_found_through_entry_points(settings: Settings) -> None:
    assert names(settings) >= BUNDLED


def test_allow_and_block_lists(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGARS_LOAD_PLUGINS", "memory, speech,reasoning")
    monkeypatch.setenv("MONGARS_DISABLE_PLUGINS", "speech")
    from_env = Settings(data_dir=settings.data_dir)
    assert from_env.load_plugins == ["memory", "speech", "reasoning"]
    assert names(from_env) == {"memory", "reasoning"}


def test_a_broken_plugin_is_logged_with_its_distribution_and_skipped(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_distribution(
        tmp_path, monkeypatch, "mongars-broken", "broken_plugin", "raise RuntimeError('boom')\n"
    )
    with caplog.at_level(logging.ERROR, logger="mongars_core.plugins"):
        loaded = names(settings)
    assert "broken_plugin" not in loaded
    assert loaded >= BUNDLED
    assert "mongars-broken" in caplog.text and "broken_plugin" in caplog.text


def test_strict_mode_raises_for_a_broken_plugin(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(
        tmp_path, monkeypatch, "mongars-broken", "broken_plugin", "raise RuntimeError('boom')\n"
    )
    with pytest.raises(PluginLoadError, match=r"mongars-broken.*boom"):
        build_plugin_manager(settings.model_copy(update={"strict_plugins": True}))


def test_a_third_party_plugin_is_discovered_with_its_distribution(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(
        tmp_path,
        monkeypatch,
        "mongars-hello",
        "hello_plugin",
        """
        from mongars_core import hookimpl

        @hookimpl
        def mongars_style_instructions(turn):
            return ["Say hello first."]
        """,
    )
    pm = build_plugin_manager(settings)
    assert pm.has_plugin("hello_plugin")
    infos = {info.name: info for info in PluginHost(pm, settings).plugin_infos()}
    assert infos["hello_plugin"].distribution == "mongars-hello"
    assert infos["hello_plugin"].version == "0.1"
    assert infos["hello_plugin"].hooks == ["mongars_style_instructions"]


def test_an_implementation_without_a_spec_is_rejected(settings: Settings) -> None:
    class Typo:
        @hookimpl
        def mongars_recal(self, turn: Any) -> list[Any]:
            return []

    with pytest.raises(HookValidationError, match="mongars_recal"):
        build_plugin_manager(settings, load_entrypoints=False, plugins=[("typo", Typo())])


def test_an_implementation_with_wrong_arguments_is_rejected(settings: Settings) -> None:
    class Wrong:
        @hookimpl
        def mongars_recall(self, turn: Any, extra: Any) -> list[Any]:
            return []

    with pytest.raises(HookValidationError, match="extra"):
        build_plugin_manager(settings, load_entrypoints=False, plugins=[("wrong", Wrong())])


def test_duplicate_backend_names_name_both_plugins(settings: Settings) -> None:
    class One:
        @hookimpl
        def mongars_register_llm_backends(self, register: Any, settings: Any) -> None:
            register("shared", InstantBackend())

    class Two(One):
        pass

    pm = build_plugin_manager(
        settings, load_entrypoints=False, plugins=[("first", One()), ("second", Two())]
    )
    with pytest.raises(DuplicateRegistrationError) as caught:
        PluginHost(pm, settings).llm_backends()
    assert "'shared'" in str(caught.value)
    assert "'first'" in str(caught.value) and "'second'" in str(caught.value)


def test_the_core_imports_no_heavy_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, mongars_core, mongars_core.pipeline, mongars_core.cli;"
        "heavy = {'torch', 'transformers', 'ray', 'ollama', 'fastapi'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_an_installed_plugin_with_an_unknown_hook_is_skipped(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_distribution(
        tmp_path,
        monkeypatch,
        "mongars-typo",
        "typo_plugin",
        """
        from mongars_core import hookimpl

        @hookimpl
        def mongars_recal(turn):
            return []
        """,
    )
    with caplog.at_level(logging.ERROR, logger="mongars_core.plugins"):
        loaded = names(settings)
    assert "typo_plugin" not in loaded and loaded >= BUNDLED
    assert "mongars_recal" in caplog.text and "mongars-typo" in caplog.text
    with pytest.raises(HookValidationError, match="mongars_recal"):
        build_plugin_manager(settings.model_copy(update={"strict_plugins": True}))


def test_an_async_assembly_hook_is_rejected(settings: Settings) -> None:
    class AsyncRegister:
        @hookimpl
        async def mongars_register_llm_backends(self, register: Any, settings: Any) -> None:
            register("late", object())

    pm = build_plugin_manager(settings, load_entrypoints=False, plugins=[("a", AsyncRegister())])
    with pytest.raises(HookValidationError, match="plain functions"):
        PluginHost(pm, settings).llm_backends()


def test_empty_environment_values_mean_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGARS_LOAD_PLUGINS", "")
    monkeypatch.setenv("MONGARS_MEMORY__TTL_DAYS", "")
    monkeypatch.setenv("MONGARS_LOCAL__THREADS", " ")
    monkeypatch.setenv("MONGARS_DATABASE_URL", "")
    settings = Settings()
    assert settings.load_plugins is None
    assert settings.memory.ttl_days is None
    assert settings.section(LOCAL).threads is None
    assert settings.resolved_database_url().startswith("sqlite+aiosqlite:///")


def test_two_distributions_offering_one_plugin_name_is_an_error(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    source = "from mongars_core import hookimpl\n"
    install_distribution(first, monkeypatch, "mongars-memory-a", "clash", source)
    install_distribution(second, monkeypatch, "mongars-memory-b", "clash", source)
    with pytest.raises(DuplicateRegistrationError) as caught:
        build_plugin_manager(settings)
    message = str(caught.value)
    assert "'clash'" in message
    assert "mongars-memory-a" in message and "mongars-memory-b" in message
