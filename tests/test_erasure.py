"""Forget me (``Assistant.forget_user``): nothing of the user remains, in any table of
the database, in the data and cache folders, nor in the database file's bytes;
another user's data is untouched; a failure midway is raised and a retry finishes.

The tests run on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import String, Text, func, select
from sqlmodel import SQLModel

from mongars_core import hookimpl
from mongars_core.errors import ErasureIncompleteError, StorageError, UnknownUserError
from mongars_core.history_io import dumps_jsonl, parse_history
from mongars_core.pipeline import Assistant
from mongars_core.services import Services
from mongars_plugins.knowledge import library
from mongars_plugins.learning import learner as learner_of
from mongars_plugins.learning.errors import RunCancelledError, UnknownRunError
from mongars_plugins.learning.runner import adapter_name
from mongars_plugins.learning.runs import RunRecord, new_run_id
from mongars_plugins.memory.snapshots import snapshot_path
from tests.conftest import command_env, run_mongars
from tests.learning_corpus import style_history
from tests.test_learning import FAKE
from tests.test_learning import fake_worker as fake_worker  # the stand-in worker's plan

ERIN = "erin-q7x"  # distinctive: found in no other data
SECRET = "Zorblax-Amélie"  # a word only erin ever said
OTHER = "olga"

OWNER_COLUMNS = ("user_id", "owner_id", "account_user_id", "added_by")
STAYING_TABLES = {"users", "accounts", "api_keys"}  # the id and logins (no account here)


class Notebook:
    """A plugin that keeps a note file per user: exports it, erases it, and fails its
    next erasure when told to."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.fail_next = False

    def write(self, user_id: str, text: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{user_id}.txt").write_text(text, encoding="utf-8")

    @hookimpl
    def mongars_export_user(self, services: Services, user_id: str) -> list[dict[str, Any]]:
        path = self.folder / f"{user_id}.txt"
        return [{"type": "note", "text": path.read_text("utf-8")}] if path.exists() else []

    @hookimpl
    def mongars_erase_user(self, services: Services, user_id: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("the notebook's disk went away")
        (self.folder / f"{user_id}.txt").unlink(missing_ok=True)


async def _assistant(make_assistant: Any, notebook: Notebook) -> Assistant:
    return await make_assistant(  # type: ignore[no-any-return]
        "learning",
        "knowledge",
        notebook,
        learning={"min_examples": 10, "schedule": False},
        memory={"snapshot_min_memories": 1},  # the memory index is kept in a file too
    )


async def fill(assistant: Assistant, notebook: Notebook, user: str, word: str) -> None:
    """Everything a user can have: rated turns in conversations, an empty conversation,
    memories with embeddings, a style profile, learning consent and a run, an adapter
    trained on their data (active and assigned, with a converted copy), a plugin file."""
    first = await assistant.chat(user, f"My sister is called {word}", session_id="family")
    await assistant.chat(user, f"I live in Lyon with {word} and I love hiking", session_id="trips")
    await assistant.chat(user, "Remind me to water the plants", session_id="trips")
    await assistant.rate(user, first.turn_id, 1)
    await assistant.create_conversation(user, f"Plans with {word}")
    await assistant.store.add_memory(
        user_id=user,
        session_id="family",
        text=f"{word} keeps bees",
        embedding=np.ones(8, dtype=np.float32).tobytes(),
        embedder="test-embedder",
    )
    learner = learner_of(assistant.services)
    await learner.set_consent(user, True, by=user)
    name = adapter_name(user)
    await learner.book.add(
        RunRecord(id=new_run_id(), user_id=user, status="approved", adapter=f"{name}@r1")
    )
    folder = assistant.settings.data_dir / "incoming" / user
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 8}')
    (folder / "adapter_model.safetensors").write_bytes(word.encode())
    registry = assistant.services.adapter_registry()
    adapter = registry.register(folder, name=name, version="r1", base_model="m", owner=user)
    registry.activate(name, "r1")
    registry.assign(user, name)
    converted = assistant.settings.cache_dir / "adapters" / f"{adapter.sha256}.gguf"
    converted.parent.mkdir(parents=True, exist_ok=True)
    converted.write_bytes(b"converted")
    for path in sorted(folder.iterdir()):  # the registry has its copy
        path.unlink()
    folder.rmdir()
    notebook.write(user, f"notes about {word}")
    documents = library(assistant.services)
    note = f"# {word}\n\n{word} was born in Nantes.\n\nThey love chess and tea.\n"
    await documents.add(user, "family.md", note.encode(), collection="family")
    shared = b"# Opening hours\n\nThe office opens at nine.\n"  # everyone's: it stays
    await documents.add(user, "hours.md", shared, shared=True, admin=True)
    assert next(d.title for d in await documents.list_documents(user)) == word
    await documents.search(user, "chess")  # the collection's index is loaded now
    await assistant.invalidate(user)  # the memories are loaded again, and kept in a file
    assert await assistant.search_memories(user, f"{word} keeps bees")
    snapshot = snapshot_path(assistant.settings.data_dir, user)
    for _ in range(500):  # written in the background once loaded
        if snapshot.exists():
            break
        await asyncio.sleep(0.01)
    assert snapshot.exists()


async def rows_naming(assistant: Assistant, value: str) -> dict[str, int]:
    """Rows of every table of the schema (but the id and login tables) whose owner
    column is ``value``, or whose text columns mention it."""
    found: dict[str, int] = {}
    async with assistant.store.engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            if table.name in STAYING_TABLES:
                continue
            for column in table.columns:
                if column.name in OWNER_COLUMNS:
                    condition = column == value
                elif isinstance(column.type, String | Text):
                    condition = column.contains(value)
                else:
                    continue
                query = select(func.count()).select_from(table).where(condition)
                count = (await connection.execute(query)).scalar_one()
                if count:
                    found[f"{table.name}.{column.name}"] = count
    return found


def files_naming(roots: list[Path], *values: str) -> list[str]:
    """Files under ``roots`` whose path or bytes hold one of ``values``."""
    needles = [value.encode() for value in values]
    found = []
    for root in roots:
        for path in root.rglob("*") if root.exists() else []:
            if not path.is_file():
                continue
            named = any(value in str(path) for value in values)
            if named or any(needle in path.read_bytes() for needle in needles):
                found.append(str(path))
    return found


async def test_forgetting_a_user_leaves_nothing_of_them_and_keeps_the_others(
    make_assistant: Any, tmp_path: Path, database_url: str
) -> None:
    notebook = Notebook(tmp_path / "notebook")
    assistant = await _assistant(make_assistant, notebook)
    await fill(assistant, notebook, ERIN, SECRET)
    await fill(assistant, notebook, OTHER, "Brunhilde")
    before = await rows_naming(assistant, ERIN)
    assert {"turns.user_id", "conversations.user_id", "memories.user_id"} <= set(before)
    assert before["plugin_state.user_id"] == 3  # style, learning.consent, learning.runs
    others = await rows_naming(assistant, OTHER)
    other_export = await assistant.export_history(OTHER)
    assert {"note", "adapter", "style", "memory"} <= {r["type"] for r in other_export}

    summary = await assistant.forget_user(ERIN)

    assert summary.user_id == ERIN
    assert summary.deleted == {
        "turns": 3,
        "conversations": 3,
        "memories": summary.deleted["memories"],
        "plugin_state": 3,
        "adapters": 1,
        "document_collections": 1,  # the shared one stays
        "documents": 1,
    }
    assert summary.deleted["memories"] >= 2  # the one added, those the turns made
    assert summary.namespaces == ["learning.consent", "learning.runs", "style"]
    assert await rows_naming(assistant, ERIN) == {}
    assert await rows_naming(assistant, SECRET) == {}
    settings = assistant.settings
    hash_name = adapter_name(ERIN)
    snapshot = snapshot_path(settings.data_dir, ERIN)  # named by a hash of the id
    assert snapshot_path(settings.data_dir, OTHER).exists()
    folders = [settings.data_dir, settings.cache_dir / "adapters", notebook.folder]
    assert files_naming(folders, ERIN, SECRET, hash_name, snapshot.stem) == []
    if database_url.startswith("sqlite"):
        # Not in the database file's bytes either: deleted rows are overwritten and
        # the write-ahead log emptied (the users row keeps erin's id, nothing she said).
        database = Path(database_url.split("///", 1)[1])
        assert files_naming([database.parent], "Lyon with Brunhilde") != []  # it can find
        assert files_naming([database.parent], SECRET, hash_name) == []
    registry = assistant.services.adapter_registry()
    assert registry.for_user(ERIN) is None
    assert ERIN not in registry.users()
    assert all(a.owner != ERIN for a in registry.adapters())
    # Nothing cached either: no memory or document found, no history, an empty export.
    documents = library(assistant.services)
    assert await documents.search(ERIN, "chess") == []
    assert [d.title for d in await documents.list_documents(ERIN)] == ["Opening hours"] * 2
    assert next(d.title for d in await documents.list_documents(OTHER)) == "Brunhilde"
    assert await assistant.search_memories(ERIN, f"{SECRET} keeps bees") == []
    assert await assistant.history(ERIN) == []
    assert await assistant.list_conversations(ERIN) == []
    export = await assistant.export_history(ERIN)
    assert [r["type"] for r in export] == ["mongars-export"]

    # The other user has all they had.
    assert await rows_naming(assistant, OTHER) == others
    again = await assistant.export_history(OTHER)
    assert again[1:] == other_export[1:]  # all but the header's export time
    assert registry.for_user(OTHER) is not None

    # Erin goes on from zero; forgetting again answers zeros.
    await assistant.chat(ERIN, "Hello again", session_id="fresh")
    assert [t.message for t in await assistant.history(ERIN)] == ["Hello again"]
    await assistant.forget_user(ERIN)
    repeat = await assistant.forget_user(ERIN)
    assert repeat.deleted == {
        "turns": 0,
        "conversations": 0,
        "memories": 0,
        "plugin_state": 0,
        "adapters": 0,
    }


async def test_a_failure_midway_is_raised_and_a_retry_finishes(
    make_assistant: Any, tmp_path: Path
) -> None:
    notebook = Notebook(tmp_path / "notebook")
    assistant = await _assistant(make_assistant, notebook)
    await fill(assistant, notebook, ERIN, SECRET)
    notebook.fail_next = True
    with pytest.raises(StorageError, match="notebook's disk went away"):
        await assistant.forget_user(ERIN)
    # The database's part is done and nothing is cached; the plugin's file and the
    # adapters (erased after the plugins) remain for the retry.
    assert await assistant.history(ERIN) == []
    assert (notebook.folder / f"{ERIN}.txt").exists()
    assert assistant.services.adapter_registry().for_user(ERIN) is not None

    summary = await assistant.forget_user(ERIN)
    assert summary.deleted["turns"] == 0 and summary.deleted["adapters"] == 1
    assert not (notebook.folder / f"{ERIN}.txt").exists()
    assert await rows_naming(assistant, ERIN) == {}


async def test_a_training_run_on_the_users_data_is_stopped_and_leaves_nothing(
    make_assistant: Any, tmp_path: Path, fake_worker: Any
) -> None:
    assistant = await _assistant(make_assistant, Notebook(tmp_path / "notebook"))
    records = style_history(40, seed=5)
    await assistant.import_history(ERIN, parse_history(dumps_jsonl(records), assistant.settings))
    learner = learner_of(assistant.services)
    learner.worker = [str(FAKE)]
    await learner.set_consent(ERIN, True, by=ERIN)
    fake_worker(wait=True)  # the worker trains until it is stopped
    started = asyncio.Event()
    run = asyncio.ensure_future(learner.run(ERIN, progress=lambda *_: started.set()))
    await asyncio.wait_for(started.wait(), 60)
    assert learner.lock.holder() is not None

    summary = await assistant.forget_user(ERIN)
    # Stopped; its record went with the rest, so it may not even say it was cancelled.
    with pytest.raises((RunCancelledError, UnknownRunError)):
        await asyncio.wait_for(run, 60)
    assert summary.deleted["turns"] == 40
    assert learner.lock.holder() is None
    assert await rows_naming(assistant, ERIN) == {}  # not even the cancelled run's record
    assert assistant.services.adapter_registry().adapters() == []
    assert not list((learner.root / "work").iterdir())


class LateReply:
    """Stores a turn of the user while they are being forgotten, once: a reply that
    was being written when "forget me" came."""

    def __init__(self) -> None:
        self.pending = True

    @hookimpl
    async def mongars_erase_user(self, services: Services, user_id: str) -> None:
        if self.pending:
            self.pending = False
            await services.store.add_turn(
                turn_id="late",
                user_id=user_id,
                session_id="s",
                message="a message sent just before",
                reply="its reply",
                confidence=0.5,
                backend="instant",
                meta={},
            )


async def test_a_reply_stored_meanwhile_is_an_error_and_a_retry_deletes_it(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant(LateReply())
    await assistant.chat(ERIN, "Hello")
    with pytest.raises(ErasureIncompleteError, match=r"rows of 'erin-q7x' remain .*turns: 1"):
        await assistant.forget_user(ERIN)
    assert (await assistant.forget_user(ERIN)).deleted["turns"] == 1
    assert await rows_naming(assistant, ERIN) == {}


async def test_an_unknown_user_is_an_error(make_assistant: Any, tmp_path: Path) -> None:
    assistant = await _assistant(make_assistant, Notebook(tmp_path / "notebook"))
    with pytest.raises(UnknownUserError, match="no user 'nobody'"):
        await assistant.forget_user("nobody")


async def test_an_export_carries_the_plugins_records_and_imports_again(
    make_assistant: Any, tmp_path: Path
) -> None:
    notebook = Notebook(tmp_path / "notebook")
    assistant = await _assistant(make_assistant, notebook)
    await assistant.chat(ERIN, "I grow tomatoes", session_id="garden")
    notebook.write(ERIN, "buy seeds")
    data = b"# Tomatoes\n\nWater them at dawn.\n"
    await library(assistant.services).add(ERIN, "tomatoes.md", data, collection="garden")
    records = await assistant.export_history(ERIN)
    assert {"type": "note", "text": "buy seeds"} in records
    (document,) = [r for r in records if r["type"] == "document"]
    assert (document["collection"], document["title"]) == ("garden", "Tomatoes")
    assert "Water them at dawn." in document["text"]
    assert [r["type"] for r in records].index("document") > [r["type"] for r in records].index(
        "turn"
    )

    text = dumps_jsonl([*records, {"type": "from-a-newer-monGARS", "x": 1}])
    history = parse_history(text.encode(), assistant.settings, "mongars")
    kept = {"mongars-export", "session", "turn"}
    assert history.skipped_records == sum(r["type"] not in kept for r in records) + 1
    assert sorted(w.split(":", 1)[1].strip().split(" ")[0] for w in history.warnings) == [
        '"collection"',
        '"document"',
        '"from-a-newer-monGARS"',
        '"note"',
    ]
    assert "records are not imported" in history.warnings[0]
    summary = await assistant.import_history(OTHER, history)
    assert summary.turns == 1
    # An export of an older monGARS, without plugin records, imports as before.
    core = {"mongars-export", "session", "turn", "memory", "style", "adapter"}
    older = [r for r in records if r["type"] in core]
    assert parse_history(dumps_jsonl(older).encode(), assistant.settings).warnings == []


def test_the_cli_forgets_after_confirmation(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    export = tmp_path / "history.jsonl"
    turn = {"session_id": "s", "reply": "Noted.", "created_at": "2026-01-05T10:00:00+00:00"}
    export.write_text(
        dumps_jsonl(
            [
                {"type": "mongars-export", "version": 1},
                {**turn, "message": f"My sister is {SECRET}"},
                {**turn, "message": "I like tea", "created_at": "2026-01-05T10:01:00+00:00"},
            ]
        )
    )
    assert run_mongars("history", "import", str(export), "--user", ERIN, env=env).returncode == 0
    assert run_mongars("history", "import", str(export), "--user", OTHER, env=env).returncode == 0

    refused = run_mongars("forget", "--user", ERIN, env=env)  # no terminal, no --yes
    assert refused.returncode == 1
    assert "cannot be undone: confirm with --yes" in refused.stderr

    done = run_mongars("forget", "--user", ERIN, "--yes", "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["user_id"] == ERIN
    assert summary["deleted"]["turns"] == 2 and summary["deleted"]["conversations"] == 1
    line = run_mongars("forget", "--user", ERIN, "--yes", env=env)
    assert line.stdout.strip() == (
        f"forgot {ERIN}: 0 turns, 0 conversations, 0 memories, 0 plugin state, 0 adapters"
    )
    left = run_mongars("history", "export", "--user", ERIN, env=env)
    assert [json.loads(x)["type"] for x in left.stdout.splitlines()] == ["mongars-export"]
    kept = run_mongars("history", "export", "--user", OTHER, env=env)
    assert SECRET in kept.stdout
