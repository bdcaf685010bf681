"""The learning routes over real HTTP: a user's own consent, dataset and runs; the
administrators' queue (approve, reject, roll back, start a run, summary, status).

Runs are made with ``RunBook.add`` and a small adapter folder in the registry, so
nothing here needs the training worker, except the one run started over HTTP,
which uses ``tests/fake_trainer.py`` (the worker's protocol, no model).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mongars_core.types import utcnow
from mongars_plugins.learning import idle_scheduler
from mongars_plugins.learning import learner as learner_of
from mongars_plugins.learning.runner import BASE_MODEL, Learner, adapter_name
from mongars_plugins.learning.runs import Energy, RunBook, RunRecord, new_run_id
from mongars_testkit import InstantBackend
from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import LiveServer, bearer, register

FAKE_WORKER = Path(__file__).parents[1] / "fake_trainer.py"
MIN_EXAMPLES = 4
LEARNING_PLUGINS = [*BUNDLED_WITHOUT_MODELS, "learning", "server", "instant"]
SCORES = {
    "heldout_perplexity_before": 30.0,
    "heldout_perplexity_after": 12.0,
    "general_perplexity_before": 20.0,
    "general_perplexity_after": 20.4,
}


def learning_server(make_server: Callable[..., LiveServer], **learning: Any) -> LiveServer:
    """A server with the learning plugin; its scheduler off unless asked."""
    config = {"schedule": False, "min_examples": MIN_EXAMPLES, **learning}
    return make_server(InstantBackend(), load_plugins=LEARNING_PLUGINS, learning=config)


@pytest.fixture
def server(make_server: Callable[..., LiveServer]) -> LiveServer:
    return learning_server(make_server)


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        yield client


def learner(server: LiveServer) -> Learner:
    return learner_of(server.state.assistant.services)


def user_id(server: LiveServer, username: str) -> str:
    account = server.call(server.state.accounts.get(username))
    assert account is not None
    return str(account.user_id)


async def admin(http: httpx.AsyncClient, server: LiveServer) -> dict[str, str]:
    token = await register(http, "root")
    server.call(server.state.accounts.set_admin("root", True))
    return bearer(token)


def add_run(
    server: LiveServer,
    tmp_path: Path,
    username: str,
    status: str = "awaiting_approval",
    *,
    minutes_ago: int = 10,
    wh: float = 1.5,
    estimated: bool = True,
    **fields: Any,
) -> RunRecord:
    """A finished run of ``username``'s; one awaiting approval has its adapter registered."""
    owner = user_id(server, username)
    created = utcnow() - timedelta(minutes=minutes_ago)
    run = RunRecord(
        id=new_run_id(created),
        user_id=owner,
        status=status,  # type: ignore[arg-type]
        created_at=created,
        finished_at=created + timedelta(minutes=2),
        metrics=SCORES,
        energy=Energy(
            wh=wh, source="estimate", estimated=estimated, intensity_g_per_kwh=400, co2e_g=wh * 0.4
        ),
        **fields,
    )
    if status == "awaiting_approval":
        folder = tmp_path / "adapters-made" / run.id
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
        (folder / "adapter_model.safetensors").write_bytes(b"weights of " + run.id.encode())
        registry = server.state.assistant.services.adapter_registry()
        registry.register(
            folder, name=adapter_name(owner), version=run.id, base_model=BASE_MODEL, owner=owner
        )
        run.adapter = f"{adapter_name(owner)}@{run.id}"
        # A run is made only for a user who opted in (and approval asks again).
        server.call(RunBook(server.state.assistant.store).set_consent(owner, True, by="test"))
    server.call(RunBook(server.state.assistant.store).add(run))
    return run


def answering(server: LiveServer, username: str) -> str | None:
    found = server.state.assistant.services.adapter_registry().for_user(user_id(server, username))
    return None if found is None else f"{found.name}@{found.version}"


async def chat(http: httpx.AsyncClient, headers: dict[str, str], *messages: str) -> None:
    for message in messages:
        said = await http.post(
            "/api/v1/conversation/chat", json={"message": message}, headers=headers
        )
        assert said.status_code == 200, said.text


