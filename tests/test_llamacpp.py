"""The llama.cpp engine (the llamacpp plugin) with the real bundled GGUF.

One backend is loaded for the module (about half a second); tests that need
their own engine (adapters, bad files) start one. Generations are short
(greedy, a few dozen tokens): the model decodes about 80 tokens/s on one thread.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

import mongars_plugins.cuda  # noqa: F401  (the model store imports its settings)
from mongars_core.capabilities import (
    ConstrainsOutput,
    Fetchable,
    HealthChecked,
    Loadable,
    ReportsProgress,
    Runnable,
    ServesAdapters,
    TokenCounter,
    has_ability,
)
from mongars_core.errors import (
    CorruptModelError,
    InvalidInputError,
    ModelError,
    ModelNotFoundError,
)
from mongars_core.settings import Settings
from mongars_core.types import AdapterRef, ChatMessage, GenerationRequest, OutputConstraint
from mongars_plugins.gguf_file import read_gguf
from mongars_plugins.llamacpp import backend as backend_module
from mongars_plugins.llamacpp import gguf_check
from mongars_plugins.llamacpp.backend import LlamaCppBackend, avx2_missing
from mongars_plugins.llamacpp.engine import Engine, EngineConfig, SlotPool
from mongars_plugins.llamacpp.settings import LLAMACPP, LlamaCppSettings, default_threads
from mongars_plugins.model_store import BUNDLED_MODEL, ensure_bundled_gguf
from tests.conftest import MODEL_CACHE

ON_THE_MODULES_LOOP = pytest.mark.asyncio(loop_scope="module")

AVX2_FLAGS = "flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma\n"
OLD_FLAGS = "flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx\n"


def llamacpp_settings(data_dir: Path, **section: Any) -> Settings:
    return Settings(data_dir=data_dir, cache_dir=MODEL_CACHE, llamacpp=section)


def request(text: str, tokens: int = 24, **fields: Any) -> GenerationRequest:
    fields.setdefault("temperature", 0)
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=text)], max_new_tokens=tokens, **fields
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LlamaCppBackend]:
    settings = llamacpp_settings(tmp_path_factory.mktemp("llamacpp") / "data", slots=4)
    loaded = LlamaCppBackend(settings)
    await loaded.load()
    try:
        yield loaded
    finally:
        await loaded.aclose()


@pytest.fixture(scope="module")
def bundled_gguf() -> Path:
    return ensure_bundled_gguf(Settings(cache_dir=MODEL_CACHE))


# -- without the model -------------------------------------------------------------------


def test_the_backend_has_every_ability_it_claims(tmp_path: Path) -> None:
    backend = LlamaCppBackend(llamacpp_settings(tmp_path))
    for ability in (
        Runnable,
        Loadable,
        Fetchable,
        ReportsProgress,
        HealthChecked,
        TokenCounter,
        ConstrainsOutput,
        ServesAdapters,
    ):
        assert has_ability(backend, ability), ability
    assert not backend.loaded
    assert backend.count_tokens("hello") is None
    assert backend.count_prompt_tokens([ChatMessage(role="user", content="hi")]) is None


def test_a_cpu_without_avx2_is_named_as_the_reason(tmp_path: Path) -> None:
    old = tmp_path / "cpuinfo-old"
    old.write_text("processor\t: 0\n" + OLD_FLAGS + "\nprocessor\t: 1\n" + OLD_FLAGS)
    new = tmp_path / "cpuinfo-new"
    new.write_text("processor\t: 0\n" + AVX2_FLAGS)
    settings = llamacpp_settings(tmp_path)

    assert avx2_missing(old, machine="x86_64")
    assert not avx2_missing(new, machine="x86_64")
    assert not avx2_missing(old, machine="aarch64")  # not an x86 build question
    assert not avx2_missing(tmp_path / "missing", machine="x86_64")

    reason = LlamaCppBackend(settings, cpuinfo=old).unavailable_reason()
    assert reason is not None and "AVX2" in reason
    assert LlamaCppBackend(settings, cpuinfo=new).unavailable_reason() is None


def test_disabled_or_missing_the_engine_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disabled = LlamaCppBackend(llamacpp_settings(tmp_path, enabled=False))
    assert "MONGARS_LLAMACPP__ENABLED" in (disabled.unavailable_reason() or "")

    real_find_spec = backend_module.importlib.util.find_spec
    monkeypatch.setattr(
        backend_module.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "xllamacpp" else real_find_spec(name, *args),
    )
    missing = LlamaCppBackend(llamacpp_settings(tmp_path)).unavailable_reason()
    assert missing is not None and "mongars-assistant[local]" in missing


def test_threads_leave_a_core_free_and_slots_get_2048_tokens_each() -> None:
    assert default_threads(1) == 1
    assert default_threads(2) == 1
    assert default_threads(8) == 7
    section = LlamaCppSettings()
    assert section.slots == 4
    assert section.context_for(8192) == 4 * 2048
    assert section.context_for(1024) == 4 * 1024  # never past what the model was trained on
    assert LlamaCppSettings(context_size=4096, slots=2).context_for(8192) == 4096
    with pytest.raises(ValueError, match="fewer than 256"):
        LlamaCppSettings(context_size=1024, slots=8)
    env = Settings().section(LLAMACPP)
    assert env.threads is None and env.enabled


async def test_slots_are_chosen_for_the_same_adapter_and_conversation() -> None:
    pool = SlotPool(2)
    chat = [("user", "hi")]
    async with pool.lease(None, chat) as first:
        assert first.cache_prompt
        async with pool.lease("alice@1", [("user", "other")]) as second:
            assert second.slot.id != first.slot.id
    # The slot alice's adapter computed keeps its cache for her, not for the base model.
    async with pool.lease("alice@1", [("user", "other"), ("user", "more")]) as again:
        assert again.slot.id == second.slot.id and again.cache_prompt
    async with pool.lease(None, [*chat, ("assistant", "hello")]) as base:
        assert base.slot.id == first.slot.id and base.cache_prompt
    async with pool.lease("bob@1", chat) as bob:
        assert not bob.cache_prompt  # whichever slot: another adapter computed its cache


async def test_a_request_waits_for_a_free_slot() -> None:
    pool = SlotPool(1)
    order: list[str] = []

    async def use(name: str) -> None:
        async with pool.lease(None, []):
            order.append(f"{name} in")
            await asyncio.sleep(0.05)
            order.append(f"{name} out")

    await asyncio.gather(use("a"), use("b"))
    assert order == ["a in", "a out", "b in", "b out"]


def test_a_truncated_gguf_is_refused_before_the_engine_reads_it(
    tmp_path: Path, bundled_gguf: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    with bundled_gguf.open("rb") as source:
        truncated.write_bytes(source.read(10_000_000))
    with pytest.raises(CorruptModelError, match="truncated"):
        read_gguf(truncated)
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello " * 100)
    with pytest.raises(CorruptModelError, match="not a GGUF"):
        read_gguf(not_gguf)
    summary = read_gguf(bundled_gguf)
    assert summary.architecture == "llama"
    assert len(summary.tensors) == 272
    assert 90e6 < summary.data_bytes <= bundled_gguf.stat().st_size
    # 30 layers, 3 KV heads of 64
    assert gguf_check.kv_bytes_per_token(summary) == 2 * 30 * 192 * 2


def test_the_plugin_registers_the_engine_behind_local(tmp_path: Path) -> None:
    from mongars_core.assembly import build_host
    from mongars_core.local_engine import LocalEngine, with_local_engine

    settings = llamacpp_settings(tmp_path)
    backends = build_host(settings).llm_backends()
    assert isinstance(backends["llamacpp"], LlamaCppBackend)
    local = with_local_engine(backends, settings.llm.local_engines)["local"]
    assert isinstance(local, LocalEngine)
    assert local.engine_name == "llamacpp"  # this CPU has AVX2


def test_the_q8_kv_cache_takes_about_half_the_memory(bundled_gguf: Path) -> None:
    summary = read_gguf(bundled_gguf)
    f16 = gguf_check.required_memory(summary, 8192, "f16")
    q8 = gguf_check.required_memory(summary, 8192, "q8_0")
    assert f16 - q8 > 80 << 20
    assert LlamaCppSettings().kv_cache_type == "q8_0"


def test_memory_available_is_read_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n")
    assert gguf_check.available_memory(meminfo) == 2048 * 1024
    meminfo.write_text("MemTotal:  1000 kB\n")
    assert gguf_check.available_memory(meminfo) is None


# -- loading ---------------------------------------------------------------------------------


@pytest.mark.model
async def test_a_model_too_large_for_memory_is_refused_before_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_check, "available_memory", lambda meminfo=None: 50 << 20)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path))
    with pytest.raises(ModelError, match="only 50 MiB is available"):
        await backend.load()
    assert not backend.loaded


@pytest.mark.model
async def test_a_model_not_in_the_store_is_not_found(tmp_path: Path) -> None:
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data"))
    with pytest.raises(ModelNotFoundError, match="no model 'nope'"):
        await backend.generate(request("hi", tokens=3, model="nope"))


@pytest.mark.model
async def test_a_truncated_model_file_is_a_corrupt_model_error(
    tmp_path: Path, bundled_gguf: Path
) -> None:
    truncated = tmp_path / "truncated.gguf"
    with bundled_gguf.open("rb") as source:
        truncated.write_bytes(source.read(10_000_000))
    with pytest.raises(CorruptModelError):
        await asyncio.to_thread(read_gguf, truncated)
    # Handed to llama.cpp anyway, the file is an error too, not a crash of this process.
    config = EngineConfig(threads=1, slots=1, context=512)
    with pytest.raises(CorruptModelError, match="could not load"):
        await asyncio.to_thread(Engine, truncated, config)


# -- the shared engine -----------------------------------------------------------------------


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_the_chat_template_frames_the_prompt(backend: LlamaCppBackend) -> None:
    asked = request("Say hi.", tokens=8)
    await backend.generate(asked)
    # SmolLM2's template, with its default system prompt, as its tokenizer counts it.
    assert asked.outcome.prompt_tokens == 33
    assert backend.count_prompt_tokens(asked.messages) == 33
    assert backend.count_tokens("Hello world") == 2


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_streamed_deltas_are_the_reply_and_never_split_a_character(
    backend: LlamaCppBackend,
) -> None:
    asked = request("Write the word café three times, then an emoji.", tokens=30)
    deltas = [delta async for delta in backend.stream(asked)]
    assert len(deltas) > 3
    assert all(delta and "\ufffd" not in delta for delta in deltas)
    again = request("Write the word café three times, then an emoji.", tokens=30)
    assert "".join(deltas) == await backend.generate(again)
    assert asked.outcome.finish_reason in ("stop", "length")
    assert asked.outcome.tokens is not None and 0 < asked.outcome.tokens <= 30
    assert asked.outcome.tokens_per_second is not None and asked.outcome.tokens_per_second > 1
    assert asked.outcome.adapter is None


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_closing_the_stream_stops_generation(backend: LlamaCppBackend) -> None:
    before = backend.stopped_generations
    stream = backend.stream(request("Count from 1 to 200, one number a line.", tokens=400))
    seen = 0
    async for _delta in stream:
        seen += 1
        if seen == 3:
            break
    started = time.perf_counter()
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.perf_counter() - started < 5.0  # one token's time, with room for a busy CI
    assert backend.stopped_generations == before + 1
    # The slot is free again: four more requests (one per slot) all finish.
    replies = await asyncio.gather(*(backend.generate(request("Hi", tokens=4)) for _ in range(4)))
    assert all(replies)


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_max_new_tokens_cuts_and_stop_strings_end_the_reply(
    backend: LlamaCppBackend,
) -> None:
    cut = request("Count from 1 to 50, separated by commas.", tokens=6)
    await backend.generate(cut)
    assert cut.outcome.finish_reason == "length"
    assert cut.outcome.tokens == 6

    full = await backend.generate(request("Count from 1 to 10, separated by commas.", tokens=40))
    assert "5" in full
    stopped = request("Count from 1 to 10, separated by commas.", tokens=40, stop=["5"])
    text = await backend.generate(stopped)
    assert text == full[: full.index("5")]
    assert stopped.outcome.finish_reason == "stop"


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_sampling_follows_temperature(backend: LlamaCppBackend) -> None:
    greedy = [await backend.generate(request("Name a colour.", tokens=8)) for _ in range(2)]
    assert greedy[0] == greedy[1]
    hot = {
        await backend.generate(
            request("Invent a word.", tokens=8, temperature=1.5, top_p=1.0, options={"seed": s})
        )
        for s in range(4)
    }
    assert len(hot) > 1


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_a_prefix_is_continued_as_one_uninterrupted_reply(
    backend: LlamaCppBackend,
) -> None:
    question = "Why is the sea salty? Answer in two sentences."
    whole = await backend.generate(request(question, tokens=40))
    words = whole.split(" ")
    assert len(words) > 6
    for cut in (" ".join(words[:4]) + " ", " ".join(words[:4])):
        continued = request(question, tokens=40 - 4, prefix=cut)
        rest = await backend.generate(continued)
        assert whole.startswith(cut + rest[: len(whole) - len(cut)]), (cut, rest)
        assert len(rest) > 5


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_a_json_schema_or_grammar_constrains_the_reply(backend: LlamaCppBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    assert backend.can_constrain(OutputConstraint(json_schema=schema))
    asked = request(
        "Give me a person as JSON.", tokens=40, constraint=OutputConstraint(json_schema=schema)
    )
    person = json.loads(await backend.generate(asked))
    assert isinstance(person["name"], str) and isinstance(person["age"], int)

    grammar = OutputConstraint(grammar='root ::= ("yes" | "no")')
    assert await backend.generate(request("Is the sky blue?", tokens=5, constraint=grammar)) in {
        "yes",
        "no",
    }


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_a_schema_or_grammar_the_engine_cannot_compile_is_invalid_input(
    backend: LlamaCppBackend,
) -> None:
    bad_schema = OutputConstraint(json_schema={"type": "bogus"})
    with pytest.raises(InvalidInputError, match="bogus"):
        await backend.generate(request("hi", tokens=5, constraint=bad_schema))
    bad_grammar = OutputConstraint(grammar="root ::= ((")
    with pytest.raises(InvalidInputError, match="grammar"):
        await backend.generate(request("hi", tokens=5, constraint=bad_grammar))
    # Compiles, but no text matches it: llama.cpp calls it its own failure (a 500).
    never = OutputConstraint(grammar="root ::= [^\\x00-\\U0010FFFF]")
    with pytest.raises(InvalidInputError, match="cannot be satisfied"):
        await backend.generate(request("hi", tokens=5, constraint=never))
    assert await backend.generate(request("hi", tokens=3))  # the engine still serves


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_lone_surrogates_are_answered_and_never_open_the_breaker(
    backend: LlamaCppBackend,
) -> None:
    from mongars_core.router import LLMRouter

    router = LLMRouter({"llamacpp": backend}, "llamacpp", retries=0)
    for _ in range(5):  # three endpoint failures would open the breaker
        reply = await router.generate(request("hi \udc80", tokens=4, stop=["\udc81"]))
        assert isinstance(reply, str)
    grammar = OutputConstraint(grammar='root ::= ("yes" | "no" | "\udc80")')
    assert await router.generate(request("Is the sky blue?", tokens=4, constraint=grammar))
    prefixed = request("Count: one, two", tokens=4, prefix="three \udc80 ")
    assert isinstance(await router.generate(prefixed), str)
    assert [status.state for status in router.status()] == ["closed"]
    assert [status.consecutive_failures for status in router.status()] == [0]
    assert await router.generate(request("hello", tokens=3))


def test_text_is_cleaned_of_lone_surrogates_only() -> None:
    from mongars_plugins.llamacpp.engine import clean, clean_text

    valid = "é 😀 日本 \x00 plain"
    assert clean_text(valid) is valid
    assert clean_text("hi \udc80") == "hi \ufffd"
    assert clean_text("\ud83d\ude00 \ud83d") == "😀 \ufffd"  # a pair is the character
    body = {"messages": [{"content": "a\udc80"}], "stop": ["\ud800"], "n": 3}
    assert clean(body) == {"messages": [{"content": "a\ufffd"}], "stop": ["\ufffd"], "n": 3}


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_a_prompt_longer_than_a_slot_or_no_tokens_is_invalid_input(
    backend: LlamaCppBackend,
) -> None:
    with pytest.raises(InvalidInputError, match="CONTEXT_SIZE"):
        await backend.generate(request("word " * 2100, tokens=3))
    with pytest.raises(InvalidInputError, match="max_new_tokens must be at least 1"):
        await backend.generate(request("hi", tokens=0))  # llama.cpp: 0 means no limit


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_four_streams_run_at_once(backend: LlamaCppBackend) -> None:
    first: dict[int, float] = {}
    last: dict[int, float] = {}

    async def one(index: int) -> str:
        pieces = []
        async for delta in backend.stream(request(f"Tell story number {index}.", tokens=24)):
            first.setdefault(index, time.perf_counter())
            pieces.append(delta)
        last[index] = time.perf_counter()
        return "".join(pieces)

    replies = await asyncio.gather(*(one(index) for index in range(4)))
    assert all(replies)
    # Every stream had begun before any finished: batched together, not one at a time.
    assert max(first.values()) < min(last.values())


@pytest.mark.model
@ON_THE_MODULES_LOOP
async def test_the_engines_http_port_refuses_anyone_without_its_key(
    backend: LlamaCppBackend,
) -> None:
    engine = backend._served[BUNDLED_MODEL].engine
    assert engine.address.startswith("http://127.0.0.1:")
    probe = urllib.request.Request(
        engine.address + "/tokenize",
        data=b'{"content": "hi"}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        await asyncio.to_thread(urllib.request.urlopen, probe, timeout=10)
    assert refused.value.code == 401
    refused.value.close()
    assert await backend.health()


# -- adapters ----------------------------------------------------------------------------------


def write_lora(path: Path, seed: int, magnitude: float) -> Path:
    """A GGUF LoRA on every ffn_down of the bundled model (rank 4), random but fixed."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", 4.0)
    rng = np.random.default_rng(seed)
    for layer in range(30):
        lora_a = (rng.standard_normal((4, 1536)) * magnitude).astype(np.float32)
        lora_b = (rng.standard_normal((576, 4)) * magnitude).astype(np.float32)
        writer.add_tensor(f"blk.{layer}.ffn_down.weight.lora_a", lora_a)
        writer.add_tensor(f"blk.{layer}.ffn_down.weight.lora_b", lora_b)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def adapter_ref(name: str, base_model: str = BUNDLED_MODEL) -> AdapterRef:
    return AdapterRef(name=name, version="1", path=f"/adapters/{name}", base_model=base_model)


