"""Bulk import of memories: checked whole, stored all or nothing, recalled at once;
and the ``mongars memories import`` command over JSON Lines and JSON arrays."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mongars_core.errors import InvalidInputError, MessageTooLongError
from mongars_core.memory_import import MemoryItem
from tests.conftest import command_env, run_mongars


async def test_imported_memories_are_stored_with_their_times_and_recalled(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant()
    said = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
    progress: list[tuple[str, int, int | None]] = []
    summary = await assistant.import_memories(
        "ines",
        [
            MemoryItem(text="My sister's name is Amélie", created_at=said, session_id="trip"),
            {"text": "I prefer tea over coffee"},
            {"text": "my sister's name is amelie!"},  # the first again: stored once
        ],
        progress=lambda *step: progress.append(step),
    )
    assert (summary.imported, summary.skipped) == (2, 1)
    stored = {m.text: m for m in await assistant.list_memories("ines")}
    assert set(stored) == {"My sister's name is Amélie", "I prefer tea over coffee"}
    assert stored["My sister's name is Amélie"].created_at == said
    assert stored["My sister's name is Amélie"].session_id == "trip"
    assert stored["I prefer tea over coffee"].session_id == "import"
    [found] = await assistant.search_memories("ines", "what is my sister called")
    assert found.text == "My sister's name is Amélie"
    again = await assistant.import_memories("ines", [{"text": "I prefer tea over coffee"}])
    assert (again.imported, again.skipped) == (0, 1)
    assert progress == []  # no embedder here: nothing to embed


@pytest.mark.parametrize(
    ("bad", "error", "text"),
    [
        ({"text": "   "}, InvalidInputError, "item 2: the text is empty"),
        ({"text": "x" * 5000}, MessageTooLongError, "item 2: the message has 5000 characters"),
        ({"text": "hi", "created_at": "last tuesday"}, InvalidInputError, "item 2: 'created_at'"),
        ({"text": "hi", "created_at": "2999-01-01T00:00:00"}, InvalidInputError, "future"),
        ({"text": "hi", "session_id": "a b"}, InvalidInputError, "item 2: invalid session id"),
        ({"text": 3}, InvalidInputError, "item 2: 'text' must be a string"),
        ({"text": "hi", "mood": "happy"}, InvalidInputError, "item 2: unknown field 'mood'"),
    ],
)
async def test_a_bad_item_refuses_the_whole_import_naming_it(
    make_assistant: Any, bad: dict[str, Any], error: type[Exception], text: str
) -> None:
    assistant = await make_assistant(max_message_chars=4000)
    with pytest.raises(error, match=text):
        await assistant.import_memories("ines", [{"text": "I prefer tea"}, bad])
    assert not await assistant.services.store.user_exists("ines")


async def test_an_import_past_capacity_keeps_the_newest(make_assistant: Any, settings: Any) -> None:
    memory = settings.memory.model_copy(update={"capacity": 3})
    assistant = await make_assistant(memory=memory)
    start = datetime.now(UTC) - timedelta(days=10)
    items = [
        {"text": f"fact number {n} is kept", "created_at": (start + timedelta(days=n)).isoformat()}
        for n in range(5)
    ]
    summary = await assistant.import_memories("ines", items)
    assert summary.imported == 5
    assert [m.text for m in await assistant.list_memories("ines")] == [
        f"fact number {n} is kept" for n in (2, 3, 4)
    ]


def test_the_command_imports_jsonl_and_arrays(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    lines = tmp_path / "memories.jsonl"
    lines.write_text(
        json.dumps({"text": "My dog is called Rex", "created_at": "2026-05-01T10:00:00Z"})
        + "\n\n"
        + json.dumps({"text": "I live in Lyon", "session_id": "notes"})
        + "\n"
    )
    done = run_mongars("memories", "import", str(lines), "--user", "jo", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "user_id": "jo",
        "imported": 2,
        "skipped": 0,
        "embedded": 0,
    }
    array = tmp_path / "memories.json"
    array.write_text(json.dumps([{"text": "I live in Lyon"}, {"text": "I prefer tea"}]))
    plain = run_mongars("memories", "import", str(array), "--user", "jo", env=env)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == "imported 1 memories for jo; 1 already there were skipped\n"
    listed = run_mongars("memories", "list", "--user", "jo", "--json", env=env)
    assert [m["text"] for m in json.loads(listed.stdout)] == [
        "My dog is called Rex",
        "I live in Lyon",
        "I prefer tea",
    ]


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ('{"text": "fine"}\n{"text": "also fine"}\n{"text": ""}\n', "line 3: the text is empty"),
        ('{"text": "fine"}\n\n{"text": oops}\n', "line 3: not valid JSON"),
        ('{"text": "fine"}\n["a list"]\n', "line 2: expected a JSON object"),
        ('[{"text": "fine"}, {"text": "x", "created_at": "soon"}]', "item 2: 'created_at'"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_stored(tmp_path: Path, content: str, text: str) -> None:
    env = command_env(tmp_path)
    source = tmp_path / "memories.jsonl"
    source.write_text(content)
    result = run_mongars("memories", "import", str(source), "--user", "jo", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr
    listed = run_mongars("memories", "list", "--user", "jo", "--json", env=env)
    assert listed.returncode == 1 or json.loads(listed.stdout) == []


@pytest.mark.embedder
async def test_an_import_is_embedded_in_batches_and_recalled_by_meaning(
    make_assistant: Any, settings: Any
) -> None:
    from mongars_core.memory_import import EMBED_BATCH
    from tests.test_memory_quality import MiniLMPlugin

    memory = settings.memory.model_copy(update={"embedder": "minilm"})
    assistant = await make_assistant(("minilm", MiniLMPlugin()), memory=memory)
    items = [{"text": f"My locker number {n} is on floor {n % 7}"} for n in range(EMBED_BATCH + 6)]
    items.append({"text": "I moved to Lyon last year", "created_at": "2025-06-01T08:00:00+02:00"})
    steps: list[tuple[str, int, int | None]] = []
    summary = await assistant.import_memories(
        "ines", items, progress=lambda *step: steps.append(step)
    )
    assert summary.imported == summary.embedded == EMBED_BATCH + 7
    assert steps == [
        ("embed", EMBED_BATCH, EMBED_BATCH + 7),
        ("embed", EMBED_BATCH + 7, EMBED_BATCH + 7),
    ]
    [found] = [
        m for m in await assistant.search_memories("ines", "where do I live") if "Lyon" in m.text
    ]
    assert found.source == "semantic" and found.score >= assistant.settings.memory.min_score
    [passage] = [
        p
        for p in await assistant.retrieve("ines", "where do I live", kinds=frozenset({"memory"}))
        if "Lyon" in p.text
    ]
    assert passage.source == "conversation of 2025-06-01" and passage.key == f"memory:{found.id}"
