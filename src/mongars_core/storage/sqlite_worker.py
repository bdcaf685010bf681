"""Transactions and reads on a SQLite file in one worker-thread call each.

Through aiosqlite, every driver call of a transaction (a cursor, a statement,
a fetch, the commit) is a hop to aiosqlite's thread and back to the event
loop: a turn's few statements cost some thirty hops. :class:`SQLiteWorker`
runs a whole transaction (or a turn's read) in one call to its own thread,
on a plain engine over the same file. The store's write lock still orders
the writers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session

from mongars_core.storage.engine import sqlite_pragmas, storage_error

T = TypeVar("T")


class SQLiteWorker:
    """Runs transactions and reads on the SQLite file of an async engine, in one thread."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mongars-sqlite")

    @classmethod
    def beside(cls, engine: AsyncEngine, url: str) -> SQLiteWorker | None:
        """A worker on the file of ``engine``; ``None`` for PostgreSQL and for
        in-memory SQLite, which another engine would not share."""
        database = engine.url.database
        if engine.dialect.name != "sqlite" or database in (None, "", ":memory:"):
            return None
        plain = create_sync_engine(
            engine.url.set(drivername="sqlite"), connect_args={"check_same_thread": False}
        )
        event.listen(plain, "connect", sqlite_pragmas)
        return cls(plain, url)

    async def write(self, work: Callable[[Connection], None]) -> None:
        """``work(connection)`` in a transaction committed after it, in the worker's
        thread; driver errors come out as :class:`~mongars_core.errors.StorageError`.

        A caller cancelled meanwhile stops waiting, but the transaction, already
        handed to the thread, still ends (committed or rolled back).
        """
        await self._in_thread(self._transaction, work)

    async def read(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in the worker's thread, with an ORM session rolled back after."""
        return await self._in_thread(self._session, work)

    async def _in_thread(self, run: Callable[[Callable[[Any], T]], T], work: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, run, work)
        except (OSError, SQLAlchemyError) as exc:
            raise storage_error(exc, self.url) from exc

    def _transaction(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as connection:
            return work(connection)

    def _session(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            return work(session)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.engine.dispose()
