"""Storage against real SQLite and PostgreSQL: migrations, turns, memories, state."""

from __future__ import annotations

import stat
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlmodel import SQLModel

from mongars_core.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    MemoryNotFoundError,
    MissingDependencyError,
)
from mongars_core.storage.memories import stage_memory
from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.store import Store
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.types import utcnow


@pytest.fixture
async def store(database_url: str) -> Store:
    opened = await Store.open(database_url, migrate=True)
    yield opened  # type: ignore[misc]
    await opened.close()


async def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    def differences(connection: object) -> list[object]:
        context = MigrationContext.configure(connection)  # type: ignore[arg-type]
        return list(compare_metadata(context, SQLModel.metadata))

    async with store.engine.connect() as connection:
        assert await connection.run_sync(differences) == []
    assert await store.current_revision() == "0005"


async def test_turns_are_kept_per_user_and_session(store: Store) -> None:
    for user in ("alice", "bob"):
        await store.ensure_user(user)
    for index in range(5):
        await store.add_turn(
            turn_id=f"t{index}",
            user_id="alice",
            session_id="s1" if index % 2 else "s2",
            message=f"m{index}",
            reply=f"r{index}",
            confidence=0.5,
            backend="x",
            meta={},
        )
    await store.add_turn(
        turn_id="b",
        user_id="bob",
        session_id="s1",
        message="bob's",
        reply="r",
        confidence=0.5,
        backend="x",
        meta={},
    )

    recent = await store.recent_turns("alice", "s1", limit=5)
    assert [turn.message for turn in recent] == ["m1", "m3"]
    assert [turn.message for turn in await store.recent_turns("alice", "s2", limit=2)] == [
        "m2",
        "m4",
    ]
    assert [turn.message for turn in await store.history("alice", limit=3)] == ["m4", "m3", "m2"]
    assert all(turn.created_at.tzinfo is not None for turn in recent)


async def test_expired_and_surplus_memories_are_pruned(store: Store) -> None:
    await store.ensure_user("alice")
    await store.ensure_user("bob")
    past = utcnow() - timedelta(days=1)
    expired = await store.add_memory(user_id="alice", text="old", expires_at=past)
    kept = [await store.add_memory(user_id="alice", text=f"m{i}") for i in range(4)]
    await store.add_memory(user_id="bob", text="bob's")

    assert [m.text for m in await store.list_memories("alice")] == ["m0", "m1", "m2", "m3"]
    doomed = await store.prune_memories("alice", capacity=2)
    assert sorted(doomed) == sorted([expired.id, kept[0].id, kept[1].id])
    assert [m.text for m in await store.list_memories("alice", include_expired=True)] == [
        "m2",
        "m3",
    ]
    assert [m.text for m in await store.list_memories("bob")] == ["bob's"]


async def test_a_refreshed_memory_keeps_its_id_and_counts_as_new(store: Store) -> None:
    await store.ensure_user("alice")
    await store.ensure_user("bob")
    first = await store.add_memory(user_id="alice", text="I prefer tea", session_id="a")
    second = await store.add_memory(user_id="alice", text="I live in Lyon")
    assert first.id is not None and second.id is not None
    later = utcnow() + timedelta(days=30)
    fields = {"session_id": "b", "turn_id": "t2", "embedding": b"\0" * 8, "embedder": "e"}

    async def refresh(user_id: str, text: str, expires_at: datetime | None) -> MemoryRecord:
        record = MemoryRecord(user_id=user_id, text=text, expires_at=expires_at, **fields)
        writes = UnitOfWork()
        stage_memory(writes, record, replacing=first.id)
        await store.commit(writes)
        return record

    # Not bob's memory: his wording is stored as a memory of his own.
    bobs = await refresh("bob", "x", None)
    assert bobs.id not in (None, first.id)
    assert [m.text for m in await store.list_memories("bob")] == ["x"]
    refreshed = await refresh("alice", "I prefer TEA", later)
    assert refreshed.id == first.id
    [stored, _] = await store.list_memories("alice")
    assert (stored.id, stored.text, stored.session_id, stored.turn_id) == (
        first.id,
        "I prefer TEA",
        "b",
        "t2",
    )
    assert stored.created_at > second.created_at and stored.expires_at == later
    # Past capacity the oldest go: the refreshed one is now the newest.
    assert await store.prune_memories("alice", capacity=1) == [second.id]
    assert [m.text for m in await store.list_memories("alice")] == ["I prefer TEA"]


