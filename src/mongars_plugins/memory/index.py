"""Per-user memory index: semantic recall over embeddings, lexical as a fallback.

The database is the source of truth; this index keeps each user's memories in
process (an embedding matrix, token lists and an inverted index) once they are
first recalled, so a turn costs one matrix-vector product rather than a table
scan. Memories never cross users: every lookup is keyed by user id.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from mongars_core.text import fingerprint, search_terms
from mongars_core.types import Memory

Vector = npt.NDArray[np.float32]
_Row = tuple[int, str, datetime, str, datetime | None, Vector | None]

# Digits anywhere ("x2", "3rd"): two memories alike but for them are not repeats.
_DIGITS = re.compile(r"\d+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "mine",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "ours",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "about",
        "tell",
        "know",
        "remember",
        "please",
        "just",
        "also",
        "am",
        "le",
        "la",
        "les",
        "un",
        "une",
        "des",
        "du",
        "de",
        "et",
        "est",
        "que",
        "qui",
        "quoi",
        "mon",
        "ma",
        "mes",
        "ton",
        "ta",
        "tes",
        "son",
        "sa",
        "ses",
        "il",
        "elle",
        "nous",
        "vous",
        "ils",
        "je",
        "tu",
    ]
)


def tokens(text: str) -> list[str]:
    """The search terms of ``text`` (:func:`mongars_core.text.search_terms`) but stop words."""
    return [term for term in search_terms(text) if term not in _STOPWORDS]


class _UserMemories:
    """One user's memories: parallel lists, a growable embedding matrix, postings."""

    def __init__(self, dimension: int | None) -> None:
        self.dimension = dimension
        self.ids: list[int] = []
        self.texts: list[str] = []
        self.created: list[datetime] = []
        self.sessions: list[str] = []
        self.postings: dict[str, list[int]] = {}
        # fingerprint -> row of the live memory with that wording (mongars_core.text.fingerprint)
        self.by_fingerprint: dict[str, int] = {}
        self._posting_arrays: dict[str, npt.NDArray[np.intp]] = {}
        self.rows: dict[int, int] = {}
        self.dead = 0
        width = dimension or 0
        self._matrix: Vector = np.zeros((0, width), dtype=np.float32)
        self._has_vector: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        self._live: npt.NDArray[np.bool_] = np.zeros(0, dtype=bool)
        # Expiry as POSIX seconds (infinity: never), so a search masks expired
        # rows in one vector operation.
        self._expires_at: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def live_count(self) -> int:
        return len(self.ids) - self.dead

    def add(
        self,
        memory_id: int,
        text: str,
        created: datetime,
        session: str,
        expires: datetime | None,
        vector: Vector | None,
    ) -> None:
        row = len(self.ids)
        self.rows[memory_id] = row
        self.ids.append(memory_id)
        self.texts.append(text)
        self.created.append(created)
        self.sessions.append(session)
        self.by_fingerprint[fingerprint(text)] = row
        for word in set(tokens(text)):
            self.postings.setdefault(word, []).append(row)
            self._posting_arrays.pop(word, None)
        if row >= len(self._has_vector):
            # Grow geometrically so adding a memory is amortised O(dimension).
            capacity = max(16, 2 * len(self._has_vector))
            matrix = np.zeros((capacity, self._matrix.shape[1]), dtype=np.float32)
            matrix[:row] = self._matrix[:row]
            present = np.zeros(capacity, dtype=bool)
            present[:row] = self._has_vector[:row]
            live = np.zeros(capacity, dtype=bool)
            live[:row] = self._live[:row]
            expires_at = np.zeros(capacity, dtype=np.float64)
            expires_at[:row] = self._expires_at[:row]
            self._matrix, self._has_vector = matrix, present
            self._live, self._expires_at = live, expires_at
        self._live[row] = True
        self._expires_at[row] = expires.timestamp() if expires is not None else np.inf
        if vector is not None and self.dimension is not None and vector.shape == (self.dimension,):
            self._matrix[row] = vector
            self._has_vector[row] = True

    def vectors(self) -> tuple[Vector, npt.NDArray[np.bool_]]:
        count = len(self.ids)
        return self._matrix[:count], self._has_vector[:count]

    def usable(self, now: datetime) -> npt.NDArray[np.bool_]:
        """Rows neither forgotten nor expired at ``now``."""
        count = len(self.ids)
        live: npt.NDArray[np.bool_] = self._live[:count] & (
            self._expires_at[:count] > now.timestamp()
        )
        return live

    def kill(self, memory_ids: Iterable[int]) -> None:
        """Mark memories as forgotten; :meth:`compacted` drops them for good."""
        for memory_id in memory_ids:
            row = self.rows.pop(memory_id, None)
            if row is not None and self._live[row]:
                self._live[row] = False
                self.dead += 1
                key = fingerprint(self.texts[row])
                if self.by_fingerprint.get(key) == row:
                    del self.by_fingerprint[key]

    def expiry(self, row: int) -> datetime | None:
        moment = float(self._expires_at[row])
        return None if math.isinf(moment) else datetime.fromtimestamp(moment, UTC)

    def vector(self, row: int) -> Vector | None:
        return self._matrix[row].copy() if self._has_vector[row] else None

    def rows_with(self, word: str) -> npt.NDArray[np.intp]:
        array = self._posting_arrays.get(word)
        if array is None:
            array = np.fromiter(self.postings[word], dtype=np.intp)
            self._posting_arrays[word] = array
        return array

    def compacted(self) -> _UserMemories:
        kept = _UserMemories(self.dimension)
        for row, memory_id in enumerate(self.ids):
            if self._live[row]:
                kept.add(
                    memory_id,
                    self.texts[row],
                    self.created[row],
                    self.sessions[row],
                    self.expiry(row),
                    self.vector(row),
                )
        return kept


