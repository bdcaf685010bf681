"""Dense search: an exact fp32 scan, and an HNSW graph (usearch) for large indexes.

The fp32 matrix is always kept: it gives exact cosines (for the calibrated
scores, duplicates and reranking) and is the search itself below
``ann_min_items``. Past that, an HNSW graph of half-float vectors answers
the nearest-neighbour query in well under a millisecond and the candidates are
re-scored exactly; benchmarks/results/memory_recall.md has the measurements
that chose this. Graph keys are the items' serial numbers, which outlive the
row renumbering of a compaction.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]
Serials = npt.NDArray[np.int64]

ANN_DTYPE = "f16"
"""How the graph stores vectors: half floats (int8 builds twice as fast but misses more)."""
ANN_CONNECTIVITY = 16
ANN_EXPANSION_ADD = 128
ANN_EXPANSION_SEARCH = 128


class Vectors:
    """A growable fp32 matrix, one row per item; rows without a vector are zeros."""

    def __init__(
        self,
        dimension: int | None,
        matrix: Matrix | None = None,
        present: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Empty, or holding ``matrix`` (taken as it is, not copied) and which of its
        rows are vectors (``present``; by default the rows not all zeros)."""
        self.dimension = dimension
        width = dimension or 0
        if matrix is None or not len(matrix):
            self._matrix: Matrix = np.zeros((16, width), dtype=np.float32)
            self._present: npt.NDArray[np.bool_] = np.zeros(16, dtype=bool)
            self.count = 0
            return
        self._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self._present = (
            np.asarray(present, dtype=bool).copy()
            if present is not None
            else np.any(matrix != 0, axis=1)
        )
        self.count = len(matrix)

    def add(self, row: int, vector: Vector | None) -> bool:
        """Set row ``row`` (the next one); whether ``vector`` was usable."""
        assert row == self.count, "rows are added in order"
        if row >= len(self._present):
            capacity = 2 * len(self._present)
            matrix = np.zeros((capacity, self._matrix.shape[1]), dtype=np.float32)
            matrix[:row] = self._matrix[:row]
            present = np.zeros(capacity, dtype=bool)
            present[:row] = self._present[:row]
            self._matrix, self._present = matrix, present
        self.count += 1
        if vector is None or self.dimension is None or vector.shape != (self.dimension,):
            return False
        self._matrix[row] = vector
        self._present[row] = True
        return True

    @property
    def matrix(self) -> Matrix:
        return self._matrix[: self.count]

    @property
    def present(self) -> npt.NDArray[np.bool_]:
        return self._present[: self.count]

    def vector(self, row: int) -> Vector | None:
        return self._matrix[row].copy() if self._present[row] else None

    def cosines(self, query: Vector, rows: npt.NDArray[np.int64] | None = None) -> Vector:
        """Exact cosines of ``query`` with every row (or ``rows``); -1 without a vector."""
        if rows is None:
            return np.where(self.present, self.matrix @ query, np.float32(-1.0))
        return np.where(self._present[rows], self._matrix[rows] @ query, np.float32(-1.0))

    def compacted(self, keep: npt.NDArray[np.bool_]) -> Vectors:
        return Vectors(self.dimension, self.matrix[keep], self.present[keep])


class Graph:
    """An HNSW graph over item vectors (usearch), keyed by serial number."""

    def __init__(self, dimension: int, index: object | None = None) -> None:
        from usearch.index import Index

        self.dimension = dimension
        self._index = index or Index(
            ndim=dimension,
            metric="ip",
            dtype=ANN_DTYPE,
            connectivity=ANN_CONNECTIVITY,
            expansion_add=ANN_EXPANSION_ADD,
            expansion_search=ANN_EXPANSION_SEARCH,
        )

    def __len__(self) -> int:
        return len(self._index)  # type: ignore[arg-type]

    def add(self, serials: Serials, vectors: Matrix, threads: int = 0) -> None:
        if len(serials):
            self._index.add(serials.astype(np.uint64), vectors, threads=threads)  # type: ignore[attr-defined]

    def remove(self, serials: list[int]) -> None:
        if serials:
            self._index.remove(np.asarray(serials, dtype=np.uint64))  # type: ignore[attr-defined]

    def search(self, query: Vector, count: int) -> Serials:
        """The serials of about the ``count`` nearest items, nearest first."""
        if not len(self):
            return np.zeros(0, dtype=np.int64)
        found = self._index.search(query, count=count)  # type: ignore[attr-defined]
        return np.asarray(found.keys, dtype=np.int64)

    def to_bytes(self) -> bytes:
        return bytes(self._index.save())  # type: ignore[attr-defined]

    @classmethod
    def from_bytes(cls, dimension: int, data: bytes | npt.NDArray[np.uint8]) -> Graph:
        from usearch.index import Index

        buffer = data if isinstance(data, bytes) else memoryview(data.data)
        index = Index.restore(buffer)
        if index is None or index.ndim != dimension:
            raise ValueError("the stored graph is not of this dimension")
        index.expansion_search = ANN_EXPANSION_SEARCH  # type: ignore[misc]
        return cls(dimension, index)