@pytest.mark.model
async def test_an_adapter_answers_its_users_turn_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongars_plugins.llamacpp import lora

    files = {
        "strong": write_lora(tmp_path / "strong.gguf", seed=3, magnitude=0.3),
        "other": write_lora(tmp_path / "other.gguf", seed=4, magnitude=0.3),
    }
    monkeypatch.setattr(
        lora, "converted_adapter", lambda adapter, cache_dir, base_gguf: files[adapter.name]
    )
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data", slots=3))
    try:
        question = "What is the capital of France?"
        base = await backend.generate(request(question, tokens=12))

        strong = adapter_ref("strong")
        assert backend.can_serve_adapter(strong)
        with_adapter = request(question, tokens=12, adapter=strong)
        adapted = await backend.generate(with_adapter)
        assert with_adapter.outcome.adapter == "strong@1"
        assert adapted != base

        # Batched together: each turn is answered as it would be alone.
        plain = request(question, tokens=12)
        again = request(question, tokens=12, adapter=strong)
        other = request(question, tokens=12, adapter=adapter_ref("other"))
        together = await asyncio.gather(*(backend.generate(r) for r in (plain, again, other)))
        assert together[0] == base and plain.outcome.adapter is None
        assert together[1] == adapted
        assert together[2] not in (base, adapted) and other.outcome.adapter == "other@1"
        # "other" came while the server ran two generations: a new server started beside
        # it, and the old one closed when they ended.
        served = backend._served[BUNDLED_MODEL]
        assert served.retiring == [] and len(served.engine.adapters) == 2
        # The base model after the adapters: the slots' caches were not reused across them.
        assert await backend.generate(request(question, tokens=12)) == base
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_an_adapter_for_another_base_model_is_served_by_the_base_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mongars_plugins.llamacpp import lora

    def never(*_: object) -> Path:
        raise AssertionError("an adapter for another model is never converted")

    monkeypatch.setattr(lora, "converted_adapter", never)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data"))
    try:
        foreign = adapter_ref("foreign", base_model="qwen2.5-0.5b")
        assert not backend.can_serve_adapter(foreign)
        base = await backend.generate(request("hi", tokens=5))
        caplog.set_level("WARNING", logger=backend_module.__name__)
        for _ in range(2):
            with_foreign = request("hi", tokens=5, adapter=foreign)
            assert await backend.generate(with_foreign) == base
            assert with_foreign.outcome.adapter is None
        warnings = [r for r in caplog.records if "foreign@1" in r.getMessage()]
        assert len(warnings) == 1 and "qwen2.5-0.5b" in warnings[0].getMessage()
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_a_stream_stopped_early_still_names_its_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply the consumer stops (the pipeline's repetition guard, a closed socket) was
    made with the adapter: ``Reply.adapter`` must name it."""
    from mongars_plugins.llamacpp import lora

    strong = write_lora(tmp_path / "strong.gguf", seed=3, magnitude=0.3)
    monkeypatch.setattr(lora, "converted_adapter", lambda adapter, cache_dir, base_gguf: strong)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data", slots=1))
    try:
        asked = request("Count from 1 to 200, one number a line.", 400, adapter=adapter_ref("a"))
        stream = backend.stream(asked)
        seen = 0
        async for _delta in stream:
            seen += 1
            if seen == 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]  (as the pipeline's aclosing)
        assert backend.stopped_generations == 1
        assert asked.outcome.adapter == "a@1"
        assert asked.outcome.finish_reason is None  # stopped, not finished
    finally:
        await backend.aclose()


def write_junk(path: Path) -> Path:
    path.write_bytes(b"hello" * 100)
    return path


def test_a_lora_file_that_does_not_fit_the_base_is_refused(
    tmp_path: Path, bundled_gguf: Path
) -> None:
    import gguf
    import numpy as np

    backend_module.check_lora(write_lora(tmp_path / "good.gguf", 1, 0.1), bundled_gguf)
    with pytest.raises(InvalidInputError, match="not a readable GGUF LoRA"):
        backend_module.check_lora(write_junk(tmp_path / "junk.gguf"), bundled_gguf)

    def write(name: str, kind: str | None, a: tuple[int, int], b: tuple[int, int]) -> Path:
        writer = gguf.GGUFWriter(str(tmp_path / name), "llama")
        if kind:
            writer.add_string("general.type", kind)
        writer.add_string("adapter.type", "lora")
        writer.add_tensor("blk.0.ffn_down.weight.lora_a", np.zeros(a, np.float32))
        writer.add_tensor("blk.0.ffn_down.weight.lora_b", np.zeros(b, np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return tmp_path / name

    with pytest.raises(InvalidInputError, match="not a GGUF LoRA adapter"):
        backend_module.check_lora(write("model.gguf", "model", (4, 1536), (576, 4)), bundled_gguf)
    with pytest.raises(InvalidInputError, match="another base model"):
        backend_module.check_lora(write("wide.gguf", "adapter", (4, 64), (576, 4)), bundled_gguf)
    with pytest.raises(InvalidInputError, match="different ranks"):
        backend_module.check_lora(write("rank.gguf", "adapter", (4, 1536), (576, 8)), bundled_gguf)


class CountingEngine(Engine):
    started: ClassVar[list[tuple[Path, ...]]] = []

    def __init__(self, path: Path, config: EngineConfig, adapters: Any = ()) -> None:
        CountingEngine.started.append(tuple(adapters))
        super().__init__(path, config, adapters)


@pytest.mark.model
async def test_an_adapter_erased_meanwhile_is_left_out_of_the_next_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted account's converted adapter goes from the cache while the engine still
    lists it: the next swap starts without it, and the new adapter is served."""
    from mongars_plugins.llamacpp import lora

    files = {
        "gone": write_lora(tmp_path / "gone.gguf", seed=3, magnitude=0.3),
        "next": write_lora(tmp_path / "next.gguf", seed=4, magnitude=0.3),
    }
    monkeypatch.setattr(
        lora, "converted_adapter", lambda adapter, cache_dir, base_gguf: files[adapter.name]
    )
    monkeypatch.setattr(CountingEngine, "started", [])
    monkeypatch.setattr(backend_module, "Engine", CountingEngine)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data", slots=2))
    try:
        await backend.generate(request("hi", tokens=4, adapter=adapter_ref("gone")))
        files["gone"].unlink()  # erase_user removed the converted copy
        following = request("hi", tokens=4, adapter=adapter_ref("next"))
        assert await backend.generate(following)
        assert following.outcome.adapter == "next@1"
        assert CountingEngine.started[-1] == (files["next"],)
        assert await backend.generate(request("hello", tokens=4))  # the base serves on
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_a_broken_adapter_is_refused_without_restarting_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongars_plugins.llamacpp import lora

    junk = write_junk(tmp_path / "junk.gguf")
    monkeypatch.setattr(lora, "converted_adapter", lambda adapter, cache_dir, base_gguf: junk)
    monkeypatch.setattr(CountingEngine, "started", [])
    monkeypatch.setattr(backend_module, "Engine", CountingEngine)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data", slots=2))
    try:
        await backend.load()
        first = backend._served[BUNDLED_MODEL].engine
        bad = adapter_ref("bad")
        turns = [backend.generate(request("hi", tokens=4, adapter=bad)) for _ in range(3)]
        results = await asyncio.gather(
            *turns, backend.generate(request("hello", tokens=4)), return_exceptions=True
        )
        assert all(isinstance(r, InvalidInputError) for r in results[:3]), results
        assert "bad@1" in str(results[0]) and "not a readable GGUF LoRA" in str(results[0])
        assert isinstance(results[3], str) and results[3]
        assert CountingEngine.started == [()]  # the first load only
        assert backend._served[BUNDLED_MODEL].engine is first
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_an_adapter_llama_cpp_cannot_load_is_tried_once_and_the_engine_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongars_plugins.llamacpp import lora

    junk = write_junk(tmp_path / "junk.gguf")
    monkeypatch.setattr(lora, "converted_adapter", lambda adapter, cache_dir, base_gguf: junk)
    monkeypatch.setattr(backend_module, "check_lora", lambda path, base: None)  # passes it
    monkeypatch.setattr(CountingEngine, "started", [])
    monkeypatch.setattr(backend_module, "Engine", CountingEngine)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data", slots=2))
    try:
        await backend.load()
        first = backend._served[BUNDLED_MODEL].engine
        bad = adapter_ref("bad")
        with pytest.raises(InvalidInputError, match="could not load the LoRA"):
            await backend.generate(request("hi", tokens=4, adapter=bad))
        tries = len(CountingEngine.started)
        # The idle old engine was closed first (memory never holds two): load, the try,
        # the old one again.
        assert tries == 3
        served = backend._served[BUNDLED_MODEL]
        assert served.swapping is None and served.engine is not first
        for _ in range(3):  # refused at once, beside another user's turn
            bad_turn, plain = await asyncio.gather(
                backend.generate(request("hi", tokens=4, adapter=bad)),
                backend.generate(request("hello", tokens=4)),
                return_exceptions=True,
            )
            assert isinstance(bad_turn, InvalidInputError)
            assert "refused until the file changes" in str(bad_turn)
            assert isinstance(plain, str) and plain
        assert len(CountingEngine.started) == tries
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_a_turn_cancelled_during_a_swap_leaves_a_working_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mongars_plugins.llamacpp import lora

    good = write_lora(tmp_path / "good.gguf", seed=3, magnitude=0.3)
    monkeypatch.setattr(lora, "converted_adapter", lambda adapter, cache_dir, base_gguf: good)
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data", slots=2))
    # The turn is cancelled while it waits for the swap. Polling the backend's state
    # would race it: starting an engine may hold the GIL, so a swap can begin and end
    # between two polls.
    swap_began = asyncio.Event()
    replace = backend._replace

    async def slow_replace(*args: Any) -> None:
        swap_began.set()
        await asyncio.sleep(0.2)  # the turn is waiting on the swap meanwhile
        await replace(*args)

    monkeypatch.setattr(backend, "_replace", slow_replace)
    try:
        await backend.load()
        turn = asyncio.ensure_future(
            backend.generate(request("hi", tokens=4, adapter=adapter_ref("good")))
        )
        served = backend._served[BUNDLED_MODEL]
        await asyncio.wait_for(swap_began.wait(), 60)
        assert served.swapping is not None
        turn.cancel()
        with pytest.raises(asyncio.CancelledError):
            await turn
        assert await backend.generate(request("hello", tokens=4))  # waits for the swap
        assert served.swapping is None and served.engine.adapters == [good]
    finally:
        await backend.aclose()


@pytest.mark.model
async def test_fetch_gives_the_bundled_file_without_loading(tmp_path: Path) -> None:
    backend = LlamaCppBackend(llamacpp_settings(tmp_path / "data"))
    path = await backend.fetch()
    assert path.is_file() and path.suffix == ".gguf"
    assert not backend.loaded
