"""The knowledge plugin on a real database: files of each format parsed and chunked by
their structure, bad files leaving nothing, updates, deletes, who sees what, shared
collections, retention, export and erasure, and retrieval through the one library call."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from mongars_core.pipeline import Assistant
from mongars_core.retrieval import retrieve
from mongars_core.storage.models import ChunkRecord, CollectionRecord, DocumentRecord
from mongars_core.types import RetrievalQuery, utcnow
from mongars_plugins.knowledge import Library, chunking, library
from mongars_plugins.knowledge.chunking import chunk_document
from mongars_plugins.knowledge.errors import (
    DocumentNotFoundError,
    DocumentTooLargeError,
    InvalidCollectionError,
    SharedCollectionError,
    UnreadableDocumentError,
)
from mongars_plugins.knowledge.parsing import parse
from tests.conftest import command_env, run_mongars

# -- files of each kind --------------------------------------------------------------


def make_pdf(pages: list[list[str]]) -> bytes:
    """A real PDF (Helvetica, one text line per string) of ``pages``."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    font = 3 + 2 * len(pages)
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    for i, lines in enumerate(pages):
        content = (
            "BT /F1 12 Tf 72 720 Td 14 TL "
            + " ".join(
                "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*"
                for line in lines
            )
            + " ET"
        )
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        stream = content.encode("latin-1")
        objects.append(
            b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream"
        )
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


GUIDE_MD = b"""# Kettle guide

The Zephyr kettle boils a litre in ninety seconds.

## Cleaning

Descale the Zephyr with white vinegar once a month. Rinse it twice afterwards.

### Filters

The limescale filter lifts out from the spout.

```
# this line is code, not a heading
```
"""

PAGE_HTML = b"""<!doctype html><html><head><title>Garden notes</title>
<style>body { color: red }</style><script>alert("never indexed")</script></head>
<body><h1>Tomatoes</h1><p>Plant the tomatoes in May &amp; water them daily.</p>
<h2>Pests</h2><div>Aphids hate marigolds.<br>Plant marigolds nearby.</div>
<script>var hidden = "secret script text";</script></body></html>"""


def words(count: int, stem: str = "word") -> str:
    return " ".join(f"{stem}{i}" for i in range(count))


# -- parsing and chunking (no database) ---------------------------------------------


def test_markdown_headings_make_the_heading_paths_of_chunks() -> None:
    document = parse("guide.md", GUIDE_MD)
    assert document.title == "Kettle guide"
    chunks = chunk_document(document, chunk_words=200, min_words=120, max_words=250)
    assert [c.heading for c in chunks] == [
        "Kettle guide",
        "Kettle guide › Cleaning",
        "Kettle guide › Cleaning › Filters",
    ]
    assert "ninety seconds" in chunks[0].text
    assert "# this line is code" in chunks[2].text  # fenced code is no heading
    for chunk in chunks:  # offsets point into the stored text
        assert document.text[chunk.start : chunk.end].strip() == chunk.text


def test_html_drops_script_and_style_and_keeps_h1_to_h6() -> None:
    document = parse("garden.html", PAGE_HTML)
    assert document.title == "Garden notes"
    assert "alert" not in document.text and "secret script" not in document.text
    assert "color: red" not in document.text
    assert "tomatoes in May & water" in document.text
    chunks = chunk_document(document, chunk_words=200, min_words=120, max_words=250)
    assert [c.heading for c in chunks] == ["Tomatoes", "Tomatoes › Pests"]
    assert chunks[1].text == "Aphids hate marigolds.\n\nPlant marigolds nearby."


def test_html_with_an_unclosed_head_keeps_its_body() -> None:
    document = parse("page.htm", b"<html><head><title>Short</title><body><p>Body text.</p>")
    assert (document.title, [b.text for b in document.blocks]) == ("Short", ["Body text."])


