"""Okapi BM25 over an inverted index: the lexical half of :class:`~.HybridIndex`.

Postings live in two parts: a compact base (CSR arrays: a vocabulary, offsets,
rows and term frequencies), which is what a snapshot stores and loads in one
read, and per-term lists of what was added since. A query merges the two per
term (cached until the term changes again).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from mongars_core.text import search_terms

K1 = 1.2
"""BM25's term-frequency saturation."""
B = 0.75
"""BM25's document-length normalisation."""

_WORDS = """
    a an and are as at be but by can could did do does for from had has have he her hers
    him his how i if in into is it its me my mine no not of on or our ours she so than
    that the their them then there these they this to us was we were what when where
    which who whom why will with would you your yours about tell know remember please
    just also am le la les un une des du de et est que qui quoi mon ma mes ton ta tes
    son sa ses il elle nous vous ils je tu
    """
STOPWORDS = frozenset(_WORDS.split())

Rows = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


def tokens(text: str) -> list[str]:
    """The search terms of ``text`` (:func:`mongars_core.text.search_terms`) but stop words."""
    return [term for term in search_terms(text) if term not in STOPWORDS]


class Postings:
    """Term -> (rows, term frequencies), and each row's length, for BM25."""

    def __init__(
        self,
        vocabulary: list[str] | None = None,
        offsets: Rows | None = None,
        rows: Rows | None = None,
        frequencies: Floats | None = None,
        lengths: Floats | None = None,
    ) -> None:
        self.vocabulary = vocabulary or []
        self._term_ids = {term: number for number, term in enumerate(self.vocabulary)}
        self._offsets: Rows = offsets if offsets is not None else np.zeros(1, dtype=np.int64)
        self._rows: Rows = rows if rows is not None else np.zeros(0, dtype=np.int64)
        self._frequencies: Floats = (
            frequencies if frequencies is not None else np.zeros(0, dtype=np.float32)
        )
        self._extra: dict[str, tuple[list[int], list[float]]] = {}
        self._merged: dict[str, tuple[Rows, Floats]] = {}
        base = lengths if lengths is not None else np.zeros(0, dtype=np.float32)
        self._lengths: Floats = np.zeros(max(16, len(base)), dtype=np.float32)
        self._lengths[: len(base)] = base
        self.count = len(base)
        self._total_length = float(base.sum())

    def add(self, row: int, terms: Iterable[str]) -> None:
        """Index ``terms`` as row ``row`` (rows are added in order: 0, 1, 2...)."""
        assert row == self.count, "rows are added in order"
        counts = Counter(terms)
        for term, frequency in counts.items():
            rows, frequencies = self._extra.setdefault(term, ([], []))
            rows.append(row)
            frequencies.append(float(frequency))
            self._merged.pop(term, None)
        if row >= len(self._lengths):
            grown = np.zeros(2 * len(self._lengths), dtype=np.float32)
            grown[:row] = self._lengths[:row]
            self._lengths = grown
        length = float(sum(counts.values()))
        self._lengths[row] = length
        self._total_length += length
        self.count += 1

    def postings(self, term: str) -> tuple[Rows, Floats]:
        merged = self._merged.get(term)
        if merged is not None:
            return merged
        parts_rows: list[Rows] = []
        parts_frequencies: list[Floats] = []
        number = self._term_ids.get(term)
        if number is not None:
            start, end = self._offsets[number], self._offsets[number + 1]
            parts_rows.append(self._rows[start:end])
            parts_frequencies.append(self._frequencies[start:end])
        extra = self._extra.get(term)
        if extra is not None:
            parts_rows.append(np.asarray(extra[0], dtype=np.int64))
            parts_frequencies.append(np.asarray(extra[1], dtype=np.float32))
        if not parts_rows:
            merged = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        elif len(parts_rows) == 1:
            merged = (parts_rows[0], parts_frequencies[0])
        else:
            merged = (np.concatenate(parts_rows), np.concatenate(parts_frequencies))
        self._merged[term] = merged
        return merged

    def document_frequency(self, term: str) -> int:
        return len(self.postings(term)[0])

    def idf(self, term: str) -> float:
        frequency = self.document_frequency(term)
        return math.log(1.0 + (self.count - frequency + 0.5) / (frequency + 0.5))

    def scores(self, query_terms: Iterable[str]) -> Floats:
        """The BM25 score of every row for ``query_terms`` (0 where none occurs)."""
        scores = np.zeros(self.count, dtype=np.float32)
        if not self.count:
            return scores
        average = max(self._total_length / self.count, 1e-9)
        for term in set(query_terms):
            rows, frequencies = self.postings(term)
            if not len(rows):
                continue
            norm = K1 * (1.0 - B + B * self._lengths[rows] / average)
            scores[rows] += self.idf(term) * frequencies * (K1 + 1.0) / (frequencies + norm)
        return scores

    def arrays(self) -> tuple[list[str], Rows, Rows, Floats, Floats]:
        """Everything as CSR arrays: vocabulary, offsets, rows, frequencies, lengths."""
        vocabulary = list(self.vocabulary) + [t for t in self._extra if t not in self._term_ids]
        parts = [self.postings(term) for term in vocabulary]
        sizes = np.fromiter((len(rows) for rows, _ in parts), dtype=np.int64, count=len(parts))
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        frequencies = (
            np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.float32)
        )
        return vocabulary, offsets, rows, frequencies, self._lengths[: self.count].copy()

    def compacted(self, keep: npt.NDArray[np.bool_]) -> Postings:
        """These postings with only the rows where ``keep`` holds, renumbered in order."""
        vocabulary, offsets, rows, frequencies, lengths = self.arrays()
        renumber = np.cumsum(keep, dtype=np.int64) - 1
        term_of = np.repeat(np.arange(len(vocabulary), dtype=np.int64), np.diff(offsets))
        kept = keep[rows]
        rows, frequencies, term_of = renumber[rows[kept]], frequencies[kept], term_of[kept]
        sizes = np.bincount(term_of, minlength=len(vocabulary))
        used = sizes > 0
        new_offsets = np.zeros(int(used.sum()) + 1, dtype=np.int64)
        np.cumsum(sizes[used], out=new_offsets[1:])
        words = [term for term, alive in zip(vocabulary, used.tolist(), strict=True) if alive]
        return Postings(words, new_offsets, rows, frequencies, lengths[keep])
