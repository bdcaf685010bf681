"""Structure-aware chunking: passages that stay inside one section.

A chunk never crosses a heading: each section's paragraphs are packed into
chunks of about ``chunk_words`` words (a chunk under ``min_chunk_words`` takes
in the next paragraph as long as it stays within ``max_chunk_words``). A
paragraph longer than ``max_chunk_words`` is cut between sentences, and only
a sentence longer than that on its own is cut between words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby

from mongars_plugins.knowledge.errors import DocumentTooLargeError
from mongars_plugins.knowledge.parsing import Block, ParsedDocument

HEADING_SEPARATOR = " › "

_SENTENCE = re.compile(r"[^.!?…]+(?:[.!?…]+[\"'”’)\]]*|$)\s*")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    """A passage of a document: its text, place, section and span in the document's text."""

    text: str
    position: int
    heading: str
    start: int
    end: int

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    words: int


def chunk_document(
    document: ParsedDocument,
    *,
    chunk_words: int,
    min_words: int,
    max_words: int,
    max_chunks: int | None = None,
    name: str = "the document",
) -> list[Chunk]:
    """The chunks of ``document``, in reading order.

    With ``max_chunks``, a document that makes more chunks than that raises
    :class:`DocumentTooLargeError` (naming it ``name``) as soon as it passes the limit,
    before the rest of it is chunked. The work is linear in the document's length."""
    chunks: list[Chunk] = []
    text = document.text
    for headings, group in groupby(document.blocks, key=lambda block: block.headings):
        spans = [span for block in group for span in _pieces(text, block, chunk_words, max_words)]
        for start, end, _ in _pack(spans, chunk_words, min_words, max_words):
            if max_chunks is not None and len(chunks) >= max_chunks:
                raise DocumentTooLargeError(
                    f"{name!r} makes more than {max_chunks} chunks: more than the limit of "
                    f"{max_chunks}"
                )
            chunks.append(
                Chunk(
                    text=text[start:end].strip(),
                    position=len(chunks),
                    heading=HEADING_SEPARATOR.join(headings),
                    start=start,
                    end=end,
                )
            )
    return chunks


def _pieces(text: str, block: Block, chunk_words: int, max_words: int) -> list[_Span]:
    """``block`` as one span, or, when longer than ``max_words``, as spans of sentences
    (packed to ``chunk_words``); only a sentence too long alone is cut between words."""
    words = len(block.text.split())
    if words <= max_words:
        return [_Span(block.start, block.end, words)]
    sentences: list[_Span] = []
    for match in _SENTENCE.finditer(block.text):
        sentence = match.group(0)
        if not sentence.strip():
            continue
        start = block.start + match.start()
        count = len(sentence.split())
        if count <= max_words:
            sentences.append(_Span(start, start + len(sentence.rstrip()), count))
            continue
        tokens = list(_WORD.finditer(sentence))
        for first in range(0, len(tokens), chunk_words):
            piece = tokens[first : first + chunk_words]
            sentences.append(_Span(start + piece[0].start(), start + piece[-1].end(), len(piece)))
    return [_Span(s, e, n) for s, e, n in _pack(sentences, chunk_words, chunk_words, max_words)]


def _pack(
    spans: list[_Span], chunk_words: int, min_words: int, max_words: int
) -> list[tuple[int, int, int]]:
    """Consecutive spans joined into runs of about ``chunk_words`` words: each run's
    start, end and words, in one pass."""
    runs: list[tuple[int, int, int]] = []
    first: _Span | None = None
    last: _Span | None = None
    words = 0
    for span in spans:
        if (
            first is not None
            and last is not None
            and not (
                words + span.words <= chunk_words
                or (words < min_words and words + span.words <= max_words)
            )
        ):
            runs.append((first.start, last.end, words))
            first, words = None, 0
        if first is None:
            first = span
        last = span
        words += span.words
    if first is not None and last is not None:
        runs.append((first.start, last.end, words))
    return runs
