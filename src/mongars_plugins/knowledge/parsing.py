"""Files to text: plain text, Markdown, HTML and PDF, with their structure.

:func:`parse` turns a file's bytes into a :class:`ParsedDocument`: its text and
the blocks it is made of (headings and paragraphs, each with the headings it
sits under and its span in the text). Anything that cannot be read (a damaged
PDF, a binary file, text that is not UTF-8, nothing but blank space, an
unknown type) raises :class:`UnreadableDocumentError`, naming the file and why.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePath

from mongars_plugins.knowledge.errors import DocumentTooLargeError, UnreadableDocumentError

logger = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
"""The file types read, by extension."""

MAX_PDF_PAGES = 2000
"""Most pages a PDF may have; one with more is refused before any page is read."""

MAX_PDF_TEXT_CHARS = 4_000_000
"""Most characters of text a PDF may yield (about 2000 chunks of 250 words); reading
stops, and the file is refused, at the page that passes it. Pages may all draw one
compressed content stream, so a small file can hold far more text than its size."""


@dataclass(frozen=True)
class Block:
    """A paragraph of the document, under its ``headings`` (outermost first)."""

    text: str
    headings: tuple[str, ...]
    start: int
    end: int


@dataclass
class ParsedDocument:
    """A file's text (headings on lines of their own, paragraphs apart) and its paragraphs."""

    media_type: str
    text: str = ""
    blocks: list[Block] = field(default_factory=list)
    title: str | None = None
    """A title the file gives itself (HTML ``<title>``, a Markdown document's first heading)."""


class _Builder:
    """Assembles the text and blocks, keeping each block's offsets."""

    def __init__(self, media_type: str) -> None:
        self.document = ParsedDocument(media_type)
        self._parts: list[str] = []
        self._length = 0
        self._headings: list[tuple[int, str]] = []

    def _append(self, text: str) -> tuple[int, int]:
        if self._parts:
            self._parts.append("\n\n")
            self._length += 2
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        return start, self._length

    def heading(self, level: int, text: str) -> None:
        text = " ".join(text.split())
        if not text:
            return
        if self.document.title is None and not self._parts:
            self.document.title = text
        self._headings = [(lvl, name) for lvl, name in self._headings if lvl < level]
        self._headings.append((level, text))
        self._append(text)

    def paragraph(self, text: str) -> None:
        text = _clean(text)
        if not text:
            return
        start, end = self._append(text)
        headings = tuple(name for _, name in self._headings)
        self.document.blocks.append(Block(text, headings, start, end))

    def finish(self) -> ParsedDocument:
        self.document.text = "".join(self._parts)
        return self.document


def _clean(text: str) -> str:
    """Lines joined by single spaces, runs of blank space folded."""
    return " ".join(text.split())


def media_type_of(filename: str, data: bytes) -> str:
    """The type of a file: from its extension, else sniffed (PDF, HTML)."""
    suffix = PurePath(filename).suffix.lower()
    if suffix in MEDIA_TYPES:
        return MEDIA_TYPES[suffix]
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return "application/pdf"
    if head.startswith((b"<!doctype html", b"<html")):
        return "text/html"
    if suffix:
        known = ", ".join(sorted(MEDIA_TYPES))
        raise UnreadableDocumentError(
            f"{filename!r}: files of type {suffix!r} are not supported (supported: {known})"
        )
    return "text/plain"


def parse(
    filename: str,
    data: bytes,
    *,
    max_bytes: int | None = None,
    max_pages: int = MAX_PDF_PAGES,
    max_text_chars: int = MAX_PDF_TEXT_CHARS,
) -> ParsedDocument:
    """The text and structure of ``data``, a file named ``filename``.

    Over ``max_bytes``, a PDF of more than ``max_pages`` pages or one whose text passes
    ``max_text_chars`` raises :class:`DocumentTooLargeError`."""
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLargeError(
            f"{filename!r} is {len(data)} bytes: larger than the limit of {max_bytes} bytes"
        )
    if not data.strip():
        raise UnreadableDocumentError(f"{filename!r} is empty")
    media_type = media_type_of(filename, data)
    if media_type == "application/pdf":
        document = _pdf(filename, data, max_pages, max_text_chars)
    else:
        text = _decode(filename, data)
        if media_type == "text/markdown":
            document = _markdown(text)
        elif media_type == "text/html":
            document = _html(text)
        else:
            document = _plain(text)
    if not document.blocks:
        raise UnreadableDocumentError(f"{filename!r} has no text to index")
    return document


def _decode(filename: str, data: bytes) -> str:
    encoding = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    if encoding == "utf-8-sig" and b"\x00" in data[:8192]:
        raise UnreadableDocumentError(f"{filename!r} is a binary file, not text")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        byte = data[exc.start : exc.start + 1]
        raise UnreadableDocumentError(
            f"{filename!r} is not UTF-8 text (byte {exc.start}: {byte!r})"
        ) from None
    controls = sum(1 for char in text[:8192] if ord(char) < 32 and char not in "\t\n\r\f")
    if controls > max(8, len(text[:8192]) // 100):
        raise UnreadableDocumentError(f"{filename!r} is a binary file, not text")
    return text


_BLANK = re.compile(r"\n[ \t]*\n+")


def _plain(text: str) -> ParsedDocument:
    builder = _Builder("text/plain")
    for paragraph in _BLANK.split(text.replace("\r\n", "\n").replace("\r", "\n")):
        builder.paragraph(paragraph)
    return builder.finish()


# -- Markdown ------------------------------------------------------------------------

# Every pattern here runs in time linear in its input, whatever the input: a heading's
# closing ``#``s are stripped by hand (a lazy ``.*?`` before ``[ \t]*$`` retries each
# run of blanks from each of its places), and a link's text and target stop at the
# next bracket or parenthesis, so that an unclosed ``[`` or ``](`` is given up at once
# rather than scanned to the end of the paragraph from each place it repeats at.
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*))?$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_TARGET = r"\((?:[^()]|\([^()]*\))*\)"  # "(url)", "(url \"title\")", "(wiki_(term))"
_INLINE = [
    (re.compile(r"!\[([^\[\]]*)\]" + _TARGET), r"\1"),  # images: their alt text
    (re.compile(r"\[([^\[\]]+)\]" + _TARGET), r"\1"),  # links: their text
    (re.compile(r"(\*\*|__)(.+?)\1"), r"\2"),
    (re.compile(r"`([^`]+)`"), r"\1"),
]


