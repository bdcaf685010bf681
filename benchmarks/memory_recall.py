"""How fast is memory recall at 100,000 and 1,000,000 memories of one user, and what
does loading such a user cost? Dense search by exact scan (fp32, fp16, int8) vs an
HNSW graph (usearch), measured; recall end to end against the old exact scan.

Memories are synthetic, and said so in the results: texts of real-text-like tokens
(Zipf-distributed words of a 2,000-word vocabulary, names, numbers) and clustered
random unit vectors of MiniLM's 384 dimensions, so that 1,000,000 of them can be
made in seconds. The query embedding is real: all-MiniLM-L6-v2 on the CPU, timed
per query (its own line, and inside "recall incl. embedding").

* **dense**: p50/p95 of one nearest-neighbour query and recall@10 against the exact
  fp32 scan, for each way of searching;
* **recall**: what a turn's recall costs: the hybrid index's search (BM25 + dense
  fused by rank, the calibrated scores of the hits), then with the query's
  embedding; the baseline is the old recall (0.8 cosine + 0.2 word share over an
  exact scan of every memory) in the same run, so the ratio reads across machines;
* **load**: a user's index from the SQLite table (rebuild) and from its snapshot
  (checked against the table first), at 100,000 memories;
* **busy**: the same with two processes spinning on the CPU meanwhile.

    .venv/bin/python benchmarks/memory_recall.py            # 100k and 1M, quiet + busy
    .venv/bin/python benchmarks/memory_recall.py --quick    # 20k and 100k, fewer queries

Results: benchmarks/results/memory_recall.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, table, write_results

from mongars_plugins.memory.index import MemoryIndex, Row
from mongars_plugins.search.dense import Graph
from mongars_plugins.search.lexical import tokens

DIMENSION = 384
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
COMMON = [
    "the",
    "my",
    "a",
    "and",
    "i",
    "to",
    "is",
    "in",
    "of",
    "at",
    "with",
    "for",
    "on",
    "was",
    "have",
    "we",
    "our",
    "she",
    "he",
    "they",
    "it",
    "when",
    "like",
    "love",
    "prefer",
    "hate",
    "moved",
    "live",
    "work",
    "started",
    "bought",
    "visited",
    "called",
    "named",
    "sister",
    "brother",
    "mother",
    "father",
    "wife",
    "husband",
    "son",
    "daughter",
    "friend",
    "dog",
    "cat",
    "car",
    "house",
    "flat",
    "job",
    "doctor",
    "trip",
    "flight",
    "birthday",
    "dinner",
    "lunch",
    "coffee",
    "tea",
    "wine",
    "book",
    "film",
    "music",
    "running",
    "hiking",
    "school",
    "office",
    "bank",
    "hospital",
    "garden",
    "kitchen",
    "weekend",
    "morning",
    "evening",
]


def synthetic(count: int, seed: int = 0) -> tuple[list[str], np.ndarray[Any, Any]]:
    """``count`` texts and clustered unit vectors (clusters of similar meaning)."""
    rng = np.random.default_rng(seed)
    vocabulary = COMMON + [f"w{n}" for n in range(2000)] + [f"Name{n}" for n in range(500)]
    ranks = np.arange(1, len(vocabulary) + 1)
    weights = 1 / ranks**1.05
    weights /= weights.sum()
    lengths = rng.integers(5, 16, count)
    words = rng.choice(len(vocabulary), size=int(lengths.sum()), p=weights)
    texts: list[str] = []
    start = 0
    for length in lengths.tolist():
        picked = words[start : start + length]
        start += length
        texts.append(" ".join(vocabulary[w] for w in picked) + f" {rng.integers(1, 99)}")
    # Topics, subtopics inside them, then each memory's own direction: nearest
    # neighbours at cosine ~0.65, unrelated memories ~0, as with MiniLM.
    topics = rng.standard_normal((max(20, count // 1000), DIMENSION)).astype(np.float32)
    subtopics = rng.standard_normal((max(100, count // 20), DIMENSION)).astype(np.float32)
    topic_of = rng.integers(0, len(topics), len(subtopics))
    vectors = np.empty((count, DIMENSION), dtype=np.float32)
    for begin in range(0, count, 100_000):
        end = min(count, begin + 100_000)
        sub = rng.integers(0, len(subtopics), end - begin)
        noise = rng.standard_normal((end - begin, DIMENSION)).astype(np.float32)
        chunk = topics[topic_of[sub]] + 0.8 * subtopics[sub] + 0.6 * noise
        vectors[begin:end] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return texts, vectors


def queries(texts: list[str], vectors: np.ndarray[Any, Any], count: int) -> list[tuple[str, Any]]:
    """Queries near stored memories: half of a memory's words, a vector at cosine ~0.8."""
    rng = np.random.default_rng(99)
    chosen = rng.choice(len(texts), count, replace=False)
    found = []
    for row in chosen.tolist():
        words = texts[row].split()
        text = " ".join(words[: max(3, len(words) // 2)])
        vector = vectors[row] + 0.04 * rng.standard_normal(DIMENSION).astype(np.float32)
        found.append((text, (vector / np.linalg.norm(vector)).astype(np.float32)))
    return found


def timed(call: Callable[[], Any], repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) * 1000 / repeats


def latency(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 3),
        "p95_ms": round(percentile(values, 0.95), 3),
    }


# -- the old recall: 0.8 cosine + 0.2 IDF-weighted word share, exact scan ------------


class OldRecall:
    def __init__(self, texts: list[str], vectors: np.ndarray[Any, Any]) -> None:
        self.matrix = vectors
        self.count = len(texts)
        postings: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            for word in set(tokens(text)):
                postings.setdefault(word, []).append(row)
        self.postings = {w: np.asarray(rows) for w, rows in postings.items()}

    def search(self, text: str, vector: Any, limit: int = 10) -> Any:
        words = set(tokens(text))
        scores = np.zeros(self.count)
        weights: dict[str, float] = {
            w: math.log(1 + self.count / len(self.postings[w])) for w in words if w in self.postings
        }
        total = sum(weights.get(w, math.log(1 + self.count)) for w in words)
        for word, weight in weights.items():
            scores[self.postings[word]] += weight
        if total:
            scores /= total
        scores = 0.8 * np.clip(self.matrix @ vector, 0, 1) + 0.2 * scores
        top = np.argpartition(-scores, limit)[:limit]
        return top[np.argsort(-scores[top])]


# -- measurements ---------------------------------------------------------------------


def build_index(texts: list[str], vectors: Any, ann: bool) -> tuple[MemoryIndex, float, float]:
    index = MemoryIndex(DIMENSION, ann_min_items=1 if ann else None)
    rows = [
        Row(n + 1, text, NOW - timedelta(minutes=len(texts) - n), f"s{n // 20}", None, vectors[n])
        for n, text in enumerate(texts)
    ]
    start = time.perf_counter()
    index.load("bench", rows)
    built = time.perf_counter() - start
    graph_seconds = 0.0
    partition = index.partition("bench")
    assert partition is not None
    if ann:
        start = time.perf_counter()
        made = partition.build_graph()
        assert made is not None
        partition.install_graph(*made)
        graph_seconds = time.perf_counter() - start
    return index, built, graph_seconds


def dense_methods(
    vectors: Any, asked: list[tuple[str, Any]], graph: Graph | None
) -> dict[str, Any]:
    """Nearest-neighbour latency and recall@10 vs exact fp32, per method."""
    exact = {
        i: set(np.argpartition(-(vectors @ v), 10)[:10].tolist()) for i, (_, v) in enumerate(asked)
    }
    halves = vectors.astype(np.float16)
    scale = 127.0
    bytes8 = np.clip(np.round(vectors * scale), -127, 127).astype(np.int8)
    methods: dict[str, Callable[[Any], set[int]]] = {
        "exact fp32 (numpy)": lambda v: set(np.argpartition(-(vectors @ v), 10)[:10].tolist()),
        "exact fp16 (numpy)": lambda v: set(
            np.argpartition(-(halves @ v.astype(np.float16)), 10)[:10].tolist()
        ),
        "exact int8 (numpy)": lambda v: set(
            np.argpartition(-(bytes8.astype(np.int16) @ np.round(v * scale).astype(np.int16)), 10)[
                :10
            ].tolist()
        ),
    }
    if graph is not None:
        methods["HNSW fp16 (usearch), top 10"] = lambda v: set(graph.search(v, 10).tolist())
    results: dict[str, Any] = {}
    for name, method in methods.items():
        sample = asked if "fp32" in name or "HNSW" in name else asked[:10]
        times, hits = [], []
        for number, (_, vector) in enumerate(sample):
            start = time.perf_counter()
            found = method(vector)
            times.append((time.perf_counter() - start) * 1000)
            hits.append(len(found & exact[number]) / 10)
        results[name] = {**latency(times), "recall_at_10": round(float(np.mean(hits)), 4)}
    return results


def recall_latency(
    index: MemoryIndex,
    old: OldRecall,
    asked: list[tuple[str, Any]],
    embed: Callable[[str], Any] | None,
) -> dict[str, Any]:
    """A turn's recall: the hybrid search and calibrated scores (and the query embedding)."""
    new_times, old_times, with_embed, embed_times = [], [], [], []
    for text, vector in asked:
        start = time.perf_counter()
        hits = index.hits("bench", text, vector, now=NOW, limit=10)
        for hit in hits:
            index.calibrated("bench", text, hit)
        new_times.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        old.search(text, vector)
        old_times.append((time.perf_counter() - start) * 1000)
        if embed is not None:
            start = time.perf_counter()
            embed(text)
            spent = (time.perf_counter() - start) * 1000
            embed_times.append(spent)
            with_embed.append(spent + new_times[-1])
    found: dict[str, Any] = {
        "hybrid": latency(new_times),
        "old_exact_scan": latency(old_times),
        "ratio_p95": round(percentile(new_times, 0.95) / percentile(old_times, 0.95), 3),
    }
    if embed is not None:
        found["query_embedding"] = latency(embed_times)
        found["hybrid_with_embedding"] = latency(with_embed)
    return found


async def load_times(texts: list[str], vectors: Any, data_dir: Path) -> dict[str, Any]:
    """Loading a user from the SQLite table (rebuild) and from its snapshot."""
    from mongars_core.storage.models import MemoryRecord, UserRecord
    from mongars_core.storage.store import Store
    from mongars_plugins.memory import snapshots

    store = await Store.open(f"sqlite+aiosqlite:///{data_dir / 'bench.sqlite3'}")
    try:
        async with store.session(write=True) as session:
            session.add(UserRecord(id="bench"))
            await session.commit()
        for begin in range(0, len(texts), 20_000):
            await store.add_memories(
                [
                    MemoryRecord(
                        user_id="bench",
                        session_id=f"s{n // 20}",
                        text=texts[n],
                        embedding=vectors[n].tobytes(),
                        embedder="minilm",
                        created_at=NOW - timedelta(minutes=len(texts) - n),
                    )
                    for n in range(begin, min(len(texts), begin + 20_000))
                ]
            )
        index = MemoryIndex(DIMENSION, ann_min_items=20_000)
        start = time.perf_counter()
        rows = await snapshots.read_rows(store, "bench", DIMENSION, "minilm")
        read = time.perf_counter() - start
        partition, wordings = await asyncio.to_thread(index.build, rows)
        rebuild = time.perf_counter() - start
        start = time.perf_counter()
        built = partition.build_graph()
        assert built is not None
        partition.install_graph(*built)
        graph = time.perf_counter() - start
        path = snapshots.snapshot_path(data_dir, "bench")
        start = time.perf_counter()
        snapshots.write_snapshot(path, "bench", partition, wordings, "minilm")
        write = time.perf_counter() - start
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            expected = await snapshots.signature(store, "bench")
            found = snapshots.read_snapshot(path, "bench", index, "minilm", expected)
            loads.append(time.perf_counter() - start)
            assert found is not None and len(found[0]) == len(texts)
        return {
            "memories": len(texts),
            "table_read_s": round(read, 3),
            "rebuild_from_table_s": round(rebuild, 3),
            "graph_build_s": round(graph, 3),
            "snapshot_write_s": round(write, 3),
            "snapshot_bytes": path.stat().st_size,
            "snapshot_load_s": round(min(loads), 3),
            "snapshot_load_worst_s": round(max(loads), 3),
        }
    finally:
        await store.close()


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy(cores: int) -> Iterator[None]:
    """``cores`` processes spinning on the CPU while the block runs."""
    context = multiprocessing.get_context("spawn")
    spinners = [context.Process(target=_spin, daemon=True) for _ in range(cores)]
    for spinner in spinners:
        spinner.start()
    try:
        time.sleep(0.5)
        yield
    finally:
        for spinner in spinners:
            spinner.terminate()
            spinner.join()


def embedder() -> Callable[[str], Any] | None:
    try:
        from mongars_plugins.cuda.embedder import MiniLMEmbedder
    except ImportError:
        return None
    model = MiniLMEmbedder("cpu")
    model.embed(["warm up"])
    return lambda text: model.embed([text])


def measure(size: int, count: int, embed: Callable[[str], Any] | None, spin: int) -> dict[str, Any]:
    texts, vectors = synthetic(size)
    asked = queries(texts, vectors, count)
    index, built, graph_s = build_index(texts, vectors, ann=True)
    partition = index.partition("bench")
    assert partition is not None and partition.graph is not None
    exact_index = MemoryIndex(DIMENSION, ann_min_items=None)
    exact_index.install("bench", partition_copy_without_graph(partition), {})
    old = OldRecall(texts, vectors)
    result: dict[str, Any] = {
        "memories": size,
        "index_build_s": round(built, 2),
        "graph_build_s": round(graph_s, 2),
    }
    for label, cores in (("quiet", 0), ("busy", spin)):
        if label == "busy" and not spin:
            continue
        with busy(cores) if cores else _nothing():
            result[label] = {
                "dense": dense_methods(vectors, asked, partition.graph),
                "recall_hnsw": recall_latency(index, old, asked, embed),
                "recall_exact": recall_latency(
                    exact_index, old, asked[: max(20, count // 4)], None
                ),
            }
        print(f"{size} {label}: {result[label]['recall_hnsw']}", file=sys.stderr)
    return result


def partition_copy_without_graph(partition: Any) -> Any:
    copy = object.__new__(type(partition))
    copy.__dict__.update(partition.__dict__)
    copy.graph = None
    return copy


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _row(name: str, stats: dict[str, float], ratio: object) -> str:
    return f"| {name} | {stats['p50_ms']} | {stats['p95_ms']} | {ratio} |"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Memory recall at scale",
        "",
        f"Measured {results['measured']} on {os.cpu_count()} cores; {results['note']}",
        "",
        "Command: `" + results["command"] + "`",
        "",
    ]
    if results.get("query_embedding"):
        e = results["query_embedding"]
        lines += [
            f"Query embedding (all-MiniLM-L6-v2, CPU, one short query): p50 {e['p50_ms']} ms, "
            f"p95 {e['p95_ms']} ms (quiet).",
            "",
        ]
    for entry in results["sizes"]:
        size = entry["memories"]
        lines += [f"## {size:,} memories of one user", ""]
        lines += [
            f"Index built in {entry['index_build_s']} s (tokenising, postings, matrix); "
            f"HNSW graph in {entry['graph_build_s']} s (once: it is kept in the snapshot).",
            "",
        ]
        for label in ("quiet", "busy"):
            if label not in entry:
                continue
            part = entry[label]
            lines += [f"### Dense search, {label}", ""]
            rows = [
                f"| {name} | {v['p50_ms']} | {v['p95_ms']} | {v['recall_at_10']} |"
                for name, v in part["dense"].items()
            ]
            lines += [table(["method", "p50 ms", "p95 ms", "recall@10 vs exact"], rows), ""]
            r, x = part["recall_hnsw"], part["recall_exact"]
            rows = [
                _row("hybrid, HNSW dense", r["hybrid"], r["ratio_p95"]),
                _row("hybrid, exact dense", x["hybrid"], x["ratio_p95"]),
                _row("old exact scan (baseline)", r["old_exact_scan"], 1),
            ]
            if "hybrid_with_embedding" in r:
                rows.append(_row("query embedding alone", r["query_embedding"], ""))
                rows.append(
                    _row(
                        "**recall incl. embedding** (hybrid, HNSW)", r["hybrid_with_embedding"], ""
                    )
                )
            lines += [f"### Recall, {label}", ""]
            lines += [table(["recall", "p50 ms", "p95 ms", "p95 / old"], rows), ""]
    if results.get("load"):
        lines += ["## Loading a user", ""]
        for label, load in results["load"].items():
            size_mb = load["snapshot_bytes"] / 1e6
            lines += [
                f"{label}: {load['memories']:,} memories: from the table "
                f"{load['rebuild_from_table_s']} s (reading the rows {load['table_read_s']} s), "
                f"graph {load['graph_build_s']} s, snapshot written in "
                f"{load['snapshot_write_s']} s ({size_mb:.0f} MB); **from the snapshot, "
                f"checked against the table: {load['snapshot_load_s']} s** (worst of 3: "
                f"{load['snapshot_load_worst_s']} s).",
                "",
            ]
    lines += [
        "The dense method is chosen from these figures: the exact fp32 scan below "
        "`memory.ann_min_memories` (20,000 embedded memories), the HNSW graph (usearch, "
        "fp16, expansion 128) above it. The index asks the graph for 30 candidates or "
        "more and re-scores them exactly, so the fused top 10 misses less than the "
        "graph's own top 10. numpy has no fp16 or int8 matrix-vector kernel, so those "
        "scans are slower than fp32 despite the smaller data.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default=None, help="comma-separated sizes (default 100000,1000000)"
    )
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--load-size", type=int, default=100_000)
    parser.add_argument("--busy-cores", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="20k and 100k, 60 queries")
    parser.add_argument("--no-embed", action="store_true", help="skip the real query embedding")
    args = parser.parse_args()
    sizes = [
        int(s)
        for s in (args.sizes or ("20000,100000" if args.quick else "100000,1000000")).split(",")
    ]
    count = args.queries or (60 if args.quick else 300)
    embed = None if args.no_embed else embedder()
    results: dict[str, Any] = {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/memory_recall.py " + " ".join(sys.argv[1:]),
        "note": "synthetic memories (clustered random unit vectors of 384 dimensions, "
        "Zipf-distributed real-text-like tokens); the query embedding is real MiniLM. "
        + ("Other work was running on the machine (not a quiet run)." if args.quick else ""),
        "sizes": [],
    }
    if embed is not None:
        times = [timed(lambda: embed("what is my sister called")) for _ in range(50)]
        results["query_embedding"] = latency(times)
    for size in sizes:
        results["sizes"].append(measure(size, count, embed, args.busy_cores))
    if args.load_size:
        texts, vectors = synthetic(args.load_size, seed=5)
        results["load"] = {}
        with tempfile.TemporaryDirectory() as folder:
            results["load"]["quiet"] = asyncio.run(load_times(texts, vectors, Path(folder)))
        if args.busy_cores:
            with tempfile.TemporaryDirectory() as folder, busy(args.busy_cores):
                results["load"]["busy"] = asyncio.run(load_times(texts, vectors, Path(folder)))
    write_results("memory_recall", results, markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
