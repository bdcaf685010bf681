"""All of one turn's writes, committed in one transaction: :class:`UnitOfWork`.

The pipeline makes one per turn and stages the turn row first
(:meth:`~mongars_core.storage.store.Store.stage_turn`); the ``mongars_remember``
and ``mongars_turn_completed`` implementations stage theirs (a memory, a style
profile); :meth:`~mongars_core.storage.store.Store.commit` then runs them all
in one transaction before the reply is returned. A write that fails rolls the
whole turn back, so an acknowledged turn is stored with everything it
changed, and a turn that is not stored changed nothing.

Caches follow the database, not the other way round: a plugin updates its
in-process state in an :meth:`UnitOfWork.after_commit` callback, and undoes any
bookkeeping of its own in :meth:`UnitOfWork.after_rollback`::

    @hookimpl
    def mongars_turn_completed(turn, reply, writes):
        writes.put_state("myplugin", turn.user_id, {"turns": count + 1})
        writes.after_commit(lambda: counts.update({turn.user_id: count + 1}))
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Executable
from sqlmodel import SQLModel

from mongars_core.errors import StorageError
from mongars_core.storage.statements import reserve_state, state_for_update, upsert_state
from mongars_core.types import utcnow

logger = logging.getLogger(__name__)

WriteStep = Callable[[Connection], None]
"""A staged write that needs the connection itself: it may read, and write what it read.

Steps are plain functions of a SQLAlchemy Core ``Connection`` in the
transaction: on SQLite all of a turn's run in one call to a worker thread,
rather than a thread hop per statement, and without the ORM session's cost."""

Callback = Callable[[], Awaitable[None] | None]
"""What runs once the writes are committed (or rolled back): plain or async."""

StateChange = Callable[[dict[str, Any] | None], dict[str, Any]]
"""The new state of a plugin from the stored one (``None`` when there is none)."""

Outcome = Literal["pending", "committed", "rolled back"]


@dataclass
class StagedTurn:
    """The turn row staged by ``Store.stage_turn``; ``id`` is set once the writes run."""

    user_id: str
    session_id: str
    message: str
    reply: str
    created_at: datetime
    idempotency_key: str | None
    id: int | None = None
    turn_id: str | None = None
    adapter: str | None = None


