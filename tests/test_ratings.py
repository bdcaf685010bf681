"""Ratings of replies (thumbs up or down) and the adapter that answered, in the library:
stored, cleared, private to their user, in the history, exported and imported again.

The tests run on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Connection, inspect, text

from mongars_core.errors import HistoryFormatError, InvalidInputError, TurnNotFoundError
from mongars_core.pipeline import Assistant
from mongars_core.storage.store import Store, _alembic_config
from mongars_core.storage.turns import adapter_of
from mongars_core.types import GenerationRequest, utcnow

HEADER = {"type": "mongars-export", "version": 1}


class AdapterBackend:
    """Answers ``Noted.`` and says it applied the request's adapter, as a local engine does."""

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([delta async for delta in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        yield "Noted."
        if request.adapter is not None:
            request.outcome.adapter = request.adapter.id


async def rated_row(store: Store, turn_id: str) -> tuple[Any, Any]:
    async with store.engine.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT rating, rated_at FROM turns WHERE turn_id = :id"), {"id": turn_id}
            )
        ).one()
    return row[0], row[1]


async def test_a_reply_is_rated_up_then_down_then_cleared(make_assistant: Any) -> None:
    assistant: Assistant = await make_assistant()
    first = await assistant.chat("alice", "Paris is lovely", session_id="trip")
    second = await assistant.chat("alice", "Lyon too", session_id="trip")
    store = assistant.store
    # The session's last turns are cached now (a turn's prompt reads them so): a
    # rating must show through the cache too.
    before = await store.recent_turns("alice", "trip", 5)
    assert [(t.turn_id, t.rating) for t in before] == [
        (first.turn_id, None),
        (second.turn_id, None),
    ]

    rated = await assistant.rate("alice", first.turn_id, 1)
    assert (rated.turn_id, rated.rating, rated.message) == (first.turn_id, 1, "Paris is lovely")
    assert [t.rating for t in await store.recent_turns("alice", "trip", 5)] == [1, None]
    assert [t.rating for t in await assistant.conversation_turns("alice", "trip")] == [1, None]
    assert [t.rating for t in await assistant.history("alice")] == [None, 1]
    rating, rated_at = await rated_row(store, first.turn_id)
    assert rating == 1 and rated_at is not None

    assert (await assistant.rate("alice", first.turn_id, -1)).rating == -1
    assert [t.rating for t in await store.recent_turns("alice", "trip", 5)] == [-1, None]

    assert (await assistant.rate("alice", first.turn_id, None)).rating is None
    assert await rated_row(assistant.store, first.turn_id) == (None, None)
    assert [t.rating for t in await assistant.history("alice")] == [None, None]


async def test_another_users_turn_cannot_be_rated_nor_told_apart_from_none(
    make_assistant: Any,
) -> None:
    assistant: Assistant = await make_assistant()
    alices = await assistant.chat("alice", "My secret")
    await assistant.chat("bob", "Mine")
    with pytest.raises(TurnNotFoundError) as theirs:
        await assistant.rate("bob", alices.turn_id, -1)
    with pytest.raises(TurnNotFoundError) as unknown:
        await assistant.rate("bob", "f" * 32, -1)
    assert str(theirs.value) == f"no turn {alices.turn_id!r} for this user"
    assert str(unknown.value) == f"no turn {'f' * 32!r} for this user"
    assert await rated_row(assistant.store, alices.turn_id) == (None, None)
    assert (await assistant.history("alice"))[0].rating is None


@pytest.mark.parametrize("bad", [0, 2, -2, True, False, 1.0, "up", "1", [1]])
async def test_a_rating_is_one_minus_one_or_none(make_assistant: Any, bad: object) -> None:
    assistant: Assistant = await make_assistant()
    reply = await assistant.chat("alice", "hello")
    with pytest.raises(InvalidInputError, match="a rating is 1 \\(up\\), -1 \\(down\\)"):
        await assistant.rate("alice", reply.turn_id, bad)  # type: ignore[arg-type]
    assert await rated_row(assistant.store, reply.turn_id) == (None, None)


async def test_the_history_names_the_adapter_that_answered(
    make_assistant: Any, tmp_path: Path
) -> None:
    assistant: Assistant = await make_assistant(backend=AdapterBackend())
    registry = assistant.services.adapter_registry()
    source = tmp_path / "files"
    source.mkdir()
    (source / "adapter_config.json").write_text("{}")
    (source / "adapter_model.safetensors").write_bytes(b"weights")
    registry.register(source, name="alice-style", version="1", base_model="smollm2-135m-instruct")
    registry.activate("alice-style", "1")
    registry.assign("alice", "alice-style")

    reply = await assistant.chat("alice", "hello there")
    assert reply.adapter == "alice-style@1"
    # From the cache the commit filled, then read back from the rows.
    cached = await assistant.conversation_turns("alice", "default")
    assistant.store.forget_cached("alice")
    read = await assistant.conversation_turns("alice", "default")
    for turns in (cached, read, await assistant.history("alice")):
        assert [(t.turn_id, t.adapter) for t in turns] == [(reply.turn_id, "alice-style@1")]
    bob = await assistant.chat("bob", "hello there")
    assert bob.adapter is None
    assert [t.adapter for t in await assistant.history("bob")] == [None]


