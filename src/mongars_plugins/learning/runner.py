"""Runs: from a consenting user's dataset to an adapter waiting for approval.

:class:`Learner` is the plugin's one entry point (the CLI, the routes and the
scheduler use it). A run:

1. checks consent (``ConsentRequiredError``) and takes the node's run lock,
   a file lock under ``<data dir>/learning`` (``RunInProgressError``: one run at
   a time, across processes);
2. builds the scrubbed dataset (``NotEnoughExamplesError`` below
   ``min_examples``) and checks the disk;
3. starts the training worker (:mod:`mongars_plugins.learning.trainer`) in a
   subprocess at low priority, reads its progress, and measures its energy;
4. applies the gate (held-out perplexity at least ``heldout_improvement``
   lower, general perplexity at most ``general_tolerance`` higher); a run that
   misses it is rejected with the reason, one that passes is registered in the
   adapter registry and waits for approval (or is approved by
   ``auto_approve``).

A failed or cancelled run leaves nothing behind but its record: its working
folder (the scrubbed spec, the worker's output) is removed, and an adapter
reaches the registry only after the worker finished and the gate passed. A
run whose process died (``kill -9``, a power cut) is marked ``abandoned`` the
next time the lock is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mongars_core.capabilities import Progress
from mongars_core.errors import MissingDependencyError
from mongars_core.files import write_atomically
from mongars_core.services import Services
from mongars_core.types import utcnow
from mongars_core.validation import check_id
from mongars_plugins.learning import energy
from mongars_plugins.learning.dataset import Dataset, build_dataset
from mongars_plugins.learning.errors import (
    ConsentRequiredError,
    NotEnoughExamplesError,
    RunCancelledError,
    RunInProgressError,
    RunStateError,
    TrainingFailedError,
)
from mongars_plugins.learning.metrics import LearningMetrics
from mongars_plugins.learning.runs import (
    Energy,
    RunBook,
    RunRecord,
    Validation,
    new_run_id,
    shown_status,
)
from mongars_plugins.learning.settings import LEARNING, LearningSettings

log = logging.getLogger(__name__)

FREE_DISK_NEEDED = 200 * 1024 * 1024
"""Bytes a run needs free under the data dir (its adapter is a few MB; the
worker's spec and the registry's copy, with room to spare)."""


def adapter_name(user_id: str) -> str:
    """The registry name of a user's learned adapters: stable, and reveals nothing."""
    import hashlib

    return "learned-" + hashlib.sha256(user_id.encode()).hexdigest()[:16]


@dataclass
class Candidate:
    user_id: str
    new_examples: int


@dataclass
class LockHolder:
    run_id: str
    user_id: str
    pid: int