class UnitOfWork:
    """The staged writes of one turn, run in order in one transaction by ``Store.commit``.

    Nothing touches the database while writes are staged; records added here
    get their generated ids when the writes run, so an :meth:`after_commit`
    callback can read ``record.id``.
    """

    def __init__(self) -> None:
        self._steps: list[WriteStep] = []
        self._changes: list[tuple[str, str, StateChange]] = []
        self._after_commit: list[Callback] = []
        self._after_rollback: list[Callback] = []
        self.outcome: Outcome = "pending"
        self.turn: StagedTurn | None = None
        """The turn row, when ``Store.stage_turn`` staged one."""
        self.failures: list[tuple[str, Exception]] = []
        """(name, error) of each callback that failed (committed writes stay)."""

    # -- staging -----------------------------------------------------------------

    def add(self, record: SQLModel) -> None:
        """Insert ``record`` (its generated id is set once the writes run)."""
        self.run(lambda connection: insert_record(connection, record))

    def execute(self, statement: Executable, parameters: dict[str, Any] | None = None) -> None:
        """Run an INSERT, UPDATE or DELETE statement (with ``bindparam`` values)."""

        def run_statement(connection: Connection) -> None:
            connection.execute(statement, parameters)

        self.run(run_statement)

    def put_state(self, namespace: str, user_id: str, value: dict[str, Any]) -> None:
        """Store a plugin's JSON state of a user, as ``Store.put_state`` does."""
        blob = json.dumps(value)

        def upsert(connection: Connection) -> None:
            _put_state(connection, namespace, user_id, blob)

        self.run(upsert)

    def change_state(self, namespace: str, user_id: str, change: StateChange) -> None:
        """Replace a plugin's state of a user by ``change(stored)``, read in the transaction.

        Unlike :meth:`put_state`, turns committing at once each change what
        the one before wrote, so none is lost: the row stays locked from the
        read to the commit. These run after the other writes, in (namespace,
        user) order, so that turns take their locks in one order. ``change``
        runs inside the transaction: keep it quick, and let it not fail.
        """
        self._check_pending()
        self._changes.append((namespace, user_id, change))

    def run(self, step: WriteStep) -> None:
        """Run ``step(connection)`` with the others: for a write that reads first."""
        self._check_pending()
        self._steps.append(step)

    def after_commit(self, callback: Callback) -> None:
        """Call ``callback()`` once the writes are committed (update caches there).

        Callbacks run in the order given; one that fails is logged and noted
        in :attr:`failures`; the others still run and the writes stay.
        """
        self._check_pending()
        self._after_commit.append(callback)

    def after_rollback(self, callback: Callback) -> None:
        """Call ``callback()`` when the writes are rolled back or never committed."""
        self._check_pending()
        self._after_rollback.append(callback)

    # -- what Store.commit and the pipeline call -----------------------------------------

    def apply(self, connection: Connection) -> None:
        """Run every staged write on ``connection``, in order (``Store.commit`` calls it).

        A step that fails other than in the driver (a plugin's bug) fails the
        commit as a :class:`~mongars_core.errors.StorageError` too.
        """
        try:
            for step in self._steps:
                step(connection)
            for namespace, user_id, change in sorted(self._changes, key=lambda item: item[:2]):
                _change_state(connection, namespace, user_id, change)
        except (OSError, SQLAlchemyError, StorageError):
            raise
        except Exception as exc:
            raise StorageError(f"a staged write failed: {exc!r}") from exc

    async def committed(self, deadline: float | None = None) -> None:
        """Mark the writes committed and run the :meth:`after_commit` callbacks,
        each within ``deadline`` seconds (a callback past it counts as failed)."""
        self.outcome = "committed"
        await self._run(self._after_commit, deadline)

    async def discard(self, deadline: float | None = None) -> None:
        """Give the writes up unless committed: the :meth:`after_rollback` callbacks run.

        ``Store.commit`` calls it when the transaction fails; the pipeline calls
        it when a turn ends before its writes are committed. A second call does
        nothing.
        """
        if self.outcome != "pending":
            return
        self.outcome = "rolled back"
        await self._run(self._after_rollback, deadline)

    def _check_pending(self) -> None:
        if self.outcome != "pending":
            raise RuntimeError(f"these writes are already {self.outcome}: stage writes before")

    async def _run(self, callbacks: list[Callback], deadline: float | None) -> None:
        for callback in callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    async with asyncio.timeout(deadline):
                        await result
            except Exception as exc:
                name = getattr(callback, "__qualname__", None) or repr(callback)
                logger.exception("%s failed after the writes were %s", name, self.outcome)
                self.failures.append((name, exc))


def insert_record(connection: Connection, record: SQLModel) -> None:
    """Insert ``record``'s row and set the primary key it was given."""
    table = record.__table__  # type: ignore[attr-defined]
    values = {
        column.key: getattr(record, column.key)
        for column in table.columns
        if not (column.primary_key and getattr(record, column.key) is None)
    }
    keys = list(table.primary_key.columns)
    generated = connection.execute(table.insert().values(values).returning(*keys)).one()
    for column, value in zip(keys, generated, strict=True):
        setattr(record, column.key, value)


def _change_state(
    connection: Connection, namespace: str, user_id: str, change: StateChange
) -> None:
    dialect = connection.dialect.name
    key = {"namespace": namespace, "user_id": user_id}
    # SQLite has one writer at a time: the transaction's read is the latest.
    stored = connection.execute(state_for_update(), key).first()
    if stored is None and dialect == "postgresql":
        # No row to lock yet: make one; a concurrent first change waits here
        # for the other's commit, and then reads what it wrote.
        connection.execute(reserve_state(dialect), {**key, "now": utcnow()})
        stored = connection.execute(state_for_update(), key).first()
    value = json.loads(stored[0]) if stored is not None else None
    _put_state(connection, namespace, user_id, json.dumps(change(value)))


def _put_state(connection: Connection, namespace: str, user_id: str, blob: str) -> None:
    connection.execute(
        upsert_state(connection.dialect.name),
        {"namespace": namespace, "user_id": user_id, "value": blob, "now": utcnow()},
    )
