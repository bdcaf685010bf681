"""Forgetting a user ("forget me"): :func:`forget_user`, ``Assistant.forget_user``.

Everything stored of the user goes, in an order where a failure at any step is
raised (nobody is told their data is gone while some remains) and calling
again finishes the job:

1. one transaction deletes the core's rows of the user: turns (their ratings
   with them), conversations, memories (embeddings included) and every
   plugin's state (the style profile, learning consent and run records...);
2. the store and every plugin drop what they cache of the user
   (``mongars_forget`` of all their memories, then ``mongars_invalidate``);
3. every plugin deletes what it stores elsewhere (``mongars_erase_user``: the
   knowledge plugin's documents and their index files);
4. the LoRA adapters trained on the user's data, their registry entries and
   converted copies, and the user's adapter assignment are erased;
5. every table of the database is checked: a row that still names the user in
   any column (:data:`USER_COLUMNS`; a turn stored meanwhile by a reply that was
   being written, a shared document still saying they added it) raises
   :class:`~mongars_core.errors.ErasureIncompleteError`.

On SQLite, deleted rows are overwritten (``PRAGMA secure_delete``, set on every
connection) and the write-ahead log is emptied at the end, so the user's words
are not left in the database file's free pages.

The user's row in ``users`` stays (an id and a creation time, nothing they
said): the user goes on from zero, and forgetting them again answers zeros
rather than :class:`~mongars_core.errors.UnknownUserError`. A server account is
a login, not data of the user: it stays too (``DELETE /api/v1/user/{username}``
deletes it with its data).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import Column, Connection, Table, delete, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import SQLModel, col

from mongars_core.errors import ErasureIncompleteError, UnknownUserError
from mongars_core.storage.models import (
    ConversationRecord,
    MemoryRecord,
    PluginStateRecord,
    TurnRecord,
)
from mongars_core.validation import check_id

if TYPE_CHECKING:
    from mongars_core.services import Services

logger = logging.getLogger(__name__)

OWNER_COLUMNS = ("user_id", "owner_id")
"""Column names that say whose a row is: such rows of the user are deleted."""
USER_COLUMNS = (*OWNER_COLUMNS, "account_user_id", "added_by")
"""Every column name that names a user: none may name a forgotten one (a shared
document they added stays, no longer naming them)."""
LOGIN_TABLES = frozenset({"users", "accounts", "api_keys"})
"""Tables that stay: the user's id, and the server's logins and their keys."""


class ErasureSummary(BaseModel):
    """What forgetting a user deleted, by kind: ``turns``, ``conversations``,
    ``memories``, ``plugin_state`` (with the ``namespaces`` it held), ``adapters``,
    and the rows of any other table a plugin erased (``documents``...). A retry
    after a failure counts only what was left."""

    user_id: str
    deleted: dict[str, int] = Field(default_factory=dict)
    namespaces: list[str] = Field(default_factory=list)
    """The plugin-state namespaces the user had (``style``, ``learning.runs``...)."""

    def line(self) -> str:
        """One line for a terminal: ``forgot alice: 3 turns, 2 memories, ...``."""
        parts = [f"{count} {kind.replace('_', ' ')}" for kind, count in self.deleted.items()]
        return f"forgot {self.user_id}: {', '.join(parts) or 'nothing was stored'}"


def user_tables(names: tuple[str, ...] = USER_COLUMNS) -> list[tuple[Table, list[Column[Any]]]]:
    """Every table of the schema with columns of ``names`` (those naming a user),
    but the login tables, with those columns."""
    found: list[tuple[Table, list[Column[Any]]]] = []
    for table in SQLModel.metadata.sorted_tables:
        columns = [column for column in table.columns if column.name in names]
        if columns and table.name not in LOGIN_TABLES:
            found.append((table, columns))
    return found


async def remaining_rows(
    services: Services, user_id: str, names: tuple[str, ...] = USER_COLUMNS
) -> dict[str, int]:
    """How many rows of each table (:func:`user_tables`) still name ``user_id`` in a
    column of ``names``."""

    def count(connection: Connection) -> dict[str, int]:
        left: dict[str, int] = {}
        for table, columns in user_tables(names):
            condition = or_(*(column == user_id for column in columns))
            rows = connection.execute(
                select(func.count()).select_from(table).where(condition)
            ).scalar_one()
            if rows:
                left[table.name] = int(rows)
        return left

    async with services.store.session() as session:
        return await session.run_sync(lambda sync: count(sync.connection()))


async def _checkpoint(services: Services) -> None:
    """On SQLite, copy the write-ahead log into the database and empty it: deleted
    rows are overwritten there (``secure_delete``), but the log's older frames still
    hold them until a checkpoint truncates it."""
    engine = services.store.engine
    if engine.dialect.name != "sqlite":
        return
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    except (OSError, SQLAlchemyError) as exc:
        # The rows are gone; SQLite's own checkpoints overwrite the log later.
        logger.warning("the database's write-ahead log was not emptied: %s", exc)


async def forget_user(services: Services, user_id: str) -> ErasureSummary:
    """Delete everything stored of ``user_id`` (see the module docstring).

    Raises :class:`UnknownUserError` for a user this assistant never knew, the
    first plugin's failure, or :class:`ErasureIncompleteError` when rows of the
    user remain; each leaves the rest to a call that finishes it.
    """
    check_id("user id", user_id)
    store = services.store
    if not await store.user_exists(user_id):
        raise UnknownUserError(f"no user {user_id!r} has talked to this assistant")
    summary = ErasureSummary(user_id=user_id)
    before = await remaining_rows(services, user_id, OWNER_COLUMNS)
    # A reply, upload or import of the user under way stores before this, or never.
    async with services.user_writes.erasing(user_id):
        await _erase(services, user_id, summary)
    from mongars_core.adapters import erase_user

    registry = services.adapter_registry()
    summary.deleted["adapters"] = await asyncio.to_thread(
        erase_user, registry, services.settings.cache_dir, user_id
    )

    left = await remaining_rows(services, user_id)
    if left:
        raise ErasureIncompleteError(
            f"rows of {user_id!r} remain after forgetting them ("
            + ", ".join(f"{table}: {count}" for table, count in sorted(left.items()))
            + "): a reply was being stored meanwhile, or a plugin kept them; forget them again"
        )
    await _checkpoint(services)
    for table, count in before.items():
        # The core's tables are named as its kinds; the others are the plugins'
        # (documents, their chunks...), erased by their mongars_erase_user.
        summary.deleted.setdefault(table, count)
    logger.info("forgot a user: %s", summary.deleted)
    return summary


async def _erase(services: Services, user_id: str, summary: ErasureSummary) -> None:
    """Steps 1-3 (see the module docstring), while no write of the user may store."""
    store = services.store
    core: tuple[tuple[str, type[SQLModel], Any], ...] = (
        ("turns", TurnRecord, col(TurnRecord.user_id)),
        ("conversations", ConversationRecord, col(ConversationRecord.user_id)),
        ("memories", MemoryRecord, col(MemoryRecord.user_id)),
        ("plugin_state", PluginStateRecord, col(PluginStateRecord.user_id)),
    )
    async with store.session(write=True) as session:
        namespaces = await session.execute(
            select(col(PluginStateRecord.namespace)).where(
                col(PluginStateRecord.user_id) == user_id
            )
        )
        summary.namespaces = sorted(namespaces.scalars().all())
        for kind, model, owner in core:
            result = await session.execute(delete(model).where(owner == user_id))
            summary.deleted[kind] = int(getattr(result, "rowcount", 0) or 0)
        await session.commit()
    # What a process keeps of the user could be shown or recalled: gone before anyone
    # is told, and before the plugins' own erasure (which may read storage again).
    store.forget_cached(user_id)
    await services.plugins.forget(services, user_id, None)
    await services.plugins.invalidate(services, user_id)
    await services.plugins.erase_user(services, user_id)
