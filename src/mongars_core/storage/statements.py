"""The statements every turn runs, built once per dialect and run with parameters.

Building a SQLAlchemy statement costs about as much as running it on SQLite;
a turn's user, conversation and plugin-state writes use these prepared ones
(with ``bindparam`` placeholders) instead of building their own each time.
They name tables, not ORM classes, so a session runs them as plain SQL
rather than through the ORM's bulk-write machinery.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, case, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mongars_core.storage.models import (
    ConversationRecord,
    PluginStateRecord,
    TurnRecord,
    UserRecord,
)

USERS: Table = UserRecord.__table__  # type: ignore[attr-defined]
CONVERSATIONS: Table = ConversationRecord.__table__  # type: ignore[attr-defined]
PLUGIN_STATE: Table = PluginStateRecord.__table__  # type: ignore[attr-defined]
TURNS: Table = TurnRecord.__table__  # type: ignore[attr-defined]


def dialect_insert(dialect: str, table: Any) -> Any:
    """The dialect's INSERT, which knows ``ON CONFLICT`` on SQLite and PostgreSQL."""
    if dialect == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


@cache
def insert_user(dialect: str) -> Any:
    """Create user ``id`` (at ``now``) unless there. Parameters: ``id``, ``now``."""
    return (
        dialect_insert(dialect, USERS)
        .values(id=bindparam("id"), created_at=bindparam("now"))
        .on_conflict_do_nothing(index_elements=["id"])
    )


@cache
def insert_turn() -> Any:
    """Store a turn, returning its id. Parameters: the columns of ``turns`` but ``id``."""
    return TURNS.insert().returning(TURNS.c.id)


@cache
def touch_conversation(dialect: str) -> Any:
    """Create or touch a conversation when a turn is stored; an untitled one takes
    ``title``. Parameters: ``user_id``, ``session_id``, ``title``, ``now``."""
    table = CONVERSATIONS
    statement = dialect_insert(dialect, table).values(
        user_id=bindparam("user_id"),
        session_id=bindparam("session_id"),
        title=bindparam("title"),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
    return statement.on_conflict_do_update(
        index_elements=["user_id", "session_id"],
        set_={
            "updated_at": statement.excluded.updated_at,
            "title": case((table.c.title == "", statement.excluded.title), else_=table.c.title),
        },
    )


@cache
def upsert_state(dialect: str) -> Any:
    """Store a plugin's state of a user. Parameters: ``namespace``, ``user_id``,
    ``value`` (JSON text), ``now``."""
    statement = dialect_insert(dialect, PLUGIN_STATE).values(
        namespace=bindparam("namespace"),
        user_id=bindparam("user_id"),
        value=bindparam("value"),
        updated_at=bindparam("now"),
    )
    return statement.on_conflict_do_update(
        index_elements=["namespace", "user_id"],
        set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
    )


@cache
def reserve_state(dialect: str) -> Any:
    """Create an empty (``null``) state row unless there, so that it can be locked.
    Parameters: ``namespace``, ``user_id``, ``now``."""
    return (
        dialect_insert(dialect, PLUGIN_STATE)
        .values(
            namespace=bindparam("namespace"),
            user_id=bindparam("user_id"),
            value="null",
            updated_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["namespace", "user_id"])
    )


@cache
def state_for_update() -> Any:
    """A plugin's stored state of a user, its row locked to the end of the
    transaction (where the database locks rows). Parameters: ``namespace``, ``user_id``."""
    return (
        select(PLUGIN_STATE.c.value)
        .where(
            PLUGIN_STATE.c.namespace == bindparam("namespace"),
            PLUGIN_STATE.c.user_id == bindparam("user_id"),
        )
        .with_for_update()
    )
