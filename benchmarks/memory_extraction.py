"""Does memory extraction help recall? Evidence recall@10 with and without extracted facts.

The bundled SmolLM2 model, through the llama.cpp engine's constrained output
(``benchmarks/memory_facts.py` (`extract_facts`)`), turns each user turn of a
subset of the dialogue set (benchmarks/dialogue_data.py) into at most three
``subject: value`` facts. Two copies of each user are imported: the raw turns
alone, and the raw turns plus their facts as extra memories (same time and
session; a fact found counts as its turn found). The same questions are asked
of both, through ``Assistant.retrieve`` and through the old recall
(0.8 × cosine + 0.2 × word overlap) on the same MiniLM embeddings, so the
difference is the facts' alone. The cost is the model's time and tokens per
message.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_extraction.py            # dev, 2 users
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_extraction.py --quick  # 1 user

Results: benchmarks/results/memory_extraction.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import percentile, table, write_results
from dialogue_data import SPLITS, UserDialogue, generate
from evidence_recall import baseline_ranked, memory_items, score, system_ranked
from memory_facts import fact_request, parse_facts

from mongars_core.llm import LLMBackend
from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings

Items = list[tuple[str, dict[str, Any]]]


class Extractor:
    """Facts of each distinct message, once; what each extraction cost."""

    def __init__(self, llm: LLMBackend) -> None:
        self.llm = llm
        self.cache: dict[str, list[str]] = {}
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.prompt_tokens: list[int] = []
        self.unparsed = 0

    async def facts(self, text: str) -> list[str]:
        if text not in self.cache:
            request = fact_request(text)
            started = time.perf_counter()
            reply = await asyncio.wait_for(self.llm.generate(request), 60)
            self.seconds.append(time.perf_counter() - started)
            if request.outcome.tokens is not None:
                self.tokens.append(request.outcome.tokens)
            if request.outcome.prompt_tokens is not None:
                self.prompt_tokens.append(request.outcome.prompt_tokens)
            try:
                json.loads(reply)
            except json.JSONDecodeError:
                self.unparsed += 1
            self.cache[text] = parse_facts(reply)
        return self.cache[text]


async def with_facts(extractor: Extractor, items: Items) -> tuple[Items, list[dict[str, Any]]]:
    """``items`` and, after each, its facts as memories standing for the same turn."""
    extended: Items = []
    samples: list[dict[str, Any]] = []
    seen = {(item["session_id"], item["text"]) for _, item in items}
    for turn_id, item in items:
        extended.append((turn_id, item))
        facts = await extractor.facts(item["text"])
        if len(samples) < 60:
            samples.append({"message": item["text"], "facts": facts})
        for fact in facts:
            key = (item["session_id"], fact)
            if key not in seen:
                seen.add(key)
                extended.append((turn_id, {**item, "text": fact}))
    return extended, samples


def _renamed(user: UserDialogue, suffix: str) -> UserDialogue:
    return dataclasses.replace(user, user_id=f"{user.user_id}-{suffix}")


async def main(args: argparse.Namespace) -> int:
    users, sessions = (1, 12) if args.quick else (args.users, args.sessions)
    data = generate(args.split, seed=args.seed, users=users, sessions=sessions)
    ranked: dict[str, dict[str, list[str]]] = {
        "system_raw": {},
        "system_facts": {},
        "baseline_raw": {},
        "baseline_facts": {},
    }
    samples: list[dict[str, Any]] = []
    counts = {"messages": 0, "facts": 0}
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            memory={"embedder": "minilm", "ttl_days": None},
            load_plugins=["memory", "cuda", "llamacpp"],
        )
        async with await Assistant.from_settings(settings) as assistant:
            embedder = assistant.services.embedder
            if embedder is None:
                raise SystemExit(
                    "the MiniLM embedder is not installed: pip install 'mongars-assistant[local]'"
                )
            extractor = Extractor(assistant.router)
            await extractor.facts("warm up: load the model")
            extractor.seconds.clear()
            extractor.tokens.clear()
            extractor.prompt_tokens.clear()
            for user in data.users:
                raw = memory_items(user)
                extended, shown = await with_facts(extractor, raw)
                samples.extend(shown)
                counts["messages"] += len(raw)
                counts["facts"] += len(extended) - len(raw)
                ranked["baseline_raw"].update(baseline_ranked(embedder, user, raw, 10))
                ranked["baseline_facts"].update(baseline_ranked(embedder, user, extended, 10))
                if not args.baseline_only:
                    for name, items in (("system_raw", raw), ("system_facts", extended)):
                        result, _, _ = await system_ranked(
                            assistant, _renamed(user, name.split("_")[1]), items, 10
                        )
                        ranked[name].update(result)
    questions = [q for _, q in data.questions]
    scores = {name: score(questions, found) for name, found in ranked.items() if found}
    cost = {
        "distinct_messages": len(extractor.seconds),
        "ms_per_message_p50": round(percentile(extractor.seconds, 0.5) * 1000, 1),
        "ms_per_message_mean": round(statistics.fmean(extractor.seconds) * 1000, 1),
        "tokens_per_message_mean": round(statistics.fmean(extractor.tokens), 1)
        if extractor.tokens
        else None,
        "prompt_tokens_per_message_mean": round(statistics.fmean(extractor.prompt_tokens), 1)
        if extractor.prompt_tokens
        else None,
        "unparsed_replies": extractor.unparsed,
        "facts_per_message": round(counts["facts"] / counts["messages"], 2),
        "run_s": round(time.perf_counter() - started_all, 1),
    }
    markdown = render(data.split, users, sessions, len(questions), scores, cost, samples)
    if not args.quick:
        write_results(
            "memory_extraction",
            {
                "settings": {
                    "split": data.split,
                    "users": users,
                    "sessions": sessions,
                    "seed": args.seed,
                },
                "recall": scores,
                "cost": cost,
                "samples": samples,
            },
            markdown,
        )
    print(markdown)
    return 0


def render(
    split: str,
    users: int,
    sessions: int,
    questions: int,
    scores: dict[str, dict[str, dict[str, float | int]]],
    cost: dict[str, Any],
    samples: list[dict[str, Any]],
) -> str:
    kinds = [k for k in scores["baseline_raw"] if k != "overall"] + ["overall"]
    methods = [m for m in ("system", "baseline") if f"{m}_raw" in scores]
    rows = []
    for kind in kinds:
        cells = [str(scores["baseline_raw"][kind]["questions"])]
        for method in methods:
            raw = float(scores[f"{method}_raw"][kind]["recall_any"])
            facts = float(scores[f"{method}_facts"][kind]["recall_any"])
            cells += [f"{raw:.3f}", f"{facts:.3f}", f"{facts - raw:+.3f}"]
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    columns = ["Kind", "Questions"]
    for method in methods:
        label = "retrieval" if method == "system" else "old recall"
        columns += [f"{label}: raw", f"{label}: raw + facts", "change"]
    deltas = {
        m: float(scores[f"{m}_facts"]["overall"]["recall_any"])
        - float(scores[f"{m}_raw"]["overall"]["recall_any"])
        for m in methods
    }
    main_method = methods[0]
    helps = deltas[main_method] > 0.01
    verdict = (
        f"**Facts help**: overall recall@10 {deltas[main_method]:+.3f} with "
        f"{'the shared retrieval' if main_method == 'system' else 'the old recall'}."
        if helps
        else f"**Facts do not help** (overall recall@10 {deltas[main_method]:+.3f} with "
        f"{'the shared retrieval' if main_method == 'system' else 'the old recall'}): "
        "per issue 12, memory extraction is not kept in the pipeline."
    )
    shown = "\n".join(f"| {s['message']} | {'; '.join(s['facts']) or '–'} |" for s in samples[:15])
    return f"""# Memory extraction: do extracted facts help recall?

