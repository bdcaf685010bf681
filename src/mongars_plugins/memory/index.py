"""Per-user memory index: semantic recall over embeddings, lexical as a fallback.

The database is the source of truth; this index keeps each user's memories in
process (an embedding matrix, token lists and an inverted index) once they are
first recalled, so a turn costs one matrix-vector product rather than a table
scan. Memories never cross users: every lookup is keyed by user id.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

from mongars_core.types import Memory

Vector = npt.NDArray[np.float32]
_Row = tuple[int, str, datetime, str, datetime | None, Vector | None]

_WORD = re.compile(r"[^\W\d_]{2,}|\d+", re.UNICODE)
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
    """Lower-cased, accent-folded content words of ``text``."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(char for char in folded if not unicodedata.combining(char))
    return [word for word in _WORD.findall(folded) if word not in _STOPWORDS]


@dataclass
class _UserMemories:
    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    created: list[datetime] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    expires: list[datetime | None] = field(default_factory=list)
    vectors: list[Vector | None] = field(default_factory=list)
    words: list[Counter[str]] = field(default_factory=list)
    postings: dict[str, set[int]] = field(default_factory=dict)
    matrix: Vector | None = None
    has_vector: npt.NDArray[np.bool_] | None = None

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
        self.ids.append(memory_id)
        self.texts.append(text)
        self.created.append(created)
        self.sessions.append(session)
        self.expires.append(expires)
        self.vectors.append(vector)
        counts = Counter(tokens(text))
        self.words.append(counts)
        for word in counts:
            self.postings.setdefault(word, set()).add(row)
        self.matrix = None

    def remove(self, doomed: set[int]) -> _UserMemories:
        kept = _UserMemories()
        for row, memory_id in enumerate(self.ids):
            if memory_id not in doomed:
                kept.add(
                    memory_id,
                    self.texts[row],
                    self.created[row],
                    self.sessions[row],
                    self.expires[row],
                    self.vectors[row],
                )
        return kept

    def dense(self, dimension: int) -> tuple[Vector, npt.NDArray[np.bool_]]:
        if self.matrix is None or self.has_vector is None:
            matrix = np.zeros((len(self.ids), dimension), dtype=np.float32)
            present = np.zeros(len(self.ids), dtype=bool)
            for row, vector in enumerate(self.vectors):
                if vector is not None and vector.shape == (dimension,):
                    matrix[row] = vector
                    present[row] = True
            self.matrix, self.has_vector = matrix, present
        return self.matrix, self.has_vector


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
        partition = _UserMemories()
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
        if memory_ids is None:
            self._users.pop(user_id, None)
        elif user_id in self._users:
            self._users[user_id] = self._users[user_id].remove(set(memory_ids))

    def size(self, user_id: str) -> int:
        partition = self._users.get(user_id)
        return len(partition.ids) if partition else 0

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
        if partition is None or not partition.ids:
            return []
        count = len(partition.ids)
        scores = self._lexical(partition, tokens(query), count)
        present: npt.NDArray[np.bool_] | None = None
        if query_vector is not None and self.dimension is not None:
            matrix, present = partition.dense(self.dimension)
            semantic = np.clip(matrix @ query_vector, 0.0, 1.0)
            scores = np.where(present, 0.8 * semantic + 0.2 * scores, scores)
        top = np.argsort(-scores)[: max(limit * 3, limit)]
        found: list[Memory] = []
        for row in top:
            if scores[row] <= 0:
                break
            expires = partition.expires[row]
            if expires is not None and expires <= now:
                continue
            found.append(
                Memory(
                    id=partition.ids[row],
                    text=partition.texts[row],
                    score=round(float(scores[row]), 4),
                    source="semantic" if present is not None and present[row] else "lexical",
                    created_at=partition.created[row],
                    session_id=partition.sessions[row],
                )
            )
            if len(found) == limit:
                break
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
            for row in partition.postings[word]:
                scores[row] += weight
        return scores / total
