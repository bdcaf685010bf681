"""The backend ``local`` (mongars_core.local_engine): the first local engine that can run.

The engines here are the test kit's stand-ins with the abilities an engine has
(``Runnable``, ``Loadable``, ...), so each test says exactly which engine can
run, which fails to load and why.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mongars_core import cli
from mongars_core.assembly import build_host, build_router
from mongars_core.capabilities import (
    ConstrainsOutput,
    Fetchable,
    HealthChecked,
    Loadable,
    Progress,
    ReportsProgress,
    Runnable,
    ServesAdapters,
    TokenCounter,
    has_ability,
)
from mongars_core.errors import (
    CorruptModelError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
)
from mongars_core.llm import LLMBackend
from mongars_core.local_engine import LOCAL, LocalEngine, with_local_engine
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.types import AdapterRef, ChatMessage, GenerationRequest, OutputConstraint
from mongars_testkit import BackendPlugin, InstantBackend

SCHEMA = OutputConstraint(json_schema={"type": "object"})
ADAPTER = AdapterRef(name="tone", version="1", path="/adapters/tone/1", base_model="smollm2")


class Engine(InstantBackend):
    """A local engine stand-in: answers ``<name>: <message>``; ``reason`` says why it
    cannot run (``None``: it can), ``load_error`` is what its ``load()`` raises."""

    def __init__(
        self,
        name: str,
        *,
        reason: str | None = None,
        load_error: BaseException | None = None,
        healthy: bool = True,
    ) -> None:
        super().__init__(lambda request: f"{name}: {request.messages[-1].content}")
        self.reason = reason
        self.load_error = load_error
        self.healthy = healthy
        self.loads = 0
        self.fetches = 0
        self.checks = 0
        self.progress: Progress | None = None
        self._loaded = False

    def unavailable_reason(self) -> str | None:
        self.checks += 1
        return self.reason

    @property
    def loaded(self) -> bool:
        return self._loaded

    async def load(self) -> None:
        if self._loaded:
            return
        self.loads += 1
        await asyncio.sleep(0)
        if self.load_error is not None:
            raise self.load_error
        self._loaded = True

    async def fetch(self) -> object:
        self.fetches += 1
        return f"{self.reply(request('x'))} files"

    async def health(self) -> bool:
        return self.healthy

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int | None:
        return 100 + len(messages)

    def count_tokens(self, text: str) -> int | None:
        return len(text.split())

    def can_constrain(self, constraint: OutputConstraint) -> bool:
        return constraint.json_schema is not None  # schemas, not grammars

    def can_serve_adapter(self, adapter: AdapterRef) -> bool:
        return adapter.base_model == "smollm2"


class BrokenCheck(Engine):
    def unavailable_reason(self) -> str | None:
        raise OSError("/proc/cpuinfo: permission denied")


def request(text: str = "hi") -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content=text)])


def local(*engines: Engine | InstantBackend) -> LocalEngine:
    names = [engine.reply(request("")).split(":")[0] for engine in engines]
    return LocalEngine(list(zip(names, engines, strict=True)))


# -- the choice ----------------------------------------------------------------------


async def test_the_first_engine_that_can_run_serves() -> None:
    llamacpp, torch = Engine("llamacpp"), Engine("torch")
    engine = local(llamacpp, torch)
    assert (engine.engine_name, engine.engine) == ("llamacpp", llamacpp)
    assert await engine.generate(request("hello")) == "llamacpp: hello"
    assert [d async for d in engine.stream(request("again"))] == ["llamacpp:", " again"]
    assert (llamacpp.loads, torch.loads, torch.checks) == (1, 0, 0), "torch is never asked"
    assert engine.skipped == {} and engine.describe() == "llamacpp"
    assert engine.unavailable_reason() is None


async def test_an_engine_that_cannot_run_is_skipped_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    llamacpp, torch = Engine("llamacpp", reason="the CPU lacks AVX2"), Engine("torch")
    engine = local(llamacpp, torch)
    with caplog.at_level(logging.INFO, logger="mongars_core.local_engine"):
        assert await engine.generate(request("hello")) == "torch: hello"
    assert engine.engine_name == "torch"
    assert engine.skipped == {"llamacpp": "the CPU lacks AVX2"}
    assert engine.describe() == "torch (llamacpp: the CPU lacks AVX2)"
    assert llamacpp.loads == 0 and llamacpp.requests == []
    assert llamacpp.checks == 1, "the choice is made once"
    [record] = [r for r in caplog.records if r.name == "mongars_core.local_engine"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "the local engine is torch (llamacpp: the CPU lacks AVX2)"


async def test_a_check_that_raises_skips_that_engine_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = local(BrokenCheck("llamacpp"), Engine("torch"))
    with caplog.at_level(logging.WARNING, logger="mongars_core.local_engine"):
        assert await engine.generate(request()) == "torch: hi"
    assert engine.skipped == {"llamacpp": "its check failed: /proc/cpuinfo: permission denied"}
    assert any("could not say whether it can run" in r.getMessage() for r in caplog.records)


async def test_when_no_engine_can_run_the_last_one_answers_for_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = local(
        Engine("llamacpp", reason="the CPU lacks AVX2"),
        Engine("torch", reason="torch is not installed"),
    )
    with caplog.at_level(logging.ERROR, logger="mongars_core.local_engine"):
        assert engine.engine_name == "torch"
    assert engine.unavailable_reason() == "torch is not installed"
    assert engine.describe() == (
        "torch (llamacpp: the CPU lacks AVX2; torch: torch is not installed)"
    )
    assert [r.getMessage() for r in caplog.records] == [
        "no local engine can run here (llamacpp: the CPU lacks AVX2; torch: torch is not installed)"
    ]


def test_a_local_engine_needs_an_engine() -> None:
    with pytest.raises(ValueError, match="at least one engine"):
        LocalEngine([])


# -- loading and falling over ----------------------------------------------------------


async def test_an_engine_that_fails_to_load_hands_over_to_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    corrupt = CorruptModelError("/models/smol.gguf is not a GGUF file (bad magic)")
    llamacpp, torch = Engine("llamacpp", load_error=corrupt), Engine("torch")
    engine = local(llamacpp, torch)
    with caplog.at_level(logging.WARNING, logger="mongars_core.local_engine"):
        assert await engine.generate(request("hello")) == "torch: hello"
    assert engine.engine_name == "torch" and engine.loaded
    assert engine.skipped == {
        "llamacpp": "failed to load: /models/smol.gguf is not a GGUF file (bad magic)"
    }
    assert engine.describe().startswith("torch (llamacpp: failed to load: /models/smol.gguf")
    assert any(
        "the llamacpp engine failed to load (/models/smol.gguf is not a GGUF file" in r.getMessage()
        for r in caplog.records
    ), "the reason is logged"
    assert await engine.generate(request("again")) == "torch: again"
    assert (llamacpp.loads, torch.loads) == (1, 1), "the failed engine is not tried again"


async def test_a_failed_load_skips_engines_that_cannot_run() -> None:
    first = Engine("llamacpp", load_error=ModelError("out of memory"))
    second = Engine("vulkan", reason="no GPU")
    third = Engine("torch")
    engine = local(first, second, third)
    await engine.load()
    assert engine.engine_name == "torch"
    assert engine.skipped == {"llamacpp": "failed to load: out of memory", "vulkan": "no GPU"}
    assert second.loads == 0


async def test_when_no_engine_loads_the_last_error_is_raised() -> None:
    engine = local(
        Engine("llamacpp", load_error=CorruptModelError("llamacpp cannot read it")),
        Engine("torch", load_error=CorruptModelError("torch cannot read it either")),
    )
    with pytest.raises(CorruptModelError, match="torch cannot read it either"):
        await engine.generate(request())
    assert engine.skipped == {"llamacpp": "failed to load: llamacpp cannot read it"}


@pytest.mark.parametrize(
    "error",
    [
        MissingDependencyError("xllamacpp", "local"),
        ModelNotFoundError("no model in /models and fetching is off (MONGARS_LOCAL__FETCH=false)"),
    ],
    ids=["missing-package", "missing-model"],
)
async def test_what_every_engine_would_miss_is_raised_at_once(error: Exception) -> None:
    """A missing extra or model file is the user's to fix, and the next engine would
    miss it too: it is raised as it is, not tried again on another engine."""
    llamacpp = Engine("llamacpp", load_error=error)
    torch = Engine("torch")
    engine = local(llamacpp, torch)
    with pytest.raises(type(error), match=re.escape(str(error))):
        await engine.load()
    assert torch.loads == 0 and engine.skipped == {}
    assert engine.engine_name == "llamacpp"


async def test_concurrent_first_requests_fall_over_once() -> None:
    llamacpp = Engine("llamacpp", load_error=CorruptModelError("truncated"))
    torch = Engine("torch")
    engine = local(llamacpp, torch)
    replies = await asyncio.gather(*(engine.generate(request(str(n))) for n in range(4)))
    assert replies == [f"torch: {n}" for n in range(4)]
    assert (llamacpp.loads, torch.loads) == (1, 1)


async def test_an_engine_without_load_serves_at_once() -> None:
    plain = InstantBackend(lambda request: "plain: ok")
    engine = local(plain)
    assert engine.loaded
    await engine.load()
    assert await engine.generate(request()) == "plain: ok"


# -- the other abilities ------------------------------------------------------------------


def test_the_local_engine_has_every_ability_an_engine_may_have() -> None:
    engine = local(Engine("llamacpp"))
    for ability in (
        Loadable,
        Fetchable,
        ReportsProgress,
        HealthChecked,
        TokenCounter,
        ConstrainsOutput,
        ServesAdapters,
        Runnable,
    ):
        assert has_ability(engine, ability), ability.__name__


async def test_the_chosen_engine_answers_for_the_abilities() -> None:
    llamacpp = Engine("llamacpp", reason="the CPU lacks AVX2")
    torch = Engine("torch", healthy=False)
    engine = local(llamacpp, torch)
    assert await engine.health() is False
    assert await engine.fetch() == "torch: x files" and llamacpp.fetches == 0
    assert engine.count_prompt_tokens([ChatMessage(role="user", content="hi")]) == 101
    assert engine.count_tokens("three little words") == 3
    assert engine.can_constrain(SCHEMA) is True
    assert engine.can_constrain(OutputConstraint(grammar='root ::= "yes"')) is False
    assert engine.can_serve_adapter(ADAPTER) is True
    other_base = ADAPTER.model_copy(update={"base_model": "llama-3"})
    assert engine.can_serve_adapter(other_base) is False
    assert not engine.loaded
    await engine.load()
    assert engine.loaded and llamacpp.loads == 0


async def test_an_engine_without_the_abilities_has_the_safe_answers() -> None:
    engine = local(InstantBackend(lambda request: "plain: ok"))
    assert await engine.health() is True
    assert await engine.fetch() is None
    assert engine.count_prompt_tokens([ChatMessage(role="user", content="hi")]) is None
    assert engine.count_tokens("hi") is None
    assert engine.can_constrain(SCHEMA) is False
    assert engine.can_serve_adapter(ADAPTER) is False
    assert engine.unavailable_reason() is None


def test_progress_goes_to_every_engine_that_reports_it() -> None:
    llamacpp, torch = Engine("llamacpp"), Engine("torch")
    plain = InstantBackend(lambda request: "plain: ok")
    engine = local(llamacpp, torch, plain)

    def shown(stage: str, done: int, total: int | None) -> None:
        """A progress bar."""

    engine.progress = shown
    assert engine.progress is shown
    assert llamacpp.progress is shown and torch.progress is shown
    assert "progress" not in vars(plain)


# -- assembly: `local` among the registered backends ---------------------------------------


def test_local_is_added_over_the_registered_engines_in_the_settings_order() -> None:
    llamacpp, torch = Engine("llamacpp"), Engine("torch")
    backends: dict[str, LLMBackend] = {"torch": torch, "llamacpp": llamacpp, "other": Engine("x")}
    added = with_local_engine(backends, ["llamacpp", "torch"])
    engine = added[LOCAL]
    assert isinstance(engine, LocalEngine)
    assert engine.engines == [("llamacpp", llamacpp), ("torch", torch)]
    reordered = with_local_engine(backends, ["torch", "vulkan", "llamacpp"])[LOCAL]
    assert isinstance(reordered, LocalEngine)
    assert [name for name, _ in reordered.engines] == ["torch", "llamacpp"]
    assert LOCAL not in backends, "the registered backends are not changed"


def test_a_plugins_own_local_backend_is_kept() -> None:
    own = Engine("own")
    backends: dict[str, LLMBackend] = {"local": own, "torch": Engine("torch")}
    assert with_local_engine(backends, ["llamacpp", "torch"])[LOCAL] is own


def test_without_a_registered_engine_there_is_no_local_backend() -> None:
    backends: dict[str, LLMBackend] = {"instant": InstantBackend()}
    assert with_local_engine(backends, ["llamacpp", "torch"]) == backends


async def test_the_router_serves_local_through_the_engine_settings_choose(
    settings: Settings,
) -> None:
    llamacpp, torch = Engine("llamacpp"), Engine("torch")
    backends: dict[str, LLMBackend] = {"llamacpp": llamacpp, "torch": torch}
    settings.llm.backend = "local"
    settings.llm.local_engines = ["torch", "llamacpp"]
    router = build_router(backends, settings)
    assert sorted(router.names) == ["llamacpp", "local", "torch"]
    assert await router.generate(request("hello")) == "torch: hello"
    assert await router.generate(request("hello"), "llamacpp") == "llamacpp: hello"


# -- `mongars backends` shows the choice ---------------------------------------------------


class EnginePlugins:
    """The plugins of a machine whose CPU lacks AVX2: llama.cpp cannot run, torch can."""

    def __init__(self) -> None:
        self.llamacpp = Engine("llamacpp", reason="the CPU lacks AVX2")
        self.torch = Engine("torch")

    def plugins(self) -> list[tuple[str, object]]:
        return [
            ("llamacpp", BackendPlugin(self.llamacpp, "llamacpp")),
            ("torch", BackendPlugin(self.torch, "torch")),
        ]


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EnginePlugins:
    """``mongars`` in this process, over the :class:`EnginePlugins` only."""
    machine = EnginePlugins()
    monkeypatch.setenv("MONGARS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MONGARS_MEMORY__EMBEDDER", "none")

    def host(settings: Settings, **_: Any) -> Any:
        pm = build_plugin_manager(settings, load_entrypoints=False, plugins=machine.plugins())
        return build_host(settings, plugin_manager=pm)

    monkeypatch.setattr(cli, "build_host", host)
    return machine


def test_backends_shows_which_engine_serves_local_and_why(cli_env: EnginePlugins) -> None:
    result = CliRunner().invoke(cli.app, ["backends"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "registered backends: llamacpp, local, torch" in lines
    assert lines[-1] == "local engine: torch (llamacpp: the CPU lacks AVX2)"
    assert cli_env.llamacpp.loads == 0 and cli_env.torch.loads == 0, "nothing is loaded"


def test_backends_shows_the_engine_without_a_reason_when_the_first_runs(
    cli_env: EnginePlugins,
) -> None:
    cli_env.llamacpp.reason = None
    result = CliRunner().invoke(cli.app, ["backends"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "local engine: llamacpp"


def test_backends_shows_torch_serving_where_the_cpu_lacks_avx2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled plugins on a CPU without AVX2 (its check answers so): torch serves
    ``local`` and ``mongars backends`` says why. Nothing is loaded or fetched."""
    from mongars_plugins.llamacpp import backend as llamacpp_backend

    monkeypatch.setattr(llamacpp_backend, "avx2_missing", lambda cpuinfo: True)
    monkeypatch.setenv("MONGARS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MONGARS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MONGARS_LOAD_PLUGINS", "cuda,llamacpp")
    result = CliRunner().invoke(cli.app, ["backends"])
    assert result.exit_code == 0, result.output
    last = " ".join(result.stdout.split("local engine: ")[-1].split())  # unwrapped
    assert last == "torch (llamacpp: the CPU lacks AVX2, which llama.cpp's prebuilt engine needs)"
    assert not (tmp_path / "cache").exists(), "no model was fetched"
