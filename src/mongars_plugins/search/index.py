"""The hybrid index: BM25 and dense search fused by reciprocal rank.

One :class:`HybridIndex` holds the items of one owner (a user's memories, a
collection's chunks). A search ranks the live, unexpired items by BM25 and by
dense similarity and fuses the two lists by reciprocal rank (RRF, k=60); a
BM25 rank earned with few of the query's words counts in proportion
(:data:`LEXICAL_FULL_SHARE`). A query that names a time window ("last week")
adds a third list of the items said inside it, counted twice, and one that
asks *when* favours items whose text carries a date. An item that is only a
question keeps :data:`QUESTION_FACTOR` of its score. Ties go to the newer
item. ``rerank`` re-orders the best fused candidates by exact cosine and BM25
combined.

Only the loop thread mutates an index; :meth:`build_graph` and
:meth:`save` read it and may run in a worker thread meanwhile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mongars_core.retrieval import RRF_K, TimeIntent
from mongars_plugins.search.dense import Graph, Vector, Vectors
from mongars_plugins.search.lexical import Postings, tokens

ANN_MIN_ITEMS = 20_000
"""Items with a vector from which an HNSW graph answers dense queries (exact below)."""
GRAPH_BATCH = 10_000
"""Items added to a graph being built between two checks that it is still wanted."""
TIME_WEIGHT = 2.0
"""How much the list of items inside a query's time window counts in the fusion."""
DATED_BONUS = 0.5 / (RRF_K + 1)
"""What an item whose text carries a date or time gains for a *when* question."""
LEXICAL_WEIGHT = 1.0
"""How much the BM25 list counts in the fusion."""
DENSE_WEIGHT = 1.0
"""How much the dense list counts in the fusion."""
QUESTION_FACTOR = 0.8
"""What share of its fused score an item that is only a question keeps."""
LEXICAL_FULL_SHARE = 0.3
"""The share of the query's (IDF-weighted) words an item must hold for its BM25 rank
to count fully; one holding less counts in proportion (0: always fully)."""

_DATED = re.compile(
    r"\b(?:\d{1,2}[:h]\d{2}|\d{1,2}\s*(?:am|pm)|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|"
    r"(?:19|20)\d{2}|yesterday|today|tomorrow|tonight|last\s+(?:week|month|year|night)|"
    r"next\s+(?:week|month|year)|ago|monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec|morning|evening|weekend|"
    r"hier|demain|aujourd'hui|lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche)\b",
    re.IGNORECASE,
)


def mentions_time(text: str) -> bool:
    """Whether ``text`` carries a date or a time ("on March 3", "at 6 pm", "in 2019")."""
    return _DATED.search(text) is not None


_STATEMENT_END = re.compile(r"[.!;]\s")


def only_asks(text: str) -> bool:
    """Whether ``text`` is a question and nothing else ("what's a good name for a cat?"):
    it states nothing, and questions resemble the questions a search is asked."""
    text = text.strip()
    return text.endswith("?") and _STATEMENT_END.search(text) is None


@dataclass(frozen=True)
class IndexItem:
    """One searchable item; ``group`` is its session or document, ``position`` its order there."""

    key: str
    text: str
    group: str
    position: int
    created_at: datetime | None
    expires_at: datetime | None = None
    vector: Vector | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Hit:
    """A search result: ``score`` is the fused one, ``ranks`` its rank in each list.

    ``cosine`` is the exact cosine with the query vector (``None`` without
    vectors), ``bm25`` its BM25 score.
    """

    key: str
    score: float
    ranks: dict[str, int]
    text: str
    group: str
    position: int
    created_at: datetime | None
    cosine: float | None = None
    bm25: float = 0.0


def _moment(value: float) -> datetime | None:
    return None if math.isnan(value) else datetime.fromtimestamp(value, UTC)


