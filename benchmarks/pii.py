"""How much personal data does the bundled scrubber find? Precision and recall per type.

The labelled set (benchmarks/data/pii_labelled.jsonl, built by
benchmarks/pii_data.py) holds chat sentences in English and French with the
spans of personal data in them, and hard negatives. The scrubber's spans
(``mongars_plugins.learning.find_spans``) are compared with the labels, per
entity type, two ways:

* **exact**: a found span counts only if its start, end and type are the
  labelled ones;
* **overlap**: a found span counts if it overlaps a labelled span of its type.

``covered`` is what privacy needs: the share of labelled spans whose every
character ends up inside some placeholder, whatever its type. The baseline is
the time to copy the text (``str.lower``), so the cost reads as a ratio.

    .venv/bin/python benchmarks/pii.py

Results: benchmarks/results/pii.md and .json. Runs in about a second.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import table, write_results

from mongars_plugins.learning.scrub import KINDS, find_spans

DATA = Path(__file__).parent / "data" / "pii_labelled.jsonl"
STRUCTURED_TARGET = 0.98


def load() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]


def ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def evaluate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counts: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    covered = total = 0
    misses: list[dict[str, Any]] = []
    false_positives: list[dict[str, Any]] = []
    for row in rows:
        text = row["text"]
        gold = [(s["start"], s["end"], s["type"]) for s in row["spans"]]
        found = [(s.start, s.end, s.kind) for s in find_spans(text)]
        for kind in KINDS:
            g = [s for s in gold if s[2] == kind]
            f = [s for s in found if s[2] == kind]
            counts[kind]["gold"] += len(g)
            counts[kind]["found"] += len(f)
            counts[kind]["exact_tp"] += sum(s in g for s in f)
            counts[kind]["overlap_found_tp"] += sum(
                any(a < e and b > s for s, e, _ in g) for a, b, _ in f
            )
            counts[kind]["overlap_gold_tp"] += sum(
                any(a < e and b > s for a, b, _ in f) for s, e, _ in g
            )
        for start, end, kind in gold:
            total += 1
            if all(any(a <= i < b for a, b, _ in found) for i in range(start, end)):
                covered += 1
            if (start, end, kind) not in found:
                misses.append(
                    {
                        "text": text,
                        "format": row["format"],
                        "gold": text[start:end],
                        "type": kind,
                        "found": [(text[a:b], k) for a, b, k in found],
                    }
                )
        for start, end, kind in found:
            if not any(a < end and b > start and k == kind for a, b, k in gold):
                false_positives.append(
                    {"text": text, "format": row["format"], "found": text[start:end], "type": kind}
                )
    per_type = {}
    for kind, c in counts.items():
        per_type[kind] = {
            "labelled": c["gold"],
            "found": c["found"],
            "exact": {
                "precision": ratio(c["exact_tp"], c["found"]),
                "recall": ratio(c["exact_tp"], c["gold"]),
            },
            "overlap": {
                "precision": ratio(c["overlap_found_tp"], c["found"]),
                "recall": ratio(c["overlap_gold_tp"], c["gold"]),
            },
        }
    return {
        "per_type": per_type,
        "covered": ratio(covered, total),
        "labelled_spans": total,
        "misses": misses,
        "false_positives": false_positives,
    }


def timing(rows: list[dict[str, Any]]) -> dict[str, float]:
    texts = [row["text"] for row in rows]
    chars = sum(len(t) for t in texts)
    rounds = 20
    start = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            find_spans(text)
    scrub_s = (time.perf_counter() - start) / rounds
    start = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            text.lower()
    copy_s = (time.perf_counter() - start) / rounds
    return {
        "messages": len(texts),
        "us_per_message": round(scrub_s / len(texts) * 1e6, 1),
        "mb_per_s": round(chars / scrub_s / 1e6, 2),
        "ratio_to_lower": round(scrub_s / copy_s, 1),
    }


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main() -> int:
    rows = load()
    result = evaluate(rows)
    speed = timing(rows)
    negatives = sum(1 for row in rows if not row["spans"])
    lines = [
        f"| {kind} | {r['labelled']} | {r['found']} | {fmt(r['exact']['precision'])} | "
        f"{fmt(r['exact']['recall'])} | {fmt(r['overlap']['precision'])} | "
        f"{fmt(r['overlap']['recall'])} |"
        for kind, r in result["per_type"].items()
    ]
    below = [
        kind
        for kind, r in result["per_type"].items()
        if r["exact"]["recall"] is not None and r["exact"]["recall"] < STRUCTURED_TARGET
    ]
    markdown = f"""# PII scrubber: precision and recall per type

The bundled scrubber (`mongars_plugins.learning.scrub`) on
`benchmarks/data/pii_labelled.jsonl`: {len(rows)} chat messages in English and
French, {result["labelled_spans"]} labelled spans, {negatives} hard negatives
(dates, times, prices, order numbers, versions, arithmetic, numbers with a
wrong check digit). Built by `benchmarks/pii_data.py` (seeded); measured by
`benchmarks/pii.py`.

**Exact**: a found span counts only with the labelled start, end and type.
**Overlap**: it counts if it overlaps a labelled span of its type.

{
        table(
            [
                "Type",
                "Labelled",
                "Found",
                "Precision (exact)",
                "Recall (exact)",
                "Precision (overlap)",
                "Recall (overlap)",
            ],
            lines,
        )
    }

Labelled spans entirely inside a placeholder (any type): **{fmt(result["covered"])}**.
Target: recall ≥ {STRUCTURED_TARGET} on every structured type (exact match):
{"met" if not below else "missed for " + ", ".join(below)}.

Speed: {speed["us_per_message"]} µs per message, {speed["mb_per_s"]} MB/s,
{speed["ratio_to_lower"]}× the time of `str.lower` on the same texts.

Missed spans: {len(result["misses"])}; false positives: {len(result["false_positives"])}
(both listed in pii.json). Names and places are not measured: no detector is
installed (see docs/learning.md).
"""
    write_results("pii", {**result, "speed": speed, "target_recall": STRUCTURED_TARGET}, markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
