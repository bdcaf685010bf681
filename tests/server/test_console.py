"""The web console, driven end to end in a real headless Chromium against the live server.

Screenshots of the key steps land in ``test-artifacts/console/``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, WebSocketRoute, expect, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PASSWORD = "correct horse battery"

# Records, after every DOM change in the transcript, the state and text of the newest reply
# bubble: the proof that the user saw the reply grow token by token.
WATCH_REPLIES = """
() => {
  window.__replyFrames = [];
  const transcript = document.getElementById("transcript");
  new MutationObserver(() => {
    const bubbles = transcript.querySelectorAll('[data-testid="assistant-message"]');
    const last = bubbles[bubbles.length - 1];
    if (!last) return;
    const text = last.querySelector('[data-testid="reply-text"]').textContent;
    window.__replyFrames.push({state: last.dataset.state, text});
  }).observe(transcript, {childList: true, subtree: true, characterData: true, attributes: true});
}
"""


@dataclass
class Console:
    """The page under test, with everything the browser reported as an error."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)
    expected_errors: list[re.Pattern[str]] = field(default_factory=list)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = f"{message.text} ({message.location.get('url', '')})"
        for pattern in self.expected_errors:
            if pattern.search(text):
                self.expected_errors.remove(pattern)
                return
        self.errors.append(text)

    def sign_in(self, username: str, password: str, *, register: bool = False) -> None:
        self.page.fill("#auth-username", username)
        self.page.fill("#auth-password", password)
        self.page.click("#register-button" if register else "#login-button")

    def expect_signed_in(self, username: str) -> None:
        expect(self.page.locator("#app")).to_be_visible()
        expect(self.page.locator("#whoami")).to_have_text(username)
        expect(self.page.locator("#auth-panel")).to_be_hidden()

    def send(self, message: str) -> None:
        self.page.fill("#chat-input", message)
        self.page.press("#chat-input", "Enter")

    def final_replies(self) -> Any:
        return self.page.locator('[data-testid="assistant-message"][data-state="final"]')

    def token(self) -> str:
        token = self.page.evaluate("sessionStorage.getItem('mongars.token')")
        assert isinstance(token, str)
        return token


@pytest.fixture
def console(live_server: Any) -> Iterator[Console]:
    if not CHROMIUM.exists():
        message = f"the console tests drive Debian's chromium, not installed at {CHROMIUM}"
        if os.environ.get("CI"):
            pytest.fail(message + " (.ci/run installs it)")
        pytest.skip(message)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)
            console = Console(page, live_server.url.rstrip("/"))
            page.on("console", console.on_console)
            page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
            page.goto(console.url + "/")
            expect(page.locator("#auth-panel")).to_be_visible()
            yield console
        finally:
            browser.close()
    assert console.errors == [], "the page reported errors"


def new_username() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


