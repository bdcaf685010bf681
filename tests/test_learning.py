"""The learning loop without a model: consent, curation, runs, the gate, approval,
rollback, cancellation, crashes and the scheduler, with ``tests/fake_trainer.py``
in place of the training worker (it follows the worker's protocol).
The real worker on the bundled model is tested in tests/test_learning_e2e.py."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mongars_core.adapters import AdapterNotFoundError
from mongars_core.errors import InvalidInputError, InvalidUserIdError, MissingDependencyError
from mongars_core.history_io import dumps_jsonl, parse_history
from mongars_core.pipeline import Assistant
from mongars_core.types import HistoryTurn, utcnow
from mongars_plugins.learning import learner as learner_of
from mongars_plugins.learning.dataset import build_dataset
from mongars_plugins.learning.errors import (
    ConsentRequiredError,
    NotEnoughExamplesError,
    RunCancelledError,
    RunInProgressError,
    RunStateError,
    TrainingFailedError,
    UnknownRunError,
)
from mongars_plugins.learning.runner import Learner, adapter_name, gate_failure
from mongars_plugins.learning.runs import RunRecord, run_json
from mongars_plugins.learning.scheduler import IdleScheduler
from mongars_plugins.learning.scrub import scrub
from mongars_plugins.learning.settings import LearningSettings
from tests.learning_corpus import plain_history, planted_pii, style_history

FAKE = Path(__file__).with_name("fake_trainer.py")
PASSING = {
    "heldout_perplexity_before": 30.0,
    "heldout_perplexity_after": 12.0,
    "general_perplexity_before": 20.0,
    "general_perplexity_after": 20.4,
}


def turn(
    n: int, message: str, reply: str = "A reply long enough to keep.", **kw: Any
) -> HistoryTurn:
    return HistoryTurn(
        id=n,
        turn_id=f"t{n}",
        user_id="alice",
        session_id="s",
        message=message,
        reply=reply,
        created_at=utcnow() - timedelta(minutes=100 - n),
        **kw,
    )


# -- curation ------------------------------------------------------------------------------


def test_curation_keeps_the_users_style_and_liked_replies_and_drops_the_rest() -> None:
    settings = LearningSettings(min_chars=12, max_chars=200, heldout_fraction=0.25)
    turns = [
        turn(1, "Ahoy, matey! How do I cook rice?", "Rinse it, then simmer it.", rating=1),
        turn(2, "ok"),  # too short
        turn(3, "Ahoy, matey! " + "x" * 300),  # too long
        turn(4, "ahoy,   MATEY! how do I cook rice?"),  # the same words as turn 1
        turn(5, "Ahoy, matey! What about pasta?", "A reply the user disliked.", rating=-1),
        turn(6, "Mail me at jean.dupont@orange.fr please", "Sure thing, I will do that."),
        turn(7, "Ahoy, matey! Tell me of tides.", "Tides follow the moon, mostly."),
    ]
    data = build_dataset("alice", turns, scrub, settings)
    kinds = [(e.kind, e.response) for e in [*data.train, *data.heldout]]
    assert kinds == [
        ("style", "Ahoy, matey! How do I cook rice?"),
        ("reply", "Rinse it, then simmer it."),
        ("style", "Ahoy, matey! What about pasta?"),
        ("style", "Mail me at <EMAIL> please"),
        ("style", "Ahoy, matey! Tell me of tides."),
    ]
    liked = next(e for e in data.train if e.kind == "reply")
    assert liked.prompt == "Ahoy, matey! How do I cook rice?"
    assert data.skipped == {"too_short": 1, "too_long": 1, "duplicate": 1, "rated_down": 1}
    assert [e.turn_id for e in data.heldout] == ["t7"]  # the newest are held out
    assert "A reply the user disliked." not in json.dumps(data.as_dict())


def test_the_dataset_hash_follows_exactly_what_is_trained_on() -> None:
    settings = LearningSettings(min_chars=5)
    turns = [turn(i, f"Ahoy, matey! message number {i}") for i in range(1, 11)]
    first = build_dataset("alice", turns, scrub, settings)
    assert build_dataset("alice", turns, scrub, settings).sha256 == first.sha256
    changed = [*turns[:-1], turn(10, "Ahoy, matey! another message")]
    assert build_dataset("alice", changed, scrub, settings).sha256 != first.sha256


def test_planted_personal_data_never_reaches_a_dataset() -> None:
    records = style_history(turns=300, seed=3)
    planted = planted_pii(records)
    assert len(planted) >= 20
    turns = [
        turn(i, record["message"], record["reply"])
        for i, record in enumerate(r for r in records if r.get("type", "turn") == "turn")
    ]
    text = json.dumps(build_dataset("alice", turns, scrub, LearningSettings()).as_dict())
    assert [value for value in planted if value in text] == []


def test_the_gate_names_each_bound_missed() -> None:
    config = LearningSettings()
    assert gate_failure(PASSING, config) is None
    weak = {**PASSING, "heldout_perplexity_after": 27.0}
    assert "held-out perplexity 30.00 -> 27.00 (+10.0% lower; needs at least 20%)" in str(
        gate_failure(weak, config)
    )
    worse = {**PASSING, "general_perplexity_after": 22.0}
    assert "general-text perplexity 20.00 -> 22.00 (+10.0%; at most +5% allowed)" in str(
        gate_failure(worse, config)
    )
    assert gate_failure({**PASSING, "heldout_perplexity_after": float("nan")}, config)


# -- runs with the stand-in worker ------------------------------------------------------------


async def _assistant(make_assistant: Any, **learning: Any) -> Assistant:
    config = {"min_examples": 10, "schedule": False, **learning}
    return await make_assistant("memory", "learning", learning=config)  # type: ignore[no-any-return]


async def _import(assistant: Assistant, user: str, records: list[dict[str, Any]]) -> None:
    history = parse_history(dumps_jsonl(records).encode(), assistant.settings, "mongars")
    await assistant.import_history(user, history)


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    def plan(**how: Any) -> None:
        monkeypatch.setenv("FAKE_TRAINER", json.dumps(how))

    plan()
    return plan


async def _alice(make_assistant: Any, **learning: Any) -> tuple[Assistant, Learner]:
    """An assistant whose user alice has 60 turns of her style and has opted in."""
    assistant = await _assistant(make_assistant, **learning)
    await _import(assistant, "alice", style_history(60, seed=2))
    learner = _learner(assistant)
    await learner.set_consent("alice", True, by="alice")
    return assistant, learner


def _learner(assistant: Assistant) -> Learner:
    found = learner_of(assistant.services)
    found.worker = [str(FAKE)]
    return found


async def test_no_consent_no_dataset_and_no_run(make_assistant: Any, fake_worker: Any) -> None:
    assistant = await _assistant(make_assistant)
    await _import(assistant, "bob", plain_history(60))
    learner = _learner(assistant)
    with pytest.raises(ConsentRequiredError, match="bob has not opted in"):
        await learner.dataset("bob")
    with pytest.raises(ConsentRequiredError):
        await learner.run("bob")
    await learner.set_consent("bob", True, by="operator")
    await learner.set_consent("bob", False, by="bob")
    with pytest.raises(ConsentRequiredError):
        await learner.run("bob")
    assert await learner.runs() == []


async def test_a_passing_run_waits_for_approval_and_approval_answers_only_its_user(
    make_assistant: Any, fake_worker: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assistant = await _assistant(make_assistant)
    records = style_history(120, seed=5)
    await _import(assistant, "alice", records)
    await _import(assistant, "bob", plain_history(60))
    learner = _learner(assistant)
    await learner.set_consent("alice", True, by="alice")
    spec_copy = tmp_path / "spec.json"
    fake_worker(keep_spec=str(spec_copy))
    seen: list[tuple[str, int, int]] = []
    run = await learner.run("alice", progress=lambda *step: seen.append(step))
    assert run.status == "awaiting_approval"
    assert seen[-1] == ("training", 30, 30)
    registry = assistant.services.adapter_registry()
    assert run.adapter == f"{adapter_name('alice')}@{run.id}"
    assert registry.for_user("alice") is None  # not before approval
    data = run_json(run, registry)
    assert data["metrics"]["heldout_perplexity_after"] == 12.0
    assert data["energy_wh"] > 0 and data["energy"]["estimated"] in (True, False)
    assert data["co2e_g"] == pytest.approx(data["energy_wh"] / 1000 * 400.0)
    assert run.examples + run.heldout_examples > 10 and run.dataset_sha256

    approved = await learner.approve(run.id, by="admin:root")
    assert learner.status_of(approved) == "active"
    assert registry.for_user("alice").version == run.id  # type: ignore[union-attr]
    assert registry.for_user("bob") is None
    assert [(e.action, e.by) for e in approved.events] == [
        ("started", "operator"),
        ("passed the gate", "gate"),
        ("approved", "admin:root"),
    ]
    with pytest.raises(RunStateError, match="is active; only a run awaiting approval"):
        await learner.approve(run.id, by="admin:root")

    # The planted personal data reached neither the worker, the record nor the log.
    stored = json.dumps([r.model_dump(mode="json") for r in await learner.runs()])
    for where in (spec_copy.read_text(), stored, caplog.text):
        assert [value for value in planted_pii(records) if value in where] == []
    assert not (learner.root / "work" / run.id).exists()


async def test_a_run_that_misses_the_gate_is_rejected_with_its_reason(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant)
    fake_worker(metrics={**PASSING, "general_perplexity_after": 25.0})
    run = await learner.run("alice")
    assert run.status == "rejected" and "general-text perplexity" in run.reason
    assert run.adapter is None
    assert assistant.services.adapter_registry().adapters() == []
    with pytest.raises(RunStateError):
        await learner.approve(run.id, by="operator")


async def test_auto_approve_activates_a_passing_run(make_assistant: Any, fake_worker: Any) -> None:
    _, learner = await _alice(make_assistant, auto_approve=True)
    run = await learner.run("alice")
    assert learner.status_of(run) == "active"
    assert run.events[-1].by == "policy:auto_approve"


async def test_without_the_train_extra_a_run_is_refused_before_anything_is_recorded(
    make_assistant: Any, fake_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, learner = await _alice(make_assistant)
    monkeypatch.setitem(sys.modules, "peft", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"mongars-assistant\[train\]"):
        await learner.run("alice")
    assert await learner.runs() == []


async def test_a_failed_worker_leaves_nothing_but_its_record(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant)
    fake_worker(error="out of memory while training (step 3)")
    with pytest.raises(TrainingFailedError, match="out of memory while training"):
        await learner.run("alice")
    fake_worker(exit=9)
    with pytest.raises(TrainingFailedError, match="exited with status 9"):
        await learner.run("alice")
    runs = await learner.runs("alice")
    assert [r.status for r in runs] == ["failed", "failed"]
    assert assistant.services.adapter_registry().adapters() == []
    assert list((learner.root / "work").iterdir()) == []


async def test_a_cancelled_run_stops_its_worker_and_keeps_no_adapter(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant)
    fake_worker(wait=True)
    run = asyncio.ensure_future(learner.run("alice", progress=lambda *_: learner.cancel()))
    with pytest.raises(RunCancelledError):
        await asyncio.wait_for(run, 60)
    (record,) = await learner.runs("alice")
    assert record.status == "cancelled"
    assert assistant.services.adapter_registry().adapters() == []
    assert learner.lock.holder() is None


async def test_a_cancel_request_stops_a_run_of_another_process_and_turns_are_answered_meanwhile(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant)
    other = Learner(assistant.services)  # another process's view: its own lock handle
    assert other.request_cancel() is None  # nothing going
    fake_worker(wait=True)
    started = asyncio.Event()
    run = asyncio.ensure_future(learner.run("alice", progress=lambda *_: started.set()))
    await asyncio.wait_for(started.wait(), 60)
    reply = await assistant.chat("bob", "Are you still there?")  # the loop is not blocked
    assert reply.text == "You said: Are you still there?"
    holder = other.request_cancel()
    assert holder is not None and holder.user_id == "alice"
    with pytest.raises(RunCancelledError):
        await asyncio.wait_for(run, 60)
    (record,) = await learner.runs("alice")
    assert record.status == "cancelled" and record.id == holder.run_id
    assert not (learner.root / "cancel-request").exists()


async def test_one_run_at_a_time_and_too_few_examples(
    make_assistant: Any, fake_worker: Any
) -> None:
    _, learner = await _alice(make_assistant, min_examples=500)
    with pytest.raises(
        NotEnoughExamplesError, match=r"alice has \d+ curated examples; a run needs at least 500"
    ):
        await learner.run("alice")
    with (
        learner.lock.hold("run-x", "someone"),
        pytest.raises(RunInProgressError, match="already going: run-x for someone"),
    ):
        await learner.run("alice")
    assert await learner.runs() == []


async def test_a_run_whose_process_died_is_abandoned(make_assistant: Any) -> None:
    assistant = await _assistant(make_assistant)
    learner = _learner(assistant)
    stale = RunRecord(id="run-20261201-120000-abcdef", user_id="alice", pid=999_999)
    await learner.book.add(stale)
    (learner.root / "work" / stale.id).mkdir(parents=True)
    (record,) = await learner.runs()
    assert record.status == "abandoned" and "stopped" in record.reason
    assert not (learner.root / "work" / stale.id).exists()
    with pytest.raises(UnknownRunError):
        await learner.approve("run-20990101-000000-000000", by="operator")


async def test_rollback_returns_to_the_previous_adapter_then_to_the_base(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant, auto_approve=True)
    first = await learner.run("alice")
    await _import(assistant, "alice", style_history(60, seed=9)[1:])
    second = await learner.run("alice")
    registry = assistant.services.adapter_registry()
    assert registry.for_user("alice").version == second.id  # type: ignore[union-attr]
    assert learner.status_of(await learner.book.get(first.id)) == "superseded"
    now = await learner.rollback("alice", by="operator")
    assert now is not None and now.id == first.id
    assert learner.status_of(await learner.book.get(second.id)) == "rolled_back"
    assert learner.status_of(await learner.book.get(first.id)) == "active"
    registry.rollback_user("alice", by="cli")  # `mongars adapters rollback --user alice`
    assert registry.for_user("alice") is None
    shown = run_json(await learner.book.get(first.id), registry)
    assert [(e["action"], e["by"]) for e in shown["events"]][-1] == ("rolled back", "cli")
    assert shown["status"] == "rolled_back"
    assert [e["by"] for e in run_json(await learner.book.get(second.id), registry)["events"]][
        -1
    ] == "operator"
    with pytest.raises(AdapterNotFoundError):
        await learner.rollback("alice", by="operator")
    assert registry.for_user("alice") is None


async def test_an_active_adapter_that_regresses_on_newer_turns_is_flagged_and_rolled_back(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant, auto_approve=True, min_validation_examples=5)
    run = await learner.run("alice")
    with pytest.raises(NotEnoughExamplesError, match="newer than run"):
        await learner.validate(run.id)
    await _import(assistant, "alice", style_history(30, seed=7)[1:])
    fake_worker(metrics={"heldout_perplexity_before": 30.0, "heldout_perplexity_after": 20.0})
    kept = await learner.validate(run.id)
    assert kept.validation is not None and kept.validation.passed and not kept.regressed
    assert learner.status_of(kept) == "active"
    fake_worker(metrics={"heldout_perplexity_before": 30.0, "heldout_perplexity_after": 29.0})
    flagged = await learner.validate(run.id)
    assert flagged.regressed and flagged.validation is not None
    assert "+3.3% lower; the gate needs 20%" in flagged.validation.detail
    assert learner.status_of(flagged) == "rolled_back"  # the auto policy
    assert assistant.services.adapter_registry().for_user("alice") is None
    with pytest.raises(RunStateError, match="only an active run is validated"):
        await learner.validate(run.id)


async def test_withdrawing_consent_rejects_what_waits_and_nothing_is_approved_after(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant)
    waiting = await learner.run("alice")
    await learner.set_consent("alice", False, by="alice")
    rejected = await learner.book.get(waiting.id)
    assert (rejected.status, rejected.reason) == ("rejected", "the user withdrew consent")
    await learner.book.update(rejected, status="awaiting_approval")  # as if it raced
    with pytest.raises(ConsentRequiredError, match="withdrawn consent"):
        await learner.approve(waiting.id, by="operator")
    assert assistant.services.adapter_registry().for_user("alice") is None
    with pytest.raises(InvalidUserIdError):
        await learner.set_consent("a\nb", True, by="operator")


async def test_a_failure_after_training_fails_the_run_in_one_line_and_keeps_nothing(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant, learner = await _alice(make_assistant)
    registry = assistant.services.adapter_registry()
    registry.root.mkdir(parents=True)
    (registry.root / adapter_name("alice")).write_text("not a folder")  # the copy must fail
    with pytest.raises(InvalidInputError, match="cannot copy adapter"):
        await learner.run("alice")
    (run,) = await learner.runs("alice")
    assert run.status == "failed" and run.reason.startswith("cannot copy adapter")
    assert "\n" not in run.reason and registry.adapters() == []
    stray = learner.root / "work" / "run-20250101-000000-abcdef-validation"
    stray.mkdir(parents=True)  # a killed validation's folder
    await learner.recover()
    assert not stray.exists()


def test_recovery_never_sweeps_while_another_process_runs(tmp_path: Path) -> None:
    """Another process holds the run lock: its work folder (and any other) stays."""
    from mongars_plugins.learning.runner import RunLock

    lock = tmp_path / "learning" / "run.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, json, os, sys, time\n"
            f"f = open({str(lock)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
            "f.truncate(0); json.dump({'run_id': 'run-x', 'user_id': 'u', 'pid': os.getpid()}, f)\n"
            "f.flush(); print('held', flush=True); sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        seen = RunLock(lock).holder()
        assert seen is not None and seen.run_id == "run-x" and seen.pid == holder.pid
        folder = tmp_path / "learning" / "work" / "run-y"
        folder.mkdir(parents=True)
        sweep = Learner.__new__(Learner)  # only what recover()'s sweep reads
        sweep.root, sweep.lock = tmp_path / "learning", RunLock(lock)
        sweep._sweep_work()
        assert folder.exists()
    finally:
        holder.communicate("", timeout=30)


# -- the scheduler ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting",
    [
        {"seed": -1},
        {"learning_rate": 1e-12},
        {"grid_intensity": float("nan")},
        {"grid_intensity": [1.0] * 23},
        {"grid_intensity": [float("inf")] * 24},
        {"cpu_watts": float("inf")},
        {"carbon_threshold": float("nan")},
        {"steps": 0},
    ],
)
def test_settings_a_run_could_not_use_are_refused(setting: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LearningSettings(**setting)


async def test_a_turn_in_one_process_keeps_every_process_of_the_node_busy(
    make_assistant: Any,
) -> None:
    assistant = await _assistant(make_assistant, idle_minutes=10)
    learner = _learner(assistant)
    clock = Clock()
    here, there = IdleScheduler(learner, clock=clock), IdleScheduler(learner, clock=clock)
    clock.now = 3600
    assert here.idle_seconds == 3600  # no turn anywhere yet
    there.touch()  # a turn in another worker process
    assert here.idle_seconds < 60
    assert (await here.tick()).startswith("busy")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_the_scheduler_trains_only_consenting_users_and_only_when_idle(
    make_assistant: Any, fake_worker: Any
) -> None:
    assistant = await _assistant(make_assistant, idle_minutes=10, min_new_examples=20)
    await _import(assistant, "alice", style_history(80, seed=2))
    await _import(assistant, "bob", plain_history(120))  # more examples, but no consent
    learner = _learner(assistant)
    await learner.set_consent("alice", True, by="alice")
    clock = Clock()
    scheduler = IdleScheduler(learner, clock=clock)
    assert (await scheduler.tick()).startswith("busy")
    clock.now = 601
    assert [c.user_id for c in await learner.candidates()] == ["alice"]
    decision = await scheduler.tick()
    assert decision.startswith("ran run-") and decision.endswith(": awaiting_approval")
    assert "alice" not in decision  # shown to administrators: no data ids
    (run,) = await learner.runs()
    assert run.user_id == "alice" and run.trigger == "schedule"
    assert await scheduler.tick() == "no consenting user has enough new examples"
    assert await learner.runs("bob") == []


async def test_the_scheduler_waits_while_the_grid_is_dirty(
    make_assistant: Any, fake_worker: Any
) -> None:
    dirty = [900.0] * 24
    assistant = await _assistant(
        make_assistant,
        idle_minutes=0,
        min_new_examples=5,
        grid_intensity=dirty,
        carbon_threshold=300,
    )
    await _import(assistant, "alice", style_history(40, seed=2))
    learner = _learner(assistant)
    await learner.set_consent("alice", True, by="alice")
    decision = await IdleScheduler(learner).tick()
    assert decision == "deferred: grid intensity 900 gCO2e/kWh is above the threshold 300"
    assert await learner.runs() == []
