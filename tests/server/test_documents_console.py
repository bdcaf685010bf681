"""The console's Documents panel in a real headless Chromium against a server with the
knowledge plugin: a user uploads files (watching the upload and indexing progress), sees
them listed, is told why a bad file was refused, deletes one; the next user sees none of
it. Screenshots land in ``test-artifacts/console/``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.server.conftest import LiveServer
from tests.server.test_console import PASSWORD, Console, new_username
from tests.server.test_console import console as console  # the same browser fixture
from tests.server.test_documents import documents_server
from tests.test_knowledge import GUIDE_MD

pytestmark = pytest.mark.browser

# Records every text the progress line shows: the proof that the user saw it move.
WATCH_PROGRESS = """
() => {
  window.__progress = [];
  const line = document.getElementById("documents-progress-text");
  new MutationObserver(() => window.__progress.push(line.textContent))
    .observe(line, {childList: true, characterData: true, subtree: true});
}
"""


@pytest.fixture
def live_server(make_server: Callable[..., LiveServer]) -> LiveServer:
    """The server test_console's ``console`` fixture drives: one with the knowledge plugin."""
    return documents_server(make_server)


def test_a_user_uploads_lists_and_deletes_documents(console: Console, tmp_path: Path) -> None:
    page = console.page
    username = new_username()
    console.sign_in(username, PASSWORD, register=True)
    console.expect_signed_in(username)

    panel = page.locator("#documents-panel")
    expect(panel.locator("#documents-upload-form")).to_be_hidden()  # closed until opened
    page.click("#documents-panel summary")
    expect(page.locator("#documents-empty")).to_be_visible()
    expect(page.locator("#documents-shared-box")).to_be_hidden()  # not an administrator
    page.evaluate(WATCH_PROGRESS)

    guide = tmp_path / "guide.md"
    guide.write_bytes(GUIDE_MD)
    # About 600 kB: the upload reports its bytes before the server indexes it.
    big = tmp_path / "field-notes.txt"
    big.write_text("\n\n".join(f"Field note {i}: the heron came back." for i in range(16_000)))
    page.set_input_files("#documents-file", [str(guide), str(big)])
    page.fill("#documents-collection", "kitchen")
    page.click("#documents-upload")
    items = page.locator('[data-testid="document-item"]')
    expect(items).to_have_count(2, timeout=30_000)
    expect(page.locator("#notice")).to_have_text("Added 2 documents.")
    guide_item = items.filter(has_text="Kettle guide")
    expect(guide_item).to_contain_text("kitchen · guide.md · ")
    expect(guide_item).to_contain_text("3 chunks")
    expect(items.filter(has_text="field-notes")).to_contain_text("KB")
    expect(page.locator("#documents-progress-box")).to_be_hidden()
    shown = page.evaluate("window.__progress")
    assert any(text.startswith("Uploading field-notes.txt: ") for text in shown), shown
    assert "Uploading field-notes.txt: 100%" in shown, shown
    assert "Reading field-notes.txt…" in shown, shown
    console.shot("documents-listed")

    # A file that cannot be read is refused with the reason, and nothing is added.
    broken = tmp_path / "scan.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not a PDF")
    page.set_input_files("#documents-file", str(broken))
    page.click("#documents-upload")
    error = page.locator("#documents-error")
    expect(error).to_contain_text("Some files were not added:")
    expect(error).to_contain_text("scan.pdf: 'scan.pdf' is not a readable PDF")
    expect(items).to_have_count(2)
    console.shot("documents-refused")

    # Delete, after confirming.
    guide_item.get_by_role("button", name="Delete document: Kettle guide").click()
    expect(page.locator("#confirm-title")).to_have_text("Delete this document?")
    page.click("#confirm-ok")
    expect(items).to_have_count(1)
    expect(page.locator("#notice")).to_have_text("Document deleted.")

    # Signing out empties the panel; the next user sees nothing of the first one's.
    page.click("#logout-button")
    expect(page.locator("#auth-panel")).to_be_visible()
    other = new_username()
    console.sign_in(other, PASSWORD, register=True)
    console.expect_signed_in(other)
    expect(page.locator("#documents-upload-form")).to_be_hidden()
    page.click("#documents-panel summary")
    expect(page.locator("#documents-empty")).to_be_visible()
    expect(items).to_have_count(0)
