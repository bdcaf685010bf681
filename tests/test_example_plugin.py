"""The example plugin in examples/ installs, is found through its entry point, and works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mongars_core.pipeline import Assistant
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.settings import Settings
from tests.conftest import InstantBackendPlugin

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mongars-signature"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
    )
    return target


async def test_the_example_plugin_is_discovered_and_signs_replies(
    installed_example: Path,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    database_url: str,
    instant: InstantBackendPlugin,
) -> None:
    monkeypatch.syspath_prepend(str(installed_example))
    chosen = settings.model_copy(
        update={"database_url": database_url, "load_plugins": ["signature", "instant"]}
    )
    pm = build_plugin_manager(chosen, plugins=[("instant", instant)])
    info = {plugin.name: plugin for plugin in PluginHost(pm, chosen).plugin_infos()}
    assert info["signature"].distribution == "mongars-signature"
    assert info["signature"].hooks == ["mongars_adapt_reply"]

    async with await Assistant.from_settings(chosen, plugin_manager=pm) as assistant:
        plain: Any = await assistant.chat("alice", "hello")
        assert plain.text.endswith("— monGARS")
        monkeypatch.setenv("MONGARS_SIGNATURE_TEXT", "-- sent by my assistant")
        custom = await assistant.chat("alice", "hello again")
        assert custom.text.endswith("-- sent by my assistant")


def test_the_example_plugin_depends_on_monGARS_by_its_distribution_name(
    installed_example: Path,
) -> None:
    from importlib.metadata import distributions

    (example,) = [d for d in distributions(path=[str(installed_example)])]
    assert example.metadata["Name"] == "mongars-signature"
    # `mongars` on PyPI is another project: depending on it would install that.
    assert example.requires == ["mongars-assistant"]
