"""Per-user memory index on the shared search engine (:mod:`mongars_plugins.search`).

The database is the source of truth; this index keeps each user's memories in
process, one :class:`~mongars_plugins.search.HybridIndex` per user, once they
are first recalled. A memory's key there is its id, its group its session and
its position its id (the order it was said in). Memories never cross users:
every lookup is keyed by user id.

A recalled memory carries two numbers: its place in the fused ranking (BM25 and
dense by reciprocal rank), which orders the results, and a calibrated score in
[0, 1] that thresholds them (``memory.min_score``): ``0.8 × cosine + 0.2 ×`` the
IDF-weighted share of the query's words it holds, or that share alone for a
memory without an embedding (``"lexical"``).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from mongars_core.retrieval import TimeIntent, time_intent
from mongars_core.text import fingerprint
from mongars_core.types import Memory
from mongars_plugins.search import Hit, HybridIndex, IndexItem
from mongars_plugins.search.lexical import tokens

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Row:
    """One stored memory, as the index loads it."""

    id: int
    text: str
    created_at: datetime
    session_id: str
    expires_at: datetime | None
    vector: Vector | None


# Digits anywhere ("x2", "3rd"): two memories alike but for them are not repeats.
_DIGITS = re.compile(r"\d+")

__all__ = ["MemoryIndex", "Row", "Vector", "tokens"]


def item(row: Row) -> IndexItem:
    return IndexItem(
        key=str(row.id),
        text=row.text,
        group=row.session_id,
        position=row.id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        vector=row.vector,
    )


class MemoryIndex:
    """In-process index of memories, one :class:`HybridIndex` per user."""

    def __init__(
        self,
        dimension: int | None,
        query_cache_size: int = 1024,
        *,
        ann_min_items: int | None = None,
        rerank: bool = False,
    ) -> None:
        self.dimension = dimension
        self.ann_min_items = ann_min_items
        self.rerank = rerank
        self._users: dict[str, HybridIndex] = {}
        # fingerprint (mongars_core.text.fingerprint) -> id of the live memory with that wording
        self._wordings: dict[str, dict[str, int]] = {}
        self._query_vectors: OrderedDict[str, Vector] = OrderedDict()
        self._query_cache_size = query_cache_size

    def new_partition(self) -> HybridIndex:
        return HybridIndex(self.dimension, ann_min_items=self.ann_min_items, rerank=self.rerank)

    def loaded(self, user_id: str) -> bool:
        return user_id in self._users

    def partition(self, user_id: str) -> HybridIndex | None:
        return self._users.get(user_id)

    def build(self, rows: Iterable[Row]) -> tuple[HybridIndex, dict[str, int]]:
        """A partition of ``rows`` and its wordings, not installed (for a worker thread)."""
        partition = self.new_partition()
        listed = list(rows)
        partition.add([item(row) for row in listed])
        return partition, {fingerprint(row.text): row.id for row in listed}

    def install(self, user_id: str, partition: HybridIndex, wordings: dict[str, int]) -> None:
        self._users[user_id] = partition
        self._wordings[user_id] = wordings

    def load(self, user_id: str, rows: Iterable[Row]) -> None:
        self.install(user_id, *self.build(rows))

    def wordings(self, user_id: str) -> dict[str, int]:
        return self._wordings.get(user_id, {})

    def add(self, user_id: str, row: Row) -> None:
        partition = self._users.get(user_id)
        if partition is not None:
            partition.add([item(row)])
            self._wordings[user_id][fingerprint(row.text)] = row.id

    def forget(self, user_id: str, memory_ids: Iterable[int] | None) -> None:
        """Drop memories (all of the user's with ``None``) from the index."""
        if memory_ids is None:
            self._users.pop(user_id, None)
            self._wordings.pop(user_id, None)
            return
        partition = self._users.get(user_id)
        if partition is None:
            return
        wordings = self._wordings[user_id]
        keys = []
        for memory_id in memory_ids:
            held = partition.get(str(memory_id))
            if held is None:
                continue
            keys.append(held.key)
            wording = fingerprint(held.text)
            if wordings.get(wording) == memory_id:
                del wordings[wording]
        partition.remove(keys)

    def size(self, user_id: str) -> int:
        """How many live (not forgotten) memories of the user the index holds."""
        partition = self._users.get(user_id)
        return len(partition) if partition else 0

    def find_duplicate(
        self,
        user_id: str,
        text: str,
        vector: Vector | None,
        *,
        now: datetime,
        similarity: float,
    ) -> int | None:
        """The id of a live memory that says ``text`` again, if the user has one.

        The same wording up to case, accents, spacing and punctuation is a
        repeat; so is an embedding at cosine ``similarity`` or more, provided
        both hold the same numbers ("I have 2 cats" does not repeat "I have 3
        cats", however close their embeddings).
        """
        partition = self._users.get(user_id)
        if partition is None or not len(partition):
            return None
        usable = partition.usable(now)
        same = self._wordings[user_id].get(fingerprint(text))
        if same is not None and (row := partition.rows.get(str(same))) is not None and usable[row]:
            return same
        if vector is None or self.dimension is None or vector.shape != (self.dimension,):
            return None
        hits = partition.search("", vector, limit=10, now=now)
        numbers = sorted(_DIGITS.findall(text))
        for hit in sorted(hits, key=lambda hit: -(hit.cosine or -1.0)):
            if hit.cosine is None or hit.cosine < similarity:
                break
            if sorted(_DIGITS.findall(hit.text)) == numbers:
                return int(hit.key)
        return None

    def cached_query(self, text: str) -> Vector | None:
        vector = self._query_vectors.get(text)
        if vector is not None:
            self._query_vectors.move_to_end(text)
        return vector

    def cache_query(self, text: str, vector: Vector) -> None:
        self._query_vectors[text] = vector
        if len(self._query_vectors) > self._query_cache_size:
            self._query_vectors.popitem(last=False)

    def clear_queries(self) -> None:
        self._query_vectors.clear()

    def hits(
        self,
        user_id: str,
        query: str,
        query_vector: Vector | None,
        *,
        now: datetime,
        limit: int,
        intent: TimeIntent | None = None,
    ) -> list[Hit]:
        """The user's best-matching live memories by fused rank, best first."""
        partition = self._users.get(user_id)
        if partition is None or not len(partition):
            return []
        if intent is None:
            intent = time_intent(query, now)
        return partition.search(query, query_vector, limit=limit, now=now, intent=intent)

    def calibrated(self, user_id: str, query: str, hit: Hit) -> tuple[float, str]:
        """The memory's score in [0, 1] for ``query`` and its source (``"semantic"`` or
        ``"lexical"``): what the recall thresholds compare."""
        partition = self._users.get(user_id)
        share = partition.coverage(query, hit.key) if partition is not None else 0.0
        if hit.cosine is None:
            return round(share, 4), "lexical"
        return round(0.8 * min(max(hit.cosine, 0.0), 1.0) + 0.2 * share, 4), "semantic"

    def search(
        self,
        user_id: str,
        query: str,
        query_vector: Vector | None,
        *,
        now: datetime,
        limit: int,
    ) -> list[Memory]:
        """The user's best-matching live memories, by fused rank, with calibrated scores."""
        found: list[Memory] = []
        for hit in self.hits(user_id, query, query_vector, now=now, limit=limit):
            score, source = self.calibrated(user_id, query, hit)
            if score <= 0:
                continue
            found.append(
                Memory.model_construct(
                    id=int(hit.key),
                    text=hit.text,
                    score=score,
                    source=source,
                    created_at=hit.created_at,
                    session_id=hit.group,
                )
            )
        return found
