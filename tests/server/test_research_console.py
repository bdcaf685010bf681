"""The console shows the numbered sources under a reply, and a clarifying question as a
reply, in a real headless Chromium against a server with the research plugin.
Screenshots land in ``test-artifacts/console/``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from mongars_plugins.knowledge import research
from tests.conftest import BUNDLED_WITHOUT_MODELS
from tests.server.conftest import LiveServer
from tests.server.test_console import PASSWORD, Console, new_username
from tests.server.test_console import console as console  # the same browser fixture
from tests.server.test_learning_routes import user_id
from tests.test_research import ROUTER, ZORBLAX, Library, chunk

pytestmark = pytest.mark.browser


@pytest.fixture
def library() -> Library:
    return Library({})


@pytest.fixture
def live_server(make_server: Callable[..., LiveServer], library: Library) -> LiveServer:
    """The server test_console's ``console`` fixture drives: one with research and a
    fake document library."""
    return make_server(
        plugins=[("research", research), ("library", library)],
        load_plugins=[*BUNDLED_WITHOUT_MODELS, "server", "instant", "research", "library"],
    )


def test_a_reply_shows_its_sources_and_an_unknown_subject_a_question(
    console: Console, live_server: LiveServer, library: Library
) -> None:
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)
    library.passages[user_id(live_server, username)] = [
        chunk(1, ZORBLAX, "servers.md › Staging"),
        chunk(2, ROUTER, "home.md › Network"),
    ]

    console.send("Which port does Zorblax listen on?")
    reply = console.final_replies().first
    sources = reply.locator('[data-testid="reply-sources"]')
    expect(sources).to_contain_text("Sources")
    items = sources.locator('[data-testid="reply-source"]')
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("[1] servers.md › Staging")
    expect(items.first).to_contain_text("listens on port 8443")

    console.send("What is a flumpet?")
    expect(console.final_replies()).to_have_count(2)
    asked = console.final_replies().last
    expect(asked.locator('[data-testid="reply-text"]')).to_have_text(
        "I don't know what a flumpet is. Could you tell me what it is?"
    )
    expect(asked.locator('[data-testid="reply-sources"]')).to_have_count(0)
    console.shot("30-sources-and-clarification")
