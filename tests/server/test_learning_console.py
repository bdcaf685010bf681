"""The console's Learning panel in a real headless Chromium against a server with the
learning plugin: a user turns learning on and off, an administrator approves and
rejects queued runs. Screenshots land in ``test-artifacts/console/``."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mongars_plugins.learning.runs import RunBook, Validation
from tests.server.conftest import LiveServer
from tests.server.test_console import PASSWORD, Console, new_username
from tests.server.test_console import console as console  # the same browser fixture
from tests.server.test_learning_routes import add_run, answering, learner, learning_server, user_id

pytestmark = pytest.mark.browser


@pytest.fixture
def live_server(make_server: Callable[..., LiveServer]) -> LiveServer:
    """The server test_console's ``console`` fixture drives: one with the learning plugin."""
    return learning_server(make_server)


@pytest.fixture
def server(live_server: LiveServer) -> LiveServer:
    return live_server


def consents(server: LiveServer, username: str) -> bool:
    return bool(server.call(learner(server).has_consent(user_id(server, username))))


def test_a_user_turns_learning_on_and_off(
    console: Console, server: LiveServer, tmp_path: Path
) -> None:
    page = console.page
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)

    panel = page.locator("#learning-panel")
    expect(panel.locator("#learning-consent")).to_be_hidden()  # closed until opened
    page.click("#learning-panel summary")
    box = page.get_by_label("Learn from my conversations")
    expect(box).not_to_be_checked()
    expect(page.locator("#learning-explain")).to_contain_text("only after an administrator")
    expect(page.locator("#learning-adapter")).to_have_text("Answering you now: the base model.")
    expect(page.locator("#learning-runs-empty")).to_be_visible()
    expect(page.locator("#learning-admin")).to_be_hidden()  # not an administrator
    assert not consents(server, username)

    # Runs of theirs (made by an operator): status, perplexities, energy, latest validation.
    run = add_run(server, tmp_path, username, wh=1.5)
    checked = Validation(
        at=datetime(2026, 11, 30, tzinfo=UTC),
        examples=6,
        heldout_perplexity_base=30.0,
        heldout_perplexity_adapter=29.0,
        passed=False,
    )
    add_run(server, tmp_path, username, "approved", minutes_ago=30, validation=checked)
    # add_run opts its user in; this test turns learning on itself.
    server.call(
        RunBook(server.state.assistant.store).set_consent(
            user_id(server, username), False, by="test"
        )
    )
    page.click("#learning-refresh")
    runs = page.locator('[data-testid="learning-run"]')
    expect(runs).to_have_count(2)
    expect(runs.first).to_contain_text(f"{run.id} awaiting approval")
    expect(runs.first).to_contain_text("held-out perplexity 30.00 → 12.00 · 1.50 Wh (estimate)")
    expect(runs.last).to_contain_text("regressed 2026-11-30: 30.00 → 29.00 on newer turns")
    expect(page.locator("#learning-runs-empty")).to_be_hidden()

    box.check()
    expect(page.locator("#notice")).to_have_text("Learning is on.")
    expect(page.locator("#learning-changed")).to_contain_text("On since")
    assert consents(server, username)
    console.shot("20-learning-on")

    # Stored, not just shown: after a reload the panel reads it back.
    page.reload()
    console.expect_signed_in(username)
    page.click("#learning-panel summary")
    expect(box).to_be_checked()
    box.uncheck()
    expect(page.locator("#notice")).to_contain_text("Learning is off")
    assert not consents(server, username)
    page.reload()
    console.expect_signed_in(username)
    page.click("#learning-panel summary")
    expect(box).not_to_be_checked()


def test_an_administrator_approves_and_rejects_queued_runs(
    console: Console, server: LiveServer, tmp_path: Path
) -> None:
    page = console.page
    for name in ("root", "alice"):
        created = page.request.post(
            console.url + "/api/v1/user/register", data={"username": name, "password": PASSWORD}
        )
        assert created.status == 201, created.text()
    server.call(server.state.accounts.set_admin("root", True))
    approved = add_run(server, tmp_path, "alice", minutes_ago=20, wh=1.5)
    rejected = add_run(server, tmp_path, "alice", minutes_ago=10, wh=0.5)

    console.sign_in("root", PASSWORD)
    console.expect_signed_in("root")
    page.click("#learning-panel summary")
    queue = page.locator('[data-testid="learning-queue-item"]')
    expect(queue).to_have_count(2)
    expect(queue.first).to_contain_text(rejected.id)
    # What the decision rests on is beside it: the perplexities and the energy.
    expect(queue.first).to_contain_text("held-out perplexity 30.00 → 12.00 · 0.50 Wh (estimate)")
    expect(queue.first).to_contain_text("for alice")
    expect(queue.first).to_contain_text("held-out perplexity 30.00 → 12.00")
    expect(queue.first).to_contain_text("0.50 Wh (estimate)")
    summary = page.locator("#learning-summary")
    expect(summary).to_have_text(
        "2 runs · 2.00 Wh (with estimates) · 0.80 gCO2e · 2 awaiting approval"
    )
    console.shot("21-approval-queue")

    queue.filter(has_text=approved.id).get_by_role("button", name="Approve").click()
    expect(page.locator("#notice")).to_have_text(f"{approved.id} approved: it answers alice now.")
    expect(queue).to_have_count(1)
    assert answering(server, "alice") == approved.adapter
    assert answering(server, "root") is None
    expect(summary).to_contain_text("1 awaiting approval")

    queue.get_by_role("button", name="Reject").click()
    expect(page.locator("#confirm-dialog")).to_contain_text(rejected.id)
    page.click("#confirm-ok")
    expect(queue).to_have_count(0)
    expect(page.locator("#learning-queue-empty")).to_be_visible()
    stored = server.call(learner(server).book.get(rejected.id))
    assert (stored.status, stored.events[-1].by) == ("rejected", "admin:root")
    assert answering(server, "alice") == approved.adapter
    expect(summary).to_have_text(re.compile(r"^2 runs · .* · 0 awaiting approval$"))
    console.shot("22-approved-and-rejected")
