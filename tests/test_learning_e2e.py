"""Issue 11's "done when", as an operator runs it: the ``mongars`` command in
subprocesses, the real training worker on the bundled model (torch + peft on
this CPU), the llama.cpp engine answering with the approved adapter.

A user is imported from a JSONL history of 300 turns in a distinctive style
with planted personal data; with consent, ``mongars learn run`` trains, the
held-out perplexity drops by at least 20% and the run waits for approval.
After approval that user's replies come from the adapter and another user's
do not; rollback restores the base. The planted data appears in none of the
dataset, the run record or the logs, and a user without consent is never
trained.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mongars_core.history_io import dumps_jsonl
from tests.conftest import MODEL_CACHE, command_env, run_mongars
from tests.learning_corpus import plain_history, planted_pii, style_history

pytestmark = [
    pytest.mark.model,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
pytest.importorskip("peft", reason="needs peft (mongars-assistant[train])")
pytest.importorskip("xllamacpp", reason="needs xllamacpp (mongars-assistant[local])")


def _env(tmp_path: Path) -> dict[str, str]:
    env = command_env(tmp_path, HF_HUB_OFFLINE="1")
    env["MONGARS_CACHE_DIR"] = str(MODEL_CACHE)  # the bundled model, fetched once
    del env["MONGARS_DISABLE_PLUGINS"]  # the engines and the learning worker are the point
    env["MONGARS_LEARNING__SCHEDULE"] = "false"
    return env


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)


def test_a_consenting_user_gets_a_learned_adapter_and_nobody_else_does(tmp_path: Path) -> None:
    env = _env(tmp_path)
    records = style_history(300, seed=0)
    planted = planted_pii(records)
    history = tmp_path / "alice.jsonl"
    history.write_text(dumps_jsonl(records))
    (tmp_path / "bob.jsonl").write_text(dumps_jsonl(plain_history(120)))
    logs: list[str] = []

    def mongars(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = run_mongars("-v", *args, env=env, timeout=timeout)
        logs.append(result.stderr)
        return result

    imported = as_json(mongars("history", "import", str(history), "--user", "alice", "--json"))
    assert imported["turns"] == 300
    ok(mongars("history", "import", str(tmp_path / "bob.jsonl"), "--user", "bob"))

    # Without consent: no dataset, no run.
    refused = mongars("learn", "run", "--user", "alice")
    assert refused.returncode == 1 and "alice has not opted in" in refused.stderr
    ok(mongars("learn", "enable", "--user", "alice"))
    dataset = as_json(mongars("learn", "dataset", "--user", "alice", "--json"))
    assert dataset["examples"] >= 250

    run = as_json(mongars("learn", "run", "--user", "alice", "--json", timeout=600))
    m = run["metrics"]
    assert run["status"] == "awaiting_approval", run["reason"]
    assert m["heldout_perplexity_after"] <= 0.8 * m["heldout_perplexity_before"]
    assert m["general_perplexity_after"] <= 1.05 * m["general_perplexity_before"]
    assert run["energy_wh"] > 0 and run["dataset_sha256"] == dataset["sha256"]
    assert run["duration_s"] < 600

    refused = mongars("learn", "run", "--user", "bob")
    assert refused.returncode == 1 and "bob has not opted in" in refused.stderr

    approved = as_json(mongars("learn", "approve", run["id"], "--json"))
    assert approved["status"] == "active"

    def reply(user: str) -> dict[str, Any]:
        return as_json(  # type: ignore[no-any-return]
            mongars(
                "chat", "--local", "--user", user, "-m", "What should I cook tonight?", "--json"
            )
        )

    alice = reply("alice")
    assert alice["adapter"] == run["adapter"], logs[-1][-3000:]
    bob = reply("bob")
    assert bob["adapter"] is None
    ok(mongars("adapters", "rollback", "--user", "alice"))
    assert reply("alice")["adapter"] is None
    runs = as_json(mongars("learn", "runs", "--json"))
    assert [r["status"] for r in runs if r["id"] == run["id"]] == ["rolled_back"]

    seen = json.dumps([dataset, run, runs]) + "\n".join(logs)
    assert [value for value in planted if value in seen] == []
