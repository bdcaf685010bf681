"""The async store: users, conversation turns, memories and plugin state.

SQLite through aiosqlite by default, PostgreSQL through asyncpg when the
database URL says so. Driver errors are translated here, at the boundary, into
:class:`~mongars_core.errors.StorageError` and its subclasses.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import col

from mongars_core.errors import (
    ConfigurationError,
    ConversationNotFoundError,
    DuplicateRecordError,
    DuplicateTurnError,
    MemoryNotFoundError,
    StorageError,
    TurnNotFoundError,
)
from mongars_core.storage.engine import (
    create_engine,
    driver_reason,
    storage_error,
    unusable_database,
)
from mongars_core.storage.history import HistoryCache
from mongars_core.storage.memories import stage_memory, stage_prune
from mongars_core.storage.models import (
    ConversationRecord,
    MemoryRecord,
    PluginStateRecord,
    TurnRecord,
    UserRecord,
)
from mongars_core.storage.sqlite_worker import SQLiteWorker
from mongars_core.storage.statements import insert_turn, insert_user, touch_conversation
from mongars_core.storage.turns import aware as _aware
from mongars_core.storage.turns import check_rating
from mongars_core.storage.turns import history_turn as _history
from mongars_core.storage.unit_of_work import StagedTurn, StateChange, UnitOfWork
from mongars_core.types import Conversation, HistoryTurn, utcnow

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


TITLE_CHARS = 60


def conversation_title(message: str) -> str:
    """A conversation's title from its first message: one line, at most 60 characters."""
    text = " ".join(message.split())
    if len(text) <= TITLE_CHARS:
        return text
    cut = text[: TITLE_CHARS - 1]
    if " " in cut[TITLE_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


def _conversation(record: ConversationRecord, turns: int) -> Conversation:
    return Conversation(
        session_id=record.session_id,
        title=record.title,
        turns=turns,
        created_at=_aware(record.created_at),
        updated_at=_aware(record.updated_at),
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class Store:
    """All database access of the core. Create with :meth:`open`, close with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        self.engine = engine
        self.url = url
        # Users are never deleted yet, so one that exists stays known.
        self._known_users: set[str] = set()
        # SQLite allows one writer at a time. Writers that wait inside SQLite's
        # busy handler sleep with growing back-off while holding pooled
        # connections (seconds at the tail under load); queueing them here
        # instead costs nothing.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._worker = SQLiteWorker.beside(engine, url)
        # Every turn this store commits passes through it, so a session's last
        # turns are known without a query (see HistoryCache).
        self._recent = HistoryCache()

    @classmethod
    async def open(cls, url: str, *, migrate: bool | None = None) -> Store:
        """Connect to ``url`` and check the schema.

        ``migrate`` applies pending migrations; by default it does so for
        SQLite only, while PostgreSQL must be upgraded with ``mongars db
        upgrade`` (several servers may share it).
        """
        store = cls.connect(url)
        engine = store.engine
        try:
            if migrate is None:
                migrate = engine.dialect.name == "sqlite"
            if migrate:
                await store.upgrade()
            else:
                await store.check_schema()
        except BaseException:
            await engine.dispose()
            raise
        return store

    @classmethod
    def connect(cls, url: str) -> Store:
        """A store for ``url`` without any schema check (``mongars db upgrade`` uses it)."""
        return cls(create_engine(url), url)

    async def close(self) -> None:
        if self._worker is not None:
            await asyncio.to_thread(self._worker.close)
        await self.engine.dispose()

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    @asynccontextmanager
    async def session(self, *, write: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose driver errors come out as :class:`StorageError`.

        ``write=True`` for a session that writes: on SQLite, such sessions run
        one at a time within the process.
        """
        if write and self._write_lock is not None:
            async with self._write_lock, self.session() as session:
                yield session
            return
        try:
            async with AsyncSession(self.engine, expire_on_commit=False) as session:
                yield session
        except (OSError, SQLAlchemyError) as exc:
            raise storage_error(exc, self.url) from exc

    async def commit(self, writes: UnitOfWork, *, deadline: float | None = None) -> None:
        """Run ``writes`` in one transaction, then their after-commit callbacks
        (each within ``deadline`` seconds).

        A write that fails rolls all of them back and raises
        :class:`StorageError`; when the staged turn's idempotency key was taken
        by a concurrent turn, :class:`DuplicateTurnError`. The after-rollback
        callbacks run in both cases (and when the caller is cancelled meanwhile).
        """
        try:
            if self._worker is not None and self._write_lock is not None:
                async with self._write_lock:
                    await self._worker.write(writes.apply)
                    self._turn_committed(writes)
            else:
                async with self.session(write=True) as session:
                    await session.run_sync(lambda sync: writes.apply(sync.connection()))
                    await session.commit()
                    self._turn_committed(writes)
        except BaseException as exc:
            await writes.discard(deadline)
            turn = writes.turn
            if turn is not None:
                # Cancelled, the transaction may still have committed: read it again.
                self._recent.drop_session(turn.user_id, turn.session_id)
            if (
                isinstance(exc, DuplicateRecordError)
                and turn is not None
                and turn.idempotency_key is not None
                and await self.turn_for_key(turn.user_id, turn.idempotency_key) is not None
            ):
                raise DuplicateTurnError(
                    f"user {turn.user_id!r} already has a turn with idempotency key "
                    f"{turn.idempotency_key!r}"
                ) from exc
            raise
        await writes.committed(deadline)

    def _turn_committed(self, writes: UnitOfWork) -> None:
        # Before the write lock goes: cached sessions grow in commit order.
        if writes.turn is not None:
            self._recent.append(_history(writes.turn))

    def forget_cached(self, user_id: str) -> None:
        """Drop what the store keeps in process about ``user_id`` (another process changed it)."""
        self._recent.drop_user(user_id)
        self._known_users.discard(user_id)

    # -- schema ------------------------------------------------------------------

    async def upgrade(self, revision: str = "head") -> None:
        """Apply migrations up to ``revision``."""

        def run(connection: Connection) -> None:
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

        try:
            await self._run_sync(run)
        except CommandError as exc:
            raise ConfigurationError(
                f"cannot migrate the database at {self.safe_url} to {revision!r}: {exc}"
                " (is it from a newer monGARS?)"
            ) from exc

    async def current_revision(self) -> str | None:
        def read(connection: Connection) -> str | None:
            return MigrationContext.configure(connection).get_current_revision()

        result: str | None = await self._run_sync(read)
        return result

    async def check_schema(self) -> None:
        scripts = ScriptDirectory.from_config(_alembic_config())
        head = scripts.get_current_head()
        current = await self.current_revision()
        if current is not None and current != head:
            try:
                scripts.get_revision(current)
            except CommandError:
                raise ConfigurationError(
                    f"the database at {self.safe_url} is at schema revision {current}, "
                    "which this monGARS does not know: it is from a newer version"
                ) from None
        if current != head:
            raise ConfigurationError(
                f"the database at {self.safe_url} is at schema revision {current or 'none'}, "
                f"expected {head}: run `mongars db upgrade`"
            )

    async def _run_sync(self, function: Any) -> Any:
        try:
            async with self.engine.begin() as connection:
                return await connection.run_sync(function)
        except (OSError, DBAPIError) as exc:
            raise unusable_database(exc, self.url) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {driver_reason(exc)}") from exc

    # -- users -----------------------------------------------------------------------

    async def ensure_user(self, user_id: str) -> None:
        if user_id in self._known_users:
            return
        async with self.session(write=True) as session:
            await session.execute(
                insert_user(self.engine.dialect.name), {"id": user_id, "now": utcnow()}
            )
            await session.commit()
        self._known_users.add(user_id)

    async def user_exists(self, user_id: str) -> bool:
        if user_id in self._known_users:
            return True
        async with self.session() as session:
            found = await session.get(UserRecord, user_id) is not None
        if found:
            self._known_users.add(user_id)
        return found

    # -- turns -----------------------------------------------------------------------

    async def add_turn(self, **fields: Any) -> HistoryTurn:
        """Store a turn on its own (see :meth:`stage_turn` for ``fields``)."""
        writes = UnitOfWork()
        turn = self.stage_turn(writes, **fields)
        await self.commit(writes)
        return _history(turn)

    def stage_turn(
        self,
        writes: UnitOfWork,
        *,
        turn_id: str,
        user_id: str,
        session_id: str,
        message: str,
        reply: str,
        confidence: float,
        backend: str,
        meta: dict[str, Any],
        idempotency_key: str | None = None,
    ) -> StagedTurn:
        """Stage a turn, its user and its conversation in ``writes``, before any other write.

        With ``idempotency_key``, a second turn under the same key for the same
        user makes :meth:`commit` raise :class:`DuplicateTurnError` and store
        nothing of ``writes``.
        """
        now = utcnow()
        turn = StagedTurn(user_id, session_id, message, reply, now, idempotency_key)
        turn.turn_id = turn_id
        adapter = meta.get("adapter")
        turn.adapter = adapter if isinstance(adapter, str) else None
        row = {
            "turn_id": turn_id,
            "user_id": user_id,
            "session_id": session_id,
            "message": message,
            "reply": reply,
            "confidence": confidence,
            "backend": backend,
            "meta": json.dumps(meta, default=str),
            "idempotency_key": idempotency_key,
            "created_at": now,
        }
        dialect = self.engine.dialect.name
        if user_id not in self._known_users:
            writes.execute(insert_user(dialect), {"id": user_id, "now": now})
            writes.after_commit(lambda: self._known_users.add(user_id))
        title = conversation_title(message)
        writes.execute(
            touch_conversation(dialect),
            {"user_id": user_id, "session_id": session_id, "title": title, "now": now},
        )

        def insert(connection: Connection) -> None:
            turn.id = connection.execute(insert_turn(), row).scalar_one()

        writes.run(insert)
        writes.turn = turn
        return turn

    async def turn_for_key(self, user_id: str, idempotency_key: str) -> TurnRecord | None:
        """The turn ``user_id`` stored under ``idempotency_key``, if any."""
        query = select(TurnRecord).where(
            col(TurnRecord.user_id) == user_id,
            col(TurnRecord.idempotency_key) == idempotency_key,
        )
        async with self.session() as session:
            record = (await session.execute(query)).scalars().first()
        if record is not None:
            record.created_at = _aware(record.created_at)
        return record

    async def recent_turns(self, user_id: str, session_id: str, limit: int) -> list[HistoryTurn]:
        """The last ``limit`` turns of a session, oldest first."""
        if limit <= 0:
            return []
        cached = self._recent.get(user_id, session_id, limit)
        if cached is not None:
            return cached
        token = self._recent.start_fill(user_id, session_id, limit)
        try:
            turns = await self._read_recent_turns(user_id, session_id, limit)
        except BaseException:
            if token is not None:
                self._recent.abandon_fill(user_id, session_id, token)
            raise
        if token is not None:
            self._recent.finish_fill(user_id, session_id, limit, turns, token)
        return turns

    async def _read_recent_turns(
        self, user_id: str, session_id: str, limit: int
    ) -> list[HistoryTurn]:
        query = (
            select(TurnRecord)
            .where(col(TurnRecord.user_id) == user_id, col(TurnRecord.session_id) == session_id)
            .order_by(col(TurnRecord.id).desc())
            .limit(limit)
        )
        if self._worker is not None:  # a turn waits for it: one thread hop, not a dozen

            def read(session: Session) -> list[TurnRecord]:
                return list(session.execute(query).scalars().all())

            records = await self._worker.read(read)
        else:
            async with self.session() as session:
                records = list((await session.execute(query)).scalars().all())
        return [_history(record) for record in reversed(records)]

    async def history(self, user_id: str, limit: int = 50) -> list[HistoryTurn]:
        """A user's turns across sessions, newest first."""
        query = (
            select(TurnRecord)
            .where(col(TurnRecord.user_id) == user_id)
            .order_by(col(TurnRecord.id).desc())
            .limit(limit)
        )
        async with self.session() as session:
            records = (await session.execute(query)).scalars().all()
        return [_history(record) for record in records]

    async def all_turns(self, user_id: str) -> list[HistoryTurn]:
        """Every turn of a user, oldest first, with its rating and adapter: what a
        training set is built from."""
        query = select(TurnRecord).where(col(TurnRecord.user_id) == user_id)
        query = query.order_by(col(TurnRecord.created_at), col(TurnRecord.id))
        async with self.session() as session:
            records = (await session.execute(query)).scalars().all()
        return [_history(record) for record in records]

    async def rate_turn(self, user_id: str, turn_id: str, rating: int | None) -> HistoryTurn:
        """Rate the reply of one of ``user_id``'s turns: 1 up, -1 down, ``None`` clears.

        Another user's turn is a :class:`TurnNotFoundError` like an unknown one:
        its existence is not revealed.
        """
        check_rating(rating)
        query = (
            update(TurnRecord)
            .where(col(TurnRecord.user_id) == user_id, col(TurnRecord.turn_id) == turn_id)
            .values(rating=rating, rated_at=None if rating is None else utcnow())
            .returning(TurnRecord)
        )
        async with self.session(write=True) as session:
            record = (await session.execute(query)).scalars().first()
            await session.commit()
        if record is None:
            raise TurnNotFoundError(f"no turn {turn_id[:64]!r} for this user")
        # The cached copy of the session holds the old rating.
        self._recent.drop_session(user_id, record.session_id)
        return _history(record)

    # -- memories -------------------------------------------------------------------

    async def add_memory(self, **fields: Any) -> MemoryRecord:
        """Store one memory on its own (``fields`` are :class:`MemoryRecord`'s)."""
        record = MemoryRecord(**fields)
        writes = UnitOfWork()
        stage_memory(writes, record)
        await self.commit(writes)
        return record

    async def add_memories(self, records: Sequence[MemoryRecord]) -> None:
        """Insert many memories in one transaction (imports, benchmarks)."""
        async with self.session(write=True) as session:
            session.add_all(records)
            await session.commit()

    async def list_memories(
        self, user_id: str, *, include_expired: bool = False, limit: int | None = None
    ) -> list[MemoryRecord]:
        """A user's memories, oldest first."""
        query = select(MemoryRecord).where(col(MemoryRecord.user_id) == user_id)
        if not include_expired:
            now = utcnow()
            query = query.where(
                (col(MemoryRecord.expires_at).is_(None)) | (col(MemoryRecord.expires_at) > now)
            )
        query = query.order_by(col(MemoryRecord.id))
        if limit is not None:
            query = query.limit(limit)
        async with self.session() as session:
            records = list((await session.execute(query)).scalars().all())
        for record in records:
            record.created_at = _aware(record.created_at)
            if record.expires_at is not None:
                record.expires_at = _aware(record.expires_at)
        return records

    async def delete_memory(self, user_id: str, memory_id: int) -> None:
        async with self.session(write=True) as session:
            result = await session.execute(
                delete(MemoryRecord).where(
                    col(MemoryRecord.id) == memory_id, col(MemoryRecord.user_id) == user_id
                )
            )
            await session.commit()
        if getattr(result, "rowcount", 0) == 0:
            raise MemoryNotFoundError(f"user {user_id!r} has no memory {memory_id}")

    async def delete_memories(self, user_id: str) -> int:
        async with self.session(write=True) as session:
            result = await session.execute(
                delete(MemoryRecord).where(col(MemoryRecord.user_id) == user_id)
            )
            await session.commit()
        return int(getattr(result, "rowcount", 0))

    async def prune_memories(self, user_id: str, capacity: int) -> list[int]:
        """Delete a user's expired memories and the oldest beyond ``capacity``.

        Returns the ids deleted, so caches can follow.
        """
        writes = UnitOfWork()
        doomed = stage_prune(writes, user_id, capacity)
        await self.commit(writes)
        return doomed

    # -- plugin state --------------------------------------------------------------------

    async def get_state(self, namespace: str, user_id: str) -> dict[str, Any] | None:
        async with self.session() as session:
            record = await session.get(PluginStateRecord, (namespace, user_id))
        if record is None:
            return None
        value: dict[str, Any] = json.loads(record.value)
        return value

    async def put_state(self, namespace: str, user_id: str, value: dict[str, Any]) -> None:
        writes = UnitOfWork()
        writes.put_state(namespace, user_id, value)
        await self.commit(writes)

    async def list_state(self, namespace: str) -> dict[str, dict[str, Any]]:
        """Every user's value under ``namespace``: user id -> value."""
        query = select(PluginStateRecord).where(col(PluginStateRecord.namespace) == namespace)
        async with self.session() as session:
            records = (await session.execute(query)).scalars().all()
        return {record.user_id: json.loads(record.value) for record in records}

    async def change_state(self, namespace: str, user_id: str, change: StateChange) -> None:
        """Apply ``change`` to one value in a transaction of its own (see
        :meth:`UnitOfWork.change_state`): concurrent changes never overwrite each other."""
        writes = UnitOfWork()
        writes.change_state(namespace, user_id, change)
        await self.commit(writes)

    # -- conversations ---------------------------------------------------------------

    async def create_conversation(
        self, user_id: str, session_id: str, title: str = ""
    ) -> Conversation:
        """A new, empty conversation (``DuplicateRecordError`` when the id is taken)."""
        await self.ensure_user(user_id)
        record = ConversationRecord(user_id=user_id, session_id=session_id, title=title)
        async with self.session(write=True) as session:
            session.add(record)
            await session.commit()
        return _conversation(record, 0)

    async def list_conversations(self, user_id: str, limit: int = 100) -> list[Conversation]:
        """A user's conversations with their turn counts, most recently used first."""
        turns = (
            select(func.count(col(TurnRecord.id)))
            .where(
                col(TurnRecord.user_id) == col(ConversationRecord.user_id),
                col(TurnRecord.session_id) == col(ConversationRecord.session_id),
            )
            .scalar_subquery()
        )
        query = (
            select(ConversationRecord, turns)
            .where(col(ConversationRecord.user_id) == user_id)
            .order_by(col(ConversationRecord.updated_at).desc(), col(ConversationRecord.session_id))
            .limit(limit)
        )
        async with self.session() as session:
            rows = (await session.execute(query)).all()
        return [_conversation(record, int(count)) for record, count in rows]

    async def get_conversation(self, user_id: str, session_id: str) -> Conversation:
        """One of a user's conversations (``ConversationNotFoundError`` when it isn't theirs)."""
        count = select(func.count(col(TurnRecord.id))).where(
            col(TurnRecord.user_id) == user_id, col(TurnRecord.session_id) == session_id
        )
        async with self.session() as session:
            record = await session.get(ConversationRecord, (user_id, session_id))
            if record is None:
                raise ConversationNotFoundError(f"you have no conversation {session_id!r}")
            turns = int((await session.execute(count)).scalar_one())
        return _conversation(record, turns)

    async def rename_conversation(self, user_id: str, session_id: str, title: str) -> Conversation:
        async with self.session(write=True) as session:
            result = await session.execute(
                update(ConversationRecord)
                .where(
                    col(ConversationRecord.user_id) == user_id,
                    col(ConversationRecord.session_id) == session_id,
                )
                .values(title=title)
            )
            await session.commit()
        if getattr(result, "rowcount", 0) == 0:
            raise ConversationNotFoundError(f"you have no conversation {session_id!r}")
        return await self.get_conversation(user_id, session_id)

    async def delete_conversation(self, user_id: str, session_id: str) -> int:
        """Delete a conversation and its turns; returns how many turns went.

        Memories learnt in it stay: they are the user's, listed and deleted apart.
        """
        async with self.session(write=True) as session:
            turns = await session.execute(
                delete(TurnRecord).where(
                    col(TurnRecord.user_id) == user_id, col(TurnRecord.session_id) == session_id
                )
            )
            rows = await session.execute(
                delete(ConversationRecord).where(
                    col(ConversationRecord.user_id) == user_id,
                    col(ConversationRecord.session_id) == session_id,
                )
            )
            deleted = int(getattr(turns, "rowcount", 0))
            if deleted == 0 and getattr(rows, "rowcount", 0) == 0:
                await session.rollback()
                raise ConversationNotFoundError(f"you have no conversation {session_id!r}")
            await session.commit()
            self._recent.drop_session(user_id, session_id)
        return deleted
