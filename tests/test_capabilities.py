"""Optional backend abilities (mongars_core.capabilities): who has them, who uses them."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mongars_core import capabilities
from mongars_core.assembly import build_host, build_router
from mongars_core.capabilities import (
    ConstrainsOutput,
    Fetchable,
    HealthChecked,
    Loadable,
    ModelCatalog,
    Progress,
    ReportsProgress,
    Runnable,
    ServesAdapters,
    TokenCounter,
    has_ability,
)
from mongars_core.chat_cli import _attach_progress
from mongars_core.router import LLMRouter
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_testkit import BackendPlugin, InstantBackend
from mongars_testkit.assistants import AssistantFactory

ROOT = Path(__file__).resolve().parent.parent
ABILITIES = (
    Loadable,
    HealthChecked,
    ModelCatalog,
    Fetchable,
    ReportsProgress,
    TokenCounter,
    ConstrainsOutput,
    ServesAdapters,
    Runnable,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("llamacpp", set(ABILITIES) - {ModelCatalog}),
        ("torch", {Loadable, Fetchable, ReportsProgress, TokenCounter, ServesAdapters}),
        # `local` answers for whichever engine it chose, so it has every ability an engine may.
        ("local", set(ABILITIES) - {ModelCatalog}),
        ("ollama", {HealthChecked, ModelCatalog}),
        ("ray", {Loadable, HealthChecked, ConstrainsOutput}),
    ],
)
def test_each_bundled_backend_has_the_abilities_it_is_used_for(
    settings: Settings, name: str, expected: set[type]
) -> None:
    """A renamed member (``loaded``, ``list_models``, ...) drops the ability, and fails here."""
    settings.load_plugins = ["cuda", "llamacpp", "ollama", "ray_serve"]
    router = build_router(build_host(settings).llm_backends(), settings)
    _, backend = router.get(name)
    assert {ability for ability in ABILITIES if has_ability(backend, ability)} == expected


class LazyBackend:
    """Loads on first use (``Loadable``); records what happened in which order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @property
    def loaded(self) -> bool:
        return "load" in self.events

    async def load(self) -> None:
        self.events.append("load")

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.events.append("stream")
        yield "ok"


async def test_the_router_loads_a_loadable_backend_once_before_it_generates() -> None:
    backend = LazyBackend()
    router = LLMRouter({"lazy": backend}, "lazy")
    request = GenerationRequest(messages=[ChatMessage(role="user", content="hi")])
    assert await router.generate(request) == "ok"
    assert await router.generate(request) == "ok"
    assert backend.events == ["load", "stream", "stream"]


class ProgressBackend(InstantBackend):
    """Reports download progress (``ReportsProgress``), to its own callback if given."""

    def __init__(self, progress: Progress | None = None) -> None:
        super().__init__()
        self.progress = progress


def _report_nothing(stage: str, done: int, total: int | None) -> None:
    """A progress callback that draws nothing."""


async def test_the_chat_command_shows_progress_for_backends_that_report_it(
    settings: Settings,
) -> None:
    silent = ProgressBackend()
    own = ProgressBackend(progress=_report_nothing)
    plain = InstantBackend()
    make_assistant = AssistantFactory(settings, plain)
    assistant = await make_assistant(BackendPlugin(silent, "silent"), BackendPlugin(own, "own"))

    def shown(stage: str, done: int, total: int | None) -> None:
        """The CLI's progress bars."""

    _attach_progress(assistant, shown)
    assert silent.progress is shown
    assert own.progress is _report_nothing, "a callback the backend has is kept"
    assert "progress" not in vars(plain), "a backend that reports nothing is left alone"
    await make_assistant.aclose()


def test_writing_a_plugin_lists_every_optional_ability() -> None:
    guide = (ROOT / "docs" / "writing_a_plugin.md").read_text()
    start = guide.index("### Optional abilities")
    table = guide[start : guide.index("\n#", start + 1)]  # up to the next heading
    listed = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.MULTILINE))
    assert listed == {ability.__name__ for ability in ABILITIES}
    protocols = {
        name
        for name, value in vars(capabilities).items()
        if isinstance(value, type) and getattr(value, "_is_runtime_protocol", False)
    }
    assert protocols == listed, "a protocol in mongars_core.capabilities is not documented"


class SlowToAnswerBackend(LazyBackend):
    """``Loadable``, with a ``loaded`` property that blocks for half a second (a
    lock, a server asked), and a ``health()`` that raises ``health_error``."""

    def __init__(self, health_error: Exception | None = None) -> None:
        super().__init__()
        self.loaded_reads = 0
        self.health_error = health_error

    @property
    def loaded(self) -> bool:
        self.loaded_reads += 1
        time.sleep(0.5)
        return True

    async def health(self) -> bool:
        if self.health_error is not None:
            raise self.health_error
        return True


async def test_asking_for_an_ability_does_not_read_the_backends_properties() -> None:
    backend = SlowToAnswerBackend()
    router = LLMRouter({"slow": backend}, "slow")
    await router.prepare()
    assert backend.loaded_reads == 1, "`loaded` is read once, to decide, not to check the ability"
    [status] = await router.health()
    assert status.healthy is True
    assert backend.loaded_reads == 1


async def test_a_health_check_that_raises_anything_counts_as_unhealthy(
    caplog: pytest.LogCaptureFixture,
) -> None:
    router = LLMRouter({"slow": SlowToAnswerBackend(KeyError("status"))}, "slow")
    with caplog.at_level(logging.WARNING, logger="mongars_core.endpoints"):
        [status] = await router.health()
    assert status.healthy is False
    assert any("slow" in record.getMessage() for record in caplog.records), "it is logged"
