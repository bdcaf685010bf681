"""Accounts, tokens, secrets, rate and size limits, over real HTTP."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import httpx

from mongars_server.security import SECRET_FILE, AccessTokens, load_or_create_secret
from mongars_server.settings import SERVER
from tests.conftest import run_mongars
from tests.server.conftest import PASSWORD, LiveServer, bearer, register


async def test_register_then_log_in_both_ways(http: httpx.AsyncClient) -> None:
    created = await http.post(
        "/api/v1/user/register", json={"username": "alice", "password": PASSWORD}
    )
    assert created.status_code == 201
    assert created.json()["username"] == "alice"
    assert created.json()["is_admin"] is False

    login = await http.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200
    body = login.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600

    form = await http.post("/token", data={"username": "alice", "password": PASSWORD})
    assert form.status_code == 200
    assert set(form.json()) == {"access_token", "token_type"}

    me = await http.get("/api/v1/user/me", headers=bearer(form.json()["access_token"]))
    assert me.json()["username"] == "alice"


async def test_registration_rules(http: httpx.AsyncClient) -> None:
    await register(http, "taken")
    again = await http.post(
        "/api/v1/user/register", json={"username": "taken", "password": PASSWORD}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "username_taken"
    for username, password in [
        ("", PASSWORD),
        ("a" * 151, PASSWORD),
        ("bad name", PASSWORD),
        ("dots.not.allowed", PASSWORD),
        ("ok", "short"),
    ]:
        response = await http.post(
            "/api/v1/user/register", json={"username": username, "password": password}
        )
        assert response.status_code == 422, (username, password)
        assert response.json()["code"] == "invalid_input"
    longest = await http.post(
        "/api/v1/user/register", json={"username": "a" * 150, "password": PASSWORD}
    )
    assert longest.status_code == 201


async def test_wrong_credentials_are_401_without_saying_which(http: httpx.AsyncClient) -> None:
    await register(http, "alice")
    wrong_password = await http.post(
        "/api/v1/auth/login", json={"username": "alice", "password": "not the one"}
    )
    no_user = await http.post(
        "/api/v1/auth/login", json={"username": "nobody", "password": "not the one"}
    )
    assert wrong_password.status_code == no_user.status_code == 401
    assert wrong_password.json() == no_user.json()


async def test_no_default_credentials_and_no_admin(http: httpx.AsyncClient) -> None:
    for username, password in [("admin", "admin"), ("admin", "password"), ("root", "root")]:
        response = await http.post("/token", data={"username": username, "password": password})
        assert response.status_code == 401
    token = await register(http, "first")
    me = await http.get("/api/v1/user/me", headers=bearer(token))
    assert me.json()["is_admin"] is False, "the first account must not become an admin"
    listing = await http.get("/api/v1/user/list", headers=bearer(token))
    assert listing.status_code == 403


async def test_admin_comes_from_the_cli(live_server: LiveServer, http: httpx.AsyncClient) -> None:
    env = {
        **os.environ,
        "MONGARS_DATA_DIR": str(live_server.settings.data_dir),
        "MONGARS_LOAD_PLUGINS": "server",
    }
    result = run_mongars("users", "create-admin", "root", env=env, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    token = (
        await http.post("/api/v1/auth/login", json={"username": "root", "password": PASSWORD})
    ).json()["access_token"]
    await register(http, "someone")
    listing = await http.get("/api/v1/user/list", headers=bearer(token))
    assert listing.status_code == 200
    users = {user["username"]: user["is_admin"] for user in listing.json()["users"]}
    assert users == {"root": True, "someone": False}

    weak = run_mongars("users", "create-admin", "other", env=env, stdin="short\n")
    assert weak.returncode == 1
    assert "at least 8" in weak.stderr


async def test_changing_the_password_revokes_older_tokens(http: httpx.AsyncClient) -> None:
    old_token = await register(http, "alice")
    wrong = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": "not it at all", "new_password": "a new password"},
        headers=bearer(old_token),
    )
    assert wrong.status_code == 403
    changed = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": PASSWORD, "new_password": "a new password"},
        headers=bearer(old_token),
    )
    assert changed.status_code == 200
    stale = await http.get("/api/v1/user/me", headers=bearer(old_token))
    assert stale.status_code == 401
    assert (
        await http.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    ).status_code == 401
    fresh = await http.post(
        "/api/v1/auth/login", json={"username": "alice", "password": "a new password"}
    )
    assert fresh.status_code == 200


async def test_secret_is_generated_private_and_tokens_expire(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    path = live_server.settings.data_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = load_or_create_secret(live_server.settings)
    assert secret == path.read_text().encode()
    await register(http, "alice")
    user_id = live_server.call(live_server.state.accounts.get("alice")).user_id
    expired = AccessTokens(secret, ttl_s=-1).issue("alice", 1, user_id)
    response = await http.get("/api/v1/user/me", headers=bearer(expired))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    forged = AccessTokens(b"x" * 48, ttl_s=600).issue("alice", 1, user_id)
    assert (await http.get("/api/v1/user/me", headers=bearer(forged))).status_code == 401
    assert (await http.get("/api/v1/user/me")).status_code == 401


async def test_rate_limit_answers_429_with_retry_after(
    make_server: Callable[..., LiveServer],
) -> None:
    server = make_server(server={"rate_limit_per_minute": 6, "rate_limit_burst": 5})
    async with httpx.AsyncClient(base_url=server.url) as client:
        alice = await register(client, "alice")
        bob = await register(client, "bob")
        statuses = [
            (await client.get("/api/v1/user/me", headers=bearer(alice))).status_code
            for _ in range(6)
        ]
        assert statuses == [200] * 5 + [429]
        limited = await client.get("/api/v1/user/me", headers=bearer(alice))
        assert limited.status_code == 429
        assert limited.json()["code"] == "rate_limited"
        # 6 a minute: the next token comes in at most 10 s.
        assert 1 <= int(limited.headers["Retry-After"]) <= 10
        # Bob has his own bucket.
        assert (await client.get("/api/v1/user/me", headers=bearer(bob))).status_code == 200
        # Logins from one address share a bucket: 4 requests of 5 went to registering.
        logins = [
            (await client.post("/token", data={"username": "bob", "password": PASSWORD}))
            for _ in range(2)
        ]
        assert [login.status_code for login in logins] == [200, 429]


async def test_body_size_limit_is_413(live_server: LiveServer, http: httpx.AsyncClient) -> None:
    token = await register(http, "alice")
    big = "x" * (live_server.settings.section(SERVER).max_body_bytes + 1)
    response = await http.post(
        "/api/v1/conversation/chat",
        content=f'{{"message": "{big}"}}',
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"

    async def chunks() -> object:
        for _ in range(40):
            yield b"y" * 65_536

    streamed = await http.post(
        "/api/v1/conversation/chat",
        content=chunks(),
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413
    assert (await http.get("/healthz")).status_code == 200


async def test_cors_allows_only_listed_origins(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"allowed_origins": "https://app.example"})
    async with httpx.AsyncClient(base_url=server.url) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await client.options(
            "/api/v1/auth/login", headers={"Origin": "https://app.example", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        denied = await client.options(
            "/api/v1/auth/login", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in denied.headers


async def test_registration_can_be_closed(make_server: Callable[..., LiveServer]) -> None:
    server = make_server(server={"allow_registration": False})
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/api/v1/user/register", json={"username": "alice", "password": PASSWORD}
        )
        assert response.status_code == 403
        assert response.json()["code"] == "registration_closed"


async def test_a_json_body_without_its_content_type_is_415(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/v1/auth/login",
        content='{"username": "alice", "password": "whatever1"}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
