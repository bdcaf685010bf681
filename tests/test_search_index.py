"""The hybrid index: BM25 and dense search fused by rank, time, expiry, neighbours,
the HNSW graph, snapshots; and the memory plugin's snapshots, checked before use."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mongars_core.retrieval import time_intent
from mongars_plugins.memory import MEMORY, snapshots
from mongars_plugins.search import HybridIndex, IndexItem, SnapshotError, mentions_time
from mongars_plugins.search.index import only_asks
from mongars_plugins.search.lexical import K1, B, tokens

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def unit(values: list[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def items(*texts: str, days_ago: list[int] | None = None) -> list[IndexItem]:
    ages = days_ago or [0] * len(texts)
    return [
        IndexItem(str(n), text, "s", n, NOW - timedelta(days=ages[n]))
        for n, text in enumerate(texts)
    ]


def test_bm25_scores_follow_okapi() -> None:
    index = HybridIndex(None)
    index.add(items("red apple pie", "green apple", "blue sky over the sea today"))
    scores = index.postings.scores(tokens("apple"))
    count, frequency = 3, 2
    idf = math.log(1 + (count - frequency + 0.5) / (frequency + 0.5))
    average = (3 + 2 + 5) / 3  # "the" is a stop word: "blue sky over sea today"
    expected = [idf * (K1 + 1) / (1 + K1 * (1 - B + B * length / average)) for length in (3, 2)]
    assert scores[:2] == pytest.approx(expected, rel=1e-5) and scores[2] == 0
    hits = index.search("apple", None, limit=5, now=NOW)
    assert [hit.key for hit in hits] == ["1", "0"]  # the shorter document first
    assert hits[0].ranks == {"bm25": 1}


def test_dense_and_lexical_are_fused_by_reciprocal_rank() -> None:
    index = HybridIndex(3)
    index.add(
        [
            IndexItem("words", "my dog Rex is a good boy", "s", 0, NOW, vector=unit([0, 1, 0])),
            IndexItem("both", "the dog barks", "s", 1, NOW, vector=unit([1, 0.1, 0])),
            IndexItem("meaning", "a puppy", "s", 2, NOW, vector=unit([1, 0, 0])),
        ]
    )
    hits = index.search("dog", unit([1, 0, 0]), limit=3, now=NOW)
    # Found by both methods beats first in one: "meaning" is the dense list's first only.
    assert [hit.key for hit in hits] == ["both", "words", "meaning"]
    assert hits[0].ranks == {"bm25": 1, "dense": 2} and hits[2].ranks == {"dense": 1}
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 62, abs=1e-6)
    assert hits[2].cosine == pytest.approx(1.0) and hits[2].bm25 == 0


def test_a_time_window_favours_what_was_said_in_it() -> None:
    index = HybridIndex(None)
    index.add(
        items("trip to Rome planned", "trip to Oslo planned", "trip to Nice", days_ago=[30, 1, 60])
    )
    plain = index.search("trip", None, limit=3, now=NOW)
    assert plain[0].key != "1" or plain[0].ranks == {"bm25": 1}
    intent = time_intent("what trip did I mention yesterday", NOW)
    hits = index.search("what trip did I mention yesterday", None, limit=3, now=NOW, intent=intent)
    assert hits[0].key == "1" and "time" in hits[0].ranks


def test_a_when_question_favours_dated_items_and_ties_go_to_the_newer() -> None:
    index = HybridIndex(None)
    index.add(items("dentist appointment", "dentist appointment on March 3", days_ago=[1, 5]))
    question = "when is my dentist appointment"
    hits = index.search(question, None, limit=2, now=NOW, intent=time_intent(question, NOW))
    assert hits[0].key == "1"
    assert mentions_time("at 6 pm") and mentions_time("in 2019") and not mentions_time("a cat")
    same = HybridIndex(None)
    same.add(items("tea please", "tea please", days_ago=[9, 2]))
    assert [hit.key for hit in same.search("tea", None, limit=2, now=NOW)] == ["1", "0"]


def test_a_memory_that_only_asks_a_question_yields_to_a_statement() -> None:
    index = HybridIndex(None)
    index.add(items("what is a good name for a rabbit?", "my rabbit is a good boy"))
    hits = index.search("my good rabbit", None, limit=2, now=NOW)
    # Both hold every word of the query; the question states nothing about the user.
    assert [hit.key for hit in hits] == ["1", "0"]
    assert hits[1].ranks == {"bm25": 1}  # first by words, kept at 0.8 of its score
    assert hits[1].score == pytest.approx(0.8 * (1 / 61), abs=1e-6)
    assert only_asks("Quick one: how do I share my screen?")
    assert not only_asks("I love Rex. Should we get him a friend?")


def test_a_lexical_match_on_few_of_the_query_s_words_counts_in_proportion() -> None:
    index = HybridIndex(3)
    index.add(
        [
            IndexItem(
                "word", "set a reminder to call the bank", "s", 0, NOW, vector=unit([0, 0, 1])
            ),
            IndexItem("meaning", "we adopted a parrot", "s", 1, NOW, vector=unit([1, 0.2, 0])),
            IndexItem("other", "the weather is grey", "s", 2, NOW, vector=unit([0.5, 1, 0])),
        ]
    )
    # "call" is one of the query's four words, all as rare: a share of 0.25, under 0.3.
    question = "what did we call our newest feathered companion"
    hits = {hit.key: hit for hit in index.search(question, unit([1, 0, 0]), limit=3, now=NOW)}
    assert hits["word"].ranks == {"bm25": 1, "dense": 3}
    assert hits["word"].score == pytest.approx(0.25 / 0.3 / 61 + 1 / 63, abs=1e-6)
    full = index.search("call the bank", unit([0, 0, 1]), limit=1, now=NOW)[0]
    assert full.key == "word" and full.score == pytest.approx(2 / 61, abs=1e-6)


def test_expired_and_removed_items_are_never_found() -> None:
    index = HybridIndex(None)
    index.add(
        [
            IndexItem("old", "locker code 4521", "s", 0, NOW, expires_at=NOW - timedelta(1)),
            IndexItem("gone", "locker code 1111", "s", 1, NOW),
            IndexItem("kept", "locker code 7777", "s", 2, NOW, expires_at=NOW + timedelta(1)),
        ]
    )
    index.remove(["gone", "unknown"])
    assert [hit.key for hit in index.search("locker code", None, limit=5, now=NOW)] == ["kept"]
    assert len(index) == 2 and "gone" not in index and "old" in index


def test_neighbours_are_the_adjacent_items_of_the_same_group() -> None:
    index = HybridIndex(None)
    index.add(
        [
            IndexItem("a3", "third", "a", 3, NOW),
            IndexItem("a1", "first", "a", 1, NOW),
            IndexItem("b2", "other", "b", 2, NOW),
            IndexItem("a2", "second", "a", 2, NOW),
            IndexItem("a4", "fourth", "a", 4, NOW),
        ]
    )
    before, after = index.neighbours("a2", 1)
    assert [i.key for i in before] == ["a1"] and [i.key for i in after] == ["a3"]
    index.remove(["a3"])
    assert [i.key for i in index.neighbours("a2", 2)[1]] == ["a4"]
    assert index.neighbours("a1", 2)[0] == [] and index.neighbours("nope", 1) == ([], [])


def clustered(count: int, dimension: int, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, dimension)).astype(np.float32)
    points = centres[rng.integers(0, 20, count)] + 0.6 * rng.standard_normal((count, dimension))
    points = points.astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_the_graph_finds_what_the_exact_scan_finds_and_follows_changes() -> None:
    vectors = clustered(3000, 32)
    exact = HybridIndex(32, ann_min_items=None)
    graphed = HybridIndex(32, ann_min_items=1000)
    for index in (exact, graphed):
        index.add(
            [IndexItem(str(n), f"w{n}", "s", n, NOW, vector=v) for n, v in enumerate(vectors)]
        )
    assert graphed.wants_graph() and not exact.wants_graph()
    built = graphed.build_graph()
    assert built is not None and graphed.build_graph(stop=lambda: True) is None
    graph, covered = built
    extra = [IndexItem("late", "late", "s", 9999, NOW, vector=vectors[7])]
    graphed.add(extra)  # while the graph was being built
    exact.add(extra)
    graphed.install_graph(graph, covered)
    overlap = []
    for query in clustered(30, 32, seed=1):
        want = {hit.key for hit in exact.search("", query, limit=10, now=NOW)}
        got = {hit.key for hit in graphed.search("", query, limit=10, now=NOW)}
        overlap.append(len(want & got) / 10)
    assert np.mean(overlap) >= 0.9
    assert "late" in {hit.key for hit in graphed.search("", vectors[7], limit=3, now=NOW)}
    graphed.remove(["7", "late"])
    assert {"7", "late"}.isdisjoint(h.key for h in graphed.search("", vectors[7], limit=5, now=NOW))


def test_a_snapshot_loads_as_it_was_and_is_private(tmp_path: Path) -> None:
    vectors = clustered(1500, 16)
    index = HybridIndex(16, ann_min_items=1000)
    index.add(
        [
            IndexItem(str(n), f"word{n % 50} item", "g", n, NOW, vector=v)
            for n, v in enumerate(vectors)
        ]
    )
    built = index.build_graph()
    assert built is not None
    index.install_graph(*built)
    index.remove(["3"])
    index.metadata = {"owner": "ines"}
    path = tmp_path / "snap" / "one.npz"
    index.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["one.npz"]  # no temporary left
    loaded = HybridIndex.load(path, 16)
    assert len(loaded) == len(index) == 1499 and loaded.metadata == {"owner": "ines"}
    assert loaded.graph is not None
    for query, text in ((vectors[10], "word10"), (vectors[99], "word49")):
        # The same hits (BM25's counts differ by the removed row, not the order).
        want = [(h.key, h.ranks, h.cosine) for h in index.search(text, query, limit=10, now=NOW)]
        got = loaded.search(text, query, limit=10, now=NOW)
        assert [(h.key, h.ranks, h.cosine) for h in got] == want
    loaded.add([IndexItem("new", "word10 fresh", "g", 5000, NOW, vector=vectors[10])])
    assert "new" in {h.key for h in loaded.search("word10", vectors[10], limit=5, now=NOW)}
    with pytest.raises(SnapshotError, match="dimensions"):
        HybridIndex.load(path, 8)
    path.write_bytes(b"not an index")
    with pytest.raises(SnapshotError):
        HybridIndex.load(path, 16)


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta"]


def test_compaction_keeps_what_is_live() -> None:
    index = HybridIndex(4)
    index.add(
        [
            IndexItem(str(n), WORDS[n % 7], "g", n, NOW, vector=unit([1, n, 0, 1]))
            for n in range(3000)
        ]
    )
    index.remove([str(n) for n in range(0, 3000, 2)])
    assert index.count == 3000 and len(index) == 1500  # marked only
    index.remove(["1"])  # past half: compacted
    assert index.count == len(index) == 1499 and index.dead == 0
    hits = index.search("delta", None, limit=1000, now=NOW)
    assert {h.key for h in hits} == {str(n) for n in range(3000) if n % 2 and n % 7 == 3 and n != 1}


# -- the memory plugin's snapshots ----------------------------------------------------------


async def snapshot_assistant(make_assistant: Any, settings: Any, tmp_path: Path) -> Any:
    memory = settings.memory.model_copy(update={"snapshot_min_memories": 2, "remember": "all"})
    return await make_assistant(memory=memory, data_dir=tmp_path / "data")


async def test_a_snapshot_is_used_only_while_it_matches_the_database(
    make_assistant: Any, settings: Any, tmp_path: Path
) -> None:
    first = await snapshot_assistant(make_assistant, settings, tmp_path)
    for text in ["My dog is called Rex", "I live in Lyon", "I prefer tea"]:
        await first.chat("ines", text)
    await first.services.stash[MEMORY].close()
    path = snapshots.snapshot_path(tmp_path / "data", "ines")
    assert path.exists() and "ines" not in path.name
    # Another process (here: another assistant) deletes a memory: the snapshot is stale.
    second = await snapshot_assistant(make_assistant, settings, tmp_path)
    [lyon] = [m for m in await second.list_memories("ines") if "Lyon" in m.text]
    await second.delete_memory("ines", lyon.id)
    third = await snapshot_assistant(make_assistant, settings, tmp_path)
    assert await third.search_memories("ines", "where do I live Lyon") == []
    assert [m.text for m in await third.search_memories("ines", "dog Rex")] == [
        "My dog is called Rex"
    ]


async def test_a_matching_snapshot_is_read_and_another_users_is_refused(
    make_assistant: Any, settings: Any, tmp_path: Path
) -> None:
    first = await snapshot_assistant(make_assistant, settings, tmp_path)
    for text in ["My dog is called Rex", "I live in Lyon"]:
        await first.chat("ines", text)
        await first.chat("omar", text.replace("Rex", "Max"))
    hippocampus = first.services.stash[MEMORY]
    await hippocampus.close()
    ines = snapshots.snapshot_path(tmp_path / "data", "ines")
    omar = snapshots.snapshot_path(tmp_path / "data", "omar")
    second = await snapshot_assistant(make_assistant, settings, tmp_path)
    memory = second.services.stash[MEMORY]
    expected = await snapshots.signature(second.services.store, "ines")
    assert snapshots.read_snapshot(ines, "ines", memory.index, None, expected) is not None
    # omar's file under ines's name (same counts would not help: it names its user).
    assert snapshots.read_snapshot(omar, "ines", memory.index, None, expected) is None
    omar.replace(ines)
    found = await second.search_memories("ines", "dog")
    assert [m.text for m in found] == ["My dog is called Rex"]


async def test_erasing_a_user_drops_their_index_and_its_file(
    make_assistant: Any, settings: Any, tmp_path: Path
) -> None:
    assistant = await snapshot_assistant(make_assistant, settings, tmp_path)
    for text in ["My dog is called Rex", "I live in Lyon"]:
        await assistant.chat("ines", text)
        await assistant.chat("omar", text)
    hippocampus = assistant.services.stash[MEMORY]
    await hippocampus.close()
    await assistant.services.plugins.erase_user(assistant.services, "ines")
    assert not snapshots.snapshot_path(tmp_path / "data", "ines").exists()
    assert snapshots.snapshot_path(tmp_path / "data", "omar").exists()
    assert not hippocampus.index.loaded("ines") and hippocampus.index.loaded("omar")


@pytest.mark.parametrize("damage", ["truncated", "flipped", "junk zip"])
async def test_a_damaged_snapshot_is_rebuilt_from_the_database(
    make_assistant: Any, settings: Any, tmp_path: Path, damage: str
) -> None:
    first = await snapshot_assistant(make_assistant, settings, tmp_path)
    for text in ["My dog is called Rex", "I live in Lyon", "I prefer tea"]:
        await first.chat("ines", text)
    await first.services.stash[MEMORY].close()
    path = snapshots.snapshot_path(tmp_path / "data", "ines")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 200)
    second = await snapshot_assistant(make_assistant, settings, tmp_path)
    found = await second.search_memories("ines", "dog Rex")
    assert [m.text for m in found] == ["My dog is called Rex"]
    found = await second.retrieve("ines", "what is my dog called", kinds=frozenset({"memory"}))
    assert found and found[0].text == "My dog is called Rex"