class RunLock:
    """One run at a time on this node: an exclusive ``flock`` on a file that says
    which run holds it. The kernel drops the lock when its process dies, however
    it dies, so a crashed run never blocks the next."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def hold(self, run_id: str, user_id: str) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held for the run)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.holder()
                going = f": {holder.run_id} for {holder.user_id}" if holder else ""
                raise RunInProgressError(f"a training run is already going{going}") from None
            handle.seek(0)
            handle.truncate()
            json.dump({"run_id": run_id, "user_id": user_id, "pid": os.getpid()}, handle)
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                handle.flush()
        finally:
            handle.close()

    def holder(self) -> LockHolder | None:
        """Who holds the lock now; ``None`` when nobody does."""
        try:
            handle = open(self.path)  # noqa: SIM115
        except FileNotFoundError:
            return None
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    return LockHolder(**json.loads(handle.read() or "{}"))
                except (TypeError, ValueError):
                    return LockHolder(run_id="?", user_id="?", pid=0)
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None


class Learner:
    """Consent, datasets, runs, approvals, rollbacks and validations of one node."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.config: LearningSettings = services.settings.section(LEARNING)
        self.book = RunBook(services.store)
        self.root = services.settings.data_dir / "learning"
        self.lock = RunLock(self.root / "run.lock")
        self._cancel: asyncio.Event | None = None
        self._holding: str | None = None
        self.metrics = LearningMetrics(services.meter)
        self.worker: list[str] = ["-m", "mongars_plugins.learning.trainer"]
        """The worker's command line after the interpreter (the spec's path follows)."""

    @property
    def registry(self) -> Any:
        return self.services.adapter_registry()

    # -- consent and data ----------------------------------------------------------

    async def has_consent(self, user_id: str) -> bool:
        value = await self.book.consent(user_id)
        return bool(value and value.get("enabled"))

    async def set_consent(self, user_id: str, enabled: bool, by: str) -> dict[str, Any]:
        """Opt a user in or out. Opting out also stops a run going for them and rejects
        their runs awaiting approval; an adapter already active stays theirs (their
        rollback is one command away)."""
        check_id("user id", user_id)
        value = await self.book.set_consent(user_id, enabled, by)
        log.info("learning %s for a user by %s", "enabled" if enabled else "disabled", by)
        if not enabled:
            holder = self.lock.holder()
            if holder is not None and holder.user_id == user_id:
                self.request_cancel(expected=holder)  # that run only, not whichever is next
            for run in await self.book.runs(user_id):
                if run.status == "awaiting_approval":
                    why = "the user withdrew consent"
                    await self.book.record(run, "rejected", by, why, status="rejected", reason=why)
        return value

    async def dataset(self, user_id: str, *, after_turn: int | None = None) -> Dataset:
        """Exactly what a run for ``user_id`` would train on and hold out, scrubbed.
        Refused (``ConsentRequiredError``) for a user who has not opted in."""
        check_id("user id", user_id)
        if not await self.has_consent(user_id):
            raise ConsentRequiredError(
                f"{user_id} has not opted in to learning (`mongars learn enable --user {user_id}`)"
            )
        turns = await self.services.store.all_turns(user_id)
        if after_turn is not None:  # stored after the last run's set (imports included)
            turns = [turn for turn in turns if turn.id > after_turn]
        scrub = self.services.plugins.scrub
        return await asyncio.to_thread(build_dataset, user_id, turns, scrub, self.config)

    async def candidates(self) -> list[Candidate]:
        """Consenting users with at least ``min_new_examples`` curated examples newer
        than their last run's dataset, most first: the scheduler's queue."""
        found = []
        for user_id in await self.book.consenting_users():
            seen = [r.dataset_last_turn for r in await self.book.runs(user_id)]
            last = max((turn for turn in seen if turn is not None), default=None)
            dataset = await self.dataset(user_id, after_turn=last)
            if dataset.size >= self.config.min_new_examples:
                found.append(Candidate(user_id, dataset.size))
        return sorted(found, key=lambda c: (-c.new_examples, c.user_id))

    async def status(self) -> dict[str, Any]:
        """The run going now, the runs awaiting approval, the queue (``learn status``)."""
        from mongars_plugins.learning.runs import run_json

        await self.recover()
        holder = self.lock.holder()
        running: dict[str, Any] | None = None
        if holder is not None:
            running = {"run_id": holder.run_id, "user_id": holder.user_id, "progress": {}}
            for record in await self.book.runs(holder.user_id):
                if record.id == holder.run_id:
                    running["progress"] = record.progress
        return {
            "running": running,
            "awaiting_approval": [
                run_json(r, self.registry)
                for r in await self.book.runs()
                if r.status == "awaiting_approval"
            ],
            "queue": [
                {"user_id": c.user_id, "new_examples": c.new_examples}
                for c in await self.candidates()
            ],
            "consenting_users": len(await self.book.consenting_users()),
            "min_new_examples": self.config.min_new_examples,
            "idle_minutes": self.config.idle_minutes,
        }

    # -- runs ------------------------------------------------------------------------

    async def runs(self, user_id: str | None = None) -> list[RunRecord]:
        await self.recover()
        return await self.book.runs(user_id)

    def status_of(self, run: RunRecord) -> str:
        return shown_status(run, self.registry)

    async def recover(self) -> list[RunRecord]:
        """Mark ``abandoned`` the runs still ``training`` whose process is gone, and
        remove their working folders."""
        abandoned = []
        for run in await self.book.runs():
            if run.status != "training":
                continue
            holder = self.lock.holder()  # now, not before the query: a run may have begun
            if holder is not None and holder.run_id == run.id:
                continue
            shutil.rmtree(self._work_dir(run.id), ignore_errors=True)
            abandoned.append(
                await self.book.record(
                    run,
                    "abandoned",
                    "node",
                    "its process stopped before it finished (the node restarted or it was killed)",
                    status="abandoned",
                    reason="interrupted: the process running it stopped",
                    finished_at=utcnow(),
                )
            )
            self.metrics.run_finished("abandoned")
        self._sweep_work()
        return abandoned

    def _sweep_work(self) -> None:
        """Remove the work folders of runs and validations that died (a killed
        validation's, a crashed run's); never while another process holds the lock."""
        holder = self.lock.holder()
        if holder is not None and holder.pid != os.getpid():
            return
        owned = holder.run_id.replace(":validation", "-validation") if holder else None
        work = self.root / "work"
        for folder in work.iterdir() if work.is_dir() else []:
            if folder.name != owned:
                shutil.rmtree(folder, ignore_errors=True)

    def cancel(self) -> bool:
        """Ask the run going in this process to stop; ``False`` when there is none."""
        if self._cancel is None:
            return False
        self._cancel.set()
        return True

    def request_cancel(self, expected: LockHolder | None = None) -> LockHolder | None:
        """Ask the run going on this node, in whichever process, to stop: a request
        file its runner looks for every half second (``expected``: only that run).
        The run's holder, or ``None`` when no run (or not that one) is going."""
        holder = self.lock.holder()
        if holder is None or (expected is not None and holder.run_id != expected.run_id):
            return None
        try:
            write_atomically(self._cancel_file, holder.run_id)
        except OSError as exc:
            raise TrainingFailedError(
                f"cannot ask the run to stop: {exc.strerror or exc}"
            ) from None
        if self._cancel is not None and self._holding == holder.run_id:
            self._cancel.set()
        return holder

    @property
    def _cancel_file(self) -> Path:
        return self.root / "cancel-request"

    @contextlib.contextmanager
    def _cancel_request_cleared(self, run_id: str) -> Iterator[None]:
        """While this process holds ``run_id``; then the request (if any) is gone. A
        stale request names another run, so it never stops this one."""
        self._holding = run_id
        try:
            yield
        finally:
            self._holding = None
            self._cancel_file.unlink(missing_ok=True)

    def _cancel_requested(self, run_id: str) -> bool:
        try:
            return self._cancel_file.read_text().strip() == run_id
        except OSError:
            return False

    async def _wait_for_cancel(self, run_id: str, event: asyncio.Event) -> None:
        while not event.is_set() and not self._cancel_requested(run_id):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 0.5)

    async def run(
        self,
        user_id: str,
        *,
        trigger: str = "hand",
        by: str = "operator",
        progress: Progress | None = None,
    ) -> RunRecord:
        """Train, evaluate and gate one adapter for ``user_id``; see the module docstring."""
        if not await self.has_consent(user_id):
            raise ConsentRequiredError(
                f"{user_id} has not opted in to learning (`mongars learn enable --user {user_id}`)"
            )
        require_training_libraries()  # before any record: a missing extra is no failed run
        run_id = new_run_id()
        with self.lock.hold(run_id, user_id), self._cancel_request_cleared(run_id):
            await self.recover()
            dataset = await self.dataset(user_id)
            if dataset.size < self.config.min_examples:
                raise NotEnoughExamplesError(
                    f"{user_id} has {dataset.size} curated examples; a run needs at least "
                    f"{self.config.min_examples} (`mongars learn dataset --user {user_id}` "
                    "shows them)"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.root).free
            if free < FREE_DISK_NEEDED:
                raise TrainingFailedError(
                    f"only {free // 2**20} MB free under {self.root}; a run needs "
                    f"{FREE_DISK_NEEDED // 2**20} MB"
                )
            run = RunRecord(
                id=run_id,
                user_id=user_id,
                trigger="schedule" if trigger == "schedule" else "hand",
                dataset_sha256=dataset.sha256,
                dataset_last_turn=dataset.last_turn,
                examples=len(dataset.train),
                heldout_examples=len(dataset.heldout),
                params=self._params(),
                pid=os.getpid(),
            )
            await self.book.add(run)
            run = await self.book.record(run, "started", by, f"{trigger} run")
            self._cancel = asyncio.Event()
            try:
                return await self._train_and_gate(run, dataset, by, progress)
            finally:
                self._cancel = None
                shutil.rmtree(self._work_dir(run.id), ignore_errors=True)

    def _params(self) -> dict[str, Any]:
        c = self.config
        return {
            "rank": c.rank,
            "alpha": c.alpha,
            "target_modules": list(c.target_modules),
            "dropout": 0.0,
            "steps": c.steps,
            "learning_rate": c.learning_rate,
            "batch_size": c.batch_size,
            "max_tokens": c.max_tokens,
            "seed": c.seed,
        }

    def _work_dir(self, run_id: str) -> Path:
        return self.root / "work" / run_id

    async def _train_and_gate(
        self, run: RunRecord, dataset: Dataset, by: str, progress: Progress | None
    ) -> RunRecord:
        started = time.monotonic()
        meter = energy.EnergyMeter(cpu_watts=self.config.cpu_watts)
        meter.start()
        try:
            result = await self._work(run, dataset, progress)
        except asyncio.CancelledError:
            await self._finish(run, "cancelled", "cancelled before it finished", by)
            raise
        except RunCancelledError as exc:
            await self._finish(run, "cancelled", str(exc), by)
            raise
        except Exception as exc:
            await self._finish(run, "failed", _one_line(exc), by)
            raise
        try:
            return await self._gate(run, result, meter, started)
        except Exception as exc:  # a full disk while registering, a store that went away...
            await self._finish(run, "failed", _one_line(exc), by)
            raise

    async def _gate(
        self, run: RunRecord, result: dict[str, Any], meter: energy.EnergyMeter, started: float
    ) -> RunRecord:
        """Record the energy, apply the gate, register a passing adapter."""
        reading = meter.stop(
            cpu_seconds=float(result.get("cpu_seconds") or 0.0),
            used_gpu=str(result.get("device", "")).startswith("cuda"),
        )
        intensity = energy.grid_intensity(self.config.grid_intensity, utcnow().astimezone())
        used = Energy(
            wh=reading.wh,
            source=reading.source,
            estimated=reading.estimated,
            cpu_seconds=reading.cpu_seconds,
            intensity_g_per_kwh=intensity,
            co2e_g=energy.co2e_grams(reading.wh, intensity),
            detail=reading.detail,
        )
        scores = {k: float(v) for k, v in result["metrics"].items()}
        duration = time.monotonic() - started
        common = {
            "metrics": scores,
            "energy": used,
            "duration_s": round(duration, 2),
            "device": str(result.get("device", "")),
            "finished_at": utcnow(),
            "progress": {},
        }
        self.metrics.run_energy(used.wh, used.co2e_g, duration)
        failure = gate_failure(scores, self.config)
        if not await self.has_consent(run.user_id):
            failure = "the user withdrew consent during the run"
        if failure is not None:
            self.metrics.run_finished("rejected")
            return await self.book.record(
                run, "rejected", "gate", failure, status="rejected", reason=failure, **common
            )
        adapter = self.registry.register(
            self._work_dir(run.id) / "adapter",
            name=adapter_name(run.user_id),
            version=run.id,
            base_model=BASE_MODEL,
            metrics=scores,
            owner=run.user_id,
        )
        run = await self.book.record(
            run,
            "passed the gate",
            "gate",
            _gate_summary(scores),
            status="awaiting_approval",
            adapter=f"{adapter.name}@{adapter.version}",
            **common,
        )
        self.metrics.run_finished("awaiting_approval")
        if not await self.has_consent(run.user_id):  # withdrawn while it was registered
            why = "the user withdrew consent"
            return await self.book.record(
                run, "rejected", "gate", why, status="rejected", reason=why
            )
        if self.config.auto_approve:
            run = await self.approve(run.id, by="policy:auto_approve")
        return run

    async def _finish(self, run: RunRecord, status: str, reason: str, by: str) -> None:
        self.metrics.run_finished(status)
        await self.book.record(
            run, status, by, reason, status=status, reason=reason, finished_at=utcnow(), progress={}
        )

    async def _work(
        self, run: RunRecord, dataset: Dataset, progress: Progress | None
    ) -> dict[str, Any]:
        """Run the worker on ``dataset``; its result JSON."""
        from mongars_plugins.cuda.model import ensure_model

        work = self._work_dir(run.id)
        work.mkdir(parents=True, exist_ok=True)
        model_dir = await asyncio.to_thread(ensure_model, self.services.settings)
        spec = {
            "model_dir": str(model_dir),
            "output_dir": str(work / "adapter"),
            "result_path": str(work / "result.json"),
            "train": [{"prompt": e.prompt, "response": e.response} for e in dataset.train],
            "heldout": [{"prompt": e.prompt, "response": e.response} for e in dataset.heldout],
            "general": None,
            "params": run.params,
            "device": self.config.device,
            "threads": self.config.threads or _default_threads(),
            "nice": self.config.nice,
            "parent_pid": os.getpid(),
        }
        write_atomically(work / "spec.json", json.dumps(spec, ensure_ascii=False))
        await self._spawn(run, work / "spec.json", progress)
        try:
            result: dict[str, Any] = json.loads((work / "result.json").read_text())
        except (OSError, ValueError) as exc:
            raise TrainingFailedError(f"the worker left no readable result: {exc}") from None
        return result

    async def _spawn(self, run: RunRecord, spec: Path, progress: Progress | None) -> None:
        """Start the worker on ``spec``, follow its progress lines, stop it when cancelled."""
        work = spec.parent
        with open(work / "worker.log", "wb") as stderr:  # noqa: ASYNC230 (an open, no I/O)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.worker,
                str(spec),
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it
            )
            error = await self._follow(run, process, progress)
        if error is not None:
            raise TrainingFailedError(error)
        if process.returncode != 0:
            raise TrainingFailedError(
                f"the training worker exited with status {process.returncode}: "
                f"{_log_tail(work / 'worker.log')}"
            )

    async def _follow(
        self, run: RunRecord, process: asyncio.subprocess.Process, progress: Progress | None
    ) -> str | None:
        assert process.stdout is not None
        cancel = self._cancel or asyncio.Event()
        holder = self.lock.holder()
        held_as = holder.run_id if holder is not None else run.id
        waiter = asyncio.ensure_future(self._wait_for_cancel(held_as, cancel))
        error: str | None = None
        last_saved = 0
        try:
            while True:
                reader = asyncio.ensure_future(process.stdout.readline())
                done, _ = await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if waiter in done:
                    reader.cancel()
                    await _stop(process)
                    raise RunCancelledError(f"run {run.id} was cancelled")
                line = reader.result()
                if not line:
                    break
                event = _event(line)
                kind = event.get("event")
                if kind == "step" and progress is not None:
                    progress("training", int(event.get("step", 0)), int(event.get("steps", 0)))
                if kind == "step":
                    step, steps = int(event.get("step", 0)), int(event.get("steps", 1))
                    if step - last_saved >= max(1, steps // 10) or step == steps:
                        last_saved = step
                        await self.book.update(run, progress={"step": step, "steps": steps})
                elif kind == "eval" and progress is not None:
                    progress(f"evaluating {event.get('name', '')}", 1, 1)
                elif kind == "error":
                    error = str(event.get("message", "the training worker failed"))
            await process.wait()
        except BaseException:
            await _stop(process)
            raise
        finally:
            waiter.cancel()
        return error

    # -- approval, rejection, rollback ---------------------------------------------------

    async def approve(self, run_id: str, *, by: str) -> RunRecord:
        """Make the run's adapter answer its user (it must be awaiting approval)."""
        run = await self.book.get(run_id)
        if run.status != "awaiting_approval" or run.adapter is None:
            raise RunStateError(
                f"run {run_id} is {self.status_of(run)}; only a run awaiting approval can be "
                "approved"
            )
        if not await self.has_consent(run.user_id):
            raise ConsentRequiredError(
                f"run {run_id} cannot be approved: its user has withdrawn consent to learning"
            )
        name, version = run.adapter.split("@", 1)
        self.registry.activate(name, version)  # checks the files against their checksum
        self.registry.assign(run.user_id, name)
        log.info("run %s approved by %s", run_id, by)
        return await self.book.record(run, "approved", by, status="approved")

    async def reject(self, run_id: str, *, by: str, reason: str = "") -> RunRecord:
        run = await self.book.get(run_id)
        if run.status != "awaiting_approval":
            raise RunStateError(
                f"run {run_id} is {self.status_of(run)}; only a run awaiting approval can be "
                "rejected"
            )
        why = reason or f"rejected by {by}"
        return await self.book.record(run, "rejected", by, why, status="rejected", reason=why)

    async def rollback(self, user_id: str, *, by: str) -> RunRecord | None:
        """Go back to the user's previous adapter, or the base; the run now answering
        them (``None``: the base, or an adapter no run made). The registry records who
        rolled back what (:meth:`AdapterRegistry.events_for`), however it was asked."""
        now = self.registry.rollback_user(user_id, by=by)
        if now is None:
            return None
        for run in await self.book.runs(user_id):
            if run.adapter == f"{now.name}@{now.version}":
                return run
        return None

    # -- long-haul validation -----------------------------------------------------------

    async def validate(self, run_id: str, *, by: str = "schedule") -> RunRecord:
        """Measure an active run's adapter against the base on the user's turns newer
        than its dataset. One that misses the held-out bound is flagged ``regressed``
        (and rolled back under ``auto_approve``)."""
        require_training_libraries()
        run = await self.book.get(run_id)
        if self.status_of(run) != "active" or run.adapter is None:
            raise RunStateError(
                f"run {run_id} is {self.status_of(run)}; only an active run is validated"
            )
        if not await self.has_consent(run.user_id):
            raise ConsentRequiredError(f"{run.user_id} has withdrawn consent to learning")
        newer = await self.dataset(run.user_id, after_turn=run.dataset_last_turn)
        examples = [*newer.train, *newer.heldout]
        if len(examples) < self.config.min_validation_examples:
            raise NotEnoughExamplesError(
                f"{run.user_id} has {len(examples)} curated turns newer than run {run_id}; a "
                f"validation needs {self.config.min_validation_examples}"
            )
        adapter = self.registry.for_user(run.user_id)
        assert adapter is not None
        self.registry.verify(adapter)
        from mongars_plugins.cuda.model import ensure_model

        held_as = f"{run_id}:validation"
        with self.lock.hold(held_as, run.user_id), self._cancel_request_cleared(held_as):
            work = self._work_dir(f"{run_id}-validation")
            work.mkdir(parents=True, exist_ok=True)
            try:
                spec = {
                    "mode": "evaluate",
                    "model_dir": str(await asyncio.to_thread(ensure_model, self.services.settings)),
                    "adapter_dir": adapter.path,
                    "result_path": str(work / "result.json"),
                    "heldout": [{"prompt": e.prompt, "response": e.response} for e in examples],
                    "params": run.params,
                    "device": self.config.device,
                    "threads": self.config.threads or _default_threads(),
                    "nice": self.config.nice,
                    "parent_pid": os.getpid(),
                }
                write_atomically(work / "spec.json", json.dumps(spec, ensure_ascii=False))
                self._cancel = asyncio.Event()
                await self._spawn(run, work / "spec.json", None)
                scores = json.loads((work / "result.json").read_text())["metrics"]
            finally:
                self._cancel = None
                shutil.rmtree(work, ignore_errors=True)
        base = float(scores["heldout_perplexity_before"])
        tuned = float(scores["heldout_perplexity_after"])
        drop = 1 - tuned / base
        passed = drop >= self.config.heldout_improvement
        detail = (
            f"{len(examples)} newer turns: perplexity {base:.2f} (base) -> {tuned:.2f} "
            f"(adapter), {drop:+.1%} lower; the gate needs {self.config.heldout_improvement:.0%}"
        )
        validation = Validation(
            examples=len(examples),
            heldout_perplexity_base=base,
            heldout_perplexity_adapter=tuned,
            passed=passed,
            detail=detail,
        )
        self.metrics.validated(passed)
        run = await self.book.record(
            run,
            "validated" if passed else "regressed",
            by,
            detail,
            validation=validation,
            regressed=not passed,
        )
        if not passed:
            log.warning("the adapter of run %s regressed: %s", run_id, detail)
            if self.config.auto_approve:
                await self.rollback(run.user_id, by="policy:auto_approve")
                run = await self.book.get(run_id)
        return run

    async def due_validations(self) -> list[RunRecord]:
        """Active runs whose last validation (or approval) is older than
        ``validate_every_hours``."""
        due = []
        now = utcnow()
        for run in await self.book.runs():
            if self.status_of(run) != "active":
                continue
            last = run.validation.at if run.validation else (run.finished_at or run.created_at)
            if (now - last).total_seconds() >= self.config.validate_every_hours * 3600:
                due.append(run)
        return due


BASE_MODEL = "smollm2-135m-instruct"
"""The model runs train on: the bundled one (what the llama.cpp engine serves by default)."""


def require_training_libraries() -> None:
    """torch, transformers and peft are importable, or a ``MissingDependencyError``
    naming ``mongars-assistant[train]`` (nothing is imported here)."""
    for module in ("torch", "transformers", "peft"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module left half-imported, or blocked
            found = False
        if not found:
            raise MissingDependencyError(module, "train")


def gate_failure(scores: dict[str, float], config: LearningSettings) -> str | None:
    """Why these perplexities miss the gate; ``None`` when they pass."""
    try:
        held_before = scores["heldout_perplexity_before"]
        held_after = scores["heldout_perplexity_after"]
        general_before = scores["general_perplexity_before"]
        general_after = scores["general_perplexity_after"]
    except KeyError as exc:
        return f"the worker reported no {exc.args[0]}"
    reasons = []
    drop = 1 - held_after / held_before
    if not drop >= config.heldout_improvement:
        reasons.append(
            f"held-out perplexity {held_before:.2f} -> {held_after:.2f} ({drop:+.1%} lower; "
            f"needs at least {config.heldout_improvement:.0%})"
        )
    rise = general_after / general_before - 1
    if not rise <= config.general_tolerance:
        reasons.append(
            f"general-text perplexity {general_before:.2f} -> {general_after:.2f} ({rise:+.1%}; "
            f"at most +{config.general_tolerance:.0%} allowed)"
        )
    return "; ".join(reasons) or None


def _gate_summary(scores: dict[str, float]) -> str:
    return (
        f"held-out perplexity {scores['heldout_perplexity_before']:.2f} -> "
        f"{scores['heldout_perplexity_after']:.2f}, general "
        f"{scores['general_perplexity_before']:.2f} -> {scores['general_perplexity_after']:.2f}"
    )


def _default_threads() -> int:
    from mongars_plugins.llamacpp.settings import default_threads

    return default_threads()


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


async def _stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the worker's process group, then SIGKILL if it has not gone in 30 s."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no log"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