class HybridIndex:
    """Items searchable by words and meaning, with time, expiry and neighbours."""

    def __init__(
        self,
        dimension: int | None,
        *,
        ann_min_items: int | None = ANN_MIN_ITEMS,
        rerank: bool = False,
    ) -> None:
        self.dimension = dimension
        self.ann_min_items = ann_min_items
        self.rerank = rerank
        self.keys: list[str] = []
        self.texts: list[str] = []
        self.groups: list[str] = []
        self.rows: dict[str, int] = {}
        self.postings = Postings()
        self.vectors = Vectors(dimension)
        self.graph: Graph | None = None
        self._positions = np.zeros(16, dtype=np.int64)
        self._created = np.full(16, np.nan)
        self._expires = np.full(16, np.inf)
        self._live = np.zeros(16, dtype=bool)
        self._serials = np.zeros(16, dtype=np.int64)
        self._serial_rows: dict[int, int] = {}
        self.next_serial = 0
        self.dead = 0
        self._groups: dict[str, list[int]] | None = None
        self._weights: tuple[str, int, dict[str, float]] = ("", -1, {})
        self.metadata: dict[str, Any] = {}
        """What the owner records with a snapshot (whose index, which state of the data)."""

    # -- contents ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, key: object) -> bool:
        return key in self.rows

    @property
    def count(self) -> int:
        """Rows held, removed ones included until the next compaction."""
        return len(self.keys)

    def add(self, items: Sequence[IndexItem]) -> None:
        """Add ``items``; an item whose key is held already replaces it."""
        self.remove(item.key for item in items if item.key in self.rows)
        fresh: list[tuple[int, int]] = []
        for item in items:
            row = self.count
            self._grow(row + 1)
            self.keys.append(item.key)
            self.texts.append(item.text)
            self.groups.append(item.group)
            self.rows[item.key] = row
            self.postings.add(row, tokens(item.text))
            self._positions[row] = item.position
            self._created[row] = item.created_at.timestamp() if item.created_at else np.nan
            self._expires[row] = item.expires_at.timestamp() if item.expires_at else np.inf
            self._live[row] = True
            serial = self.next_serial
            self.next_serial += 1
            self._serials[row] = serial
            self._serial_rows[serial] = row
            if self.vectors.add(row, item.vector):
                fresh.append((serial, row))
            if self._groups is not None:
                self._groups.setdefault(item.group, []).append(row)
        if self.graph is not None and fresh:
            serials = np.asarray([s for s, _ in fresh], dtype=np.int64)
            self.graph.add(serials, self.vectors.matrix[[r for _, r in fresh]])

    def remove(self, keys: Iterable[str]) -> None:
        """Remove the items of ``keys`` (keys not held are ignored)."""
        gone: list[int] = []
        for key in keys:
            row = self.rows.pop(key, None)
            if row is None:
                continue
            self._live[row] = False
            serial = int(self._serials[row])
            self._serial_rows.pop(serial, None)
            gone.append(serial)
            self.dead += 1
        if self.graph is not None:
            self.graph.remove(gone)
        if self.dead > max(1000, self.count // 2):
            self._compact()

    def get(self, key: str) -> IndexItem | None:
        row = self.rows.get(key)
        return None if row is None else self._item(row)

    def vector(self, key: str) -> Vector | None:
        row = self.rows.get(key)
        return None if row is None else self.vectors.vector(row)

    def usable(self, now: datetime) -> npt.NDArray[np.bool_]:
        """Rows neither removed nor expired at ``now``."""
        count = self.count
        mask: npt.NDArray[np.bool_] = self._live[:count] & (self._expires[:count] > now.timestamp())
        return mask

    def _item(self, row: int) -> IndexItem:
        expires = float(self._expires[row])
        return IndexItem(
            key=self.keys[row],
            text=self.texts[row],
            group=self.groups[row],
            position=int(self._positions[row]),
            created_at=_moment(float(self._created[row])),
            expires_at=None if math.isinf(expires) else datetime.fromtimestamp(expires, UTC),
            vector=self.vectors.vector(row),
        )

    def _grow(self, size: int) -> None:
        if size <= len(self._live):
            return
        capacity = max(size, 2 * len(self._live))
        for name, fill in (
            ("_positions", 0),
            ("_created", np.nan),
            ("_expires", np.inf),
            ("_live", False),
            ("_serials", 0),
        ):
            old = getattr(self, name)
            new = np.full(capacity, fill, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _compact(self) -> None:
        """Drop removed rows for good (rows renumber; serials, and the graph, stay)."""
        keep = self._live[: self.count].copy()
        self.postings = self.postings.compacted(keep)
        self.vectors = self.vectors.compacted(keep)
        kept = np.flatnonzero(keep).tolist()
        self.keys = [self.keys[row] for row in kept]
        self.texts = [self.texts[row] for row in kept]
        self.groups = [self.groups[row] for row in kept]
        size = len(kept)
        for name in ("_positions", "_created", "_expires", "_live", "_serials"):
            old = getattr(self, name)
            new = old[: len(keep)][keep].copy()
            setattr(self, name, new if len(new) else old[:16].copy())
        self.rows = {key: row for row, key in enumerate(self.keys)}
        self._serial_rows = {int(s): row for row, s in enumerate(self._serials[:size].tolist())}
        self.dead = 0
        self._groups = None

    # -- persistence ------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write a snapshot to ``path`` (atomically, mode 0600; :mod:`.persist`)."""
        from mongars_plugins.search import persist

        persist.save(self, path)

    @classmethod
    def load(cls, path: Path, dimension: int | None, **options: Any) -> HybridIndex:
        """The index saved at ``path`` (:class:`~.persist.SnapshotError` if it can't be)."""
        from mongars_plugins.search import persist

        return persist.load(path, dimension, **options)

    def keys_held(self) -> list[str]:
        """The keys of the items held, in row order."""
        return [key for key, live in zip(self.keys, self._live.tolist(), strict=False) if live]

    def usable_rows(self) -> npt.NDArray[np.bool_]:
        """The rows not removed (a copy)."""
        return self._live[: self.count].copy()

    def column(self, name: str) -> npt.NDArray[Any]:
        """One per-row array (``_positions``, ``_created``...), cut to the rows held."""
        column: npt.NDArray[Any] = getattr(self, name)[: self.count]
        return column

    def set_columns(
        self,
        count: int,
        *,
        positions: npt.NDArray[np.int64],
        created: npt.NDArray[np.float64],
        expires: npt.NDArray[np.float64],
        serials: npt.NDArray[np.int64],
    ) -> None:
        """Set the per-row arrays of ``count`` live rows (a snapshot being loaded)."""
        if not len(positions) == len(created) == len(expires) == len(serials) == count:
            raise ValueError("per-row arrays of different lengths")
        self._grow(count)
        self._positions[:count] = positions
        self._created[:count] = created
        self._expires[:count] = expires
        self._serials[:count] = serials
        self._live[:count] = True
        self._serial_rows = {int(s): row for row, s in enumerate(serials.tolist())}

    # -- neighbours ------------------------------------------------------------------

    def neighbours(self, key: str, count: int) -> tuple[list[IndexItem], list[IndexItem]]:
        """The ``count`` live items of ``key``'s group just before and just after it,
        by position, oldest first."""
        row = self.rows.get(key)
        if row is None or count <= 0:
            return [], []
        if self._groups is None:
            groups: dict[str, list[int]] = {}
            for other, group in enumerate(self.groups):
                groups.setdefault(group, []).append(other)
            self._groups = groups
        members = [r for r in self._groups.get(self.groups[row], []) if self._live[r]]
        members.sort(key=lambda r: (int(self._positions[r]), r))
        place = members.index(row)
        before = members[max(0, place - count) : place]
        after = members[place + 1 : place + 1 + count]
        return [self._item(r) for r in before], [self._item(r) for r in after]

    # -- search ---------------------------------------------------------------------

    def search(
        self,
        text: str,
        vector: Vector | None,
        *,
        limit: int,
        now: datetime,
        intent: TimeIntent | None = None,
    ) -> list[Hit]:
        """The best ``limit`` live, unexpired items for ``text`` (and its ``vector``)."""
        if not self.rows or limit <= 0:
            return []
        usable = self.usable(now)
        depth = max(3 * limit, 30)
        bm25 = np.where(usable, self.postings.scores(tokens(text)), np.float32(0.0))
        lexical = _top(bm25, depth, positive=True, created=self._created[: self.count])
        rankings: list[tuple[str, npt.NDArray[np.int64], float]] = [
            ("bm25", lexical, LEXICAL_WEIGHT)
        ]
        cosines: dict[int, float] = {}
        use_vector = (
            vector is not None and self.dimension is not None and vector.shape == (self.dimension,)
        )
        if use_vector:
            assert vector is not None
            dense = self._dense(vector, usable, depth, cosines)
            rankings.append(("dense", dense, DENSE_WEIGHT))
        if intent is not None and intent.window:
            rankings.append(("time", self._in_window(intent, usable, bm25, vector), TIME_WEIGHT))
        scores: dict[int, float] = {}
        ranks: dict[int, dict[str, int]] = {}
        # A BM25 rank earned with few of the query's words counts in proportion.
        shares = self._shares(text, lexical) if LEXICAL_FULL_SHARE > 0 else {}
        for name, rows, weight in rankings:
            for rank, row in enumerate(rows.tolist(), start=1):
                part = weight / (RRF_K + rank)
                if name == "bm25" and shares:
                    part *= min(1.0, shares[row] / LEXICAL_FULL_SHARE)
                scores[row] = scores.get(row, 0.0) + part
                ranks.setdefault(row, {})[name] = rank
        if intent is not None and intent.asks_when:
            for row in scores:
                if mentions_time(self.texts[row]):
                    scores[row] += DATED_BONUS
        if QUESTION_FACTOR != 1.0:
            for row in scores:
                if only_asks(self.texts[row]):
                    scores[row] *= QUESTION_FACTOR
        if use_vector:
            assert vector is not None
            missing = [row for row in scores if row not in cosines]
            if missing:
                exact = self.vectors.cosines(vector, np.asarray(missing, dtype=np.int64))
                cosines.update(zip(missing, exact.tolist(), strict=True))
        created = self._created
        when = {row: float(created[row]) for row in scores}
        ordered = sorted(
            scores,
            key=lambda row: (-scores[row], -when[row] if when[row] == when[row] else math.inf, row),
        )
        if self.rerank and use_vector:
            ordered = self._reranked(ordered[: 3 * limit], cosines, bm25)
        return [
            Hit(
                key=self.keys[row],
                score=round(scores[row], 6),
                ranks=ranks[row],
                text=self.texts[row],
                group=self.groups[row],
                position=int(self._positions[row]),
                created_at=_moment(float(created[row])),
                cosine=(round(cosines[row], 6) if row in cosines and cosines[row] > -1.0 else None),
                bm25=round(float(bm25[row]), 6),
            )
            for row in ordered[:limit]
        ]

    def _shares(self, text: str, rows: npt.NDArray[np.int64]) -> dict[int, float]:
        """The IDF-weighted share of ``text``'s words each of ``rows`` holds."""
        weights = self._word_weights(text)
        total = sum(weights.values())
        if total <= 0:
            return {int(row): 0.0 for row in rows.tolist()}
        found: dict[int, float] = {}
        for row in rows.tolist():
            held = set(tokens(self.texts[row]))
            found[row] = sum(weight for word, weight in weights.items() if word in held) / total
        return found

    def _dense(
        self, vector: Vector, usable: npt.NDArray[np.bool_], depth: int, cosines: dict[int, float]
    ) -> npt.NDArray[np.int64]:
        """Rows by cosine, best first: from the graph when there is one, else exact."""
        if self.graph is not None and len(self.graph):
            # Removed rows leave the graph; expired ones are asked for past.
            wanted = depth + min(self.count - int(usable.sum()), 4 * depth)
            rows = np.asarray(
                [
                    row
                    for serial in self.graph.search(vector, wanted).tolist()
                    if (row := self._serial_rows.get(serial)) is not None and usable[row]
                ],
                dtype=np.int64,
            )
            if len(rows):
                exact = self.vectors.cosines(vector, rows)
                order = np.argsort(-exact, kind="stable")[:depth]
                cosines.update(zip(rows[order].tolist(), exact[order].tolist(), strict=True))
                return rows[order]
        every = self.vectors.cosines(vector)
        every = np.where(usable & self.vectors.present, every, np.float32(-2.0))
        top = _top(every, depth, positive=False, floor=-1.5, created=self._created[: self.count])
        cosines.update(zip(top.tolist(), every[top].tolist(), strict=True))
        return top

    def _in_window(
        self,
        intent: TimeIntent,
        usable: npt.NDArray[np.bool_],
        bm25: npt.NDArray[np.float32],
        vector: Vector | None,
    ) -> npt.NDArray[np.int64]:
        """Rows said inside the query's window, the most relevant (then newest) first."""
        created = self._created[: self.count]
        inside = usable & ~np.isnan(created)
        if intent.start is not None:
            inside &= created >= intent.start.timestamp()
        if intent.end is not None:
            inside &= created < intent.end.timestamp()
        rows = np.flatnonzero(inside)
        if not len(rows):
            return rows.astype(np.int64)
        if vector is not None and self.dimension is not None:
            relevance = np.maximum(self.vectors.cosines(vector, rows), 0.0) + bm25[rows] / 100.0
        else:
            relevance = bm25[rows].astype(np.float64)
        order = np.lexsort((-created[rows], -relevance))
        return rows[order[: max(30, 3 * len(order) // 100)]].astype(np.int64)

    def _reranked(
        self, rows: list[int], cosines: dict[int, float], bm25: npt.NDArray[np.float32]
    ) -> list[int]:
        best = float(max((bm25[row] for row in rows), default=0.0)) or 1.0
        return sorted(
            rows, key=lambda row: -(0.7 * cosines.get(row, 0.0) + 0.3 * float(bm25[row]) / best)
        )

    # -- the graph --------------------------------------------------------------------

    def wants_graph(self) -> bool:
        """Whether an HNSW graph should be built: enough vectors and none yet."""
        return (
            self.graph is None
            and self.dimension is not None
            and self.ann_min_items is not None
            and int(self.vectors.present.sum()) >= self.ann_min_items
        )

    def build_graph(
        self, threads: int = 0, stop: Callable[[], bool] | None = None
    ) -> tuple[Graph, int] | None:
        """A graph of the live items with a vector now, and the serials it covers
        (below the second value); install it with :meth:`install_graph`. Reads only.
        ``stop`` is asked between batches: ``None`` comes back once it says so."""
        assert self.dimension is not None
        count = min(self.count, self.vectors.count)
        covered = int(self._serials[count - 1]) + 1 if count else 0
        chosen = np.flatnonzero(self._live[:count] & self.vectors.present[:count])
        graph = Graph(self.dimension)
        for start in range(0, len(chosen), GRAPH_BATCH):
            if stop is not None and stop():
                return None
            rows = chosen[start : start + GRAPH_BATCH]
            graph.add(self._serials[rows].copy(), self.vectors.matrix[rows].copy(), threads)
        return graph, covered

    def install_graph(self, graph: Graph, covered: int) -> None:
        """Use ``graph`` (from :meth:`build_graph`), brought up to date first."""
        serials = self._serials[: self.count]
        live = self._live[: self.count] & self.vectors.present
        newer = np.flatnonzero(live & (serials >= covered))
        graph.add(serials[newer].copy(), self.vectors.matrix[newer].copy())
        gone = [s for s in range(covered) if s not in self._serial_rows]
        graph.remove(gone)
        self.graph = graph

    # -- terms --------------------------------------------------------------------------

    def coverage(self, text: str, key: str) -> float:
        """The IDF-weighted share of ``text``'s words that item ``key`` holds, in [0, 1]
        (a word no item holds weighs as the rarest)."""
        row = self.rows.get(key)
        if row is None:
            return 0.0
        weights = self._word_weights(text)
        total = sum(weights.values())
        if total <= 0:
            return 0.0
        held = set(tokens(self.texts[row]))
        return sum(weight for word, weight in weights.items() if word in held) / total

    def _word_weights(self, text: str) -> dict[str, float]:
        """``log(1 + N / df)`` of each of ``text``'s words (the last query's, kept)."""
        if self._weights[0] == text and self._weights[1] == self.count:
            return self._weights[2]
        count = max(self.count, 1)
        weights: dict[str, float] = {}
        for word in set(tokens(text)):
            frequency = self.postings.document_frequency(word)
            weights[word] = math.log(1 + count / frequency) if frequency else math.log(1 + count)
        self._weights = (text, self.count, weights)
        return weights


def _top(
    scores: npt.NDArray[np.float32],
    count: int,
    *,
    positive: bool,
    floor: float = 0.0,
    created: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.int64]:
    """The rows of the ``count`` highest scores above ``floor``, best first; equal
    scores newest first (by ``created``)."""
    if not len(scores):
        return np.zeros(0, dtype=np.int64)
    count = min(count, len(scores))
    top = np.argpartition(-scores, count - 1)[:count]
    if created is None:
        top = top[np.argsort(-scores[top], kind="stable")]
    else:
        top = top[np.lexsort((-np.nan_to_num(created[top], nan=-np.inf), -scores[top]))]
    kept = top[scores[top] > floor] if positive or floor else top
    return kept.astype(np.int64)
