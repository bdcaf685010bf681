"""Self-training on the bundled model: time per 100 examples and what the adapter learns.

The history is ``tests/learning_corpus.style_history`` (Cap'n Zed's nautical style,
300 turns, personal data planted and scrubbed away). Each example is one of his
messages as the assistant's response (the prompt: the reply before it in the session
with ``--prompt reply``, none with ``--prompt none``); the last ``--heldout`` are
held out. Each configuration runs the real worker
(``python -m mongars_plugins.learning.trainer``) in a subprocess, with the
threads given, and reports:

* held-out perplexity before and after (target: a drop of at least 20%) and the
  bundled general-text perplexity before and after (target: a rise of at most 5%);
* the wall time of the whole run, of the training steps, and per 100 training
  examples (steps × batch); training tokens/s against scoring tokens/s of the
  same run (the forward-only baseline), as a ratio.

    PYTHONPATH=. .venv/bin/python benchmarks/learning.py [--threads 1] [--prompt reply]
        [--config '{"steps": 30, "batch_size": 4}' ...] [--name learning]

Without ``--config`` it runs the recommended defaults
(``mongars_plugins.learning.trainer.DEFAULT_PARAMS``). Results:
benchmarks/results/<name>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.learning_corpus

from common import table, write_results
from tests.learning_corpus import style_history

from mongars_plugins.learning.scrub import scrub
from mongars_plugins.learning.trainer import DEFAULT_PARAMS

COLUMNS = ["steps", "batch", "lr", "rank", "targets", "max tokens"]
COLUMNS += ["held-out ppl", "general ppl", "wall s", "train s / 100 examples"]


def examples(turns: int, prompt: str) -> list[dict[str, str]]:
    previous: dict[str, str] = {}
    made = []
    for record in style_history(turns, seed=0):
        if record.get("type") != "turn":
            continue
        before = previous.get(record["session_id"], "") if prompt == "reply" else ""
        made.append({"prompt": scrub(before), "response": scrub(record["message"])})
        previous[record["session_id"]] = record["reply"]
    return made


def model_dir() -> Path:
    from tests.conftest import MODEL_CACHE

    import mongars_plugins.cuda  # noqa: F401  (the model store imports its settings)
    from mongars_core.settings import Settings
    from mongars_plugins.cuda.model import ensure_model
    from mongars_plugins.model_store import ensure_bundled_gguf

    gguf = ensure_bundled_gguf(Settings(cache_dir=MODEL_CACHE))
    return ensure_model(Settings(cache_dir=MODEL_CACHE, local={"gguf_path": str(gguf)}))


def run(spec: dict[str, Any], scratch: Path) -> dict[str, Any]:
    path = scratch / "spec.json"
    path.write_text(json.dumps(spec))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    began = time.monotonic()
    moments: dict[str, float] = {}
    events = []
    with subprocess.Popen(
        [sys.executable, "-m", "mongars_plugins.learning.trainer", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as worker:
        assert worker.stdout is not None
        for line in worker.stdout:
            event = json.loads(line)
            events.append(event)
            key = event.get("name") or event["event"]
            if event["event"] == "step" and event["step"] == 1:
                key = "first_step"
            moments[key] = time.monotonic() - began
    if worker.returncode != 0:
        raise SystemExit(f"the worker failed: {events[-1]}")
    result: dict[str, Any] = json.loads(Path(spec["result_path"]).read_text())
    result["wall_seconds"] = round(time.monotonic() - began, 2)
    result["moments"] = {k: round(v, 2) for k, v in moments.items()}
    result["scored_tokens_before"] = sum(
        e["tokens"] for e in events if e["event"] == "eval" and e["name"].endswith("_before")
    )
    return result


def summarise(params: dict[str, Any], result: dict[str, Any], n_train: int) -> dict[str, Any]:
    m = result["metrics"]
    t = result["moments"]
    # Training: from the end of the evaluations before to the last step (the first step
    # includes putting the adapter on). Scoring: the evaluations before.
    train_s = t["step"] - t["general_before"]
    score_s = t["general_before"] - t["start"]
    passes = params["steps"] * params["batch_size"]
    return {
        "params": params,
        "train_examples": n_train,
        "heldout_before": round(m["heldout_perplexity_before"], 3),
        "heldout_after": round(m["heldout_perplexity_after"], 3),
        "heldout_change": round(
            m["heldout_perplexity_after"] / m["heldout_perplexity_before"] - 1, 4
        ),
        "general_before": round(m["general_perplexity_before"], 3),
        "general_after": round(m["general_perplexity_after"], 3),
        "general_change": round(
            m["general_perplexity_after"] / m["general_perplexity_before"] - 1, 4
        ),
        "wall_seconds": result["wall_seconds"],
        "train_seconds": round(train_s, 2),
        "seconds_per_100_examples": round(train_s / passes * 100, 2),
        "train_tokens": result["tokens"],
        # tokens/s of training over tokens/s of forward-only scoring, in the same run
        "train_vs_scoring_speed": round(
            (result["tokens"] / train_s) / (result["scored_tokens_before"] / score_s), 3
        ),
        "moments": t,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--heldout", type=int, default=30)
    parser.add_argument("--prompt", choices=["none", "reply"], default="reply")
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--name", default="learning")
    args = parser.parse_args()
    made = examples(args.turns, args.prompt)
    train, heldout = made[: -args.heldout], made[-args.heldout :]
    folder = model_dir()
    rows = []
    for config in args.config or ["{}"]:
        params = {**DEFAULT_PARAMS, **json.loads(config)}
        with tempfile.TemporaryDirectory() as scratch:
            spec = {
                "model_dir": str(folder),
                "output_dir": str(Path(scratch) / "adapter"),
                "result_path": str(Path(scratch) / "result.json"),
                "train": train,
                "heldout": heldout,
                "general": None,
                "params": params,
                "device": "auto",
                "threads": args.threads,
            }
            row = summarise(params, run(spec, Path(scratch)), len(train))
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        f"| {r['params']['steps']} | {r['params']['batch_size']} | {r['params']['learning_rate']} "
        f"| {r['params']['rank']} | {','.join(r['params']['target_modules'])} "
        f"| {r['params']['max_tokens']} | {r['heldout_before']} → {r['heldout_after']} "
        f"({r['heldout_change']:+.1%}) | {r['general_before']} → {r['general_after']} "
        f"({r['general_change']:+.1%}) | {r['wall_seconds']} | {r['seconds_per_100_examples']} |"
        for r in rows
    ]
    markdown = f"""# Self-training: time per 100 examples, what the adapter learns

`benchmarks/learning.py` on Cap'n Zed's history (`tests/learning_corpus.py`,
{args.turns} turns, scrubbed): {len(train)} training examples, the last
{len(heldout)} held out, prompt: {args.prompt}; {args.threads} thread(s), CPU.
Targets: held-out perplexity −20% or more, general-text perplexity +5% at most.
Wall: the whole worker run (load, evaluations before and after, training, saving).

{table(COLUMNS, lines)}
"""
    write_results(
        args.name, {"threads": args.threads, "prompt": args.prompt, "runs": rows}, markdown
    )


if __name__ == "__main__":
    main()
