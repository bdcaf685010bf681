"""The done-when case with the real plugins: a fact found only in an uploaded document
reaches the model as a cited source, for its owner only, and an unknown subject gets a
clarifying question (knowledge, research, memory and curiosity plugins, BM25 search)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings
from mongars_plugins.knowledge import library
from mongars_testkit import InstantBackend
from tests.conftest import MODEL_CACHE

NOTES = b"""# Staging

## Network

The staging server Zorblax listens on port 8443 and restarts every Sunday at 04:00.

## People

Ask Priya about the database backups.
"""


async def test_a_fact_only_in_a_document_is_answered_with_its_source_for_its_owner_only(
    make_assistant: Callable[..., Awaitable[Assistant]], instant_backend: InstantBackend
) -> None:
    # The model uses the source but cites nothing: research cites it.
    instant_backend.reply = lambda request: "The staging server listens on port 8443."
    assistant: Any = await make_assistant("knowledge", "research")
    await library(assistant.services).add("alice", "notes.md", NOTES)

    reply = await assistant.chat("alice", "Which port does the staging server listen on?")
    assert reply.text == "The staging server listens on port 8443. [1]"
    [source] = reply.sources
    assert source.number == 1 and source.kind == "document"
    assert "notes.md" in source.title or "Staging" in source.title
    assert "port 8443" in source.text
    prompt = instant_backend.requests[-1].messages[0].content
    assert "[1] (" in prompt and "port 8443" in prompt and "cite" in prompt

    other = await assistant.chat("bob", "Which port does the staging server listen on?")
    assert other.sources == []
    assert "8443" not in instant_backend.requests[-1].messages[0].content

    asked = await assistant.chat("bob", "What is Zorblax?")
    assert asked.text == "I don't know what Zorblax is. Could you tell me what it is?"
    found = await assistant.chat("alice", "What is Zorblax?")
    assert found.backend == "instant" and [s.number for s in found.sources] == [1]


@pytest.mark.model
async def test_the_real_model_answers_from_the_document_and_cites_it(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        cache_dir=MODEL_CACHE,
        llm={"backend": "local", "max_new_tokens": 64, "temperature": 0, "timeout_s": 600},
        memory={"embedder": "none"},
        disable_plugins=["cuda"],
    )
    async with await Assistant.from_settings(settings) as assistant:
        await library(assistant.services).add("alice", "notes.md", NOTES)
        reply = await assistant.chat("alice", "Which port does the staging server listen on?")
        assert "8443" in reply.text and "[1]" in reply.text, reply.text
        assert [source.number for source in reply.sources] == [1]
        asked = await assistant.chat("alice", "What is a flumpet?")
        assert asked.backend == "clarification"
