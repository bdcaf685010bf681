"""Plain-text helpers shared by the core and plugins: folding, words, numbers, sentences.

Every plugin that reads a message or a reply needs the same few things, and
they must agree: a memory is found by the words a question holds only if both
are cut and folded the same way. This module has them once, using nothing but
the standard library, so any plugin may import it.

* Folding: :func:`fold_accents`, :func:`fold` (case, accents, apostrophes) and
  :func:`fingerprint` (also punctuation and spacing), for comparing texts.
* Words: :data:`WORD` / :func:`word_tokens` (words as written, with inner
  apostrophes, optionally hyphens) and :func:`search_terms` (folded letter and
  digit runs, what a lexical search matches on); :func:`word_set` for word lists.
* Numbers: :data:`DECIMAL` (a regular expression fragment) and :data:`NUMBER`.
* Sentences: :func:`sentence_spans` / :func:`sentences`, built on
  :func:`whitespace_tokens` and :func:`ends_sentence`, which know that "Dr.",
  "e.g.", "J." and "3.14" end no sentence; :func:`without_spans` drops some.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

__all__ = [
    "CLOSERS",
    "DECIMAL",
    "NUMBER",
    "PARAGRAPH_SEPARATOR",
    "WORD",
    "WhitespaceToken",
    "ends_sentence",
    "fingerprint",
    "fold",
    "fold_accents",
    "search_terms",
    "sentence_spans",
    "sentences",
    "whitespace_tokens",
    "without_spans",
    "word_set",
    "word_tokens",
]

# -- folding ------------------------------------------------------------------------------


# The combining marks of Latin accents (U+0300-U+036F, all with a combining
# class but the grapheme joiner U+034F): what unicodedata.combining finds in
# accented Latin text, removed in one pass.
_LATIN_MARKS = re.compile("[\u0300-\u034e\u0350-\u036f]")


def fold_accents(text: str) -> str:
    """``text`` without diacritics ("Amélie" -> "Amelie"), case kept.

    Compatibility forms are folded too (NFKD: "ﬁ" -> "fi", "²" -> "2").
    """
    if text.isascii():  # nothing to fold, and the common case on the recall path
        return text
    folded = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text))
    if folded.isascii():  # accented Latin text: done without a loop over characters
        return folded
    return "".join(char for char in folded if not unicodedata.combining(char))


def fold(text: str) -> str:
    """``text`` case-folded, without accents, with typographic apostrophes made plain.

    The form to compare a word with a word list: "L’Été" -> "l'ete".
    """
    return fold_accents(text.casefold()).replace("’", "'")


_ALNUM_RUN = re.compile(r"[^\W_]+")


def fingerprint(text: str) -> str:
    """``text`` with case, accents, punctuation and spacing folded away.

    Two wordings with the same fingerprint say the same thing ("My sister is
    Amélie!" and "my sister is amelie"); a topic is mentioned by a text when its
    fingerprint is a run of whole words of the text's.
    """
    return " ".join(_ALNUM_RUN.findall(fold(text)))


# -- words --------------------------------------------------------------------------------


def word_set(words: str) -> frozenset[str]:
    """A word list written as one space-separated string, which is easier to read and edit."""
    return frozenset(words.split())


WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
"""A word as written: letters and digits, with inner apostrophes ("don't", "l’été").

Underscores are not part of words, so markdown emphasis ("_tone_") leaves the
word alone."""

_HYPHENATED_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def word_tokens(text: str, *, hyphens: bool = False) -> list[str]:
    """The words of ``text`` in order, as written (see :data:`WORD`).

    With ``hyphens`` a hyphenated word stays one ("est-ce", "peux-tu"), which
    is what rules about French questions need.
    """
    return (_HYPHENATED_WORD if hyphens else WORD).findall(text)


_TERM = re.compile(r"[^\W\d_]{2,}|\d+")


def search_terms(text: str) -> list[str]:
    """What a lexical search matches on: folded runs of two letters or more, and digit runs.

    Apostrophes and hyphens split ("dog's" -> "dog"), so a possessive still
    finds the plain word. Stop words are the caller's business.
    """
    return _TERM.findall(fold_accents(text.casefold()))


# -- numbers ------------------------------------------------------------------------------

DECIMAL = r"(?:\d{1,3}(?:,\d{3})+(?!\d|,\d)|\d+)(?:\.\d+)?|(?<!\d)\.\d+"
"""A regular expression fragment: an unsigned decimal as written ("1,000", "3.5", ".5").

Commas only count as thousands separators in whole groups of three: "12,5"
(French 12.5) and "1,2,3" (a list) are several numbers. Embed it as
``(?:{DECIMAL})``."""

NUMBER = re.compile(
    rf"(?<![\w.])(?P<sign>[-−])?(?P<mantissa>{DECIMAL})(?:e(?P<exponent>[+-]?\d{{1,3}}))?",
    re.IGNORECASE,
)
"""A number as written, not inside a word: optional sign (``-`` or ``−``), a
:data:`DECIMAL` and an optional exponent ("-3.5", "1,000", "1e6"). Groups:
``sign``, ``mantissa``, ``exponent``."""

# -- sentences ----------------------------------------------------------------------------

PARAGRAPH_SEPARATOR = "\u2029"
"""Unicode's paragraph separator; it counts as two line breaks."""

# What str.splitlines treats as a line break, but the paragraph separator.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028]")
_NON_SPACE = re.compile(r"\S+")
_SPACE_BEFORE_LINE_BREAK = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}")
_OPENERS = "\"'“‘«([{"
CLOSERS = "\"'”’»)]}"
"""Closing quotes and brackets, which may follow the mark that ends a sentence."""
_SENTENCE_MARKS = (".", "!", "?", "…")


