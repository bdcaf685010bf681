"""Forget me over HTTP (``DELETE /api/v1/user/me/data`` and the administrators'
``DELETE /api/v1/admin/users/{username}/data``), account deletion with its data, and
the console's "Forget me" button in a real headless Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import FilePayload, expect
from websockets.exceptions import ConnectionClosed

from mongars_plugins.learning import learner as learner_of
from mongars_testkit import InstantBackend
from tests.server.conftest import PASSWORD, LiveServer, bearer, register
from tests.server.test_console import Console, new_username
from tests.server.test_console import console as console  # the same browser fixture
from tests.server.test_conversations import chat
from tests.server.test_learning_routes import LEARNING_PLUGINS, user_id
from tests.server.test_websocket import connect, opened, receive, ticket
from tests.test_erasure import Notebook, rows_naming

SECRET = "Quokka-Berenice"


def forget_server(make_server: Callable[..., LiveServer], folder: Path) -> LiveServer:
    notebook = Notebook(folder)
    server = make_server(
        InstantBackend(),
        plugins=[("notebook", notebook)],
        load_plugins=[*LEARNING_PLUGINS, "knowledge", "notebook"],
        learning={"schedule": False},
    )
    server.notebook = notebook  # type: ignore[attr-defined]
    return server


@pytest.fixture
def live_server(make_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    return forget_server(make_server, tmp_path / "notebook")


@pytest.fixture
async def http(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=20) as client:
        yield client


async def fill(http: httpx.AsyncClient, server: LiveServer, username: str, token: str) -> str:
    """Turns (one rated), memories, a style profile, learning consent, a plugin file."""
    first = await chat(http, token, f"My cat is called {SECRET}", "pets")
    assert first.status_code == 200, first.text
    assert (await chat(http, token, "I live in Lyon and love hiking", "trips")).status_code == 200
    rated = await http.put(
        f"/api/v1/turns/{first.json()['turn_id']}/rating",
        json={"rating": "up"},
        headers=bearer(token),
    )
    assert rated.status_code == 200, rated.text
    consent = await http.put(
        "/api/v1/learning/consent", json={"enabled": True}, headers=bearer(token)
    )
    assert consent.status_code == 200, consent.text
    note = f"# Pets\n\n{SECRET} sleeps on the sofa.\n".encode()
    uploaded = await http.post(
        "/api/v1/documents",
        files={"file": ("pets.md", note, "text/markdown")},
        headers=bearer(token),
    )
    assert uploaded.status_code == 201, uploaded.text
    owner = user_id(server, username)
    server.notebook.write(owner, f"notes on {SECRET}")  # type: ignore[attr-defined]
    return owner


def remaining(server: LiveServer, owner: str) -> dict[str, int]:
    return dict(server.call(rows_naming(server.state.assistant, owner)))


async def test_forget_me_deletes_the_callers_data_and_keeps_the_account(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    server = live_server
    token = await register(http, "erin")
    other = await register(http, "olga")
    owner = await fill(http, server, "erin", token)
    other_owner = await fill(http, server, "olga", other)
    assert {"turns.user_id", "memories.user_id", "plugin_state.user_id"} <= set(
        remaining(server, owner)
    )
    kept = remaining(server, other_owner)
    key = await http.post("/api/v1/keys", json={"name": "k"}, headers=bearer(token))
    assert key.status_code == 201

    # An API key cannot do it: a leaked key must not wipe its owner's data.
    refused = await http.delete("/api/v1/user/me/data", headers=bearer(key.json()["key"]))
    assert refused.status_code == 403
    assert "login" in refused.json()["detail"]

    async with connect(server, await ticket(http, token)) as socket:
        snapshot = await opened(socket)
        assert len(snapshot["data"]["items"]) == 2
        done = await http.delete("/api/v1/user/me/data", headers=bearer(token))
        assert done.status_code == 200, done.text
        # The open socket is told and closed; the console reconnects to an empty history.
        revoked = await receive(socket)
        assert revoked["type"] == "session.revoked"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 5)
    body = done.json()
    assert body["username"] == "erin"
    assert body["deleted"]["turns"] == 2 and body["deleted"]["conversations"] == 2
    assert body["deleted"]["memories"] >= 1
    assert body["deleted"]["documents"] == 1
    assert body["namespaces"] == ["learning.consent", "style"]
    assert remaining(server, owner) == {}
    assert not (server.notebook.folder / f"{owner}.txt").exists()  # type: ignore[attr-defined]
    assert not server.call(learner_of(server.state.assistant.services).has_consent(owner))
    for path in ("/api/v1/conversations", "/api/v1/memories"):
        listed = await http.get(path, headers=bearer(token))
        assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
    documents = await http.get("/api/v1/documents", headers=bearer(token))
    assert documents.status_code == 200 and documents.json()["documents"] == [], documents.text
    found = await http.get("/api/v1/documents/search?q=sofa", headers=bearer(token))
    assert found.json()["passages"] == []
    history = await http.get("/api/v1/conversation/history", headers=bearer(token))
    assert history.json() == []

    # The account, its password and its key stay; erin goes on from zero.
    assert (await http.get("/api/v1/user/me", headers=bearer(key.json()["key"]))).status_code == 200
    assert (await chat(http, token, "Hello again", "fresh")).status_code == 200
    again = await http.get("/api/v1/conversation/history", headers=bearer(token))
    assert [item["query"] for item in again.json()] == ["Hello again"]
    assert remaining(server, other_owner) == kept  # olga has all she had


async def test_an_administrator_forgets_an_accounts_data(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    server = live_server
    root = await register(http, "root")
    server.call(server.state.accounts.set_admin("root", True))
    token = await register(http, "erin")
    owner = await fill(http, server, "erin", token)

    not_admin = await http.delete("/api/v1/admin/users/erin/data", headers=bearer(token))
    assert not_admin.status_code == 403
    missing = await http.delete("/api/v1/admin/users/nobody/data", headers=bearer(root))
    assert missing.status_code == 404
    done = await http.delete("/api/v1/admin/users/erin/data", headers=bearer(root))
    assert done.status_code == 200, done.text
    assert done.json()["deleted"]["turns"] == 2
    assert remaining(server, owner) == {}
    assert (await http.get("/api/v1/user/me", headers=bearer(token))).status_code == 200


async def test_deleting_an_account_with_its_data_erases_the_plugins_data_too(
    live_server: LiveServer, http: httpx.AsyncClient
) -> None:
    server = live_server
    root = await register(http, "root")
    server.call(server.state.accounts.set_admin("root", True))
    token = await register(http, "erin")
    owner = await fill(http, server, "erin", token)
    # The last administrator is refused before any data goes.
    last = await http.delete("/api/v1/user/root", headers=bearer(root))
    assert last.status_code == 409
    assert (await http.get("/api/v1/conversations", headers=bearer(root))).status_code == 200

    deleted = await http.delete("/api/v1/user/erin", headers=bearer(root))
    assert deleted.status_code == 200, deleted.text
    assert remaining(server, owner) == {}
    assert not (server.notebook.folder / f"{owner}.txt").exists()  # type: ignore[attr-defined]
    assert server.call(server.state.accounts.get("erin")) is None


@pytest.mark.browser
def test_the_console_forgets_me_after_a_confirmation(console: Console, live_server: Any) -> None:
    page = console.page
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    console.send(f"My cat is called {SECRET}")
    expect(console.final_replies()).to_have_count(1)
    page.click("#memory-refresh")
    expect(page.locator('[data-testid="memory-item"]')).to_have_count(1)
    expect(page.locator('[data-testid="history-item"]')).to_have_count(1)
    expect(console.conversations()).to_have_count(1)
    page.click("#documents-panel summary")
    page.set_input_files(
        "#documents-file",
        files=[FilePayload(name="pets.md", mimeType="text/markdown", buffer=b"# Pets\n\nA cat.\n")],
    )
    page.click("#documents-upload")
    expect(page.locator("#document-list li")).to_have_count(1)

    # Cancelled: nothing goes.
    page.click("#forget-button")
    expect(page.locator("#confirm-title")).to_have_text("Delete all your data?")
    page.click("#confirm-cancel")
    page.click("#history-refresh")
    expect(page.locator('[data-testid="history-item"]')).to_have_count(1)

    page.click("#forget-button")
    console.shot("30-forget-me")
    page.click("#confirm-ok")
    expect(page.locator("#notice")).to_have_text(
        "Your data was deleted: 1 turn, 1 conversation, 1 memory, 1 document."
    )
    expect(page.locator('[data-testid="history-item"]')).to_have_count(0)
    expect(page.locator("#history-empty")).to_be_visible()
    expect(page.locator('[data-testid="memory-item"]')).to_have_count(0)
    expect(page.locator("#memory-caption")).to_have_text("No memories yet.")
    expect(console.conversations()).to_have_count(0)
    expect(page.locator('[data-testid="transcript"] .msg')).to_have_count(0)
    expect(page.locator("#document-list li")).to_have_count(0)
    expect(page.locator("#documents-empty")).to_be_visible()
    owner = user_id(live_server, username)
    assert remaining(live_server, owner) == {}

    # Still signed in, and the reconnected socket chats from zero.
    expect(page.locator("#connection-status")).to_have_text("Live")
    console.send("Hello again")
    expect(console.final_replies()).to_have_count(1)
    page.click("#history-refresh")
    expect(page.locator('[data-testid="history-item"]')).to_have_count(1)