MESSAGES = [
    "Ahoy, how do I cook rice on a boat?",
    "Ahoy, what is the best knot for a mooring line?",
    "Ahoy, tell me about the tides in the estuary.",
    "Ahoy, how do I bake bread in a small galley?",
    "Ahoy, which stars guide a sailor at night?",
]


# -- a user's own -------------------------------------------------------------------------


async def test_a_user_opts_in_sees_their_dataset_and_opts_out(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    alice = bearer(await register(http, "alice"))
    await chat(http, alice, *MESSAGES[:3], "My mail is jean.dupont@orange.fr, keep it.")

    mine = (await http.get("/api/v1/learning", headers=alice)).json()
    assert mine == {"enabled": False, "changed_at": None, "adapter": None, "runs": []}
    refused = await http.get("/api/v1/learning/dataset", headers=alice)
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": "you have not opted in to learning",
        "code": "consent_required",
    }

    turned_on = await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=alice)
    assert turned_on.status_code == 200, turned_on.text
    assert turned_on.json()["enabled"] is True and turned_on.json()["by"] == "user:alice"
    mine = (await http.get("/api/v1/learning", headers=alice)).json()
    assert mine["enabled"] is True and mine["changed_at"] == turned_on.json()["changed_at"]
    assert server.call(learner(server).has_consent(user_id(server, "alice")))

    dataset = (await http.get("/api/v1/learning/dataset", headers=alice)).json()
    assert "user_id" not in dataset
    shown = [e["response"] for e in [*dataset["train"], *dataset["heldout"]]]
    assert shown == [*MESSAGES[:3], "My mail is <EMAIL>, keep it."]  # scrubbed
    assert dataset["examples"] == 4 and len(dataset["sha256"]) == 64
    assert user_id(server, "alice") not in json.dumps(dataset)

    off = await http.put("/api/v1/learning/consent", json={"enabled": False}, headers=alice)
    assert off.json()["enabled"] is False
    assert (await http.get("/api/v1/learning/dataset", headers=alice)).status_code == 409


@pytest.mark.parametrize(
    ("body", "refused"),
    [
        ({}, 422),
        ({"enabled": "yes"}, 422),
        ({"enabled": 1}, 422),
        ({"enabled": True, "user_id": "bob"}, 422),
        (None, 415),  # no body: the server asks for JSON
    ],
)
async def test_consent_takes_exactly_one_boolean(
    http: httpx.AsyncClient, body: dict[str, Any] | None, refused: int
) -> None:
    alice = bearer(await register(http, "alice"))
    answer = await http.put("/api/v1/learning/consent", json=body, headers=alice)
    assert answer.status_code == refused, answer.text
    assert (await http.get("/api/v1/learning", headers=alice)).json()["enabled"] is False


async def test_the_learning_routes_need_a_caller(http: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/v1/learning"),
        ("PUT", "/api/v1/learning/consent"),
        ("GET", "/api/v1/learning/dataset"),
    ]:
        answer = await http.request(method, path, json={"enabled": True})
        assert answer.status_code == 401, (method, path)


