"""A stand-in for the training worker (``mongars_plugins.learning.trainer``) that
follows its protocol without a model: progress lines on stdout, the adapter's two
files and the result JSON, SIGTERM stops it. Driven by ``FAKE_TRAINER`` (JSON):

* ``metrics``: the four perplexities it reports;
* ``wait``: after the first step, wait for a signal (to test cancellation);
* ``error``: report this error and exit 2;
* ``exit``: exit with this status without a result;
* ``keep_spec``: copy the spec it was given to this path (the runner removes its own).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    plan = json.loads(os.environ.get("FAKE_TRAINER", "{}"))
    if plan.get("keep_spec"):
        shutil.copy(spec_path, plan["keep_spec"])
    stopped: list[int] = []
    signal.signal(signal.SIGTERM, lambda number, frame: stopped.append(number))

    def say(**event: object) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    if plan.get("error"):
        say(event="error", message=plan["error"])
        return 2
    if "exit" in plan:
        return int(plan["exit"])
    steps = int(spec.get("params", {}).get("steps", 3))
    say(event="start", steps=steps, examples=len(spec.get("train", [])))
    for step in range(1, steps + 1):
        say(event="step", step=step, steps=steps, loss=1.0 / step)
        if plan.get("wait"):
            deadline = time.monotonic() + 60  # never outlive a test that forgot to stop it
            while not stopped and time.monotonic() < deadline:
                time.sleep(0.01)
        if stopped:
            say(event="cancelled")
            return 143
    if spec.get("mode") != "evaluate":
        out = Path(spec["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        (out / "adapter_model.safetensors").write_bytes(b"fake weights")
    metrics = plan.get("metrics") or {
        "heldout_perplexity_before": 30.0,
        "heldout_perplexity_after": 12.0,
        "general_perplexity_before": 20.0,
        "general_perplexity_after": 20.4,
    }
    result = {"metrics": metrics, "device": "cpu", "cpu_seconds": 2.0, "steps": steps}
    Path(spec["result_path"]).write_text(json.dumps(result))
    say(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