def test_plain_text_and_pdf_are_read() -> None:
    text = parse("notes.txt", "First paragraph.\r\n\r\nSecond — café.".encode("utf-8-sig"))
    assert [b.text for b in text.blocks] == ["First paragraph.", "Second — café."]
    pdf = parse("manual.pdf", make_pdf([["The pump runs at 3 bar."], ["Page two says hello."]]))
    assert pdf.media_type == "application/pdf"
    assert [(b.headings, b.text) for b in pdf.blocks] == [
        (("page 1",), "The pump runs at 3 bar."),
        (("page 2",), "Page two says hello."),
    ]


def test_long_sections_are_cut_between_sentences_within_the_limits() -> None:
    sentences = " ".join(f"Sentence number {i} says something about pumps." for i in range(120))
    document = parse("long.txt", sentences.encode())
    chunks = chunk_document(document, chunk_words=200, min_words=120, max_words=250)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.words <= 250
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith("pumps.")
    assert sum(c.words for c in chunks) == len(sentences.split())
    # Short paragraphs are packed up to the target, never across a heading.
    packed = parse("p.md", ("\n\n".join(words(30, f"p{i}w") for i in range(20))).encode())
    sizes = [c.words for c in chunk_document(packed, chunk_words=200, min_words=120, max_words=250)]
    assert sizes == [180, 180, 180, 60]
    # One sentence longer than the maximum is cut between words.
    giant = parse("g.txt", words(600).encode())
    pieces = chunk_document(giant, chunk_words=200, min_words=120, max_words=250)
    assert [c.words for c in pieces] == [200, 200, 200]


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"  \n\n ", "is empty"),
        ("blob.txt", b"\x00\x01\x02binary\x00" * 50, "binary"),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "not UTF-8"),
        ("report.docx", b"PK\x03\x04 zip", "not supported"),
        ("broken.pdf", b"%PDF-1.4\nthis is no pdf at all", "not a readable PDF"),
        ("scan.pdf", make_pdf([[]]), "no text layer"),
        ("page.html", b"<html><script>only()</script></html>", "no text"),
    ],
)
def test_unreadable_files_are_refused_with_the_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableDocumentError, match=reason):
        parse(name, data)


# -- hostile files: work linear in their size, limits checked as reading goes --------


def _finishes(code: str, seconds: float = 20) -> str:
    """What ``code`` prints, run in a fresh interpreter that must end within ``seconds``
    (a regular expression stuck in C is beyond a signal; a child process is killed)."""
    try:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=seconds
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {seconds} s: {code}", pytrace=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "data",
    [
        "b'[' * 1_000_000",  # an unclosed link, 1 MB of them: hours when quadratic
        "b'![' * 500_000",
        "b'[a](' * 250_000",  # a link's target never closed
        "b'# a' + b' ' * 1_000_000 + b'b\\n\\nbody'",  # a heading's trailing blanks
    ],
)
def test_hostile_markdown_is_parsed_in_linear_time(data: str) -> None:
    code = (
        "from mongars_plugins.knowledge.parsing import parse\n"
        "from mongars_plugins.knowledge.errors import UnreadableDocumentError\n"
        "try:\n"
        f"    print(len(parse('x.md', {data}).text))\n"
        "except UnreadableDocumentError:\n"
        "    print('refused')\n"
    )
    assert _finishes(code).strip()


def test_markdown_links_images_and_closing_hashes_still_read() -> None:
    source = (
        b'## Links ##\n\nSee [the guide](https://x.org/a_(b) "T") and ![a pump](p.png).\n'
        b"[unclosed [nested](u) and `co[de`.\n\n# a #b\n\nend #"
    )
    document = parse("l.md", source)
    assert [(b.headings, b.text) for b in document.blocks] == [
        (("Links",), "See the guide and a pump. [unclosed nested and co[de."),
        (("a #b",), "end #"),
    ]