class MemoryIndex:
    """In-process index of memories, one partition per user."""

    def __init__(self, dimension: int | None, query_cache_size: int = 1024) -> None:
        self.dimension = dimension
        self._users: dict[str, _UserMemories] = {}
        self._query_vectors: OrderedDict[str, Vector] = OrderedDict()
        self._query_cache_size = query_cache_size

    def loaded(self, user_id: str) -> bool:
        return user_id in self._users

    def load(self, user_id: str, rows: Iterable[_Row]) -> None:
        partition = _UserMemories(self.dimension)
        for memory_id, text, created, session, expires, vector in rows:
            partition.add(memory_id, text, created, session, expires, vector)
        self._users[user_id] = partition

    def add(
        self,
        user_id: str,
        memory_id: int,
        text: str,
        created: datetime,
        session: str,
        expires: datetime | None,
        vector: Vector | None,
    ) -> None:
        if user_id in self._users:
            self._users[user_id].add(memory_id, text, created, session, expires, vector)

    def forget(self, user_id: str, memory_ids: Iterable[int] | None) -> None:
        """Drop memories (all of the user's with ``None``) from the index."""
        if memory_ids is None:
            self._users.pop(user_id, None)
            return
        partition = self._users.get(user_id)
        if partition is None:
            return
        partition.kill(memory_ids)
        # Marking is O(1) per memory; rebuilding is O(all), so only now and then.
        if partition.dead > max(1000, len(partition) // 2):
            self._users[user_id] = partition.compacted()

    def size(self, user_id: str) -> int:
        """How many live (not forgotten) memories of the user the index holds."""
        partition = self._users.get(user_id)
        return partition.live_count if partition else 0

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
        row = partition.by_fingerprint.get(fingerprint(text))
        if row is not None and usable[row]:
            return partition.ids[row]
        if vector is None or self.dimension is None or vector.shape != (self.dimension,):
            return None
        matrix, present = partition.vectors()
        cosines = np.where(present & usable, matrix @ vector, -1.0)
        numbers = sorted(_DIGITS.findall(text))
        close = np.flatnonzero(cosines >= similarity)
        for candidate in close[np.argsort(-cosines[close])]:
            row = int(candidate)
            if sorted(_DIGITS.findall(partition.texts[row])) == numbers:
                return partition.ids[row]
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

    def search(
        self,
        user_id: str,
        query: str,
        query_vector: Vector | None,
        *,
        now: datetime,
        limit: int,
    ) -> list[Memory]:
        """The user's best-matching live memories, best first, scores in [0, 1]."""
        partition = self._users.get(user_id)
        if partition is None or not len(partition):
            return []
        count = len(partition)
        scores = self._lexical(partition, tokens(query), count)
        present: npt.NDArray[np.bool_] | None = None
        if query_vector is not None and self.dimension is not None:
            matrix, present = partition.vectors()
            semantic = np.clip(matrix @ query_vector, 0.0, 1.0)
            scores = np.where(present, 0.8 * semantic + 0.2 * scores, scores)
        scores = np.where(partition.usable(now), scores, 0.0)
        wanted = min(count, limit)
        top = np.argpartition(-scores, wanted - 1)[:wanted]
        top = top[np.argsort(-scores[top])]
        found: list[Memory] = []
        for row in top:
            if scores[row] <= 0:
                break
            # The index's own values, of the right types already: no validation.
            found.append(
                Memory.model_construct(
                    id=partition.ids[row],
                    text=partition.texts[row],
                    score=round(float(scores[row]), 4),
                    source="semantic" if present is not None and present[row] else "lexical",
                    created_at=partition.created[row],
                    session_id=partition.sessions[row],
                )
            )
        return found

    @staticmethod
    def _lexical(
        partition: _UserMemories, query_words: list[str], count: int
    ) -> npt.NDArray[np.float64]:
        """IDF-weighted share of the query's words that a memory contains."""
        scores = np.zeros(count, dtype=np.float64)
        weights = {
            word: math.log(1 + count / len(partition.postings[word]))
            for word in set(query_words)
            if word in partition.postings
        }
        total = sum(weights.get(word, math.log(1 + count)) for word in set(query_words))
        if not weights or total <= 0:
            return scores
        for word, weight in weights.items():
            scores[partition.rows_with(word)] += weight
        return scores / total
