"""Idle-time scheduling: runs and validations start by themselves when the node is idle.

The scheduler wakes every ``check_seconds``. When no turn has completed in
this process for ``idle_minutes`` (counted from start-up too, so a short-lived
command never trains), and no run is going, it

1. validates the first active adapter that is due (``validate_every_hours``);
2. otherwise trains for the consenting user with the most new curated
   examples since their last run, if they have at least ``min_new_examples``
   and the grid's carbon intensity is not above ``carbon_threshold`` (a
   deferral is recorded in :attr:`IdleScheduler.last_decision`).

Only consenting users are considered, and a run checks consent again itself.
"""

from __future__ import annotations

import asyncio
import logging
import time

from mongars_core.errors import MongarsError
from mongars_core.types import utcnow
from mongars_plugins.learning import energy
from mongars_plugins.learning.errors import RunInProgressError
from mongars_plugins.learning.runner import Learner

log = logging.getLogger(__name__)

SHARE_EVERY_S = 5.0
"""How often at most a turn rewrites the node's activity file."""


class IdleScheduler:
    def __init__(self, learner: Learner, *, clock: object = time.monotonic) -> None:
        self.learner = learner
        self.config = learner.config
        self._clock = clock
        self.last_activity = self._now()
        self.last_decision = "not checked yet"
        self.activity_file = learner.root / "last-turn"
        self._shared_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def _now(self) -> float:
        return self._clock()  # type: ignore[operator,no-any-return]

    def touch(self) -> None:
        """A turn completed: the node is busy. Other processes of the node (a server's
        workers) hear of it through a file's time, written at most every few seconds."""
        self.last_activity = self._now()
        now = time.time()
        if now - self._shared_at >= SHARE_EVERY_S:
            self._shared_at = now
            try:
                self.activity_file.parent.mkdir(parents=True, exist_ok=True)
                self.activity_file.touch()
            except OSError as exc:
                log.debug("cannot record the node's activity: %s", exc)

    @property
    def idle_seconds(self) -> float:
        """Seconds since the last turn of this process, or of any process of the node."""
        here = self._now() - self.last_activity
        try:
            elsewhere = time.time() - self.activity_file.stat().st_mtime
        except OSError:
            return here
        return min(here, max(0.0, elsewhere))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self.learner.cancel()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_seconds)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except MongarsError as exc:  # its message may name a user: kept to the log
                self.last_decision = f"failed ({type(exc).__name__}; see the log)"
                log.warning("learning scheduler: %s", exc)
            except Exception:
                self.last_decision = "failed (see the log)"
                log.exception("learning scheduler failed")

    async def tick(self) -> str:
        """Look once for work and do it; what was decided (also in ``last_decision``)."""
        self.last_decision = decision = await self._decide_and_do()
        return decision

    async def _decide_and_do(self) -> str:
        idle_for = self.config.idle_minutes * 60
        if self.idle_seconds < idle_for:
            return (
                f"busy: the last turn was {self.idle_seconds:.0f} s ago "
                f"(idle after {idle_for:.0f} s)"
            )
        if self.learner.lock.holder() is not None:
            return "a run is going"
        due = await self.learner.due_validations()
        for run in due:
            if not await self.learner.has_consent(run.user_id):
                continue
            try:
                await self.learner.validate(run.id)
                return f"validated {run.id}"
            except RunInProgressError:
                return "a run is going"
            except MongarsError as exc:
                log.info("validation of %s waits: %s", run.id, exc)
        candidates = await self.learner.candidates()
        if not candidates:
            return "no consenting user has enough new examples"
        threshold = self.config.carbon_threshold
        intensity = energy.grid_intensity(self.config.grid_intensity, utcnow().astimezone())
        if threshold is not None and intensity > threshold:
            return (
                f"deferred: grid intensity {intensity:.0f} gCO2e/kWh is above the threshold "
                f"{threshold:.0f}"
            )
        chosen = candidates[0]
        try:
            run = await self.learner.run(chosen.user_id, trigger="schedule", by="scheduler")
        except RunInProgressError:
            return "a run is going"
        return f"ran {run.id}: {self.learner.status_of(run)}"