async def test_a_user_sees_only_their_own_runs_and_consent(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    alice = bearer(await register(http, "alice"))
    bob = bearer(await register(http, "bob"))
    await chat(http, alice, *MESSAGES)
    await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=alice)
    run = add_run(server, tmp_path, "alice")

    theirs = (await http.get("/api/v1/learning", headers=alice)).json()
    assert [r["id"] for r in theirs["runs"]] == [run.id]
    assert theirs["runs"][0]["status"] == "awaiting_approval"
    assert "user_id" not in theirs["runs"][0]
    assert theirs["runs"][0]["metrics"]["heldout_perplexity_after"] == 12.0
    assert theirs["runs"][0]["energy_wh"] == 1.5

    # Bob sees nothing of Alice's, and his own switch leaves hers alone.
    own = (await http.get("/api/v1/learning", headers=bob)).json()
    assert own == {"enabled": False, "changed_at": None, "adapter": None, "runs": []}
    assert (await http.get("/api/v1/learning/dataset", headers=bob)).status_code == 409
    await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=bob)
    await http.put("/api/v1/learning/consent", json={"enabled": False}, headers=bob)
    assert (await http.get("/api/v1/learning", headers=alice)).json()["enabled"] is True
    bobs = (await http.get("/api/v1/learning/dataset", headers=bob)).json()
    assert bobs["code"] == "consent_required"
    # Nor can he reach the administrators' routes that would.
    for method, path in [
        ("GET", "/api/v1/admin/learning/runs"),
        ("POST", f"/api/v1/admin/learning/runs/{run.id}/approve"),
        ("POST", f"/api/v1/admin/learning/runs/{run.id}/reject"),
        ("POST", "/api/v1/admin/learning/users/alice/rollback"),
        ("PUT", "/api/v1/admin/learning/users/alice/consent"),
        ("POST", "/api/v1/admin/learning/users/alice/run"),
        ("GET", "/api/v1/admin/learning/summary"),
        ("GET", "/api/v1/admin/learning/status"),
        ("POST", "/api/v1/admin/learning/cancel"),
    ]:
        body = {"enabled": False} if method == "PUT" else None
        answer = await http.request(method, path, json=body, headers=bob)
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["code"] == "forbidden"
    assert (await http.get("/api/v1/learning", headers=alice)).json()["enabled"] is True
    assert (await http.get("/api/v1/learning", headers=alice)).json()["runs"][0]["status"] == (
        "awaiting_approval"
    )


# -- administrators -------------------------------------------------------------------------


