"""Snapshots of a :class:`~.HybridIndex`: one ``.npz`` file, written atomically, mode 0600.

The file holds the live items only (removed rows are left out, rows renumbered),
their BM25 postings as CSR arrays, the fp32 vectors and, when there is one, the
HNSW graph: loading is a few array reads, with no tokenising and no graph to build.
``metadata`` (a JSON object the owner fills: whose index, which embedder, the
database state it reflects) travels with it, for the owner to check before use.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mongars_plugins.search.dense import Graph, Vectors
from mongars_plugins.search.lexical import Postings

if TYPE_CHECKING:
    from mongars_plugins.search.index import HybridIndex

FORMAT = 1


class SnapshotError(ValueError):
    """A snapshot file that can't be read as an index (damaged, another format)."""


def save(index: HybridIndex, path: Path) -> None:
    """Write ``index`` to ``path`` (atomically: a temporary file renamed over it)."""
    keep = index.usable_rows()
    rows = np.flatnonzero(keep).tolist()
    vocabulary, offsets, postings, frequencies, lengths = index.postings.compacted(keep).arrays()
    meta = {
        "format": FORMAT,
        "dimension": index.dimension,
        "next_serial": index.next_serial,
        "keys": [index.keys[row] for row in rows],
        "texts": [index.texts[row] for row in rows],
        "groups": [index.groups[row] for row in rows],
        "vocabulary": vocabulary,
        "metadata": index.metadata,
    }
    arrays: dict[str, Any] = {
        "meta": np.frombuffer(json.dumps(meta, ensure_ascii=False).encode(), dtype=np.uint8),
        "positions": index.column("_positions")[keep],
        "created": index.column("_created")[keep],
        "expires": index.column("_expires")[keep],
        "serials": index.column("_serials")[keep],
        "offsets": offsets,
        "postings": postings.astype(np.int32),
        "frequencies": frequencies.astype(np.float16),
        "lengths": lengths,
    }
    if index.dimension is not None:
        arrays["matrix"] = index.vectors.matrix[keep]
        arrays["present"] = index.vectors.present[keep]
    if index.graph is not None:
        arrays["graph"] = np.frombuffer(index.graph.to_bytes(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "wb") as file:
            np.savez(file, allow_pickle=False, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(path: Path, dimension: int | None, **options: Any) -> HybridIndex:
    """The index saved at ``path``; :class:`SnapshotError` if it isn't one of ``dimension``."""
    from mongars_plugins.search.index import HybridIndex

    try:
        # Our own handle: numpy leaves its file open when the zip can't be read.
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays.pop("meta").tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise SnapshotError(f"{path.name}: not a readable index snapshot ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise SnapshotError(f"{path.name}: not an index snapshot of format {FORMAT}")
    if meta.get("dimension") != dimension:
        raise SnapshotError(f"{path.name}: vectors of {meta.get('dimension')} dimensions")
    index = HybridIndex(dimension, **options)
    try:
        keys: list[str] = meta["keys"]
        count = len(keys)
        index.keys, index.texts, index.groups = keys, meta["texts"], meta["groups"]
        index.rows = {key: row for row, key in enumerate(keys)}
        index.metadata = meta["metadata"]
        index.next_serial = int(meta["next_serial"])
        index.postings = Postings(
            meta["vocabulary"],
            arrays["offsets"].astype(np.int64),
            arrays["postings"].astype(np.int64),
            arrays["frequencies"].astype(np.float32),
            arrays["lengths"].astype(np.float32),
        )
        if dimension is not None:
            index.vectors = Vectors(dimension, arrays["matrix"], arrays["present"])
        index.set_columns(
            count,
            positions=arrays["positions"],
            created=arrays["created"],
            expires=arrays["expires"],
            serials=arrays["serials"],
        )
        if "graph" in arrays and dimension is not None:
            index.graph = Graph.from_bytes(dimension, arrays["graph"])
        lengths_ok = len(index.texts) == len(index.groups) == count == index.postings.count and (
            dimension is None or index.vectors.count == count
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{path.name}: an inconsistent index snapshot ({exc})") from exc
    if not lengths_ok or len(index.rows) != count:
        raise SnapshotError(f"{path.name}: an inconsistent index snapshot")
    rows = arrays["postings"]
    if rows.size and (int(rows.min()) < 0 or int(rows.max()) >= count):
        raise SnapshotError(f"{path.name}: postings point past the index's items")
    return index
