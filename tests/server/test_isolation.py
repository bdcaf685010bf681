"""No user can read or change another user's history, memories, keys or profile.

``test_every_route_is_covered`` fails when a route is added without a place
in this file: each route is either public (no user data) or checked here.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute

from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import PASSWORD, LiveServer, bearer, register

PUBLIC = {
    ("POST", "/token"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/user/register"),
    ("GET", "/healthz"),
    ("GET", "/ready"),
    ("GET", "/"),
    ("GET", "/static/{name}"),
    ("GET", "/metrics"),  # admins only; tested in test_observability
    ("GET", "/v1/models"),  # backend names only
    ("GET", "/api/v1/llm/health"),  # admins only; endpoint health, no user data
    ("GET", "/api/v1/models"),  # admins only; the model profile
    ("POST", "/api/v1/models/provision"),  # admins only
    ("GET", "/api/v1/limits"),  # the message limit, the same for everyone
    ("POST", "/api/v1/local/chat"),  # loopback and the local credential only: test_local.py
}
CHECKED_HERE = {
    ("POST", "/api/v1/user/change-password"),
    ("GET", "/api/v1/user/me"),
    ("GET", "/api/v1/user/list"),
    ("DELETE", "/api/v1/user/{username}"),  # admins only: test_accounts.py
    # admins only, 403 for anyone else: test_history_io.py
    ("POST", "/api/v1/admin/history/{username}/import"),
    ("GET", "/api/v1/admin/history/{username}/export"),
    ("POST", "/api/v1/auth/ws/ticket"),
    ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{key_id}"),
    ("POST", "/api/v1/conversation/chat"),
    ("GET", "/api/v1/conversation/history"),
    ("GET", "/api/v1/conversations"),
    ("POST", "/api/v1/conversations"),
    ("PATCH", "/api/v1/conversations/{session_id}"),
    ("DELETE", "/api/v1/conversations/{session_id}"),
    ("GET", "/api/v1/conversations/{session_id}/turns"),
    ("PUT", "/api/v1/turns/{turn_id}/rating"),
    ("GET", "/api/v1/memories"),
    ("GET", "/api/v1/memories/search"),
    ("DELETE", "/api/v1/memories/{memory_id}"),
    ("DELETE", "/api/v1/memories"),
    ("POST", "/v1/chat/completions"),
    ("WS", "/ws/chat/"),  # tickets: test_websocket.py::test_tickets_are_bound_to_their_user
    # the learning plugin's: the caller's own consent, dataset and runs, and admins only (403
    # for anyone else): test_learning_routes.py::test_a_user_sees_only_their_own_runs_and_consent
    ("GET", "/api/v1/learning"),
    ("PUT", "/api/v1/learning/consent"),
    ("GET", "/api/v1/learning/dataset"),
    ("GET", "/api/v1/admin/learning/runs"),
    ("POST", "/api/v1/admin/learning/runs/{run_id}/approve"),
    ("POST", "/api/v1/admin/learning/runs/{run_id}/reject"),
    ("POST", "/api/v1/admin/learning/users/{username}/rollback"),
    ("PUT", "/api/v1/admin/learning/users/{username}/consent"),
    ("POST", "/api/v1/admin/learning/users/{username}/run"),
    ("GET", "/api/v1/admin/learning/summary"),
    ("GET", "/api/v1/admin/learning/status"),
    ("POST", "/api/v1/admin/learning/cancel"),
    # the knowledge plugin's: another user's documents, collections, search and RAG context
    # are out of reach (404, empty), shared collections are written by admins only (403):
    # test_documents.py::test_another_users_documents_stay_out_of_reach and
    # ::test_shared_collections_are_published_by_admins
    ("POST", "/api/v1/documents"),
    ("GET", "/api/v1/documents"),
    ("GET", "/api/v1/documents/search"),
    ("GET", "/api/v1/documents/collections"),
    ("PUT", "/api/v1/documents/collections/{name}"),
    ("GET", "/api/v1/documents/{document_id}"),
    ("PUT", "/api/v1/documents/{document_id}"),
    ("DELETE", "/api/v1/documents/{document_id}"),
    ("POST", "/api/v1/review/rag-context"),
    # forget me: the caller's own data only, and admins only (403 for anyone else):
    # test_forget_me.py
    ("DELETE", "/api/v1/user/me/data"),
    ("DELETE", "/api/v1/admin/users/{username}/data"),
}


def routes(server: LiveServer) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    pending = list(server.app.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute):
            found |= {(method, route.path) for method in route.methods if method != "HEAD"}
        elif isinstance(route, APIWebSocketRoute):
            found.add(("WS", route.path))
        else:
            pending.extend(getattr(getattr(route, "original_router", None), "routes", []))
    return found - {
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/docs/oauth2-redirect"),
    }


def test_every_route_is_covered(make_server: Callable[..., LiveServer]) -> None:
    # Every bundled plugin that registers routes, the learning one included.
    server = make_server(
        load_plugins=[*BUNDLED_WITHOUT_MODELS, "learning", "server", "instant"],
        learning={"schedule": False},
    )
    assert routes(server) == PUBLIC | CHECKED_HERE


@pytest.fixture
async def alice_and_bob(http: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str]]:
    """Alice has a turn, a memory and an API key; Bob has his own turn and memory."""
    alice = bearer(await register(http, "alice"))
    bob = bearer(await register(http, "bob"))
    said = await http.post(
        "/api/v1/conversation/chat",
        json={"message": "My secret recipe uses saffron.", "session_id": "kitchen"},
        headers=alice,
    )
    assert said.status_code == 200
    assert (
        await http.post(
            "/api/v1/conversation/chat", json={"message": "My secret is green tea."}, headers=bob
        )
    ).status_code == 200
    return alice, bob


async def test_history_is_private(
    http: httpx.AsyncClient, alice_and_bob: tuple[dict[str, str], dict[str, str]]
) -> None:
    alice, bob = alice_and_bob
    asked = await http.get("/api/v1/conversation/history", params={"user_id": "alice"}, headers=bob)
    assert asked.status_code == 403
    own = (await http.get("/api/v1/conversation/history", headers=bob)).json()
    assert [item["query"] for item in own] == ["My secret is green tea."]
    assert all(item["user_id"] == "bob" for item in own)
    mine = await http.get(
        "/api/v1/conversation/history", params={"user_id": "alice"}, headers=alice
    )
    assert [item["query"] for item in mine.json()] == ["My secret recipe uses saffron."]


async def test_conversations_are_private(
    http: httpx.AsyncClient, alice_and_bob: tuple[dict[str, str], dict[str, str]]
) -> None:
    alice, bob = alice_and_bob
    listed = (await http.get("/api/v1/conversations", headers=bob)).json()["items"]
    assert [c["session_id"] for c in listed] == ["default"]
    for method, path, body in [
        ("GET", "/api/v1/conversations/kitchen/turns", None),
        ("PATCH", "/api/v1/conversations/kitchen", {"title": "stolen"}),
        ("DELETE", "/api/v1/conversations/kitchen", None),
    ]:
        answer = await http.request(method, path, json=body, headers=bob)
        assert answer.status_code == 404, (method, path, answer.text)
    created = await http.post("/api/v1/conversations", json={"title": "Bob's"}, headers=bob)
    assert created.status_code == 201
    mine = (await http.get("/api/v1/conversations", headers=alice)).json()["items"]
    assert [(c["session_id"], c["title"], c["turns"]) for c in mine] == [
        ("kitchen", "My secret recipe uses saffron.", 1)
    ]
    turns = (await http.get("/api/v1/conversations/kitchen/turns", headers=alice)).json()
    assert [t["query"] for t in turns["items"]] == ["My secret recipe uses saffron."]
    own = await http.get(f"/api/v1/conversations/{created.json()['session_id']}/turns", headers=bob)
    assert own.json() == {"items": []}


async def test_ratings_are_private(
    http: httpx.AsyncClient, alice_and_bob: tuple[dict[str, str], dict[str, str]]
) -> None:
    alice, bob = alice_and_bob
    [mine] = (await http.get("/api/v1/conversation/history", headers=alice)).json()
    path = f"/api/v1/turns/{mine['turn_id']}/rating"
    stolen = await http.put(path, json={"rating": "down"}, headers=bob)
    unknown = await http.put(
        f"/api/v1/turns/{'0' * 32}/rating", json={"rating": "down"}, headers=bob
    )
    assert (stolen.status_code, unknown.status_code) == (404, 404)
    # The same answer as for no turn at all, but the id: nothing tells that it exists.
    assert stolen.json()["detail"].replace(mine["turn_id"], "0" * 32) == unknown.json()["detail"]
    [still] = (await http.get("/api/v1/conversation/history", headers=alice)).json()
    assert still["rating"] is None
    assert (await http.put(path, json={"rating": "up"}, headers=alice)).status_code == 200
    [bobs] = (await http.get("/api/v1/conversation/history", headers=bob)).json()
    assert bobs["rating"] is None


async def test_memories_are_private(
    http: httpx.AsyncClient, alice_and_bob: tuple[dict[str, str], dict[str, str]]
) -> None:
    alice, bob = alice_and_bob
    alice_memories = (await http.get("/api/v1/memories", headers=alice)).json()["items"]
    saffron = next(m for m in alice_memories if "saffron" in m["text"])
    bob_memories = (await http.get("/api/v1/memories", headers=bob)).json()["items"]
    assert [m["text"] for m in bob_memories] == ["My secret is green tea."]

    found = await http.get(
        "/api/v1/memories/search", params={"q": "secret recipe saffron"}, headers=bob
    )
    assert all("saffron" not in m["text"] for m in found.json()["items"])
    own = await http.get(
        "/api/v1/memories/search", params={"q": "secret recipe saffron"}, headers=alice
    )
    assert "saffron" in own.json()["items"][0]["text"]

    stolen = await http.delete(f"/api/v1/memories/{saffron['id']}", headers=bob)
    assert stolen.status_code == 404
    wiped = await http.delete("/api/v1/memories", headers=bob)
    assert wiped.json()["deleted"] == len(bob_memories)
    still = (await http.get("/api/v1/memories", headers=alice)).json()["items"]
    assert saffron["id"] in [m["id"] for m in still]
    # Bob's next turn cannot recall Alice's memory either.
    await http.post(
        "/api/v1/conversation/chat", json={"message": "What is in my secret recipe?"}, headers=bob
    )
    assert all(
        "saffron" not in m["text"]
        for m in (await http.get("/api/v1/memories", headers=bob)).json()["items"]
    )

    gone = await http.delete(f"/api/v1/memories/{saffron['id']}", headers=alice)
    assert gone.status_code == 204


async def test_keys_are_private(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    alice_and_bob: tuple[dict[str, str], dict[str, str]],
) -> None:
    alice, bob = alice_and_bob
    key = (await http.post("/api/v1/keys", json={"name": "alice laptop"}, headers=alice)).json()
    assert (await http.get("/api/v1/keys", headers=bob)).json()["keys"] == []
    assert (await http.delete(f"/api/v1/keys/{key['id']}", headers=bob)).status_code == 404
    as_alice = bearer(key["key"])
    assert (await http.get("/api/v1/user/me", headers=as_alice)).json()["username"] == "alice"
    # A completion made with Alice's key is Alice's turn, not Bob's.
    completion = await http.post(
        "/v1/chat/completions",
        json={"model": "mongars", "messages": [{"role": "user", "content": "via key"}]},
        headers=as_alice,
    )
    assert completion.status_code == 200
    bob_history = (await http.get("/api/v1/conversation/history", headers=bob)).json()
    assert "via key" not in [item["query"] for item in bob_history]
    alice_history = (await http.get("/api/v1/conversation/history", headers=alice)).json()
    assert alice_history[0]["query"] == "via key"


async def test_profile_and_password_are_private(
    http: httpx.AsyncClient, alice_and_bob: tuple[dict[str, str], dict[str, str]]
) -> None:
    alice, bob = alice_and_bob
    assert (await http.get("/api/v1/user/me", headers=bob)).json()["username"] == "bob"
    assert (await http.get("/api/v1/user/list", headers=bob)).status_code == 403
    changed = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=bob,
    )
    assert changed.status_code == 200
    # Alice is untouched: her token and password still work.
    assert (await http.get("/api/v1/user/me", headers=alice)).status_code == 200
    login = await http.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200


async def test_tickets_name_their_caller(
    live_server: LiveServer,
    http: httpx.AsyncClient,
    alice_and_bob: tuple[dict[str, str], dict[str, str]],
) -> None:
    _, bob = alice_and_bob
    issued = (await http.post("/api/v1/auth/ws/ticket", headers=bob)).json()["ticket"]
    claims = live_server.call(live_server.state.tickets.redeem(issued))
    assert claims.username == "bob"
    assert claims.user_id == live_server.call(live_server.state.accounts.get("bob")).user_id