`benchmarks/memory_facts.py` (`extract_facts`) with the bundled SmolLM2-135M on the
llama.cpp engine (JSON-schema constrained, greedy, at most 3 facts of two 32-character fields,
{cost["tokens_per_message_mean"]} tokens written per message on average) on the
`{split}` split of `benchmarks/dialogue_data.py`: {users} users, {sessions} sessions
each, {questions} questions. Raw: each user turn one memory; raw + facts: the same
plus the facts as extra memories, a fact found counting as its turn found. Measured
by `benchmarks/memory_extraction.py`.

{table(columns, rows)}

{verdict}

Cost per distinct message: {cost["ms_per_message_p50"]} ms median
({cost["ms_per_message_mean"]} ms mean) on this 2-core machine, about
{cost["prompt_tokens_per_message_mean"]} prompt tokens; {cost["facts_per_message"]}
facts per message (chit-chat included); {cost["unparsed_replies"]} replies unusable.

What the model wrote (first messages):

| Message | Facts |
|---|---|
{shown}
"""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--split", choices=SPLITS, default="dev")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument(
        "--quick", action="store_true", help="1 user of 12 sessions; no results file"
    )
    parser.add_argument(
        "--baseline-only",
        action="store_true",
        help="the old recall only (nothing imported)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(parse())))