def test_a_new_user_registers_chats_and_manages_memories(console: Console) -> None:
    page = console.page
    username = new_username()
    console.shot("01-sign-in")

    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")

    # Log out, then a wrong password is refused with the server's own explanation.
    page.click("#logout-button")
    expect(page.locator("#auth-panel")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('mongars.token')") is None
    refused = page.request.post(
        console.url + "/api/v1/auth/login", data={"username": username, "password": "wrong-pass"}
    )
    assert refused.status == 401
    console.expected_errors.append(re.compile(r"status of 401 .*/api/v1/auth/login"))
    console.sign_in(username, "wrong-pass")
    error = page.locator("#auth-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(refused.json()["detail"])
    expect(page.locator("#app")).to_be_hidden()
    console.shot("02-wrong-password")
    assert console.expected_errors == [], "the refused login never reached the server"

    console.sign_in(username, PASSWORD)
    console.expect_signed_in(username)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")

    # A message over the websocket: the reply streams in, then settles.
    page.evaluate(WATCH_REPLIES)
    message = "Hello there monGARS, please tell me how streaming looks today"
    console.send(message)
    reply = console.final_replies().first
    expect(reply).to_be_visible()
    final = reply.locator('[data-testid="reply-text"]').inner_text()
    assert message in final
    frames: list[dict[str, str]] = page.evaluate("window.__replyFrames")
    streamed = [f["text"] for f in frames if f["state"] == "streaming"]
    partial = [text for text in streamed if 0 < len(text.strip()) < len(final.strip())]
    assert partial, f"the reply never showed a partial text before {final!r}: {frames}"
    assert all(b.startswith(a) for a, b in itertools.pairwise(streamed)), streamed
    assert len(set(streamed)) > 1, f"one delta is not streaming: {streamed}"

    # The speech plan and confidence of that reply.
    expect(page.locator("#reply-confidence")).to_have_text(re.compile(r"^\d+%$"))
    expect(page.locator("#speech-tempo")).not_to_have_text("–")
    segments = page.locator('[data-testid="speech-segment"]')
    expect(segments.first).to_be_visible()
    expect(segments.first).to_contain_text(re.compile(r"\d+\.\d\d s"))
    console.shot("03-streamed-reply")

    # The turn is in the history, newest first, also after a refresh.
    history = page.locator('[data-testid="history-item"]')
    expect(history.first).to_contain_text(message)
    page.click("#history-refresh")
    expect(history.first).to_contain_text(message)
    expect(history.first).to_contain_text(final)

    # A reply produced elsewhere (a POST /chat with the same account) shows up too.
    elsewhere = "Sent from my other device"
    posted = page.request.post(
        console.url + "/api/v1/conversation/chat",
        data={"message": elsewhere, "session_id": "other"},
        headers={"Authorization": f"Bearer {console.token()}"},
    )
    assert posted.ok, posted.text()
    foreign = page.locator('[data-testid="assistant-message"][data-origin="elsewhere"]')
    expect(foreign).to_have_count(1)
    expect(foreign).to_have_attribute("data-state", "final")
    expect(foreign.locator('[data-testid="reply-text"]')).to_have_text(posted.json()["response"])
    expect(history.first).to_contain_text(elsewhere)

    # Memories: the user's statements are remembered, searchable and deletable.
    fact = "My favourite colour is teal."
    console.send(fact)
    expect(console.final_replies().filter(has_text=fact)).to_have_count(1)
    memories = page.locator('[data-testid="memory-item"]')
    page.click("#memory-refresh")
    expect(memories.filter(has_text=fact)).to_have_count(1)
    page.fill("#memory-search-input", "teal")
    page.click("#memory-search-button")
    expect(memories.first).to_contain_text(fact)
    expect(page.locator("#memory-caption")).to_contain_text("teal")
    console.shot("04-memory-search")

    page.fill("#memory-search-input", "")
    page.click("#memory-search-button")
    expect(memories.filter(has_text=message)).to_have_count(1)
    remaining = memories.count() - 1
    memories.filter(has_text=fact).get_by_role("button", name=re.compile("^Delete memory")).click()
    expect(memories.filter(has_text=fact)).to_have_count(0)
    expect(memories).to_have_count(remaining)
    page.click("#memory-refresh")
    expect(memories).to_have_count(remaining)
    expect(memories.filter(has_text=message)).to_have_count(1)
    console.shot("05-memory-deleted")

    # Deleting everything asks first; cancelling keeps the memories.
    page.click("#memory-delete-all")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-cancel")
    expect(memories).to_have_count(remaining)
    page.click("#memory-delete-all")
    page.click("#confirm-ok")
    expect(memories).to_have_count(0)
    expect(page.locator("#notice")).to_contain_text(f"Deleted {remaining} memor")
    listed = page.request.get(
        console.url + "/api/v1/memories", headers={"Authorization": f"Bearer {console.token()}"}
    )
    assert listed.json()["items"] == []
    console.shot("06-memories-cleared")

    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.locator("#chat-input")).to_be_in_viewport()
    console.shot("07-phone")


def test_chat_falls_back_to_http_while_the_websocket_is_down(console: Console) -> None:
    page = console.page

    def refuse(ws: WebSocketRoute) -> None:
        ws.close(code=1011, reason="down for the test")

    page.route_web_socket(re.compile(r"/ws/chat/"), refuse)
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "offline")

    message = "Are you there without a websocket?"
    console.send(message)
    reply = console.final_replies().first
    expect(reply.locator('[data-testid="reply-text"]')).to_contain_text(message)
    expect(page.locator("#reply-confidence")).to_have_text(re.compile(r"^\d+%$"))
    expect(page.locator('[data-testid="history-item"]').first).to_contain_text(message)
    console.shot("08-http-fallback")


