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
    document: ParsedDocument, *, chunk_words: int, min_words: int, max_words: int
) -> list[Chunk]:
    """The chunks of ``document``, in reading order."""
    chunks: list[Chunk] = []
    text = document.text
    for headings, group in groupby(document.blocks, key=lambda block: block.headings):
        spans = [span for block in group for span in _pieces(text, block, chunk_words, max_words)]
        for start, end in _pack(spans, chunk_words, min_words, max_words):
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
    packed = _pack(sentences, chunk_words, chunk_words, max_words)
    return [
        _Span(s, e, sum(x.words for x in sentences if s <= x.start and x.end <= e))
        for s, e in packed
    ]


def _pack(
    spans: list[_Span], chunk_words: int, min_words: int, max_words: int
) -> list[tuple[int, int]]:
    """Consecutive spans joined into runs of about ``chunk_words`` words."""
    runs: list[tuple[int, int]] = []
    current: list[_Span] = []
    words = 0
    for span in spans:
        if current and not (
            words + span.words <= chunk_words
            or (words < min_words and words + span.words <= max_words)
        ):
            runs.append((current[0].start, current[-1].end))
            current, words = [], 0
        current.append(span)
        words += span.words
    if current:
        runs.append((current[0].start, current[-1].end))
    return runs