async def test_approval_answers_only_that_user_with_the_adapter(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = await admin(http, server)
    alice = bearer(await register(http, "alice"))
    await register(http, "bob")
    run = add_run(server, tmp_path, "alice")
    other = add_run(server, tmp_path, "bob", minutes_ago=5)

    queued = await http.get(
        "/api/v1/admin/learning/runs", params={"status": "awaiting_approval"}, headers=root
    )
    assert [(r["id"], r["username"]) for r in queued.json()["runs"]] == [
        (other.id, "bob"),
        (run.id, "alice"),
    ]
    assert all("user_id" not in r for r in queued.json()["runs"])
    only_alice = await http.get(
        "/api/v1/admin/learning/runs", params={"username": "alice"}, headers=root
    )
    assert [r["id"] for r in only_alice.json()["runs"]] == [run.id]

    approved = await http.post(f"/api/v1/admin/learning/runs/{run.id}/approve", headers=root)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "active" and approved.json()["username"] == "alice"
    assert approved.json()["events"][-1]["by"] == "admin:root"
    assert answering(server, "alice") == f"{adapter_name(user_id(server, 'alice'))}@{run.id}"
    assert answering(server, "bob") is None and answering(server, "root") is None
    mine = (await http.get("/api/v1/learning", headers=alice)).json()
    assert mine["adapter"] == run.adapter and mine["runs"][0]["status"] == "active"

    again = await http.post(f"/api/v1/admin/learning/runs/{run.id}/approve", headers=root)
    assert again.status_code == 409
    assert again.json()["code"] == "run_state" and "is active" in again.json()["detail"]
    active = await http.get(
        "/api/v1/admin/learning/runs", params={"status": "active"}, headers=root
    )
    assert [r["id"] for r in active.json()["runs"]] == [run.id]


async def test_a_rejected_run_never_answers_and_keeps_its_reason(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = await admin(http, server)
    await register(http, "alice")
    run = add_run(server, tmp_path, "alice")
    rejected = await http.post(
        f"/api/v1/admin/learning/runs/{run.id}/reject",
        json={"reason": "replies got too salty"},
        headers=root,
    )
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["reason"]) == (
        "rejected",
        "replies got too salty",
    )
    assert rejected.json()["events"][-1]["by"] == "admin:root"
    assert answering(server, "alice") is None
    approve = await http.post(f"/api/v1/admin/learning/runs/{run.id}/approve", headers=root)
    assert approve.status_code == 409 and approve.json()["code"] == "run_state"

    # Without a body, the reason says who rejected it.
    second = add_run(server, tmp_path, "alice", minutes_ago=3)
    plain = await http.post(f"/api/v1/admin/learning/runs/{second.id}/reject", headers=root)
    assert plain.json()["reason"] == "rejected by admin:root"


async def test_run_ids_usernames_and_reasons_are_checked(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = await admin(http, server)
    await register(http, "alice")
    run = add_run(server, tmp_path, "alice")
    unknown = "run-20250101-000000-abcdef"
    missing = await http.post(f"/api/v1/admin/learning/runs/{unknown}/approve", headers=root)
    assert missing.status_code == 404
    assert missing.json() == {"detail": f"there is no run {unknown!r}", "code": "not_found"}
    for bad in ["run-1", "..%2F..%2Fetc", "run-20250101-000000-ABCDEF", run.id + "0"]:
        answer = await http.post(f"/api/v1/admin/learning/runs/{bad}/approve", headers=root)
        assert answer.status_code in (404, 422), (bad, answer.text)
        assert answer.json()["code"] in ("invalid_input", "not_found")
    nobody = await http.post("/api/v1/admin/learning/users/nobody/rollback", headers=root)
    assert nobody.status_code == 404 and "nobody" in nobody.json()["detail"]
    too_long = await http.get(
        "/api/v1/admin/learning/runs", params={"username": "x" * 151}, headers=root
    )
    assert too_long.status_code == 422
    bad_status = await http.get(
        "/api/v1/admin/learning/runs", params={"status": "approved"}, headers=root
    )
    assert bad_status.status_code == 422
    for reason in [{"reason": "x" * 501}, {"reason": "line\nbreak"}, {"why": "extra"}]:
        answer = await http.post(
            f"/api/v1/admin/learning/runs/{run.id}/reject", json=reason, headers=root
        )
        assert answer.status_code == 422, reason
    assert learner(server).status_of(server.call(learner(server).book.get(run.id))) == (
        "awaiting_approval"
    )


async def test_rollback_goes_back_one_adapter_then_to_the_base(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = await admin(http, server)
    alice = bearer(await register(http, "alice"))
    first = add_run(server, tmp_path, "alice", minutes_ago=20)
    second = add_run(server, tmp_path, "alice", minutes_ago=10)
    for run in (first, second):
        approved = await http.post(f"/api/v1/admin/learning/runs/{run.id}/approve", headers=root)
        assert approved.status_code == 200, approved.text
    assert answering(server, "alice") == second.adapter

    back = await http.post("/api/v1/admin/learning/users/alice/rollback", headers=root)
    assert back.status_code == 200, back.text
    assert back.json() == {"username": "alice", "adapter": first.adapter, "run_id": first.id}
    assert answering(server, "alice") == first.adapter
    statuses = {
        r["id"]: r["status"]
        for r in (await http.get("/api/v1/learning", headers=alice)).json()["runs"]
    }
    assert statuses == {first.id: "active", second.id: "rolled_back"}

    base = await http.post("/api/v1/admin/learning/users/alice/rollback", headers=root)
    assert base.json() == {"username": "alice", "adapter": None, "run_id": None}
    assert answering(server, "alice") is None
    nothing = await http.post("/api/v1/admin/learning/users/alice/rollback", headers=root)
    assert nothing.status_code == 404
    assert nothing.json()["detail"] == "'alice' has no adapter to roll back"


async def test_an_administrator_sets_consent_for_an_account(
    server: LiveServer, http: httpx.AsyncClient
) -> None:
    root = await admin(http, server)
    alice = bearer(await register(http, "alice"))
    set_on = await http.put(
        "/api/v1/admin/learning/users/alice/consent", json={"enabled": True}, headers=root
    )
    assert set_on.status_code == 200, set_on.text
    assert set_on.json()["username"] == "alice" and set_on.json()["by"] == "admin:root"
    assert (await http.get("/api/v1/learning", headers=alice)).json()["enabled"] is True
    assert server.call(learner(server).has_consent(user_id(server, "alice")))
    assert not server.call(learner(server).has_consent(user_id(server, "root")))
    unknown = await http.put(
        "/api/v1/admin/learning/users/nobody/consent", json={"enabled": True}, headers=root
    )
    assert unknown.status_code == 404


async def test_starting_a_run_is_refused_at_once_when_it_cannot_go(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = await admin(http, server)
    alice = bearer(await register(http, "alice"))
    start = "/api/v1/admin/learning/users/alice/run"

    refused = await http.post(start, headers=root)
    assert refused.status_code == 409
    assert refused.json() == {
        "detail": "'alice' has not opted in to learning",
        "code": "consent_required",
    }
    await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=alice)
    await chat(http, alice, *MESSAGES[:2])
    few = await http.post(start, headers=root)
    assert few.status_code == 422
    assert few.json() == {
        "detail": f"'alice' has 2 curated examples; a run needs at least {MIN_EXAMPLES}",
        "code": "not_enough_examples",
    }
    await chat(http, alice, *MESSAGES[2:])
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "peft", None)  # as if the train extra were missing
        missing = await http.post(start, headers=root)
    assert missing.status_code == 503 and missing.json()["code"] == "missing_dependency"
    assert "mongars-assistant[train]" in missing.json()["detail"]
    with learner(server).lock.hold("run-20250101-000000-abcdef", user_id(server, "alice")):
        busy = await http.post(start, headers=root)
    assert busy.status_code == 409
    assert busy.json() == {"detail": "a training run is already going", "code": "run_in_progress"}
    assert (
        await http.post("/api/v1/admin/learning/users/nobody/run", headers=root)
    ).status_code == (404)
    assert server.call(learner(server).runs()) == []


async def test_a_run_started_over_http_trains_in_the_background(
    server: LiveServer, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_TRAINER", json.dumps({"metrics": SCORES}))
    learner(server).worker = [str(FAKE_WORKER)]
    root = await admin(http, server)
    alice = bearer(await register(http, "alice"))
    await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=alice)
    await chat(http, alice, *MESSAGES)

    started = await http.post("/api/v1/admin/learning/users/alice/run", headers=root)
    assert started.status_code == 202, started.text
    assert started.json() == {"started": True, "username": "alice"}
    server.call(settled(server), timeout=90)

    (run,) = (await http.get("/api/v1/learning", headers=alice)).json()["runs"]
    assert run["status"] == "awaiting_approval", run
    assert run["events"][0] == {**run["events"][0], "action": "started", "by": "admin:root"}
    assert run["examples"] + run["heldout_examples"] == len(MESSAGES)
    status = (await http.get("/api/v1/admin/learning/status", headers=root)).json()
    assert status["running"] is None
    assert [(r["id"], r["username"]) for r in status["awaiting_approval"]] == [(run["id"], "alice")]
    assert status["consenting_users"] == 1


async def settled(server: LiveServer) -> None:
    """Wait (at most 60 s) for the server's background tasks: the run started above."""
    tasks = [task for task in server.state.background if not task.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=60)


async def test_the_summary_adds_up_every_run(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = await admin(http, server)
    alice = bearer(await register(http, "alice"))
    await register(http, "bob")
    await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=alice)
    empty = (await http.get("/api/v1/admin/learning/summary", headers=root)).json()
    assert empty == {
        "runs": {},
        "energy_wh": 0,
        "co2e_g": 0,
        "estimated": False,
        "awaiting_approval": 0,
        "regressed": [],
        "running": None,
        "scheduler": None,
    }

    approved = add_run(server, tmp_path, "alice", minutes_ago=30, wh=2.0, estimated=False)
    add_run(server, tmp_path, "alice", minutes_ago=20, wh=0.5, estimated=False)
    add_run(server, tmp_path, "bob", "rejected", minutes_ago=15, wh=1.0, estimated=True)
    regressed = add_run(server, tmp_path, "bob", "failed", minutes_ago=5, wh=0.25, regressed=True)
    await http.post(f"/api/v1/admin/learning/runs/{approved.id}/approve", headers=root)

    summary = (await http.get("/api/v1/admin/learning/summary", headers=root)).json()
    assert summary["runs"] == {"active": 1, "awaiting_approval": 1, "failed": 1, "rejected": 1}
    assert summary["energy_wh"] == pytest.approx(3.75)
    assert summary["co2e_g"] == pytest.approx(3.75 * 0.4)
    assert summary["estimated"] is True
    assert summary["awaiting_approval"] == 1
    assert summary["regressed"] == [regressed.id]
    holder = user_id(server, "bob")
    with learner(server).lock.hold("run-20250101-000000-abcdef", holder):
        going = (await http.get("/api/v1/admin/learning/summary", headers=root)).json()
    assert going["running"] == {
        "run_id": "run-20250101-000000-abcdef",
        "username": "bob",
        "progress": {},
    }
    assert holder not in json.dumps(going)


async def test_the_scheduler_runs_hears_of_turns_and_the_summary_shows_its_decision(
    make_server: Callable[..., LiveServer],
) -> None:
    server = learning_server(make_server, schedule=True, check_seconds=3600)
    found = idle_scheduler(server.state.assistant.services)
    assert found is not None
    quiet_since = found.last_activity
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        root = await admin(http, server)
        await chat(http, root, MESSAGES[0])
        summary = (await http.get("/api/v1/admin/learning/summary", headers=root)).json()
    assert summary["scheduler"] == "not checked yet"
    # The completed turn told the scheduler that the node is busy.
    assert found.last_activity > quiet_since


async def test_the_status_names_the_queue_and_the_run_going_by_username(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = learning_server(make_server, min_new_examples=2)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        root = await admin(http, server)
        alice = bearer(await register(http, "alice"))
        bob = bearer(await register(http, "bob"))
        await http.put("/api/v1/learning/consent", json={"enabled": True}, headers=alice)
        await chat(http, alice, *MESSAGES[:3])
        await chat(http, bob, *MESSAGES)  # no consent: never queued
        queued = add_run(server, tmp_path, "bob")
        book = RunBook(server.state.assistant.store)  # bob opted out since (no side effects)
        server.call(book.set_consent(user_id(server, "bob"), False, by="test"))
        with learner(server).lock.hold("run-20250101-000000-abcdef", user_id(server, "alice")):
            status = (await http.get("/api/v1/admin/learning/status", headers=root)).json()
    assert status["queue"] == [{"username": "alice", "new_examples": 3}]
    assert status["running"] == {
        "run_id": "run-20250101-000000-abcdef",
        "username": "alice",
        "progress": {},
    }
    assert [(r["id"], r["username"]) for r in status["awaiting_approval"]] == [(queued.id, "bob")]
    assert (status["consenting_users"], status["min_new_examples"]) == (1, 2)
    text = json.dumps(status)
    assert user_id(server, "alice") not in text and user_id(server, "bob") not in text


async def test_cancel_asks_the_run_going_to_stop_and_is_409_when_none_is(
    make_server: Callable[..., LiveServer],
) -> None:
    server = learning_server(make_server)
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        root = await admin(http, server)
        idle = await http.post("/api/v1/admin/learning/cancel", headers=root)
        assert (idle.status_code, idle.json()["code"]) == (409, "no_run")
        going = learner(server)
        with going.lock.hold("run-20250101-000000-abcdef", "someone"):
            asked = await http.post("/api/v1/admin/learning/cancel", headers=root)
            assert asked.json() == {"run_id": "run-20250101-000000-abcdef"}
            assert going._cancel_requested("run-20250101-000000-abcdef")


async def test_deleting_an_account_erases_the_adapters_learnt_from_its_data(
    server: LiveServer, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    root = await admin(http, server)
    await register(http, "alice")
    await register(http, "bob")
    run = add_run(server, tmp_path, "alice")
    kept = add_run(server, tmp_path, "bob", minutes_ago=5)
    approved = await http.post(f"/api/v1/admin/learning/runs/{run.id}/approve", headers=root)
    assert approved.status_code == 200, approved.text
    registry = server.state.assistant.services.adapter_registry()
    alices = registry.for_user(user_id(server, "alice"))
    assert alices is not None
    gone = await http.delete("/api/v1/user/alice", headers=root)
    assert gone.status_code == 200, gone.text
    assert [a.version for a in registry.adapters()] == [kept.id]  # bob's stays
    assert not os.path.exists(alices.path)  # noqa: ASYNC240
    assert registry.for_user(alices.owner or "") is None
