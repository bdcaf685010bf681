"""The learning routes: your own consent, dataset and runs; the operator's queue.

* ``/api/v1/learning`` (any caller, their own data only): consent, the dataset
  a run would train on, the caller's runs and the adapter answering them now;
* ``/api/v1/admin/learning`` (administrators): every run, approve, reject,
  roll back, consent on a user's behalf, start a run, the summary and the
  queue (what ``mongars learn`` prints, as JSON).

Run records and the learner's errors name a user by their ``user_id``, which
no caller sees (:mod:`mongars_server.accounts`): user routes drop it, admin
routes name the account by its username, and the learner's errors are
answered here with messages of their own (:func:`_answered`). Imported only
when the server assembles, so the plugin needs no FastAPI otherwise.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from mongars_core.adapters import Adapter, AdapterNotFoundError
from mongars_core.errors import MissingDependencyError, MongarsError
from mongars_plugins.learning import idle_scheduler
from mongars_plugins.learning import learner as learner_of
from mongars_plugins.learning.errors import (
    ConsentRequiredError,
    NotEnoughExamplesError,
    RunInProgressError,
    RunStateError,
    UnknownRunError,
)
from mongars_plugins.learning.runner import Learner, require_training_libraries
from mongars_plugins.learning.runs import RunRecord, run_json
from mongars_server.deps import AdminCaller, CurrentCaller, State
from mongars_server.errors import ApiError

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/learning", tags=["learning"])
admin_router = APIRouter(prefix="/api/v1/admin/learning", tags=["admin"])

RUN_ID = r"^run-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$"
RunId = Annotated[str, Path(pattern=RUN_ID, description="`run-YYYYmmdd-HHMMSS-xxxxxx`")]
Username = Annotated[str, Path(min_length=1, max_length=150)]  # as in history_io
ShownStatus = Literal[
    "training",
    "failed",
    "cancelled",
    "abandoned",
    "rejected",
    "awaiting_approval",
    "active",
    "rolled_back",
    "superseded",
]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")] = ""


class ConsentOut(BaseModel):
    enabled: bool
    changed_at: str | None
    by: str | None


class UserConsentOut(ConsentOut):
    username: str


class LearningOut(BaseModel):
    enabled: bool
    changed_at: str | None
    adapter: str | None = Field(description="`name@version` answering you now; null: the base")
    runs: list[dict[str, Any]]


class RunList(BaseModel):
    runs: list[dict[str, Any]]


class RolledBack(BaseModel):
    username: str
    adapter: str | None = Field(description="`name@version` answering them now; null: the base")
    run_id: str | None


class Started(BaseModel):
    started: bool
    username: str


class Summary(BaseModel):
    runs: dict[str, int]
    energy_wh: float
    co2e_g: float
    estimated: bool
    awaiting_approval: int
    regressed: list[str]
    running: dict[str, Any] | None
    scheduler: str | None


class LearningStatus(BaseModel):
    running: dict[str, Any] | None
    awaiting_approval: list[dict[str, Any]]
    queue: list[dict[str, Any]]
    consenting_users: int
    min_new_examples: int
    idle_minutes: float


# -- helpers ------------------------------------------------------------------------


def _learner(server: State) -> Learner:
    return learner_of(server.assistant.services)


def _ref(adapter: Adapter | None) -> str | None:
    return None if adapter is None else f"{adapter.name}@{adapter.version}"


@contextlib.contextmanager
def _answered(whose: str, *, your: bool = False) -> Iterator[None]:
    """The learner's errors as HTTP answers that name ``whose`` (a username, or
    "you"), never a ``user_id``.

    Missing consent is a 409 (``consent_required``): the request is fine, the
    user's consent is what stands in its way, and they (or an administrator
    for them) can change it.
    """
    have = "have" if your else "has"
    try:
        yield
    except ConsentRequiredError:
        raise ApiError(
            409, f"{whose} {have} not opted in to learning", "consent_required"
        ) from None
    except RunInProgressError:
        raise ApiError(409, "a training run is already going", "run_in_progress") from None
    except NotEnoughExamplesError:
        raise ApiError(
            422, f"{whose} {have} too few curated examples for a run", "not_enough_examples"
        ) from None
    except RunStateError as exc:
        raise ApiError(409, str(exc), "run_state") from None
    except UnknownRunError as exc:
        raise ApiError(404, str(exc), "not_found") from None


class _Names:
    """``user_id`` -> username, read from the accounts once per request."""

    def __init__(self, server: State) -> None:
        self.server = server
        self.known: dict[str, str | None] = {}

    async def of(self, user_id: str) -> str | None:
        if user_id not in self.known:
            account = await self.server.accounts.owner_of(user_id)
            self.known[user_id] = None if account is None else account.username
        return self.known[user_id]

    async def named(self, user_id: str) -> dict[str, str | None]:
        """``{"username"}``; for a library user (no account), also ``library_user``:
        their id, which is no account's."""
        username = await self.of(user_id)
        return {"username": username} if username else {"username": None, "library_user": user_id}

    async def renamed(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` with ``username`` (and ``library_user``) in place of ``user_id``."""
        data = dict(row)
        data.update(await self.named(data.pop("user_id")))
        return data

    async def run(self, run: RunRecord, learner: Learner) -> dict[str, Any]:
        """A run as administrators see it: ``username`` for ``user_id``; a run of a
        library user (no account) keeps their id as ``library_user``."""
        return await self.renamed(run_json(run, learner.registry))


async def _user_id(server: State, username: str) -> str:
    account = await server.accounts.get(username)
    if account is None:
        raise ApiError(404, f"there is no account {username!r}", "not_found")
    return account.user_id


def _own(run: RunRecord, learner: Learner) -> dict[str, Any]:
    data = run_json(run, learner.registry)
    del data["user_id"]  # the account's data id is not the caller's to see
    return data


async def _running(learner: Learner, names: _Names) -> dict[str, Any] | None:
    holder = learner.lock.holder()
    if holder is None:
        return None
    going: dict[str, Any] = {
        "run_id": holder.run_id,
        **await names.named(holder.user_id),
        "progress": {},
    }
    for record in await learner.book.runs(holder.user_id):
        if record.id == holder.run_id:
            going["progress"] = record.progress
    return going


def _consent(value: dict[str, Any] | None) -> dict[str, Any]:
    value = value or {}
    return {
        "enabled": bool(value.get("enabled")),
        "changed_at": value.get("changed_at"),
        "by": value.get("by"),
    }


# -- your own --------------------------------------------------------------------------


@router.get("", response_model=LearningOut)
async def my_learning(server: State, caller: CurrentCaller) -> LearningOut:
    """Your consent, the adapter answering you now, and your runs (newest first)."""
    learner = _learner(server)
    consent = _consent(await learner.book.consent(caller.user_id))
    runs = await learner.runs(caller.user_id)
    return LearningOut(
        enabled=consent["enabled"],
        changed_at=consent["changed_at"],
        adapter=_ref(learner.registry.for_user(caller.user_id)),
        runs=[_own(run, learner) for run in runs],
    )


@router.put("/consent", response_model=ConsentOut)
async def set_my_consent(server: State, caller: CurrentCaller, body: ConsentIn) -> ConsentOut:
    """Opt in (your scrubbed turns may train a private adapter, which answers you only
    once approved) or out (none of your text enters a dataset from now on)."""
    value = await _learner(server).set_consent(
        caller.user_id, body.enabled, by=f"user:{caller.username}"
    )
    return ConsentOut(**_consent(value))


@router.get("/dataset")
async def my_dataset(server: State, caller: CurrentCaller) -> dict[str, Any]:
    """Exactly what a run for you would train on and hold out, scrubbed; 409
    ``consent_required`` until you opt in."""
    with _answered("you", your=True):
        dataset = await _learner(server).dataset(caller.user_id)
    data = dataset.as_dict()
    del data["user_id"]
    return data


# -- administrators ------------------------------------------------------------------


@admin_router.get("/runs", response_model=RunList)
async def list_runs(
    server: State,
    caller: AdminCaller,
    status: Annotated[ShownStatus | None, Query()] = None,
    username: Annotated[str | None, Query(min_length=1, max_length=150)] = None,
) -> RunList:
    """Every run (or one account's), newest first, filtered by shown ``status``."""
    learner = _learner(server)
    user_id = None if username is None else await _user_id(server, username)
    names = _Names(server)
    rows = []
    for run in await learner.runs(user_id):
        if status is None or learner.status_of(run) == status:
            rows.append(await names.run(run, learner))
    return RunList(runs=rows)


@admin_router.post("/runs/{run_id}/approve")
async def approve_run(server: State, caller: AdminCaller, run_id: RunId) -> dict[str, Any]:
    """Make the run's adapter answer its user from now on (409 unless it awaits approval)."""
    learner = _learner(server)
    with _answered("the user"):
        run = await learner.approve(run_id, by=f"admin:{caller.username}")
    return await _Names(server).run(run, learner)


@admin_router.post("/runs/{run_id}/reject")
async def reject_run(
    server: State,
    caller: AdminCaller,
    run_id: RunId,
    body: Annotated[RejectIn | None, Body()] = None,
) -> dict[str, Any]:
    """Reject a run awaiting approval, with an optional ``reason``: its adapter never
    answers anyone."""
    learner = _learner(server)
    with _answered("the user"):
        run = await learner.reject(
            run_id, by=f"admin:{caller.username}", reason=body.reason if body else ""
        )
    return await _Names(server).run(run, learner)


@admin_router.post("/users/{username}/rollback", response_model=RolledBack)
async def rollback_user(server: State, caller: AdminCaller, username: Username) -> RolledBack:
    """Go back to the account's previous adapter, or to the base model."""
    user_id = await _user_id(server, username)
    learner = _learner(server)
    missing = ApiError(404, f"{username!r} has no adapter to roll back", "not_found")
    if learner.registry.for_user(user_id) is None:
        raise missing
    try:
        run = await learner.rollback(user_id, by=f"admin:{caller.username}")
    except AdapterNotFoundError:
        raise missing from None
    return RolledBack(
        username=username,
        adapter=_ref(learner.registry.for_user(user_id)),
        run_id=None if run is None else run.id,
    )


class Cancelled(BaseModel):
    run_id: str


@admin_router.post("/cancel", response_model=Cancelled)
async def cancel_run(server: State, caller: AdminCaller) -> Cancelled:
    """Ask the run (or validation) going on this node to stop, in whichever process it
    runs; it stops within a second or so and keeps nothing but its record."""
    holder = _learner(server).request_cancel()
    if holder is None:
        raise ApiError(409, "no training run is going", "no_run")
    return Cancelled(run_id=holder.run_id.split(":", 1)[0])  # a validation's is its run's


@admin_router.put("/users/{username}/consent", response_model=UserConsentOut)
async def set_user_consent(
    server: State, caller: AdminCaller, username: Username, body: ConsentIn
) -> UserConsentOut:
    """Opt an account in or out on its behalf (recorded as ``admin:<you>``)."""
    user_id = await _user_id(server, username)
    value = await _learner(server).set_consent(user_id, body.enabled, by=f"admin:{caller.username}")
    return UserConsentOut(username=username, **_consent(value))


@admin_router.post("/users/{username}/run", status_code=202, response_model=Started)
async def start_run(server: State, caller: AdminCaller, username: Username) -> Started:
    """Start a run for the account in the background (202); its progress and outcome
    are in ``GET /runs`` and ``GET /status``. Refused at once with 409 when a run is
    going or the account has not opted in, 422 with too few curated examples."""
    user_id = await _user_id(server, username)
    learner = _learner(server)
    try:
        require_training_libraries()
    except MissingDependencyError as exc:
        raise ApiError(503, str(exc), "missing_dependency") from None
    if learner.lock.holder() is not None:
        raise ApiError(409, "a training run is already going", "run_in_progress")
    with _answered(repr(username)):
        dataset = await learner.dataset(user_id)
    needed = learner.config.min_examples
    if dataset.size < needed:
        raise ApiError(
            422,
            f"{username!r} has {dataset.size} curated examples; a run needs at least {needed}",
            "not_enough_examples",
        )
    server.spawn(_run(learner, user_id, by=f"admin:{caller.username}"))
    return Started(started=True, username=username)


async def _run(learner: Learner, user_id: str, by: str) -> None:
    """A run started over HTTP: its outcome is in its record; failures are logged."""
    try:
        run = await learner.run(user_id, trigger="hand", by=by)
    except MongarsError as exc:
        log.warning("a learning run started by %s did not finish: %s", by, exc)
        return
    log.info("learning run %s (started by %s): %s", run.id, by, learner.status_of(run))


@admin_router.get("/summary", response_model=Summary)
async def summary(server: State, caller: AdminCaller) -> Summary:
    """Runs by shown status, the energy and carbon of all of them, what awaits
    approval, what regressed, what runs now and the scheduler's last decision."""
    learner = _learner(server)
    runs = await learner.runs()
    shown = Counter(learner.status_of(run) for run in runs)
    measured = [run.energy for run in runs if run.energy is not None]
    found = idle_scheduler(learner.services)
    return Summary(
        runs=dict(sorted(shown.items())),
        energy_wh=round(sum(e.wh for e in measured), 6),
        co2e_g=round(sum(e.co2e_g for e in measured), 6),
        estimated=any(e.estimated for e in measured),
        awaiting_approval=shown.get("awaiting_approval", 0),
        regressed=[run.id for run in runs if run.regressed],
        running=await _running(learner, _Names(server)),
        scheduler=None if found is None else found.last_decision,
    )


@admin_router.get("/status", response_model=LearningStatus)
async def status(server: State, caller: AdminCaller) -> LearningStatus:
    """What ``mongars learn status --json`` prints, with usernames: the run going, the
    runs awaiting approval, and the scheduler's queue."""
    data = await _learner(server).status()
    names = _Names(server)
    running = data["running"]
    return LearningStatus(
        **{
            **data,
            "running": None if running is None else await names.renamed(running),
            "awaiting_approval": [await names.renamed(r) for r in data["awaiting_approval"]],
            "queue": [await names.renamed(entry) for entry in data["queue"]],
        }
    )
