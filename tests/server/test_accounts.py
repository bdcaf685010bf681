"""Accounts and credentials: data ownership, the users commands, API keys, what a
password change revokes, login throttling, password rules, case, deletion.
Over real HTTP, real websockets and the real ``mongars`` command."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import run_mongars
from tests.server.conftest import (
    PASSWORD,
    LiveServer,
    bearer,
    register,
    running,
    server_settings,
)
from tests.server.test_websocket import connect, opened, receive, receive_until, rejected, ticket

NEW_PASSWORD = "a different long passphrase"


def mongars(server: LiveServer, *args: str, stdin: str = "") -> Any:
    """The real ``mongars`` command against the server's database."""
    env = {
        **os.environ,
        "MONGARS_DATA_DIR": str(server.settings.data_dir),
        "MONGARS_LOAD_PLUGINS": "server",
    }
    return run_mongars(*args, env=env, stdin=stdin)


def library_chat(server: LiveServer, user: str, message: str) -> None:
    """A turn of a library user, as ``mongars chat --user USER --message ...`` stores it."""
    server.call(server.state.assistant.chat(user, message))


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> Any:
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


async def history(client: httpx.AsyncClient, token: str) -> list[str]:
    response = await client.get("/api/v1/conversation/history", headers=bearer(token))
    assert response.status_code == 200, response.text
    return [item["query"] for item in response.json()]


async def memories(client: httpx.AsyncClient, token: str) -> list[str]:
    response = await client.get("/api/v1/memories", headers=bearer(token))
    assert response.status_code == 200, response.text
    return [item["text"] for item in response.json()["items"]]


# -- 2. registering a name inherits nothing --------------------------------------------


@pytest.mark.parametrize("name", ["victim", "me"])
async def test_registering_a_library_users_name_inherits_none_of_their_data(
    live_server: LiveServer, http: httpx.AsyncClient, name: str
) -> None:
    library_chat(live_server, name, "My passport number is X12345678.")
    stored = live_server.call(live_server.state.assistant.list_memories(name))
    assert any("passport" in memory.text for memory in stored)

    token = await register(http, name)
    assert await history(http, token) == []
    assert await memories(http, token) == []
    found = await http.get(
        "/api/v1/memories/search", params={"q": "passport number"}, headers=bearer(token)
    )
    assert found.json()["items"] == []
    # A turn of the account does not recall the library user's memory either.
    said = await http.post(
        "/api/v1/conversation/chat",
        json={"message": "What is my passport number?"},
        headers=bearer(token),
    )
    assert said.status_code == 200
    assert said.json()["memories"] == []
    items = (await http.get("/api/v1/conversation/history", headers=bearer(token))).json()
    assert [item["user_id"] for item in items] == [name]  # the username, not the data id
    # The library user's own data is untouched.
    assert [t.message for t in live_server.call(live_server.state.assistant.history(name))] == [
        "My passport number is X12345678."
    ]