def test_registration_problems_are_explained(console: Console) -> None:
    page = console.page
    taken = new_username()
    created = page.request.post(
        console.url + "/api/v1/user/register", data={"username": taken, "password": PASSWORD}
    )
    assert created.status == 201, created.text()

    # Checked in the page before anything is sent.
    console.sign_in("no spaces allowed", "short", register=True)
    error = page.locator("#auth-error")
    expect(error).to_contain_text("username")
    expect(error).to_contain_text("at least 8 characters")
    expect(page.locator("#auth-password")).to_have_attribute("aria-invalid", "true")

    # A 422 from the server lists each problem with its field.
    too_long = "x" * 1025
    invalid = page.request.post(
        console.url + "/api/v1/auth/login", data={"username": taken, "password": too_long}
    )
    assert invalid.status == 422
    (problem,) = invalid.json()["detail"]
    console.expected_errors.append(re.compile(r"status of 422 .*/api/v1/auth/login"))
    console.sign_in(taken, too_long)
    expect(error.locator("li")).to_have_text([f"password: {problem['msg']}"])

    # Refused by the server: its detail is shown.
    conflict = page.request.post(
        console.url + "/api/v1/user/register", data={"username": taken, "password": PASSWORD}
    )
    assert conflict.status == 409
    console.expected_errors.append(re.compile(r"status of 409 .*/api/v1/user/register"))
    console.sign_in(taken, PASSWORD, register=True)
    expect(error).to_contain_text(conflict.json()["detail"])
    expect(page.locator("#app")).to_be_hidden()
    console.shot("09-username-taken")


def test_the_socket_answers_pings_and_reconnects_with_a_fresh_ticket(console: Console) -> None:
    page = console.page
    to_page: list[WebSocketRoute] = []
    sent: list[dict[str, Any]] = []

    def relay(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def forward(message: str | bytes) -> None:
            sent.append(json.loads(message))
            server.send(message)

        ws.on_message(forward)
        to_page.append(ws)

    page.route_web_socket(re.compile(r"/ws/chat/"), relay)
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    status = page.locator("#connection-status")
    expect(status).to_have_attribute("data-state", "online")

    ping = {"id": "srv-ping", "type": "ping", "ts": "2025-01-01T00:00:00Z", "user": username}
    to_page[0].send(json.dumps({**ping, "data": {}}))
    eventually(page, lambda: any(frame.get("type") == "pong" for frame in sent))

    # The server drops the socket: the console comes back on a new one, with a new ticket.
    to_page[0].close(code=1012, reason="restarting")
    expect(status).not_to_have_attribute("data-state", "online")
    expect(status).to_have_attribute("data-state", "online")
    assert len(to_page) == 2
    assert ticket_of(to_page[0].url) != ticket_of(to_page[1].url)

    message = "Still streaming after a reconnect?"
    console.send(message)
    reply = console.final_replies().first
    expect(reply.locator('[data-testid="reply-text"]')).to_contain_text(message)
    chats = [frame for frame in sent if frame.get("type") == "chat.send"]
    assert [frame["data"]["message"] for frame in chats] == [message]


def ticket_of(url: str) -> str:
    (ticket,) = parse_qs(urlsplit(url).query)["t"]
    return ticket


def eventually(page: Page, condition: Callable[[], bool], timeout_s: float = 5) -> None:
    """Wait for ``condition``, letting Playwright deliver its events meanwhile."""
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        page.wait_for_timeout(50)
    assert condition(), "timed out waiting for the condition"
