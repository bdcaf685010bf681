"""The memory index's files: a snapshot of each user's index, checked before use.

A user's snapshot lives in ``<data dir>/memory-index/<sha256 of the user id>.npz``
(mode 0600, written atomically by :mod:`mongars_plugins.search.persist`). It
records whose it is, the embedder of its vectors and the state of the user's
memory table it reflects, its :class:`Signature`: the count of the user's rows,
the largest id, the sum of the ids and the latest ``created_at``. Any write to
the table (a memory added, refreshed, pruned or deleted, by this process or
another) changes the signature, so a snapshot is used only when it matches the
table exactly; otherwise the index is rebuilt from the table.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlmodel import col

from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.store import Store
from mongars_core.storage.turns import aware
from mongars_plugins.memory.index import MemoryIndex, Row
from mongars_plugins.search import HybridIndex

logger = logging.getLogger(__name__)

FOLDER = "memory-index"


@dataclass(frozen=True)
class Signature:
    """What identifies the state of a user's memory rows."""

    count: int = 0
    max_id: int = 0
    id_sum: int = 0
    latest: int = 0
    """The latest ``created_at``, in microseconds since 1970 (0 without rows)."""

    def as_list(self) -> list[int | str]:
        return [self.count, self.max_id, self.id_sum, self.latest]


def _micros(moment: datetime | float | None) -> int:
    if moment is None:
        return 0
    seconds = aware(moment).timestamp() if isinstance(moment, datetime) else moment
    return round(seconds * 1e6)


def held(partition: HybridIndex) -> Signature:
    """The signature of the rows ``partition`` holds: what the table must match for a
    snapshot of it to be used."""
    ids = [int(key) for key in partition.keys_held()]
    created = partition.column("_created")[partition.usable_rows()]
    latest = float(np.nanmax(created)) if len(created) else None
    return Signature(len(ids), max(ids, default=0), sum(ids), _micros(latest))


def snapshot_path(data_dir: Path, user_id: str) -> Path:
    """The user's snapshot file: named by a hash, so no user id reaches the file system."""
    digest = hashlib.sha256(user_id.encode()).hexdigest()[:40]
    return data_dir / FOLDER / f"{digest}.npz"


async def signature(store: Store, user_id: str) -> Signature:
    query = select(
        func.count(col(MemoryRecord.id)),
        func.max(col(MemoryRecord.id)),
        func.sum(col(MemoryRecord.id)),
        func.max(col(MemoryRecord.created_at)),
    ).where(col(MemoryRecord.user_id) == user_id)
    async with store.session() as session:
        count, max_id, id_sum, latest = (await session.execute(query)).one()
    return Signature(int(count or 0), int(max_id or 0), int(id_sum or 0), _micros(latest))


async def read_rows(
    store: Store, user_id: str, dimension: int | None, embedder: str | None
) -> list[Row]:
    """Every memory row of the user, oldest first (expired ones too: the index hides them)."""
    rows: list[Row] = []
    for record in await store.list_memories(user_id, include_expired=True):
        assert record.id is not None
        vector = None
        blob = record.embedding
        if blob is not None and dimension is not None and record.embedder == embedder:
            vector = np.frombuffer(blob, dtype=np.float32)
            if vector.shape != (dimension,):
                vector = None
        rows.append(
            Row(
                record.id,
                record.text,
                record.created_at,
                record.session_id,
                record.expires_at,
                vector,
            )
        )
    return rows


def read_snapshot(
    path: Path, user_id: str, index: MemoryIndex, embedder: str | None, expected: Signature
) -> tuple[HybridIndex, dict[str, int]] | None:
    """The user's partition from ``path`` if it is theirs and matches ``expected``."""
    if not path.exists():
        return None
    try:
        partition = HybridIndex.load(
            path, index.dimension, ann_min_items=index.ann_min_items, rerank=index.rerank
        )
    except Exception as exc:  # any damage (a truncated zip, a bit flip...): rebuild it
        logger.warning("memory index snapshot %s unusable, rebuilding: %s", path.name, exc)
        return None
    meta = partition.metadata
    if not isinstance(meta, dict) or meta.get("user_id") != user_id:
        logger.warning("memory index snapshot %s is of another user; rebuilding", path.name)
        return None
    if meta.get("embedder") != embedder or meta.get("signature") != expected.as_list():
        return None
    wordings = meta.get("wordings")
    if not isinstance(wordings, dict):
        return None
    partition.metadata = {}
    return partition, wordings


def write_snapshot(
    path: Path,
    user_id: str,
    partition: HybridIndex,
    wordings: dict[str, int],
    embedder: str | None,
) -> None:
    """Write ``partition`` as the user's snapshot, with the signature of what it holds."""
    partition.metadata = {
        "user_id": user_id,
        "embedder": embedder,
        "signature": held(partition).as_list(),
        "wordings": wordings,
    }
    try:
        partition.save(path)
    finally:
        partition.metadata = {}


def erase_snapshot(data_dir: Path, user_id: str) -> None:
    """Delete the user's snapshot (and any temporary file beside it)."""
    path = snapshot_path(data_dir, user_id)
    path.unlink(missing_ok=True)
