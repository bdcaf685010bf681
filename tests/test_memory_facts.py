"""Memory extraction (benchmarks/memory_facts.py, an experiment that was not kept): a
constrained request, facts read from its JSON, a bounded time. Whether it helps recall is
benchmarks/memory_extraction.py's question (it does not)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from memory_facts import (
    CONSTRAINT,
    MAX_FACTS,
    extract_facts,
    fact_request,
    parse_facts,
)

from mongars_core.errors import GenerationTimeoutError
from mongars_core.router import LLMRouter
from mongars_core.settings import Settings
from mongars_testkit import InstantBackend
from tests.conftest import MODEL_CACHE


def reply(*facts: tuple[str, str]) -> str:
    return json.dumps({"facts": [{"subject": s, "value": v} for s, v in facts]})


async def test_the_request_is_greedy_bounded_and_constrained_to_the_schema() -> None:
    backend = InstantBackend(lambda request: reply(("user's sister", "Amélie")))
    facts = await extract_facts(backend, "My sister  Amélie\nmoved to Lyon")
    assert facts == ["user's sister: Amélie"]
    (request,) = backend.requests
    assert request.constraint == CONSTRAINT
    assert request.temperature == 0 and request.max_new_tokens <= 128
    assert request.messages[-1].content == 'Message: "My sister Amélie moved to Lyon"'
    assert len(fact_request("x" * 5000).messages[-1].content) < 1100, "long messages are cut"


def test_facts_are_trimmed_deduplicated_and_at_most_three() -> None:
    text = reply(
        (" user's  dog ", "Rex "),
        ("user's dog", "Rex"),
        ("", "nothing"),
        ("city", "Lyon"),
        ("job", "nurse"),
        ("car", "Clio"),
    )
    assert parse_facts(text) == ["user's dog: Rex", "city: Lyon", "job: nurse"]
    assert MAX_FACTS == 3


def test_a_reply_that_is_not_the_json_asked_for_gives_no_fact_and_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "memory_facts"):
        assert parse_facts('{"facts": [{"subject": "user\'s d') == []
        assert parse_facts('["a", "b"]') == []
    assert "not complete JSON" in caplog.text and "no list of facts" in caplog.text


async def test_an_empty_message_asks_nothing() -> None:
    backend = InstantBackend()
    assert await extract_facts(backend, "  \n ") == []
    assert backend.requests == []


async def test_a_slow_model_is_cut_off_with_a_timeout_error() -> None:
    slow = InstantBackend(lambda request: reply(("a", "b")), delay_s=1.0)
    with pytest.raises(GenerationTimeoutError, match=r"longer than 0\.05 s"):
        await extract_facts(slow, "My dog is Rex", timeout_s=0.05)


@pytest.mark.model
async def test_the_bundled_model_writes_facts_through_llamacpp(tmp_path: Path) -> None:
    from mongars_plugins.local_engines import local_engine

    settings = Settings(data_dir=tmp_path, cache_dir=MODEL_CACHE, memory={"embedder": "none"})
    engine = local_engine(settings)
    if engine.engine_name != "llamacpp":
        pytest.skip(f"llama.cpp cannot run here ({engine.describe()})")
    try:
        facts = await extract_facts(LLMRouter({"local": engine}, "local"), "My sister is Amélie")
    finally:
        await engine.engine.aclose()  # type: ignore[attr-defined]
    assert 0 < len(facts) <= MAX_FACTS
    assert all(": " in fact and len(fact) <= 66 for fact in facts), facts