@pytest.mark.timeout(120)
def test_chunking_a_long_paragraph_is_linear() -> None:
    # A million one-word sentences (3 MB): minutes when each run re-summed every sentence.
    code = (
        "from mongars_plugins.knowledge.parsing import parse\n"
        "from mongars_plugins.knowledge.chunking import chunk_document\n"
        "d = parse('a.txt', b'a. ' * 1_000_000)\n"
        "chunks = chunk_document(d, chunk_words=200, min_words=120, max_words=250)\n"
        "print(len(chunks), sum(c.words for c in chunks))\n"
    )
    assert _finishes(code, 40).split() == ["5000", "1000000"]


def test_chunking_stops_as_soon_as_a_document_passes_max_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = parse("s.md", "\n\n".join(f"# S{i}\n\n{words(50)}" for i in range(500)).encode())
    calls = 0
    pieces = chunking._pieces

    def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return pieces(*args)

    monkeypatch.setattr(chunking, "_pieces", counted)
    sizes: dict[str, Any] = {"chunk_words": 200, "min_words": 120, "max_words": 250}
    with pytest.raises(DocumentTooLargeError, match=r"'s\.md' makes more than 5 chunks"):
        chunk_document(document, **sizes, max_chunks=5, name="s.md")
    assert calls == 6  # the sixth section's chunk is one too many: the rest is never read
    calls = 0
    assert len(chunk_document(document, **sizes, max_chunks=500)) == 500
    assert calls == 500


