"""The memory table's writes, staged in a :class:`~mongars_core.storage.unit_of_work.UnitOfWork`.

The memory plugin stages a turn's memory (and now and then a pruning) with the
turn; ``Store.add_memory`` and ``Store.prune_memories`` commit them on their own.
"""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, select, update
from sqlmodel import col

from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.unit_of_work import UnitOfWork, insert_record
from mongars_core.types import utcnow


def stage_memory(writes: UnitOfWork, record: MemoryRecord, *, replacing: int | None = None) -> None:
    """Stage ``record`` as a new memory; with ``replacing``, as the new wording,
    time and expiry of that memory of the same user, which keeps its id.

    A replaced memory deleted meanwhile (or not the user's) is stored anew.
    ``record.id`` is set once the writes run.
    """
    if replacing is None:
        writes.add(record)
        return

    def refresh(connection: Connection) -> None:
        fields = record.model_dump(exclude={"id"})
        fields["created_at"] = utcnow()
        result = connection.execute(
            update(MemoryRecord)
            .where(col(MemoryRecord.id) == replacing, col(MemoryRecord.user_id) == record.user_id)
            .values(**fields)
        )
        if getattr(result, "rowcount", 0):
            record.id, record.created_at = replacing, fields["created_at"]
        else:
            insert_record(connection, record)

    writes.run(refresh)


def stage_prune(writes: UnitOfWork, user_id: str, capacity: int) -> list[int]:
    """Stage deleting the user's expired memories and the oldest beyond ``capacity``.

    The list returned gets the ids deleted once the writes run, so caches can follow.
    """
    doomed: list[int] = []

    def prune(connection: Connection) -> None:
        now = utcnow()
        expired = select(col(MemoryRecord.id)).where(
            col(MemoryRecord.user_id) == user_id, col(MemoryRecord.expires_at) <= now
        )
        doomed.extend(row for row in connection.execute(expired).scalars().all() if row)
        count_query = select(func.count()).where(col(MemoryRecord.user_id) == user_id)
        total = int(connection.execute(count_query).scalar_one()) - len(doomed)
        if total > capacity:
            oldest = (
                select(col(MemoryRecord.id))
                .where(col(MemoryRecord.user_id) == user_id)
                .where(col(MemoryRecord.id).not_in(doomed))
                # A refreshed memory keeps its id but is as new as its created_at.
                .order_by(col(MemoryRecord.created_at), col(MemoryRecord.id))
                .limit(total - capacity)
            )
            doomed.extend(row for row in connection.execute(oldest).scalars().all() if row)
        if doomed:
            connection.execute(delete(MemoryRecord).where(col(MemoryRecord.id).in_(doomed)))

    writes.run(prune)
    return doomed