def test_only_the_adapter_key_of_the_meta_names_an_adapter() -> None:
    assert adapter_of(json.dumps({"usage": {}, "adapter": "a@1"})) == "a@1"
    assert adapter_of(json.dumps({"adapter": None})) is None
    assert adapter_of("{}") is None
    # A user's own words in the meta (a knowledge gap's topic) never pass for the key.
    assert adapter_of(json.dumps({"gaps": ['"adapter": "evil@1"'], "adapter": None})) is None


async def test_all_turns_lists_every_turn_of_the_user_oldest_first(make_assistant: Any) -> None:
    assistant: Assistant = await make_assistant()
    ids = [
        (await assistant.chat("alice", f"message {n}", session_id=f"s{n % 2}")).turn_id
        for n in range(4)
    ]
    await assistant.chat("bob", "not alice's")
    await assistant.rate("alice", ids[2], 1)
    turns = await assistant.store.all_turns("alice")
    assert [t.turn_id for t in turns] == ids
    assert [t.rating for t in turns] == [None, None, 1, None]
    assert {t.user_id for t in turns} == {"alice"}


async def test_ratings_are_exported_and_imported_again(make_assistant: Any) -> None:
    assistant: Assistant = await make_assistant()
    up = await assistant.chat("alice", "good answer please")
    down = await assistant.chat("alice", "bad answer please")
    await assistant.chat("alice", "no opinion")
    await assistant.rate("alice", up.turn_id, 1)
    await assistant.rate("alice", down.turn_id, -1)
    lines = [r for r in await assistant.export_history("alice") if r["type"] == "turn"]
    assert [line.get("rating") for line in lines] == [1, -1, None]
    assert all("adapter" not in line for line in lines)  # the base model answered

    text_lines = "".join(json.dumps(record) + "\n" for record in [HEADER, *lines])
    summary = await assistant.import_history("zoe", text_lines)
    assert summary.turns == 3
    imported = await assistant.store.all_turns("zoe")
    assert [(t.message, t.rating) for t in imported] == [
        ("good answer please", 1),
        ("bad answer please", -1),
        ("no opinion", None),
    ]
    assert (await rated_row(assistant.store, imported[0].turn_id or ""))[1] is not None


@pytest.mark.parametrize("bad", [0, 2, True, "up", 1.5, [1]])
async def test_an_import_refuses_a_rating_that_is_not_one_or_minus_one(
    make_assistant: Any, bad: object
) -> None:
    assistant: Assistant = await make_assistant()
    good = {
        "session_id": "s1",
        "message": "fine",
        "reply": "ok",
        "created_at": "2024-03-01T10:00:00+00:00",
    }
    data = "".join(
        json.dumps(record) + "\n"
        for record in [HEADER, {**good, "rating": 1}, {**good, "message": "x", "rating": bad}]
    )
    with pytest.raises(HistoryFormatError, match=r"^line 3: 'rating' must be 1 \(up\) or -1"):
        await assistant.import_history("zoe", data)
    assert not await assistant.store.user_exists("zoe")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


async def test_turns_stored_before_ratings_are_unrated_and_the_migration_goes_back(
    empty_database_url: str,
) -> None:
    store = Store.connect(empty_database_url)
    try:
        await store.upgrade("0003")
        async with store.engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO users (id, created_at) VALUES ('alice', :at)"), {"at": utcnow()}
            )
            await connection.execute(
                text(
                    "INSERT INTO turns (turn_id, user_id, session_id, message, reply, "
                    "confidence, backend, meta, created_at) VALUES "
                    "('old', 'alice', 's1', 'hi', 'ok', 0.5, 'x', '{}', :at)"
                ),
                {"at": utcnow()},
            )
        await store.upgrade()
        [old] = await store.all_turns("alice")
        assert (old.turn_id, old.rating, old.adapter) == ("old", None, None)
        assert (await store.rate_turn("alice", "old", 1)).rating == 1

        def downgrade(connection: Connection) -> set[str]:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "0003")
            return {column["name"] for column in inspect(connection).get_columns("turns")}

        async with store.engine.begin() as connection:
            columns = await connection.run_sync(downgrade)
        assert "rating" not in columns and "rated_at" not in columns
        assert {"turn_id", "message", "idempotency_key"} <= columns
        async with store.engine.connect() as connection:
            kept = (await connection.execute(text("SELECT turn_id FROM turns"))).scalars().all()
        assert kept == ["old"]
    finally:
        await store.close()
