"""What an attacker cannot do to accounts: lock the owner out by failing logins,
guess the password through the password change, set a trivial password, or leave
the server without an administrator. Over real HTTP, from several loopback
addresses, and the real ``mongars`` command."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.server.conftest import PASSWORD, LiveServer, bearer, register
from tests.server.test_accounts import NEW_PASSWORD, from_address, login, mongars

# Two failures per (account, address), ten per account from everywhere; no refill
# to speak of during a test (one per 20 minutes per account).
STRICT = {"login_failure_burst": 2, "login_failures_per_minute": 0.01}


@pytest.fixture
def strict_server(make_server: Callable[..., LiveServer]) -> LiveServer:
    return make_server(server=STRICT)


async def test_an_attacker_on_many_addresses_cannot_lock_the_owner_out(
    strict_server: LiveServer,
) -> None:
    async with from_address(strict_server, "127.0.0.1") as owner:
        await register(owner, "alice")
    attackers = [from_address(strict_server, f"127.0.0.{n}") for n in range(10, 18)]
    statuses = []
    for attacker in attackers:
        async with attacker:
            for guess in range(3):
                response = await login(attacker, "alice", f"wrong guess {guess}")
                statuses.append(response.status_code)
    # Each address gets its two failures, then 429; after ten failures in all the
    # account is under attack and every wrong guess, from anywhere, gets 429.
    assert statuses[:3] == [401, 401, 429]
    assert statuses.count(401) == 10
    assert set(statuses[-6:]) == {429}

    # The owner, from an address that has not failed, logs in all along.
    async with from_address(strict_server, "127.0.0.1") as owner:
        for _ in range(3):
            assert (await login(owner, "alice")).status_code == 200
    # A fresh address still gets no verdict for a wrong guess...
    async with from_address(strict_server, "127.0.0.30") as fresh:
        assert (await login(fresh, "alice", "yet another guess")).status_code == 429
        # ...and, having failed, not even for the right password.
        assert (await login(fresh, "alice")).status_code == 429
    # An attacker's address gets 429 for the right password too.
    async with from_address(strict_server, "127.0.0.10") as attacker:
        refused = await login(attacker, "alice")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


async def test_the_password_change_is_throttled_like_a_login(strict_server: LiveServer) -> None:
    async with from_address(strict_server, "127.0.0.1") as http:
        token = await register(http, "alice")
        statuses = []
        for guess in range(6):
            response = await http.post(
                "/api/v1/user/change-password",
                json={"old_password": f"wrong guess {guess}", "new_password": NEW_PASSWORD},
                headers=bearer(token),
            )
            statuses.append(response.status_code)
        assert statuses == [403, 403, 429, 429, 429, 429]
        # Logins from that address are throttled too: the failures were counted.
        assert (await login(http, "alice")).status_code == 429
    async with from_address(strict_server, "127.0.0.2") as elsewhere:
        assert (await login(elsewhere, "alice")).status_code == 200


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("11111111a", "short pattern repeated"),
        ("abcabcabc", "short pattern repeated"),
        ("a" + "\x00" * 7, "control character"),
        ("ecila123", "contains the username"),
        ("alice-is-me", "contains the username"),
        ("mongars1", "common password or word"),
        ("Summer2024", "common password or word"),
        ("Passw0rd!", "common password or word"),
        ("w1nter!!", "common password or word"),
    ],
)
async def test_dressed_up_weak_passwords_are_refused(
    http: httpx.AsyncClient, password: str, why: str
) -> None:
    response = await http.post(
        "/api/v1/user/register", json={"username": "alice", "password": password}
    )
    assert response.status_code == 422, password
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "password"]
    assert why in problem["msg"]
    assert "\n" not in problem["msg"]


async def test_the_password_change_refuses_the_current_password(
    http: httpx.AsyncClient,
) -> None:
    token = await register(http, "alice")
    same = await http.post(
        "/api/v1/user/change-password",
        json={"old_password": PASSWORD, "new_password": PASSWORD},
        headers=bearer(token),
    )
    assert same.status_code == 422
    assert same.json()["detail"] == "the new password is the current password"
    assert (await login(http, "alice")).status_code == 200


async def test_the_last_administrator_cannot_be_deleted(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    made = mongars(live_server, "users", "create-admin", "root", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    root = (await login(http, "root")).json()["access_token"]
    refused = await http.delete(
        "/api/v1/user/root", params={"keep_data": "true"}, headers=bearer(root)
    )
    assert refused.status_code == 409
    assert refused.json()["code"] == "last_administrator"
    assert (await http.get("/api/v1/user/me", headers=bearer(root))).status_code == 200

    cli = mongars(live_server, "users", "delete", "root", "--yes")
    assert cli.returncode == 1
    assert "last administrator" in cli.stderr and "--force" in cli.stderr
    assert live_server.call(live_server.state.accounts.get("root")) is not None

    # With a second administrator, the first may go.
    second = mongars(live_server, "users", "create-admin", "ops", stdin=NEW_PASSWORD + "\n")
    assert second.returncode == 0, second.stderr
    gone = await http.delete("/api/v1/user/root", headers=bearer(root))
    assert gone.status_code == 200
    # The operator may still remove the last one on purpose.
    forced = mongars(live_server, "users", "delete", "ops", "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert live_server.call(live_server.state.accounts.count_admins()) == 0
