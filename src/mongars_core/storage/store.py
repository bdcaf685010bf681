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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import delete, event, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlmodel import col

from mongars_core.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    DuplicateRecordError,
    MemoryNotFoundError,
    MissingDependencyError,
    StorageError,
)
from mongars_core.storage.models import MemoryRecord, PluginStateRecord, TurnRecord, UserRecord
from mongars_core.types import HistoryTurn, utcnow

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _history(record: TurnRecord) -> HistoryTurn:
    assert record.id is not None
    return HistoryTurn(
        id=record.id,
        user_id=record.user_id,
        session_id=record.session_id,
        message=record.message,
        reply=record.reply,
        created_at=_aware(record.created_at),
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
        return cls(_create_engine(url), url)

    async def close(self) -> None:
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
        except IntegrityError as exc:
            raise DuplicateRecordError(f"duplicate record: {_reason(exc)}") from exc
        except (OSError, DBAPIError) as exc:
            if isinstance(exc, OSError) or exc.connection_invalidated:
                raise DatabaseUnavailableError(
                    f"cannot reach the database at {self.safe_url}: {_reason(exc)}"
                ) from exc
            raise StorageError(f"database error: {_reason(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {_reason(exc)}") from exc

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
            raise DatabaseUnavailableError(
                f"cannot reach the database at {self.safe_url}: {_reason(exc)}"
            ) from exc
        except SQLAlchemyError as exc:
            raise StorageError(f"database error: {_reason(exc)}") from exc

    # -- users -----------------------------------------------------------------------

    async def ensure_user(self, user_id: str) -> None:
        if user_id in self._known_users:
            return
        statement = self._insert(UserRecord).values(id=user_id, created_at=utcnow())
        async with self.session(write=True) as session:
            await session.execute(statement.on_conflict_do_nothing(index_elements=["id"]))
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

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT, which knows ``ON CONFLICT`` on SQLite and PostgreSQL."""
        if self.engine.dialect.name == "postgresql":
            return postgresql_insert(table)
        return sqlite_insert(table)

    # -- turns -----------------------------------------------------------------------

    async def add_turn(
        self,
        *,
        turn_id: str,
        user_id: str,
        session_id: str,
        message: str,
        reply: str,
        confidence: float,
        backend: str,
        meta: dict[str, Any],
    ) -> HistoryTurn:
        record = TurnRecord(
            turn_id=turn_id,
            user_id=user_id,
            session_id=session_id,
            message=message,
            reply=reply,
            confidence=confidence,
            backend=backend,
            meta=json.dumps(meta, default=str),
        )
        async with self.session(write=True) as session:
            session.add(record)
            await session.commit()
        return _history(record)

    async def recent_turns(self, user_id: str, session_id: str, limit: int) -> list[HistoryTurn]:
        """The last ``limit`` turns of a session, oldest first."""
        if limit <= 0:
            return []
        query = (
            select(TurnRecord)
            .where(col(TurnRecord.user_id) == user_id, col(TurnRecord.session_id) == session_id)
            .order_by(col(TurnRecord.id).desc())
            .limit(limit)
        )
        async with self.session() as session:
            records = (await session.execute(query)).scalars().all()
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

    # -- memories -------------------------------------------------------------------

    async def add_memory(
        self,
        *,
        user_id: str,
        text: str,
        session_id: str = "",
        turn_id: str | None = None,
        embedding: bytes | None = None,
        embedder: str | None = None,
        expires_at: datetime | None = None,
    ) -> MemoryRecord:
        record = MemoryRecord(
            user_id=user_id,
            session_id=session_id,
            turn_id=turn_id,
            text=text,
            embedding=embedding,
            embedder=embedder,
            expires_at=expires_at,
        )
        async with self.session(write=True) as session:
            session.add(record)
            await session.commit()
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
        now = utcnow()
        async with self.session(write=True) as session:
            expired = select(col(MemoryRecord.id)).where(
                col(MemoryRecord.user_id) == user_id, col(MemoryRecord.expires_at) <= now
            )
            doomed = [row for row in (await session.execute(expired)).scalars().all() if row]
            count_query = select(func.count()).where(col(MemoryRecord.user_id) == user_id)
            total = int((await session.execute(count_query)).scalar_one()) - len(doomed)
            if total > capacity:
                oldest = (
                    select(col(MemoryRecord.id))
                    .where(col(MemoryRecord.user_id) == user_id)
                    .where(col(MemoryRecord.id).not_in(doomed))
                    .order_by(col(MemoryRecord.id))
                    .limit(total - capacity)
                )
                doomed += [row for row in (await session.execute(oldest)).scalars().all() if row]
            if doomed:
                await session.execute(delete(MemoryRecord).where(col(MemoryRecord.id).in_(doomed)))
                await session.commit()
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
        now = utcnow()
        blob = json.dumps(value)
        statement = (
            self._insert(PluginStateRecord)
            .values(namespace=namespace, user_id=user_id, value=blob, updated_at=now)
            .on_conflict_do_update(
                index_elements=["namespace", "user_id"], set_={"value": blob, "updated_at": now}
            )
        )
        async with self.session(write=True) as session:
            await session.execute(statement)
            await session.commit()


def _create_engine(url: str) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid database URL {url!r}: {exc}") from exc
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    wanted = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}.get(backend)
    if wanted is None:
        raise ConfigurationError(
            f"unsupported database {backend!r} in {url!r}: use sqlite+aiosqlite:// "
            "or postgresql+asyncpg://"
        )
    if driver != wanted:
        raise ConfigurationError(
            f"database URL {parsed.render_as_string(hide_password=True)!r} uses driver "
            f"{driver!r}; monGARS talks to {backend} through {backend}+{wanted}://"
        )
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot use {folder} as the data directory: {exc.strerror or exc}"
            ) from exc
    try:
        engine = create_async_engine(parsed, pool_pre_ping=backend != "sqlite")
    except ImportError as exc:
        raise MissingDependencyError(
            wanted, "postgres" if backend == "postgresql" else "all"
        ) from exc
    except (ArgumentError, SQLAlchemyError) as exc:
        raise ConfigurationError(f"unusable database URL {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL sync is durable across
    # application crashes, which is what a chat history needs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