async def test_deleting_memory_of_another_user_fails(store: Store) -> None:
    await store.ensure_user("alice")
    memory = await store.add_memory(user_id="alice", text="mine")
    assert memory.id is not None
    with pytest.raises(MemoryNotFoundError):
        await store.delete_memory("bob", memory.id)
    await store.delete_memory("alice", memory.id)
    assert await store.list_memories("alice") == []


async def test_plugin_state_round_trips(store: Store) -> None:
    assert await store.get_state("style", "alice") is None
    await store.put_state("style", "alice", {"language": "fr", "n": 1})
    await store.put_state("style", "alice", {"language": "fr", "n": 2})
    await store.put_state("other", "alice", {"x": True})
    assert await store.get_state("style", "alice") == {"language": "fr", "n": 2}
    assert await store.get_state("other", "alice") == {"x": True}


async def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(DatabaseUnavailableError, match="cannot reach the database at"):
        await Store.open("postgresql+asyncpg://nobody:secret@127.0.0.1:1/none")


async def test_the_password_never_appears_in_errors() -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        await Store.open("postgresql+asyncpg://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "invalid database URL"),
        ("mysql+aiomysql://x@127.0.0.1/db", "unsupported database 'mysql'"),
        ("redis://x:hunter2@127.0.0.1/0", "unsupported database 'redis'.*\\*\\*\\*"),
        ("postgresql://x:pw@127.0.0.1/db", "through postgresql\\+asyncpg://"),
        ("sqlite:///tmp/x.db", "through sqlite\\+aiosqlite://"),
    ],
)
async def test_a_malformed_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        await Store.open(url)
    assert ":pw@" not in str(caught.value)


async def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"mongars-assistant\[postgres\]"):
        await Store.open("postgresql+asyncpg://x@127.0.0.1/db")


@pytest.mark.postgres
async def test_postgres_must_be_upgraded_before_use(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match="run `mongars db upgrade`"):
        await Store.open(postgres_url)
    store = Store.connect(postgres_url)
    await store.upgrade()
    await store.close()
    reopened = await Store.open(postgres_url)
    assert await reopened.current_revision() == "0005"
    await reopened.close()


async def test_the_sqlite_database_is_private_to_its_owner(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    database = data_dir / "mongars.sqlite3"
    store = await Store.open(f"sqlite+aiosqlite:///{database}")
    try:
        await store.ensure_user("alice")  # a write: SQLite creates its -wal and -shm files
        files = [database, *data_dir.glob("mongars.sqlite3-*")]
        assert len(files) >= 2
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    finally:
        await store.close()


async def test_an_existing_world_readable_database_is_tightened(tmp_path: Path) -> None:
    database = tmp_path / "mongars.sqlite3"
    first = await Store.open(f"sqlite+aiosqlite:///{database}")
    await first.close()
    database.chmod(0o644)
    second = await Store.open(f"sqlite+aiosqlite:///{database}")
    await second.close()
    assert stat.S_IMODE(database.stat().st_mode) == 0o600


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema at all, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'old.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


async def test_upgrading_lists_the_conversations_held_before(empty_database_url: str) -> None:
    url = empty_database_url
    old = Store.connect(url)
    await old.upgrade("0002")
    async with old.engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO users (id, created_at) VALUES ('alice', :at)"), {"at": utcnow()}
        )
        for index, (session, message) in enumerate(
            [("s1", "My sister is called Amélie"), ("s1", "and my dog Rex"), ("s2", "Hi")]
        ):
            await connection.execute(
                text(
                    "INSERT INTO turns (turn_id, user_id, session_id, message, reply, "
                    "confidence, backend, meta, created_at) VALUES "
                    "(:turn, 'alice', :session, :message, 'ok', 0.5, 'x', '{}', :at)"
                ),
                {
                    "turn": f"t{index}",
                    "session": session,
                    "message": message,
                    "at": utcnow() + timedelta(seconds=index),
                },
            )
    await old.upgrade()
    await old.close()

    store = await Store.open(url)
    try:
        listed = await store.list_conversations("alice")
        assert {(c.session_id, c.title) for c in listed} == {
            ("s1", "My sister is called Amélie"),
            ("s2", "Hi"),
        }
    finally:
        await store.close()