# Abbreviations whose final dot never ends a sentence ...
_ABBREVIATIONS = word_set(
    "e.g. i.e. dr. mr. mrs. ms. prof. st. vs. jr. sr. sra. fig. approx. cf. mt. pp. vol. mme. mlle."
)
# ... and those that end one only when a capitalised word follows ("No. 5"
# goes on, "I said no. Then" does not).
_SOMETIMES_FINAL = word_set("etc. inc. ltd. co. no. a.m. p.m. u.s. u.k.")
_INITIAL = re.compile(r"^[A-Z]\.$")
_LIST_MARKER = re.compile(r"^\d{1,3}[.)]$")


class WhitespaceToken(NamedTuple):
    """A whitespace-separated token of a text, where it is, and the line breaks after it."""

    text: str
    start: int
    end: int
    line_breaks: int
    """Line breaks between this token and the next (or the end); a paragraph
    separator counts two."""


def whitespace_tokens(text: str) -> list[WhitespaceToken]:
    """The tokens ``str.split`` gives, with their offsets and the line breaks after each."""
    matches = list(_NON_SPACE.finditer(text))
    tokens: list[WhitespaceToken] = []
    for index, match in enumerate(matches):
        gap_end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        gap = text[match.end() : gap_end]
        breaks = 0
        if gap != " ":
            breaks = len(_LINE_BREAK.findall(gap)) + 2 * gap.count(PARAGRAPH_SEPARATOR)
        tokens.append(WhitespaceToken(match[0], match.start(), match.end(), breaks))
    return tokens


def ends_sentence(token: str, next_token: str | None, *, first: bool = False) -> bool:
    """Whether a sentence ends with the whitespace-separated ``token``.

    It must end in ``.``, ``!``, ``?`` or ``…`` (closing quotes and brackets
    aside). A final dot ends nothing after an abbreviation ("Dr.", "e.g."), an
    initial ("J.") or, for the ``first`` token of a sentence, a list marker
    ("1."); after "etc." or "No." only when ``next_token`` is capitalised or
    there is none.
    """
    bare = token.rstrip(CLOSERS)
    if not bare.endswith(_SENTENCE_MARKS):
        return False
    if not bare.endswith(".") or bare.endswith("..."):
        return True
    word = bare.lstrip(_OPENERS)
    lowered = word.casefold()
    if lowered in _ABBREVIATIONS or _INITIAL.match(word):
        return False
    if first and _LIST_MARKER.match(word):
        return False  # "1. First step" is a list marker, not a sentence.
    if lowered in _SOMETIMES_FINAL:
        return next_token is None or next_token.lstrip(_OPENERS)[:1].isupper()
    return True


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``; a line break also ends one.

    Each span runs from the sentence's first non-space character to its last,
    so the spans of a text never hold its spacing (see :func:`ends_sentence`).
    """
    tokens = whitespace_tokens(text)
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for index, token in enumerate(tokens):
        first = start is None
        if start is None:
            start = token.start
        next_token = tokens[index + 1].text if index + 1 < len(tokens) else None
        if (
            token.line_breaks
            or next_token is None
            or ends_sentence(token.text, next_token, first=first)
        ):
            spans.append((start, token.end))
            start = None
    return spans


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`), without surrounding space."""
    return [text[start:end] for start, end in sentence_spans(text)]


def without_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` without the ordered, disjoint ``spans`` (sentences, say), its spacing
    tidied where they were: no doubled spaces, no more than one blank line, no
    space at either end. ``text`` itself when there are no spans."""
    if not spans:
        return text
    pieces: list[str] = []
    position = 0
    for start, end in spans:
        pieces.append(text[position:start])
        position = end
    pieces.append(text[position:])
    kept = "".join(pieces)
    kept = _SPACE_BEFORE_LINE_BREAK.sub("\n", kept)
    kept = _BLANK_LINES.sub("\n\n", kept)
    return _INNER_SPACES.sub(" ", kept).strip()