async def test_an_operator_gives_a_library_users_data_to_an_account(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    library_chat(live_server, "carol", "My cat is called Pixel.")
    created = mongars(live_server, "users", "create", "carol", "--data-of", "carol", stdin=PASSWORD)
    assert created.returncode == 0, created.stderr
    token = (await login(http, "carol")).json()["access_token"]
    assert await history(http, token) == ["My cat is called Pixel."]
    assert any("Pixel" in text for text in await memories(http, token))

    # The data has an owner now: nobody else can be given it.
    again = mongars(live_server, "users", "create", "carol2", "--data-of", "carol", stdin=PASSWORD)
    assert again.returncode == 1
    assert "already belongs to the account 'carol'" in again.stderr
    await register(http, "dave")
    taken = mongars(live_server, "users", "link", "dave", "carol")
    assert taken.returncode == 1
    assert "already belongs to the account 'carol'" in taken.stderr

    # link: an existing, still empty account gets a library user's data; its sessions end.
    library_chat(live_server, "erin", "I live in Lyon.")
    erin = await register(http, "erin-account")
    linked = mongars(live_server, "users", "link", "erin-account", "erin")
    assert linked.returncode == 0, linked.stderr
    assert (await http.get("/api/v1/user/me", headers=bearer(erin))).status_code == 401
    erin = (await login(http, "erin-account")).json()["access_token"]
    assert await history(http, erin) == ["I live in Lyon."]

    # An account with data of its own is not silently re-pointed; a typo is refused.
    dave = (await login(http, "dave")).json()["access_token"]
    await http.post("/api/v1/conversation/chat", json={"message": "hello"}, headers=bearer(dave))
    library_chat(live_server, "frank", "I like tea.")
    busy = mongars(live_server, "users", "link", "dave", "frank")
    assert busy.returncode == 1
    assert "has conversations or memories of its own" in busy.stderr
    missing = mongars(live_server, "users", "link", "dave", "nobody-at-all")
    assert missing.returncode == 1
    assert "no library user 'nobody-at-all'" in missing.stderr


# -- 3. create-admin on an existing account --------------------------------------------


async def test_create_admin_refuses_an_existing_account_unless_promoted(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    squatter = await register(http, "admin")
    refused = mongars(live_server, "users", "create-admin", "admin", stdin=NEW_PASSWORD + "\n")
    assert refused.returncode == 1
    assert "already exists" in refused.stderr
    assert "--promote" in refused.stderr
    created_at = live_server.call(live_server.state.accounts.get("admin")).created_at
    assert f"{created_at:%Y-%m-%d %H:%M}" in refused.stderr
    assert "registered itself" in refused.stderr
    me = await http.get("/api/v1/user/me", headers=bearer(squatter))
    assert me.json()["is_admin"] is False

    promoted = mongars(
        live_server, "users", "create-admin", "admin", "--promote", stdin=NEW_PASSWORD + "\n"
    )
    assert promoted.returncode == 0, promoted.stderr
    assert "set its password" in promoted.stdout
    # The operator's password is the password now, and the old sessions are over.
    assert (await http.get("/api/v1/user/me", headers=bearer(squatter))).status_code == 401
    assert (await login(http, "admin")).status_code == 401
    fresh = await login(http, "admin", NEW_PASSWORD)
    assert fresh.status_code == 200
    me = await http.get("/api/v1/user/me", headers=bearer(fresh.json()["access_token"]))
    assert me.json()["is_admin"] is True

    nobody = mongars(live_server, "users", "create-admin", "ghost", "--promote")
    assert nobody.returncode == 1
    assert "no account 'ghost'" in nobody.stderr


# -- 6. API keys -----------------------------------------------------------------------


async def test_an_api_key_cannot_manage_keys(http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    first = (await http.post("/api/v1/keys", json={"name": "laptop"}, headers=bearer(token))).json()
    as_key = bearer(first["key"])
    minted = await http.post("/api/v1/keys", json={"name": "mine now"}, headers=as_key)
    assert minted.status_code == 403
    assert "not an API key" in minted.json()["detail"]
    assert (await http.get("/api/v1/keys", headers=as_key)).status_code == 403
    assert (await http.delete(f"/api/v1/keys/{first['id']}", headers=as_key)).status_code == 403
    changed = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=as_key,
    )
    assert changed.status_code == 403
    # The key still works where keys belong.
    completion = await http.post(
        "/v1/chat/completions",
        json={"model": "mongars", "messages": [{"role": "user", "content": "hi"}]},
        headers=as_key,
    )
    assert completion.status_code == 200
    keys = (await http.get("/api/v1/keys", headers=bearer(token))).json()["keys"]
    assert [key["name"] for key in keys] == ["laptop"]


async def test_a_password_change_revokes_keys_and_says_so(http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    key = (await http.post("/api/v1/keys", json={"name": "laptop"}, headers=bearer(token))).json()
    changed = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(token),
    )
    assert changed.status_code == 200
    body = changed.json()
    assert body["revoked"] == ["sessions", "websocket tickets", "open websockets", "api keys"]
    assert [k["id"] for k in body["revoked_keys"]] == [key["id"]]
    assert body["kept_keys"] == []
    assert (await http.get("/api/v1/user/me", headers=bearer(key["key"]))).status_code == 401

    # Keeping the keys is a choice, and the answer lists them for review.
    token = (await login(http, "alice", NEW_PASSWORD)).json()["access_token"]
    kept = (await http.post("/api/v1/keys", json={"name": "ci"}, headers=bearer(token))).json()
    changed = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": NEW_PASSWORD, "new_password": PASSWORD, "revoke_api_keys": False},
        headers=bearer(token),
    )
    assert changed.json()["revoked"] == ["sessions", "websocket tickets", "open websockets"]
    assert [k["id"] for k in changed.json()["kept_keys"]] == [kept["id"]]
    assert (await http.get("/api/v1/user/me", headers=bearer(kept["key"]))).status_code == 200


async def test_a_password_change_closes_sockets_and_voids_tickets(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    unused = await ticket(http, token)
    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        changed = await http.post(
            "/api/v1/user/change-password",
            json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
            headers=bearer(token),
        )
        assert changed.status_code == 200
        events = await receive_until(socket, "session.revoked")
        assert events[-1]["user"] == "alice"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert "password changed" in closed.value.rcvd.reason
    await rejected(live_server, unused)


@pytest.mark.redis
async def test_a_password_change_closes_sockets_in_every_worker(
    tmp_path: Path, redis_url: str
) -> None:
    settings = server_settings(tmp_path, redis_url=redis_url)
    user = f"u{uuid.uuid4().hex[:10]}"
    with ExitStack() as stack:
        a = stack.enter_context(running(settings))
        b = stack.enter_context(running(settings))
        async with httpx.AsyncClient(base_url=a.url) as on_a:
            token = await register(on_a, user)
            async with connect(b, await ticket(on_a, token)) as socket:
                await opened(socket)
                changed = await on_a.post(
                    "/api/v1/user/change-password",
                    json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
                    headers=bearer(token),
                )
                assert changed.status_code == 200
                assert (await receive_until(socket, "session.revoked"))[-1]["user"] == user
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(socket.recv(), 5)


async def test_a_socket_of_a_changed_account_refuses_its_next_turn(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    """A change the server was not told of (the CLI, without Redis) still ends the socket."""
    token = await register(http, "alice")
    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        changed = mongars(
            live_server, "users", "create-admin", "alice", "--promote", stdin=NEW_PASSWORD + "\n"
        )
        assert changed.returncode == 0, changed.stderr
        await socket.send(json.dumps({"id": 1, "type": "chat.send", "data": {"message": "hi"}}))
        events = await receive_until(socket, "session.revoked")
        assert "chat.reply" not in [event["type"] for event in events]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
    assert (
        await history(http, (await login(http, "alice", NEW_PASSWORD)).json()["access_token"]) == []
    )


# -- 7. login throttle, passwords, case, deep frames, deletion ---------------------------


async def test_failed_logins_are_throttled_per_account_and_address(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    await register(http, "alice")
    await register(http, "bob")
    statuses = []
    for attempt in range(12):
        response = await http.post(
            "/api/v1/auth/login",
            json={"username": "alice", "password": f"wrong guess {attempt}"},
            # Not a trusted proxy: the header changes nothing.
            headers={"X-Forwarded-For": f"203.0.113.{attempt + 1}"},
        )
        statuses.append(response.status_code)
    assert statuses == [401] * 10 + [429] * 2
    # From the guessing address even the right password waits; any case of the name.
    limited = await http.post("/token", data={"username": "ALICE", "password": PASSWORD})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert (await login(http, "bob")).status_code == 200
    # Successful logins do not use the allowance up.
    assert [(await login(http, "bob")).status_code for _ in range(12)] == [200] * 12
    # The owner, from another address, is not locked out.
    async with from_address(live_server, "127.0.0.2") as elsewhere:
        assert (await login(elsewhere, "alice")).status_code == 200


def from_address(server: LiveServer, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=20)


@pytest.mark.parametrize(
    "password",
    [
        "password",
        "12345678",
        " " * 8,
        "aaaaaaaaaa",
        "abcdefghij",
        "87654321",
        "iloveyou",
        "xalicex1",
    ],
)
async def test_weak_passwords_are_refused(http: httpx.AsyncClient, password: str) -> None:
    response = await http.post(
        "/api/v1/user/register", json={"username": "alice", "password": password}
    )
    assert response.status_code == 422, password
    assert response.json()["code"] == "invalid_input"
    assert response.json()["detail"][0]["loc"] == ["body", "password"]
    # The reason in our words, without pydantic's "Value error, " prefix.
    assert not response.json()["detail"][0]["msg"].startswith("Value error")


async def test_weak_passwords_are_refused_on_change_and_in_the_cli(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    for weak in ["password1", "alice-is-me"]:
        response = await http.post(
            "/api/v1/user/change-password",
            json={"old_password": PASSWORD, "new_password": weak},
            headers=bearer(token),
        )
        assert response.status_code == 422, weak
    assert (await login(http, "alice")).status_code == 200
    for command in (["create-admin", "root"], ["create", "bob"]):
        refused = mongars(live_server, "users", *command, stdin="qwertyuiop\n")
        assert refused.returncode == 1
        assert "most common passwords" in refused.stderr
    promoted = mongars(
        live_server, "users", "create-admin", "alice", "--promote", stdin="12345678\n"
    )
    assert promoted.returncode == 1
    assert (await login(http, "alice")).status_code == 200


async def test_usernames_are_unique_regardless_of_case(http: httpx.AsyncClient) -> None:
    created = await http.post(
        "/api/v1/user/register", json={"username": "Alice", "password": PASSWORD}
    )
    assert created.status_code == 201
    assert created.json()["username"] == "alice"
    again = await http.post(
        "/api/v1/user/register", json={"username": "ALICE", "password": PASSWORD}
    )
    assert again.status_code == 409
    for spelling in ("alice", "ALICE", "aLiCe"):
        response = await login(http, spelling)
        assert response.status_code == 200, spelling
        me = await http.get("/api/v1/user/me", headers=bearer(response.json()["access_token"]))
        assert me.json()["username"] == "alice"


async def test_a_deeply_nested_frame_gets_an_error_ack(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    token = await register(http, "alice")
    async with connect(live_server, await ticket(http, token)) as socket:
        await opened(socket)
        await socket.send("[" * 5000 + "]" * 5000)
        ack = await receive(socket)
        assert ack["type"] == "ack"
        assert ack["data"]["ok"] is False
        assert ack["data"]["error"]["code"] == "invalid_json"
        await socket.send(json.dumps({"id": "still", "type": "ping"}))
        assert (await receive(socket))["data"] == {"ref": "still", "ok": True}


async def test_a_re_registered_name_gets_nothing_of_the_deleted_account(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    old = await register(http, "alice")
    key = (await http.post("/api/v1/keys", json={"name": "laptop"}, headers=bearer(old))).json()
    await http.post(
        "/api/v1/conversation/chat",
        json={"message": "My locker code is 4321."},
        headers=bearer(old),
    )
    old_ticket = await ticket(http, old)
    old_id = live_server.call(live_server.state.accounts.get("alice")).user_id

    deleted = mongars(live_server, "users", "delete", "alice", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    fresh = await register(http, "alice")

    assert (await http.get("/api/v1/user/me", headers=bearer(old))).status_code == 401
    assert (await http.get("/api/v1/user/me", headers=bearer(key["key"]))).status_code == 401
    await rejected(live_server, old_ticket)
    assert await history(http, fresh) == []
    assert await memories(http, fresh) == []
    assert (await http.get("/api/v1/keys", headers=bearer(fresh))).json()["keys"] == []
    # Deleting deletes the data by default.
    assert live_server.call(live_server.state.assistant.store.history(old_id)) == []


async def test_admins_delete_accounts_over_http(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    made = mongars(live_server, "users", "create-admin", "root", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    root = (await login(http, "root")).json()["access_token"]
    bob = await register(http, "bob")
    await http.post("/api/v1/conversation/chat", json={"message": "keep me"}, headers=bearer(bob))
    bob_id = live_server.call(live_server.state.accounts.get("bob")).user_id
    assert (await http.delete("/api/v1/user/root", headers=bearer(bob))).status_code == 403
    root_key = (await http.post("/api/v1/keys", json={"name": "k"}, headers=bearer(root))).json()
    assert (
        await http.delete("/api/v1/user/bob", headers=bearer(root_key["key"]))
    ).status_code == 403

    async with connect(live_server, await ticket(http, bob)) as socket:
        await opened(socket)
        gone = await http.delete(
            "/api/v1/user/BOB", params={"keep_data": "true"}, headers=bearer(root)
        )
        assert gone.status_code == 200
        assert gone.json() == {"username": "bob", "data_deleted": False}
        await receive_until(socket, "session.revoked")
    assert (await http.get("/api/v1/user/me", headers=bearer(bob))).status_code == 401
    assert (await http.delete("/api/v1/user/bob", headers=bearer(root))).status_code == 404
    # Kept data is a library user now, which an operator can give to an account.
    kept = live_server.call(live_server.state.assistant.store.history(bob_id))
    assert [turn.message for turn in kept] == ["keep me"]
    relinked = mongars(
        live_server, "users", "create", "robert", "--data-of", bob_id, stdin=PASSWORD
    )
    assert relinked.returncode == 0, relinked.stderr
    robert = (await login(http, "robert")).json()["access_token"]
    assert await history(http, robert) == ["keep me"]


def test_the_users_commands_need_a_terminal_or_yes(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server()
    assert mongars(server, "users", "create", "zed", stdin=PASSWORD).returncode == 0
    refused = mongars(server, "users", "delete", "zed")
    assert refused.returncode == 1
    assert "--yes" in refused.stderr
    listing = mongars(server, "users", "list")
    assert "zed" in listing.stdout
    assert "acct-" in listing.stdout
