"""History in and out: monGARS JSONL and ChatGPT imports, all or nothing, without
duplicates; exports that import again; the ``mongars history`` command.

The library tests run on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mongars_core.errors import (
    HistoryFormatError,
    InvalidUserIdError,
    MessageTooLongError,
    UnknownUserError,
)
from mongars_core.history_io import dumps_jsonl, parse_history
from mongars_core.settings import Settings
from tests.conftest import command_env, run_mongars

HEADER = {"type": "mongars-export", "version": 1}


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def turn(message: str, reply: str = "Noted.", session: str = "s1", at: int = 0) -> dict[str, Any]:
    return {
        "session_id": session,
        "message": message,
        "reply": reply,
        "created_at": f"2024-03-01T10:{at:02d}:00+00:00",
    }


def node(
    node_id: str,
    parent: str | None,
    children: list[str],
    role: str | None = None,
    text: str | list[Any] = "",
    at: float | None = None,
) -> dict[str, Any]:
    message = None
    if role is not None:
        parts = text if isinstance(text, list) else [text]
        message = {
            "id": node_id,
            "author": {"role": role, "name": None, "metadata": {}},
            "create_time": at,
            "content": {"content_type": "text", "parts": parts},
            "status": "finished_successfully",
            "metadata": {},
        }
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def chatgpt_export() -> list[dict[str, Any]]:
    """Two conversations as ChatGPT writes them: a root without a message, a system
    prompt, an edited message (a branch not taken), a tool call, an image part."""
    trip = {
        "title": "Trip to Lisbon",
        "create_time": 1709287200.5,
        "update_time": 1709290800.0,
        "conversation_id": "6f1c2a9e-0b1d-4c55-9a51-3f2d6f0a7c11",
        "current_node": "a3",
        "mapping": {
            "root": node("root", None, ["sys"]),
            "sys": node("sys", "root", ["u1"], "system", ""),
            "u1": node(
                "u1", "sys", ["a1"], "user", "I live in Porto and I love trains.", 1709287201
            ),
            "a1": node("a1", "u1", ["u2old", "u2"], "assistant", "Trains are great!", 1709287205),
            "u2old": node("u2old", "a1", [], "user", "Never mind.", 1709287300),
            "u2": node(
                "u2",
                "a1",
                ["t1"],
                "user",
                ["How long is the train to Lisbon?", {"asset_pointer": "file-service://x"}],
                1709287400,
            ),
            "t1": node("t1", "u2", ["a2"], "tool", "search results", 1709287401),
            "a2": node("a2", "t1", ["a3"], "assistant", "About three hours.", 1709287402),
            "a3": node("a3", "a2", [], "assistant", "The Alfa Pendular is fastest.", 1709287403),
        },
    }
    recipes = {
        "title": "Soup",
        "create_time": 1709373600.0,
        "id": "c2",
        "current_node": "b2",
        "mapping": {
            "b0": node("b0", None, ["b1"]),
            "b1": node("b1", "b0", ["b2"], "user", "My favourite soup is caldo verde."),
            "b2": node("b2", "b1", [], "assistant", "A Portuguese classic.", 1709373700),
        },
    }
    return [trip, recipes]


# -- parsing ------------------------------------------------------------------------


def test_the_chatgpt_current_branch_becomes_turns_paired_user_to_assistant() -> None:
    history = parse_history(json.dumps(chatgpt_export()), Settings(), "auto")
    assert history.format == "chatgpt"
    pairs = [(t.session_id, t.message, t.reply) for t in history.turns]
    trip = "chatgpt-6f1c2a9e-0b1d-4c55-9a51-3f2d6f0a7c11"
    assert pairs == [
        (trip, "I live in Porto and I love trains.", "Trains are great!"),
        (
            trip,
            "How long is the train to Lisbon?",
            "About three hours.\n\nThe Alfa Pendular is fastest.",
        ),
        ("chatgpt-c2", "My favourite soup is caldo verde.", "A Portuguese classic."),
    ]
    assert history.titles == {trip: "Trip to Lisbon", "chatgpt-c2": "Soup"}
    # A message without a time takes its conversation's.
    assert history.turns[2].created_at.timestamp() == 1709373600.0
    assert history.turns[0].created_at.timestamp() == 1709287201


@pytest.mark.parametrize(
    ("text", "error", "where"),
    [
        (jsonl(HEADER, turn("hi")) + "{not json\n", HistoryFormatError, "line 3: not valid JSON"),
        (
            jsonl(turn("hi"), {"session_id": "s", "message": "m"}),
            HistoryFormatError,
            "line 2: a turn needs 'reply', 'created_at'",
        ),
        (
            jsonl({**turn("hi"), "message": 5}),
            HistoryFormatError,
            "line 1: 'message' must be a string",
        ),
        (
            jsonl({**turn("hi"), "created_at": "yesterday"}),
            HistoryFormatError,
            "line 1: 'created_at' must be",
        ),
        (
            jsonl({**turn("hi"), "session_id": "a b"}),
            HistoryFormatError,
            "line 1: invalid session id",
        ),
        (
            jsonl(turn("ok"), turn("x" * 41)),
            MessageTooLongError,
            "line 2: the message has 41 characters",
        ),
        (
            jsonl({"type": "mongars-export", "version": 2}),
            HistoryFormatError,
            "line 1: this monGARS reads export version 1",
        ),
        (jsonl({"type": "nope"}), HistoryFormatError, "line 1: unknown record type"),
        ("[1, 2", HistoryFormatError, "not valid JSON at line 1"),
        (
            json.dumps([{"title": "T", "mapping": []}]),
            HistoryFormatError,
            "conversation 0 ('T'): 'mapping' must be",
        ),
    ],
)
def test_a_malformed_file_is_refused_naming_where(text: str, error: type, where: str) -> None:
    with pytest.raises(error) as raised:
        parse_history(text, Settings(max_message_chars=40))
    assert str(raised.value).startswith(where), str(raised.value)


def test_a_chatgpt_cycle_or_a_missing_parent_is_refused_naming_the_node() -> None:
    export = chatgpt_export()
    export[1]["mapping"]["b0"]["parent"] = "b2"  # b2 -> b1 -> b0 -> b2
    with pytest.raises(
        HistoryFormatError, match=r"conversation 1 \('Soup'\): node 'b2' is its own ancestor"
    ):
        parse_history(json.dumps(export), Settings())
    export = chatgpt_export()
    export[0]["mapping"]["a2"]["parent"] = "gone"
    with pytest.raises(HistoryFormatError, match=r"node 'a2' names parent 'gone', which is not in"):
        parse_history(json.dumps(export), Settings())
    export = chatgpt_export()
    export[0]["mapping"]["u2"]["message"]["content"]["parts"] = "text"
    with pytest.raises(
        HistoryFormatError, match=r"Lisbon'\), node 'u2': 'content.parts' must be a list"
    ):
        parse_history(json.dumps(export), Settings())


def test_an_oversize_chatgpt_message_is_refused_naming_its_node() -> None:
    export = chatgpt_export()
    export[1]["mapping"]["b1"]["message"]["content"]["parts"] = ["x" * 50]
    with pytest.raises(
        MessageTooLongError, match=r"conversation 1 \('Soup'\), node 'b1': the message has 50"
    ):
        parse_history(json.dumps(export), Settings(max_message_chars=40))


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(HistoryFormatError, match="not UTF-8 text"):
        parse_history(b'{"message": "\xff"}', Settings())


# -- import and export -----------------------------------------------------------------


async def test_an_import_stores_turns_at_their_times_titles_and_memories(
    make_assistant: Any,
) -> None:
    assistant = await make_assistant()
    summary = await assistant.import_history("carol", json.dumps(chatgpt_export()))
    assert (summary.turns, summary.sessions, summary.duplicates) == (3, 2, 0)
    assert summary.memories >= 2 and summary.warnings == []

    history = await assistant.history("carol")  # newest first
    assert [t.message for t in history][-1] == "I live in Porto and I love trains."
    assert history[-1].created_at.timestamp() == 1709287201
    titles = {c.session_id: (c.title, c.turns) for c in await assistant.list_conversations("carol")}
    assert titles["chatgpt-c2"] == ("Soup", 1)
    memories = [m.text for m in await assistant.list_memories("carol")]
    assert any("Porto" in text for text in memories)
    assert any("caldo verde" in text for text in memories)
    # The style was learnt from the imported messages, and they are recalled.
    style = await assistant.store.get_state("style", "carol")
    assert style is not None and style["messages_seen"] == 3
    reply = await assistant.chat("carol", "Where do I live?")
    assert any("Porto" in memory.text for memory in reply.memories)


async def test_importing_the_same_file_twice_stores_it_once(make_assistant: Any) -> None:
    assistant = await make_assistant()
    text = jsonl(HEADER, turn("I play the cello.", at=1), turn("I play the cello.", at=2))
    first = await assistant.import_history("dan", text)
    again = await assistant.import_history("dan", text)
    assert (first.turns, first.memories) == (2, 1)  # one wording, one memory
    assert (again.turns, again.duplicates, again.memories) == (0, 2, 0)
    assert len(await assistant.history("dan")) == 2
    assert len(await assistant.list_memories("dan")) == 1


async def test_a_bad_line_at_the_end_leaves_nothing_stored(make_assistant: Any) -> None:
    assistant = await make_assistant()
    good = [turn(f"My sister is called Ana number {n}.", at=n) for n in range(5)]
    with pytest.raises(HistoryFormatError, match="line 7"):
        await assistant.import_history("erin", jsonl(HEADER, *good) + '{"message": \n')
    with pytest.raises(UnknownUserError):
        await assistant.history("erin")
    assert await assistant.store.list_memories("erin") == []


async def test_a_failed_commit_leaves_nothing_half_imported(make_assistant: Any) -> None:
    """The whole import is one transaction: a write that fails at the end undoes the rest."""
    from mongars_core import hookimpl
    from mongars_core.errors import StorageError
    from mongars_core.storage.unit_of_work import UnitOfWork
    from mongars_core.types import Reply, Turn

    class FailsOnTheLastTurn:
        @hookimpl
        def mongars_turn_completed(self, turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
            if turn.message.startswith("last"):
                writes.run(lambda connection: (_ for _ in ()).throw(RuntimeError("disk full")))

    assistant = await make_assistant(("fails", FailsOnTheLastTurn()))
    text = jsonl(turn("I like tea.", at=1), turn("I own a boat.", at=2), turn("last one", at=3))
    with pytest.raises(StorageError, match="disk full"):
        await assistant.import_history("fay", text)
    assert not await assistant.store.user_exists("fay")
    assert await assistant.store.list_memories("fay") == []


async def test_an_export_imports_again_as_it_was(make_assistant: Any) -> None:
    assistant = await make_assistant()
    await assistant.chat("gus", "I work as a nurse in Lyon.", session_id="work")
    await assistant.chat("gus", "My cat is named Miso.", session_id="home")
    await assistant.rename_conversation("gus", "home", "At home")
    records = await assistant.export_history("gus")
    kinds = [record["type"] for record in records]
    assert kinds[0] == "mongars-export" and kinds.count("turn") == 2
    assert kinds.count("session") == 2 and kinds.count("memory") == 2 and "style" in kinds
    text = dumps_jsonl(records)

    summary = await assistant.import_history("hal", text)
    assert (summary.turns, summary.sessions, summary.memories) == (2, 2, 2)
    again = await assistant.export_history("hal")

    def comparable(records: list[dict[str, Any]]) -> list[Any]:
        return [
            (r["session_id"], r.get("title"), r.get("message"), r.get("reply"), r.get("created_at"))
            for r in records
            if r["type"] in ("turn", "session")
        ]

    assert comparable(again) == comparable(records)
    assert [r["text"] for r in again if r["type"] == "memory"] == [
        r["text"] for r in records if r["type"] == "memory"
    ]
    # Into the same user, nothing is new.
    assert (await assistant.import_history("gus", text)).duplicates == 2


async def test_export_lists_the_users_adapters(make_assistant: Any, tmp_path: Path) -> None:
    assistant = await make_assistant()
    await assistant.chat("ivy", "Hello")
    registry = assistant.services.adapter_registry()
    folder = tmp_path / "lora"
    folder.mkdir()
    (folder / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    (folder / "adapter_config.json").write_text("{}")
    registry.register(folder, name="ivy-style", version="1", base_model="base")
    registry.activate("ivy-style", "1")
    registry.assign("ivy", "ivy-style")
    adapters = [r for r in await assistant.export_history("ivy") if r["type"] == "adapter"]
    assert [(a["name"], a["version"], a["active"]) for a in adapters] == [("ivy-style", "1", True)]


async def test_bad_user_ids_and_unknown_users_are_refused(make_assistant: Any) -> None:
    assistant = await make_assistant()
    with pytest.raises(InvalidUserIdError):
        await assistant.import_history("a b", jsonl(turn("hi")))
    with pytest.raises(UnknownUserError):
        await assistant.export_history("nobody")


# -- the command -----------------------------------------------------------------------


def test_the_command_imports_exports_and_reports_in_one_line(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    source = tmp_path / "conversations.json"
    source.write_text(json.dumps(chatgpt_export()))
    done = run_mongars("history", "import", str(source), "--user", "jo", "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["turns"] == 3 and summary["sessions"] == 2 and summary["format"] == "chatgpt"

    plain = run_mongars("history", "import", str(source), "--user", "jo", env=env)
    assert plain.returncode == 0 and "imported 0 turns" in plain.stdout
    assert "3 turns already there were skipped" in plain.stdout

    out = tmp_path / "jo.jsonl"
    exported = run_mongars("history", "export", "--user", "jo", "--output", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(line["type"] == "turn" for line in lines) == 3
    to_stdout = run_mongars("history", "export", "--user", "jo", env=env)
    assert to_stdout.stdout.count('"type": "turn"') == 3


@pytest.mark.parametrize(
    ("content", "args", "text"),
    [
        (jsonl(turn("hi")) + "oops\n", [], "line 2: not valid JSON"),
        (jsonl(turn("hi")), ["--format", "xml"], "unknown format 'xml'"),
        (jsonl(turn("hi")), ["--user", "a b"], "invalid user id 'a b'"),
        (None, [], "cannot read"),
    ],
)
def test_command_errors_are_one_line_and_exit_1(
    tmp_path: Path, content: str | None, args: list[str], text: str
) -> None:
    env = command_env(tmp_path)
    source = tmp_path / "history.jsonl"
    if content is not None:
        source.write_text(content)
    result = run_mongars("history", "import", str(source), *args, env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    missing = run_mongars("history", "export", "--user", "nobody", env=env)
    assert missing.returncode == 1 and "no user 'nobody'" in missing.stderr


# -- hostile files -----------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000
FUTURE = 4_102_444_800  # 2100-01-01


def conversation(ident: str, text: str, title: str = "T") -> dict[str, Any]:
    return {
        "title": title,
        "create_time": 1709373600.0,
        "id": ident,
        "current_node": "b2",
        "mapping": {
            "b1": node("b1", None, ["b2"], "user", text),
            "b2": node("b2", "b1", [], "assistant", "Reply.", 1709373700),
        },
    }


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (jsonl(turn("hi")) + DEEP + "\n", "line 2: not valid JSON (nested too deeply)"),
        (DEEP, "not valid JSON: nested too deeply"),
        (
            jsonl(turn("hi")) + '{"type": "turn", "created_at": ' + "[" * 900 + "]" * 900 + "}\n",
            "line 2: a turn needs",
        ),
        (
            '{"session_id": "s1", "message": "hi", "reply": "", "created_at": '
            + "[" * 800
            + "]" * 800
            + "}\n",
            "line 1: 'created_at' must be",
        ),
        (jsonl({"type": []}), "line 1: 'type' must be a string"),
        (jsonl({"type": {}}), "line 1: 'type' must be a string"),
        (
            jsonl(turn("hi")) + '{"type": "turn", "created_at": 1' + "0" * 5000 + "}\n",
            "line 2: not valid JSON (a number has more than",
        ),
        ('[{"create_time": 1' + "0" * 5000 + "}]", "not valid JSON: a number has more than"),
        (
            jsonl({"type": "session", "session_id": "s1", "title": "\ud800"}),
            "line 1: the title is not valid text",
        ),
        (
            json.dumps([conversation("c1", "hi", title="\ud800")]),
            "conversation 0: the title is not valid text",
        ),
        (
            jsonl({**turn("hi"), "created_at": FUTURE}),
            "line 1: 'created_at' is in the future",
        ),
        (
            json.dumps([{**conversation("c1", "hi"), "create_time": FUTURE}]),
            "conversation 0 ('T'), node 'b1': 'created_at' is in the future",
        ),
    ],
)
def test_a_hostile_file_is_a_format_error_naming_where(text: str, where: str) -> None:
    with pytest.raises(HistoryFormatError) as raised:
        parse_history(text, Settings())
    assert str(raised.value).startswith(where), str(raised.value)


def test_a_turn_of_a_few_hours_ahead_is_accepted() -> None:
    from datetime import UTC, datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    history = parse_history(jsonl({**turn("hi"), "created_at": soon}), Settings())
    assert len(history.turns) == 1


def test_chatgpt_conversations_sharing_an_id_stay_apart() -> None:
    export = [
        conversation("a/b", "first"),
        conversation("a-b", "second"),
        conversation("a-b", "third"),
        conversation("c1", "fourth"),
    ]
    history = parse_history(json.dumps(export), Settings())
    sessions = [t.session_id for t in history.turns]
    assert len(set(sessions)) == 4, sessions
    assert sessions[1] == "chatgpt-a-b" and sessions[3] == "chatgpt-c1"
    assert sessions[0].startswith("chatgpt-a-b-")
    assert any(
        "conversation 2" in warning and "conversation 1" in warning for warning in history.warnings
    )
    # The same file gives the same sessions again (a second import finds its turns).
    assert [t.session_id for t in parse_history(json.dumps(export), Settings()).turns] == sessions


def test_control_and_bidi_characters_are_stripped_and_invisible_messages_skipped() -> None:
    text = jsonl(
        turn("hi\u202e\x07\x1b[31m there\u2066\x85", reply="ok\x1b]0;x\x07\u202d", at=1),
        turn("\u200b", at=2),
        turn("\x1b[2J\u202e", at=3),
        turn("keep\n\tthis 👩\u200d👩", at=4),
    )
    history = parse_history(text, Settings())
    assert [(t.message, t.reply) for t in history.turns] == [
        ("hi there", "ok"),
        ("keep\n\tthis 👩\u200d👩", "Noted."),
    ]
    assert len(history.warnings) == 2 and history.warnings[0].startswith("line 2: ")
    export = [
        conversation("c1", "\u200b\u2060"),
        conversation("c2", "a\u202eb", title="x\u202ey\x9b"),
    ]
    chatgpt = parse_history(json.dumps(export), Settings())
    assert [t.message for t in chatgpt.turns] == ["ab"]
    assert chatgpt.titles["chatgpt-c2"] == "xy"
    assert chatgpt.warnings and chatgpt.warnings[0].startswith("conversation 0")


async def test_skipped_messages_are_warnings_of_the_import(make_assistant: Any) -> None:
    assistant = await make_assistant()
    summary = await assistant.import_history(
        "kim", jsonl(turn("hello", at=1), turn("\u200b", at=2))
    )
    assert summary.turns == 1
    assert any(warning.startswith("line 2: ") for warning in summary.warnings)


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (jsonl(turn("hi")) + DEEP + "\n", "line 2: not valid JSON (nested too deeply)"),
        (DEEP, "nested too deeply"),
        (jsonl({"type": []}), "line 1: 'type' must be a string"),
        ('{"created_at": 1' + "0" * 5000 + "}\n", "line 1: not valid JSON (a number has"),
        (
            jsonl({"type": "session", "session_id": "s1", "title": "\ud800"}, turn("hi")),
            "line 1: the title is not valid text",
        ),
    ],
)
def test_hostile_files_are_one_line_errors_of_the_command(
    tmp_path: Path, content: str, text: str
) -> None:
    env = command_env(tmp_path)
    source = tmp_path / "history.jsonl"
    source.write_text(content)
    result = run_mongars("history", "import", str(source), env=env)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr


def test_a_value_too_deep_to_write_is_shown_by_its_type() -> None:
    from mongars_core.history_io import shown

    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert shown(deep) == "'list'"
    assert shown("x" * 100) == '"' + "x" * 39
