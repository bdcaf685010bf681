"""Run records and consent, kept in the store's plugin state (SQLite or PostgreSQL).

* ``learning.consent``, one value per user: ``{"enabled", "changed_at", "by"}``;
* ``learning.runs``, one value per user: ``{"runs": [<RunRecord>...]}``.

Every change is a read-modify-write in one transaction
(:meth:`~mongars_core.storage.store.Store.change_state`), so two processes
changing the same user's runs never lose each other's change.

A run's stored ``status`` is one of ``training``, ``failed``, ``cancelled``,
``abandoned``, ``rejected``, ``awaiting_approval`` and ``approved``. What is
shown (:func:`shown_status`) turns ``approved`` into ``active``, ``rolled_back``
or ``superseded`` from the adapter registry, which stays the one truth of what
answers a user (``mongars adapters rollback --user`` changes only the registry).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from mongars_core.adapters import AdapterRegistry
from mongars_core.storage.store import Store
from mongars_core.types import utcnow
from mongars_plugins.learning.errors import UnknownRunError

CONSENT = "learning.consent"
RUNS = "learning.runs"

Stored = Literal[
    "training", "failed", "cancelled", "abandoned", "rejected", "awaiting_approval", "approved"
]
FINISHED = {"failed", "cancelled", "abandoned", "rejected", "awaiting_approval", "approved"}


class Event(BaseModel):
    at: datetime = Field(default_factory=utcnow)
    action: str
    by: str
    detail: str = ""


class Energy(BaseModel):
    wh: float
    source: str
    estimated: bool
    cpu_seconds: float = 0.0
    intensity_g_per_kwh: float
    co2e_g: float
    detail: str = ""


class Validation(BaseModel):
    at: datetime = Field(default_factory=utcnow)
    examples: int
    heldout_perplexity_base: float
    heldout_perplexity_adapter: float
    passed: bool
    detail: str = ""


class RunRecord(BaseModel):
    id: str
    user_id: str
    status: Stored = "training"
    trigger: Literal["hand", "schedule"] = "hand"
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    dataset_sha256: str = ""
    dataset_last_turn: int | None = None
    """The row id of the last turn its dataset read (later turns are new to the next)."""
    examples: int = 0
    heldout_examples: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    duration_s: float | None = None
    energy: Energy | None = None
    adapter: str | None = None
    """``name@version`` in the adapter registry, once the run passed its gate."""
    device: str = ""
    reason: str = ""
    """Why it was rejected, failed, cancelled or abandoned."""
    progress: dict[str, int] = Field(default_factory=dict)
    pid: int | None = None
    events: list[Event] = Field(default_factory=list)
    validation: Validation | None = None
    regressed: bool = False
    """Its latest validation missed the gate: the operator should look."""

    @property
    def adapter_name(self) -> str | None:
        return self.adapter.split("@", 1)[0] if self.adapter else None

    @property
    def adapter_version(self) -> str | None:
        return self.adapter.split("@", 1)[1] if self.adapter else None


def new_run_id(now: datetime | None = None) -> str:
    """``run-YYYYmmdd-HHMMSS-xxxxxx``: sortable, unique, safe as an adapter version."""
    return f"run-{(now or utcnow()):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def shown_status(run: RunRecord, registry: AdapterRegistry) -> str:
    """The stored status, with ``approved`` made ``active``, ``rolled_back`` or
    ``superseded`` by what the registry answers the user with now."""
    if run.status != "approved" or run.adapter is None:
        return run.status
    current = registry.for_user(run.user_id)
    if current is not None and f"{current.name}@{current.version}" == run.adapter:
        return "active"
    if current is not None and current.name == run.adapter_name:
        mine = [a for a in registry.adapters() if f"{a.name}@{a.version}" == run.adapter]
        if mine and current.created_at > mine[0].created_at:
            return "superseded"  # a later run's adapter took over
    return "rolled_back"


def run_json(run: RunRecord, registry: AdapterRegistry) -> dict[str, Any]:
    """A run as ``--json`` and the API print it: the record, the shown status,
    ``energy_wh`` and the four perplexities under ``metrics``."""
    data = run.model_dump(mode="json", exclude={"pid"})
    data["status"] = shown_status(run, registry)
    if run.adapter:  # rollbacks are the registry's, whoever asked (`adapters rollback --user`)
        logged = [
            {"at": e["at"], "action": e["action"], "by": e["by"], "detail": ""}
            for e in registry.events_for(run.adapter)
        ]
        data["events"] = sorted([*data["events"], *logged], key=lambda e: str(e["at"]))
    data["energy_wh"] = run.energy.wh if run.energy else None
    data["co2e_g"] = run.energy.co2e_g if run.energy else None
    for name in (
        "heldout_perplexity_before",
        "heldout_perplexity_after",
        "general_perplexity_before",
        "general_perplexity_after",
    ):
        data["metrics"].setdefault(name, None)
    return data


class RunBook:
    """The run records and consents in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- consent ----------------------------------------------------------------

    async def consent(self, user_id: str) -> dict[str, Any] | None:
        return await self.store.get_state(CONSENT, user_id)

    async def consenting_users(self) -> list[str]:
        return sorted(
            user
            for user, value in (await self.store.list_state(CONSENT)).items()
            if value.get("enabled")
        )

    async def set_consent(self, user_id: str, enabled: bool, by: str) -> dict[str, Any]:
        value = {"enabled": enabled, "changed_at": utcnow().isoformat(), "by": by}
        await self.store.put_state(CONSENT, user_id, value)
        return value

    # -- runs ---------------------------------------------------------------------

    async def runs(self, user_id: str | None = None) -> list[RunRecord]:
        """Runs, newest first: one user's, or everyone's."""
        if user_id is not None:
            stored = await self.store.get_state(RUNS, user_id)
            values = [stored] if stored else []
        else:
            values = list((await self.store.list_state(RUNS)).values())
        runs = [RunRecord.model_validate(raw) for value in values for raw in value.get("runs", [])]
        return sorted(runs, key=lambda run: (run.created_at, run.id), reverse=True)

    async def get(self, run_id: str) -> RunRecord:
        for run in await self.runs():
            if run.id == run_id:
                return run
        raise UnknownRunError(f"there is no run {run_id!r}")

    async def add(self, run: RunRecord) -> None:
        def change(stored: dict[str, Any] | None) -> dict[str, Any]:
            runs = list((stored or {}).get("runs", []))
            runs.append(run.model_dump(mode="json"))
            return {"runs": runs}

        await self.store.change_state(RUNS, run.user_id, change)

    async def update(
        self, run: RunRecord, *, event: Event | None = None, **fields: Any
    ) -> RunRecord:
        """Set ``fields`` on the stored run, append ``event`` to its history, and
        return it: read, changed and written in one transaction, so a concurrent
        update of another field is kept."""
        result: list[RunRecord] = []
        changes = _jsonable(fields)

        def change(stored: dict[str, Any] | None) -> dict[str, Any]:
            runs = list((stored or {}).get("runs", []))
            for index, raw in enumerate(runs):
                if raw.get("id") == run.id:
                    events = list(raw.get("events", []))
                    if event is not None:
                        events.append(event.model_dump(mode="json"))
                    updated = RunRecord.model_validate({**raw, **changes, "events": events})
                    runs[index] = updated.model_dump(mode="json")
                    result.append(updated)
            return {"runs": runs}

        await self.store.change_state(RUNS, run.user_id, change)
        if not result:
            raise UnknownRunError(f"there is no run {run.id!r}")
        return result[0]

    async def record(
        self, run: RunRecord, action: str, by: str, detail: str = "", **fields: Any
    ) -> RunRecord:
        """Update ``fields`` and add who did what, and when, to the run's history."""
        return await self.update(run, event=Event(action=action, by=by, detail=detail), **fields)


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, BaseModel):
            out[key] = value.model_dump(mode="json")
        elif isinstance(value, list):
            out[key] = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
        elif isinstance(value, datetime):
            out[key] = value.isoformat()
        else:
            out[key] = value
    return out
