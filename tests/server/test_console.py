"""The web console, driven end to end in a real headless Chromium against the live server.

Screenshots of the key steps land in ``test-artifacts/console/``.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Page, WebSocketRoute, expect, sync_playwright

from tests.conftest import service_unavailable

pytestmark = pytest.mark.browser

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

    def open_conversation(self) -> str:
        session_id = self.page.evaluate("localStorage.getItem('mongars.conversation')")
        assert isinstance(session_id, str)
        return session_id

    def conversations(self) -> Any:
        return self.page.locator('[data-testid="conversation-item"]')

    def token(self) -> str:
        token = self.page.evaluate("sessionStorage.getItem('mongars.token')")
        assert isinstance(token, str)
        return token


@pytest.fixture
def console(live_server: Any) -> Iterator[Console]:
    if not CHROMIUM.exists():
        service_unavailable("chromium", f"the console tests drive Debian's chromium at {CHROMIUM}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=live_server.url.rstrip("/")
            )
            page = context.new_page()
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

    # The confidence of that reply; its speech plan is developer detail, behind a toggle.
    expect(page.locator("#reply-confidence")).to_have_text(re.compile(r"^\d+%$"))
    segments = page.locator('[data-testid="speech-segment"]')
    expect(segments.first).to_be_hidden()
    expect(page.locator("#speech-tempo")).to_be_hidden()
    page.click("#speech-details summary")
    expect(page.locator("#speech-tempo")).not_to_have_text("–")
    expect(segments.first).to_be_visible()
    expect(segments.first).to_contain_text(re.compile(r"\d+\.\d\d s"))
    console.shot("03-streamed-reply")

    # The turn is in the history, newest first, also after a refresh.
    history = page.locator('[data-testid="history-item"]')
    expect(history.first).to_contain_text(message)
    page.click("#history-refresh")
    expect(history.first).to_contain_text(message)
    expect(history.first).to_contain_text(final)

    # A reply produced elsewhere (a POST /chat with the same account) in the open
    # conversation shows up too.
    elsewhere = "Sent from my other device"
    posted = page.request.post(
        console.url + "/api/v1/conversation/chat",
        data={"message": elsewhere, "session_id": console.open_conversation()},
        headers={"Authorization": f"Bearer {console.token()}"},
    )
    assert posted.ok, posted.text()
    foreign = page.locator('[data-testid="assistant-message"][data-origin="elsewhere"]')
    expect(foreign).to_have_count(1)
    expect(foreign).to_have_attribute("data-state", "final")
    expect(foreign.locator('[data-testid="reply-text"]')).to_have_text(posted.json()["response"])
    expect(history.first).to_contain_text(elsewhere)

    # Memories: the user's statements are remembered, searchable and deletable.
    kept = "I live in Lyon near the river."
    console.send(kept)
    expect(console.final_replies().filter(has_text=kept)).to_have_count(1)
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
    expect(memories.filter(has_text=kept)).to_have_count(1)
    remaining = memories.count() - 1
    memories.filter(has_text=fact).get_by_role("button", name=re.compile("^Delete memory")).click()
    expect(memories.filter(has_text=fact)).to_have_count(0)
    expect(memories).to_have_count(remaining)
    page.click("#memory-refresh")
    expect(memories).to_have_count(remaining)
    expect(memories.filter(has_text=kept)).to_have_count(1)
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


def authorized(console: Console) -> dict[str, str]:
    return {"Authorization": f"Bearer {console.token()}"}


def test_conversations_are_kept_across_a_reload(console: Console) -> None:
    page = console.page
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    expect(page.locator("#chat-title")).to_have_text("New conversation")

    console.send("Trains from Paris to Lyon")
    expect(console.final_replies()).to_have_count(1)
    expect(console.conversations()).to_have_count(1)
    expect(console.conversations().first).to_contain_text("Trains from Paris to Lyon")
    expect(console.conversations().first).to_contain_text("1 turn")

    page.click("#conversation-new")
    expect(page.locator('[data-testid="assistant-message"]')).to_have_count(0)
    console.send("Boats on the Rhone")
    expect(console.final_replies()).to_have_count(1)
    console.send("And ferries to Corsica")
    expect(console.final_replies()).to_have_count(2)
    expect(console.conversations()).to_have_count(2)
    expect(console.conversations().first).to_contain_text("2 turns")
    boats = console.open_conversation()

    # Rename the newest conversation.
    console.conversations().first.get_by_role("button", name=re.compile("^Rename")).click()
    page.fill("#rename-input", "Boats")
    page.click("#rename-ok")
    expect(console.conversations().first.locator(".conv-title")).to_have_text("Boats")
    expect(page.locator("#chat-title")).to_have_text("Boats")

    # A third one, deleted again: asked first, then gone with its turns.
    page.click("#conversation-new")
    expect(page.locator("#chat-title")).to_have_text("New conversation")
    console.send("Planes are too expensive")
    expect(console.final_replies()).to_have_count(1)
    expect(console.conversations()).to_have_count(3)
    expect(console.conversations().first).to_contain_text("Planes are too expensive")
    doomed = console.open_conversation()
    console.shot("10-three-conversations")
    console.conversations().first.get_by_role("button", name=re.compile("^Delete")).click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Planes are too expensive")
    page.click("#confirm-ok")
    expect(console.conversations()).to_have_count(2)
    gone = page.request.get(
        console.url + f"/api/v1/conversations/{doomed}/turns", headers=authorized(console)
    )
    assert gone.status == 404
    # History says which conversation each turn belongs to.
    labels = page.locator('[data-testid="history-conversation"]')
    expect(labels.first).to_have_text("Boats")
    expect(labels.last).to_have_text("Trains from Paris to Lyon")

    # After a reload: the same conversations, the open one with its turns.
    page.reload()
    console.expect_signed_in(username)
    expect(console.conversations()).to_have_count(2)
    expect(console.conversations().locator(".conv-title")).to_have_text(
        ["Boats", "Trains from Paris to Lyon"]
    )
    assert console.open_conversation() == boats
    expect(page.locator('[data-testid="user-message"]')).to_have_text(
        ["You: Boats on the Rhone", "You: And ferries to Corsica"]
    )
    expect(console.final_replies()).to_have_count(2)
    expect(console.final_replies().last).to_contain_text("And ferries to Corsica")

    console.conversations().last.locator(".conv-open").click()
    expect(page.locator('[data-testid="user-message"]')).to_have_text(
        ["You: Trains from Paris to Lyon"]
    )
    expect(page.locator("#chat-title")).to_have_text("Trains from Paris to Lyon")
    page.reload()
    console.expect_signed_in(username)
    expect(page.locator('[data-testid="user-message"]')).to_have_text(
        ["You: Trains from Paris to Lyon"]
    )
    expect(console.conversations().last.locator(".conv-open")).to_have_attribute(
        "aria-current", "true"
    )
    console.shot("11-after-reload")


def test_stop_ends_a_slow_reply_and_nothing_is_stored(console: Console) -> None:
    page = console.page
    console.sign_in(new_username(), PASSWORD, register=True)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    expect(page.locator("#chat-stop")).to_be_hidden()
    long_message = " ".join(f"word{n}" for n in range(300))  # 20 ms a word: 6 s
    console.send(long_message)
    bubble = page.locator('[data-testid="assistant-message"]').last
    expect(bubble).to_have_attribute("data-state", "streaming")
    page.click("#chat-stop")
    expect(bubble).to_have_attribute("data-state", "stopped")
    expect(bubble.locator('[data-testid="reply-stopped"]')).to_be_visible()
    expect(page.locator("#chat-stop")).to_be_hidden()
    shown = bubble.locator('[data-testid="reply-text"]').inner_text()
    assert 0 < len(shown) < len(long_message)
    page.wait_for_timeout(300)  # the stopped stream must not grow any more
    assert bubble.locator('[data-testid="reply-text"]').inner_text() == shown
    history = page.request.get(
        console.url + "/api/v1/conversation/history", headers=authorized(console)
    )
    assert history.json() == []
    console.shot("12-stopped")

    console.send("After the stop")
    expect(console.final_replies()).to_have_count(1)
    expect(console.final_replies()).to_contain_text("After the stop")


def test_copy_and_regenerate_a_reply(console: Console) -> None:
    page = console.page
    console.sign_in(new_username(), PASSWORD, register=True)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    console.send("Copy **this** reply")
    reply = console.final_replies().first
    reply.get_by_role("button", name="Copy").click()
    expect(page.locator("#notice")).to_have_text("Reply copied.")
    assert page.evaluate("navigator.clipboard.readText()") == "You said: Copy **this** reply"

    # Regenerate asks the same message again, as a new turn.
    expect(reply.get_by_role("button", name="Regenerate")).to_be_visible()
    reply.get_by_role("button", name="Regenerate").click()
    expect(console.final_replies()).to_have_count(2)
    expect(console.final_replies().first.get_by_role("button", name="Regenerate")).to_have_count(0)
    expect(console.final_replies().last.get_by_role("button", name="Regenerate")).to_be_visible()
    history = page.request.get(
        console.url + "/api/v1/conversation/history", headers=authorized(console)
    )
    assert [item["query"] for item in history.json()] == ["Copy **this** reply"] * 2


def test_replies_are_rendered_as_safe_markdown(console: Console) -> None:
    page = console.page
    console.sign_in(new_username(), PASSWORD, register=True)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    page.evaluate("window.__pwned = 0")
    hostile = (
        '<img src=x onerror="window.__pwned=1"> **bold** and `code` '
        "[bad](javascript:window.__pwned=2) [good](https://example.org/a?b=1)\n\n"
        "- one\n- two\n\n```\n<script>window.__pwned=3</script>\n```"
    )
    page.fill("#chat-input", hostile)
    page.click("#chat-send")
    reply = console.final_replies().first.locator('[data-testid="reply-text"]')
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("p code")).to_have_text("code")
    expect(reply.locator("li")).to_have_text(["one", "two"])
    expect(reply.locator("pre code")).to_have_text("<script>window.__pwned=3</script>")
    links = reply.locator("a")
    expect(links).to_have_count(1)
    expect(links).to_have_text("good")
    expect(links).to_have_attribute("href", "https://example.org/a?b=1")
    expect(links).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    expect(reply).to_contain_text('<img src=x onerror="window.__pwned=1">')
    expect(reply).to_contain_text("[bad](javascript:window.__pwned=2)")
    assert page.locator("#transcript img, #transcript script").count() == 0
    assert page.evaluate("window.__pwned") == 0
    reply.locator("a").hover()
    console.shot("13-markdown")


def test_a_cut_reply_says_so_and_a_reply_shows_what_it_remembered(console: Console) -> None:
    page = console.page

    def relay(ws: WebSocketRoute) -> None:
        # The pipeline decides when a reply is cut; here the console's part: show it.
        server = ws.connect_to_server()

        def to_page(message: str | bytes) -> None:
            event = json.loads(message)
            if event["type"] == "chat.reply" and "cut me" in event["data"]["response"]:
                event["data"]["truncated"] = True
            ws.send(json.dumps(event))

        server.on_message(to_page)

    page.route_web_socket(re.compile(r"/ws/chat/"), relay)
    console.sign_in(new_username(), PASSWORD, register=True)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    console.send("Please cut me off")
    cut = console.final_replies().first.locator('[data-testid="reply-truncated"]')
    expect(cut).to_have_text("This reply was cut at the length limit.")

    console.send("My dog is called Rex and he loves parks.")
    expect(console.final_replies()).to_have_count(2)
    expect(console.final_replies().last.locator('[data-testid="reply-truncated"]')).to_have_count(0)
    page.click("#conversation-new")
    console.send("Which parks does my dog Rex love?")
    remembered = console.final_replies().first.locator('[data-testid="reply-memories"]')
    expect(remembered).to_contain_text("Remembered:")
    expect(remembered).to_contain_text("My dog is called Rex and he loves parks.")
    console.shot("14-cut-and-remembered")


def test_password_change_signs_in_again(console: Console) -> None:
    page = console.page
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    old_token = console.token()

    page.click("#password-button")
    page.fill("#password-old", "not my password")
    page.fill("#password-new", "a brand new passphrase 42")
    console.expected_errors.append(re.compile(r"status of 403 .*/api/v1/user/change-password"))
    page.click("#password-ok")
    expect(page.locator('[data-testid="password-error"]')).to_contain_text("password is wrong")
    console.shot("15-password-wrong")

    page.fill("#password-old", PASSWORD)
    page.click("#password-ok")
    expect(page.locator("#password-dialog")).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text("Password changed")
    console.expect_signed_in(username)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    assert console.token() != old_token
    refused = page.request.get(
        console.url + "/api/v1/user/me", headers={"Authorization": f"Bearer {old_token}"}
    )
    assert refused.status == 401
    console.send("Still here after the change")
    expect(console.final_replies()).to_have_count(1)

    page.click("#logout-button")
    console.sign_in(username, "a brand new passphrase 42")
    console.expect_signed_in(username)


def test_the_message_limit_is_shown_and_a_long_paste_refused(console: Console) -> None:
    page = console.page
    console.sign_in(new_username(), PASSWORD, register=True)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    limit = page.request.get(console.url + "/api/v1/limits").json()["max_message_chars"]
    assert limit == 4000
    count = page.locator('[data-testid="chat-count"]')
    notice = page.locator('[data-testid="chat-limit"]')

    page.evaluate("text => navigator.clipboard.writeText(text)", "x" * 5000)
    page.focus("#chat-input")
    page.keyboard.press("ControlOrMeta+V")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("Nothing was pasted: the text has 5,000 characters")
    expect(notice).to_contain_text("at most 4,000")
    assert page.input_value("#chat-input") == ""
    console.shot("16-paste-refused")

    # A paste that fits is taken whole; the counter appears near the limit.
    page.evaluate("text => navigator.clipboard.writeText(text)", "y" * 3500)
    page.keyboard.press("ControlOrMeta+V")
    expect(notice).to_be_hidden()
    assert page.input_value("#chat-input") == "y" * 3500
    expect(count).to_have_text("3,500 / 4,000")

    # Typed past the limit: the counter and notice say so and nothing is sent.
    page.fill("#chat-input", "z" * 4001)
    expect(count).to_have_attribute("data-over", "true")
    expect(notice).to_contain_text("4,001 characters; the limit is 4,000")
    page.click("#chat-send")
    expect(page.locator('[data-testid="user-message"]')).to_have_count(0)
    assert page.input_value("#chat-input") == "z" * 4001

    page.fill("#chat-input", "short again")
    expect(count).to_be_hidden()
    expect(notice).to_be_hidden()


def test_a_reply_is_rated_with_its_thumbs_and_keeps_the_rating(console: Console) -> None:
    page = console.page
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    console.send("Rate this reply")
    reply = console.final_replies().first
    up = reply.get_by_role("button", name="Good reply")
    down = reply.get_by_role("button", name="Bad reply")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")

    def stored() -> list[str | None]:
        session_id = console.open_conversation()
        turns = page.request.get(
            console.url + f"/api/v1/conversations/{session_id}/turns", headers=authorized(console)
        )
        return [turn["rating"] for turn in turns.json()["items"]]

    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    assert stored() == ["up"]
    meta = page.locator('[data-testid="history-item"]').first.locator(
        '[data-testid="history-meta"]'
    )
    expect(meta).to_contain_text("rated good")
    console.shot("15-rated-up")

    # After a reload the thumb is still pressed; pressing it again takes the rating back.
    page.reload()
    console.expect_signed_in(username)
    reply = console.final_replies().first
    up = reply.get_by_role("button", name="Good reply")
    down = reply.get_by_role("button", name="Bad reply")
    expect(up).to_have_attribute("aria-pressed", "true")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "false")
    assert stored() == [None]

    # From the keyboard, thumbs down (once the thumbs take clicks again: they are
    # disabled while a rating is on its way).
    expect(down).to_be_enabled()
    down.focus()
    page.keyboard.press("Space")
    expect(down).to_have_attribute("aria-pressed", "true")
    assert stored() == ["down"]

    # Rated elsewhere (another client, over the API): the open console follows (once its
    # socket is back after the reload: an event sent before that is not heard).
    expect(page.locator("#connection-status")).to_have_attribute("data-state", "online")
    turn_id = reply.get_attribute("data-turn-id")
    rated = page.request.put(
        console.url + f"/api/v1/turns/{turn_id}/rating",
        data={"rating": "up"},
        headers=authorized(console),
    )
    assert rated.ok, rated.text()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