def _shared_stream_pdf(pages: int, lines: int) -> bytes:
    """A PDF whose ``pages`` pages all draw one compressed content stream: a small file
    with ``pages`` times that stream's text (about 48 characters a line)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    stream = DecodedStreamObject()
    stream.set_data(
        b"BT /F1 12 Tf 72 720 Td 14 TL " + b"(word word word word) Tj T* " * lines + b"ET"
    )
    content = writer._add_object(stream.flate_encode())
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for _ in range(pages):
        page = writer.add_blank_page(612, 792)
        page[NameObject("/Contents")] = content
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_text_and_pages_are_bounded_page_by_page(monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PageObject

    calls = 0
    extract = PageObject.extract_text

    def counted(self: PageObject, *args: Any, **kwargs: Any) -> str:
        nonlocal calls
        calls += 1
        return extract(self, *args, **kwargs)

    monkeypatch.setattr(PageObject, "extract_text", counted)
    bomb = _shared_stream_pdf(200, 2000)  # 200 pages of 40,000 characters: 8 MB of text
    assert len(bomb) < 40_000
    with pytest.raises(DocumentTooLargeError, match="more than 100000 characters of text"):
        parse("bomb.pdf", bomb, max_text_chars=100_000)
    assert calls == 3  # the third page passes the limit; the 197 others are never read
    calls = 0
    with pytest.raises(DocumentTooLargeError, match="has 200 pages: more than the limit of 50"):
        parse("bomb.pdf", bomb, max_pages=50)
    assert calls == 0
    small = parse("ok.pdf", _shared_stream_pdf(2, 10), max_pages=2, max_text_chars=1000)
    assert [b.headings for b in small.blocks] == [("page 1",), ("page 2",)]
    assert parse.__kwdefaults__ == {
        "max_bytes": None,
        "max_pages": 2000,
        "max_text_chars": 4_000_000,
    }


# -- the library on a real database ---------------------------------------------------

Make = Callable[..., Awaitable[Assistant]]


@pytest.fixture
async def docs(make_assistant: Make) -> Library:
    assistant = await make_assistant("knowledge")
    return library(assistant.services)


async def _counts(found: Library) -> tuple[int, int, int]:
    async with found.store.session() as session:
        return tuple(  # type: ignore[return-value]
            [
                int((await session.execute(select(func.count()).select_from(table))).scalar_one())
                for table in (CollectionRecord, DocumentRecord, ChunkRecord)
            ]
        )


async def test_an_added_document_is_found_with_its_source(docs: Library) -> None:
    info = await docs.add("alice", "guide.md", GUIDE_MD)
    assert (info.title, info.collection, info.shared, info.chunks) == (
        "Kettle guide",
        "notes",
        False,
        3,
    )
    assert info.media_type == "text/markdown" and info.size == len(GUIDE_MD)
    found = await docs.search("alice", "how do I descale with vinegar", limit=3, neighbours=1)
    best = found[0]
    assert best.key.startswith("chunk:") and best.kind == "document"
    assert best.source == "Kettle guide › Cleaning"
    assert best.document_id == info.id and best.collection == "notes" and best.position == 1
    assert best.before == ["The Zephyr kettle boils a litre in ninety seconds."]
    assert best.after[0].startswith("The limescale filter")
    assert "bm25" in best.ranks
    listed = await docs.list_documents("alice")
    assert [d.id for d in listed] == [info.id]
    _, text = await docs.get("alice", info.id)
    assert "white vinegar" in text


async def test_titles_and_file_names_are_one_printable_line(docs: Library) -> None:
    info = await docs.add("alice", "../../etc/\x1b[2Jnotes.txt", b"Hi.", title="My\x07\n notes")
    assert (info.title, info.filename) == ("My notes", "[2Jnotes.txt")


async def test_a_bad_file_leaves_nothing(docs: Library) -> None:
    for name, data in [
        ("broken.pdf", b"%PDF-1.4 nonsense"),
        ("blob.txt", b"\x00" * 100),
        ("empty.md", b""),
    ]:
        with pytest.raises(UnreadableDocumentError):
            await docs.add("alice", name, data, collection="fresh")
    docs.settings = docs.settings.model_copy(update={"max_file_bytes": 2048, "max_chunks": 2})
    with pytest.raises(DocumentTooLargeError, match="larger than the limit of 2048"):
        await docs.add("alice", "big.txt", words(1000).encode())
    with pytest.raises(DocumentTooLargeError, match="more than 2 chunks: more than the limit of 2"):
        await docs.add("alice", "guide.md", GUIDE_MD)
    assert await _counts(docs) == (0, 0, 0)
    assert await docs.list_documents("alice") == []
    with pytest.raises(InvalidCollectionError):
        await docs.add("alice", "guide.md", GUIDE_MD, collection="no spaces allowed")


async def test_update_replaces_the_content_under_the_same_id(docs: Library) -> None:
    first = await docs.add("alice", "guide.md", GUIDE_MD)
    await docs.search("alice", "kettle", limit=5)  # the index is loaded, then kept in step
    new = b"# Kettle guide\n\nThe Zephyr now has a copper element and a whistle."
    updated = await docs.update("alice", first.id, "guide-v2.md", new)
    assert updated.id == first.id and updated.filename == "guide-v2.md" and updated.chunks == 1
    assert updated.sha256 != first.sha256 and updated.created_at == first.created_at
    assert await docs.search("alice", "vinegar descale", limit=5) == []
    found = await docs.search("alice", "copper whistle", limit=5)
    assert [p.document_id for p in found] == [first.id]
    # A bad replacement keeps the document as it was.
    with pytest.raises(UnreadableDocumentError):
        await docs.update("alice", first.id, "guide.pdf", b"%PDF-1.7 broken")
    assert [p.document_id for p in await docs.search("alice", "copper", limit=5)] == [first.id]
    assert (await _counts(docs))[2] == 1


async def test_delete_removes_a_document_from_search_at_once(docs: Library) -> None:
    info = await docs.add("alice", "guide.md", GUIDE_MD)
    assert await docs.search("alice", "limescale filter spout", limit=5)
    await docs.delete("alice", info.id)
    assert await docs.search("alice", "limescale filter spout", limit=5) == []
    assert await docs.list_documents("alice") == []
    assert (await _counts(docs))[1:] == (0, 0)
    with pytest.raises(DocumentNotFoundError):
        await docs.delete("alice", info.id)


async def test_no_user_sees_or_changes_another_users_documents(make_assistant: Make) -> None:
    assistant = await make_assistant("knowledge")
    docs = library(assistant.services)
    secret = await docs.add("alice", "guide.md", GUIDE_MD, collection="private")
    assert await docs.list_documents("bob") == []
    assert await docs.search("bob", "Zephyr kettle vinegar", limit=10) == []
    assert await docs.search("bob", "Zephyr", collections=["private"], limit=10) == []
    everything = RetrievalQuery(user_id="bob", text="Zephyr kettle descale vinegar", limit=50)
    assert await retrieve(assistant.services, everything) == []
    for attempt in (
        docs.get("bob", secret.id),
        docs.delete("bob", secret.id),
        docs.update("bob", secret.id, "x.txt", b"bob was here"),
    ):
        with pytest.raises(DocumentNotFoundError):
            await attempt
    assert [c.name for c in await docs.collections("bob")] == []
    # Alice still has it, through the library call every consumer shares.
    mine = await retrieve(assistant.services, everything.model_copy(update={"user_id": "alice"}))
    assert mine and {p.document_id for p in mine} == {secret.id}


async def test_shared_collections_are_read_by_all_and_written_by_admins(docs: Library) -> None:
    with pytest.raises(SharedCollectionError):
        await docs.add("bob", "guide.md", GUIDE_MD, collection="handbook", shared=True)
    shared = await docs.add(
        "root", "guide.md", GUIDE_MD, collection="handbook", shared=True, admin=True
    )
    assert shared.shared and shared.collection == "handbook"
    own = await docs.add("bob", "garden.html", PAGE_HTML)
    for user in ("alice", "bob"):
        assert shared.id in {d.id for d in await docs.list_documents(user)}
        found = await docs.search(user, "descale vinegar", limit=3)
        assert found[0].document_id == shared.id and found[0].collection == "handbook"
    bob_sees = {p.document_id for p in await docs.search("bob", "marigolds aphids", limit=5)}
    assert own.id in bob_sees
    assert own.id not in {p.document_id for p in await docs.search("alice", "marigolds", limit=5)}
    with pytest.raises(SharedCollectionError):
        await docs.delete("alice", shared.id)
    with pytest.raises(SharedCollectionError):
        await docs.update("alice", shared.id, "x.txt", b"vandalism")
    with pytest.raises(SharedCollectionError):
        await docs.set_retention("alice", "handbook", 1, shared=True)
    names = {(c.name, c.shared, c.writable) for c in await docs.collections("alice")}
    assert names == {("handbook", True, False)}
    await docs.delete("root", shared.id, admin=True)
    assert await docs.search("alice", "descale vinegar", limit=3) == []


async def test_retention_expires_documents_from_search_then_sweeps_them(docs: Library) -> None:
    kept = await docs.add("alice", "garden.html", PAGE_HTML, collection="garden")
    old = await docs.add("alice", "guide.md", GUIDE_MD, collection="kitchen")
    await docs.search("alice", "kettle", limit=5)  # loaded before the change
    # The kitchen document was added ten days ago.
    async with docs.store.session(write=True) as session:
        ten_days_ago = utcnow() - timedelta(days=10)
        await session.execute(
            update(DocumentRecord)
            .where(DocumentRecord.id == old.id)  # type: ignore[arg-type]
            .values(created_at=ten_days_ago, updated_at=ten_days_ago)
        )
        await session.commit()
    changed = await docs.set_retention("alice", "kitchen", 7)
    assert (changed.retention_days, changed.documents) == (7, 0)
    # Expired at once: out of search and listings before any sweep.
    assert await docs.search("alice", "Zephyr kettle descale", limit=5) == []
    assert [d.id for d in await docs.list_documents("alice")] == [kept.id]
    # A new document of a collection with retention gets its expiry; search honours it.
    fresh = await docs.add(
        "alice", "notes.txt", b"The Zephyr kettle is blue.", collection="kitchen"
    )
    assert fresh.expires_at is not None
    assert fresh.expires_at - fresh.updated_at == timedelta(days=7)
    assert await docs.search("alice", "Zephyr blue", limit=5)
    later = utcnow() + timedelta(days=8)
    assert await docs.search("alice", "Zephyr blue", limit=5, now=later) == []
    assert await docs.sweep() == 1  # the old one; the fresh one is not due yet
    assert await docs.sweep(later) == 1
    assert (await _counts(docs))[1] == 1  # the garden page, kept for ever
    await docs.set_retention("alice", "garden", None)
    assert (await docs.collections("alice"))[0].retention_days is None


async def test_documents_that_expired_while_nothing_ran_go_at_start_up(
    make_assistant: Make,
) -> None:
    docs = library((await make_assistant("knowledge")).services)
    old = await docs.add("alice", "guide.md", GUIDE_MD)
    kept = await docs.add("alice", "garden.html", PAGE_HTML)
    async with docs.store.session(write=True) as session:
        await session.execute(
            update(DocumentRecord)
            .where(DocumentRecord.id == old.id)  # type: ignore[arg-type]
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
        await session.commit()
    restarted = library((await make_assistant("knowledge")).services)
    async with restarted.store.session() as session:
        left = (await session.execute(select(DocumentRecord.id))).scalars().all()
    assert list(left) == [kept.id]


async def test_export_and_erase_cover_the_users_documents(make_assistant: Make) -> None:
    assistant = await make_assistant("knowledge")
    docs = library(assistant.services)
    mine = await docs.add("alice", "guide.md", GUIDE_MD, collection="kitchen")
    await docs.set_retention("alice", "kitchen", 30)
    published = await docs.add(
        "alice", "garden.html", PAGE_HTML, collection="handbook", shared=True, admin=True
    )
    theirs = await docs.add("bob", "notes.txt", b"Bob's own note about kettles.")
    records = await assistant.services.plugins.export_user(assistant.services, "alice")
    kinds = [(r["type"], r.get("name") or r.get("title")) for r in records]
    assert ("collection", "kitchen") in kinds and ("document", "Kettle guide") in kinds
    document = next(r for r in records if r["type"] == "document")
    assert document["id"] == mine.id and "white vinegar" in document["text"]
    assert document["collection"] == "kitchen" and document["expires_at"] is not None
    assert all(r.get("title") != "Garden notes" for r in records)  # shared: nobody's own
    json.dumps(records)  # JSON-ready

    await assistant.services.plugins.erase_user(assistant.services, "alice")
    assert await assistant.services.plugins.export_user(assistant.services, "alice") == []
    with pytest.raises(DocumentNotFoundError):
        await docs.get("alice", mine.id)
    assert {d.id for d in await docs.list_documents("bob")} == {theirs.id, published.id}
    async with docs.store.session() as session:
        left = (await session.execute(select(DocumentRecord))).scalars().all()
    assert {d.id for d in left} == {theirs.id, published.id}
    assert all(d.added_by != "alice" for d in left)
    assert (await _counts(docs))[2] == 1 + 2  # bob's chunk and the shared page's two


async def test_a_change_by_another_process_reaches_search(make_assistant: Make) -> None:
    assistant = await make_assistant("knowledge")
    here = library(assistant.services)
    await here.add("alice", "guide.md", GUIDE_MD)
    assert await here.search("alice", "kettle", limit=5)  # loaded
    elsewhere = Library(assistant.services)  # a CLI beside the server: its own indexes
    info = await elsewhere.add("alice", "garden.html", PAGE_HTML)
    assert [p.document_id for p in await here.search("alice", "marigolds", limit=5)] == [info.id]
    await elsewhere.delete("alice", info.id)
    assert await here.search("alice", "marigolds", limit=5) == []


async def test_the_plugin_answers_retrieval_for_documents_only(make_assistant: Make) -> None:
    assistant = await make_assistant("knowledge")
    docs = library(assistant.services)
    await docs.add("alice", "guide.md", GUIDE_MD)
    await docs.add("alice", "garden.html", PAGE_HTML, collection="garden")
    query = RetrievalQuery(user_id="alice", text="marigolds", kinds=frozenset({"document"}))
    found = await retrieve(assistant.services, query)
    assert found and found[0].source == "Garden notes › Tomatoes › Pests"
    only_notes = query.model_copy(update={"collections": ["notes"]})
    assert all(p.collection == "notes" for p in await retrieve(assistant.services, only_notes))
    memories_only = query.model_copy(update={"kinds": frozenset({"memory"})})
    assert all(p.kind == "memory" for p in await retrieve(assistant.services, memories_only))


# -- the real MiniLM embedder -------------------------------------------------------------


@pytest.mark.embedder
async def test_dense_search_finds_a_paraphrase_with_minilm(
    make_assistant: Make, settings: Any
) -> None:
    from tests.test_memory_quality import MiniLMPlugin

    memory = settings.memory.model_copy(update={"embedder": "minilm"})
    assistant = await make_assistant("knowledge", ("minilm", MiniLMPlugin()), memory=memory)
    docs = library(assistant.services)
    await docs.add("alice", "guide.md", GUIDE_MD)
    await docs.add("alice", "garden.html", PAGE_HTML)
    async with docs.store.session() as session:
        stored = (await session.execute(select(ChunkRecord))).scalars().all()
    assert all(c.embedder == "minilm" and len(c.embedding or b"") == 4 * 384 for c in stored)
    # No word in common with "Descale the Zephyr with white vinegar once a month".
    found = await docs.search("alice", "removing calcium deposits from my appliance", limit=2)
    assert found[0].heading == "Kettle guide › Cleaning"
    assert "dense" in found[0].ranks
    # A fresh library reloads the stored vectors rather than embedding the chunks again.
    reloaded = await Library(assistant.services).search(
        "alice", "insects on vegetable plants", limit=1
    )
    assert reloaded[0].heading == "Tomatoes › Pests"


# -- the command ------------------------------------------------------------------------------


def test_docs_command_adds_lists_searches_and_deletes(tmp_path: Path) -> None:
    env = command_env(tmp_path)
    guide = tmp_path / "guide.md"
    guide.write_bytes(GUIDE_MD)
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 broken")
    added = run_mongars("docs", "add", str(guide), str(bad), "--user", "alice", "--json", env=env)
    assert added.returncode == 1, added.stderr
    result = json.loads(added.stdout)
    assert [d["title"] for d in result["added"]] == ["Kettle guide"]
    assert (
        result["failed"][0]["file"] == str(bad) and "readable PDF" in result["failed"][0]["error"]
    )
    document_id = result["added"][0]["id"]
    listed = run_mongars("docs", "list", "--user", "alice", "--json", env=env)
    assert [d["id"] for d in json.loads(listed.stdout)["documents"]] == [document_id]
    assert json.loads(run_mongars("docs", "list", "--user", "bob", "--json", env=env).stdout) == {
        "documents": []
    }
    found = run_mongars("docs", "search", "vinegar", "--user", "alice", "--json", env=env)
    passages = json.loads(found.stdout)["passages"]
    assert passages[0]["source"] == "Kettle guide › Cleaning"
    kept = run_mongars("docs", "retention", "notes", "30", "--user", "alice", env=env)
    assert "kept 30 days" in kept.stdout, kept.stderr
    refused = run_mongars("docs", "delete", str(document_id), "--user", "bob", env=env)
    assert refused.returncode == 1 and "no document" in refused.stderr
    gone = run_mongars("docs", "delete", str(document_id), "--user", "alice", "--json", env=env)
    assert json.loads(gone.stdout) == {"deleted": document_id}
    empty = run_mongars("docs", "search", "vinegar", "--user", "alice", env=env)
    assert "nothing found" in empty.stdout