def _inline(text: str) -> str:
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    return text


def _atx_text(text: str) -> str:
    """An ATX heading's text, less a closing run of ``#`` set off by blank space."""
    text = text.rstrip(" \t")
    bare = text.rstrip("#")
    if bare != text and bare[-1:] in (" ", "\t"):
        return bare.rstrip(" \t")
    return text


def _markdown(text: str) -> ParsedDocument:
    """ATX (``#``) and setext (underlined) headings; paragraphs apart by blank lines;
    fenced code kept as one paragraph (a ``#`` in it is no heading)."""
    builder = _Builder("text/markdown")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    paragraph: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if paragraph:
            builder.paragraph(_inline("\n".join(paragraph)))
            paragraph.clear()

    for line in lines:
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
                flush()
            else:
                paragraph.append(line)
            continue
        if match := _FENCE.match(line):
            flush()
            fence = match.group(1)
            continue
        if match := _ATX.match(line):
            flush()
            builder.heading(len(match.group(1)), _inline(_atx_text(match.group(2) or "")))
            continue
        if paragraph and len(paragraph) == 1 and (match := _SETEXT.match(line)):
            heading = paragraph.pop()
            builder.heading(1 if match.group(1)[0] == "=" else 2, _inline(heading))
            continue
        if not line.strip():
            flush()
            continue
        paragraph.append(line)
    flush()
    return builder.finish()


# -- HTML -----------------------------------------------------------------------------

# Not the head: HTML may leave it unclosed, and what it holds but the title (read
# apart) is scripts, styles and elements without text.
_SKIPPED = {"script", "style", "noscript", "template", "svg"}
_BLOCKS = {
    "p",
    "div",
    "li",
    "ul",
    "ol",
    "br",
    "tr",
    "table",
    "section",
    "article",
    "main",
    "aside",
    "header",
    "footer",
    "nav",
    "pre",
    "blockquote",
    "dd",
    "dt",
    "dl",
    "hr",
    "figure",
    "figcaption",
    "form",
    "body",
}
_HEADINGS = {f"h{level}": level for level in range(1, 7)}


class _HTMLText(HTMLParser):
    """Text of an HTML page: ``h1``-``h6`` as headings, block elements as paragraphs,
    ``script``, ``style`` and the like dropped, ``title`` kept apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _Builder("text/html")
        self.title: str | None = None
        self._text: list[str] = []
        self._skip = 0
        self._heading: int | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
            return
        if tag in _SKIPPED:
            self._skip += 1
            return
        if tag in _HEADINGS or tag in _BLOCKS:
            self._flush()
            if tag in _HEADINGS:
                self._heading = _HEADINGS[tag]

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
            return
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
            return
        if tag in _HEADINGS or tag in _BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data).strip() or None
        elif not self._skip:
            self._text.append(data)

    def _flush(self) -> None:
        text = "".join(self._text)
        self._text.clear()
        if self._heading is not None:
            self.builder.heading(self._heading, text)
            self._heading = None
        else:
            self.builder.paragraph(text)

    def close(self) -> None:
        super().close()
        self._flush()


def _html(text: str) -> ParsedDocument:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    document = parser.builder.finish()
    if parser.title:
        document.title = " ".join(parser.title.split())
    return document


# -- PDF --------------------------------------------------------------------------------


def _pdf(filename: str, data: bytes, max_pages: int, max_text_chars: int) -> ParsedDocument:
    """Each page's text, paragraphs apart by blank lines, under the heading "page N";
    read page by page, stopping at the page that takes the text past ``max_text_chars``."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    builder = _Builder("application/pdf")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocumentError(f"{filename!r} is an encrypted PDF")
        count = len(reader.pages)
        if count > max_pages:
            raise DocumentTooLargeError(
                f"{filename!r} has {count} pages: more than the limit of {max_pages}"
            )
        pages: list[str] = []
        chars = 0
        for number, pdf_page in enumerate(reader.pages, start=1):
            text = pdf_page.extract_text() or ""
            chars += len(text)
            if chars > max_text_chars:
                raise DocumentTooLargeError(
                    f"{filename!r} has more than {max_text_chars} characters of text (by page "
                    f"{number} of {count}): more than the limit of {max_text_chars}"
                )
            pages.append(text)
    except UnreadableDocumentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        # pypdf raises a mix of its own and builtin errors on damaged files.
        raise UnreadableDocumentError(f"{filename!r} is not a readable PDF: {exc}") from None
    for number, page in enumerate(pages, start=1):
        if not page.strip():
            continue
        builder.heading(1, f"page {number}")
        for paragraph in _BLANK.split(page.replace("\r\n", "\n")):
            builder.paragraph(paragraph)
    document = builder.finish()
    document.title = None  # "page 1" is no title
    if not document.blocks:
        raise UnreadableDocumentError(
            f"{filename!r} has no text layer (a scanned PDF needs OCR first)"
        )
    return document
