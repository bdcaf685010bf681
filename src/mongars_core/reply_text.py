"""Finishing generated text: stop repetition loops, end a cut reply cleanly.

Small models fall into loops (a poem's stanza again and again, until the length
limit) and get cut mid-word at ``max_new_tokens``. :class:`RepetitionGuard`
watches the stream and says when the reply starts repeating itself, keeping one
copy; :func:`end_cleanly` ends a cut reply on a sentence or an ellipsis. Both
work on text alone, so they serve every backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from mongars_core.types import FinishReason, GenerationRequest

INCOMPLETE_CHARACTER = "\ufffd"
"""What a decoder writes for the bytes of an unfinished character."""

MIN_UNIT_WORDS = 3
"""Lines or sentences shorter than this ("}", "Oh!") may repeat freely."""

KEEP_SENTENCES_ABOVE = 0.6
"""A cut reply ends at its last complete sentence when that keeps this share of it."""

_UNIT_END = re.compile(r"[.!?…][\"'’”)\]»*]*(?=\s)|\n")
_WORD = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"[.!?…][\"'’”)\]»*]*(?=\s|$)")
_CLOSING = set(".!?…)\"'’”»`*]")
_DANGLING = ",;:-–—([{"


@dataclass(frozen=True)
class _Unit:
    """A finished line or sentence of the reply: where it starts and its words."""

    start: int
    words: tuple[str, ...]


class RepetitionGuard:
    """Watches streamed reply text and says when it starts to loop.

    The text is split into lines and sentences as they finish. The reply loops
    when two sentences in a row repeat two earlier ones in the same order, or one
    sentence comes a third time; short ones (under :data:`MIN_UNIT_WORDS` words)
    don't count. :attr:`text` is then the reply up to where the repetition began.
    """

    def __init__(self) -> None:
        self._text = ""
        self._units: list[_Unit] = []
        self._unit_start = 0
        self.cut: int | None = None
        """Where the repetition began, once :meth:`feed` has seen it."""

    @property
    def text(self) -> str:
        """The reply so far, or up to the repetition when there was one."""
        return self._text if self.cut is None else self._text[: self.cut].rstrip()

    def feed(self, delta: str) -> bool:
        """Add streamed text; ``True`` when the reply has started repeating itself."""
        if self.cut is not None:
            return True
        self._text += delta
        # From the unfinished unit's start: its end may need the whitespace just fed.
        for match in _UNIT_END.finditer(self._text, self._unit_start):
            words = tuple(_WORD.findall(self._text[self._unit_start : match.end()].lower()))
            if words:
                self._units.append(_Unit(self._unit_start, words))
                if self._loops():
                    return True
            self._unit_start = match.end()
        return False

    def _loops(self) -> bool:
        units = self._units
        last = units[-1]
        if len(last.words) < MIN_UNIT_WORDS:
            return False
        if sum(unit.words == last.words for unit in units[:-1]) >= 2:
            self.cut = last.start
            return True
        if len(units) < 4 or len(units[-2].words) < MIN_UNIT_WORDS:
            return False
        pair = (units[-2].words, last.words)
        for first, second in pairwise(units[:-2]):
            if (first.words, second.words) == pair:
                self.cut = units[-2].start
                return True
        return False


def end_cleanly(text: str) -> str:
    """A reply cut at the length limit, ended on a whole sentence or an ellipsis.

    An unfinished character is dropped. When the last complete sentence keeps
    most of the text (:data:`KEEP_SENTENCES_ABOVE`), the fragment after it goes;
    otherwise the text ends with "…".
    """
    text = text.rstrip().rstrip(INCOMPLETE_CHARACTER).rstrip()
    if not text or text[-1] in _CLOSING:
        return text
    ends = [match.end() for match in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] >= KEEP_SENTENCES_ABOVE * len(text):
        return text[: ends[-1]]
    return text.rstrip(_DANGLING + " ").rstrip() + "…"


def looks_cut(text: str, max_new_tokens: int) -> bool:
    """For backends that don't say how generation ended: no closing punctuation
    and about ``max_new_tokens`` tokens (at ~4 characters a token)."""
    stripped = text.rstrip()
    return (
        bool(stripped)
        and stripped[-1] not in _CLOSING
        and len(stripped) / 4 >= 0.9 * max_new_tokens
    )


def finished_text(guard: RepetitionGuard, request: GenerationRequest) -> tuple[str, FinishReason]:
    """The generated text as the reply keeps it, and why generation ended.

    A loop keeps one copy. A reply cut at the length limit (as the backend
    reports, or as the text looks when it reports nothing) ends cleanly.
    """
    text = guard.text.strip()
    if guard.cut is not None:
        return text, "repetition"
    reason = request.outcome.finish_reason
    if reason is None:
        reason = "length" if looks_cut(text, request.max_new_tokens) else "stop"
    if reason == "length":
        return end_cleanly(text), reason
    return text.rstrip(INCOMPLETE_CHARACTER).rstrip(), reason


class StopStrings:
    """Cuts a stream of text deltas at the first stop string, which is left out.

    A delta is released only up to where a stop string could still begin (a
    stop string may arrive split over several deltas); :meth:`flush` releases
    what is held back when the stream ends without one. For a backend whose
    engine keeps the stop string in its output, so that every backend ends a
    reply the way Ollama's and OpenAI's do.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [stop for stop in stops if stop]
        self.stopped = False
        self._held = ""

    def feed(self, delta: str) -> str:
        """The part of ``delta`` (with what was held) that can be shown now; after a
        stop string, ``stopped`` is true and nothing more is released."""
        if self.stopped:
            return ""
        if not self.stops:
            return delta
        text = self._held + delta
        found = [index for stop in self.stops if (index := text.find(stop)) >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return text[: min(found)]
        keep = max(
            (
                size
                for stop in self.stops
                for size in range(1, len(stop))
                if text.endswith(stop[:size])
            ),
            default=0,
        )
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held


class OwedSpace:
    """Drops the whitespace that a continued reply's prefix already ends with.

    A local engine continues ``request.prefix`` from the word before its
    trailing space (``"The "`` would tokenize as ``"The"`` and a lone space,
    and the model would then write what it never would have); the next word's
    token brings its space again, which the caller already has.
    """

    def __init__(self, prefix: str) -> None:
        self.owed = prefix[len(prefix.rstrip()) :]

    def strip(self, delta: str) -> str:
        """``delta`` without the owed whitespace; once text came, nothing is owed."""
        if self.owed:
            if delta.startswith(self.owed):
                delta = delta[len(self.owed) :]
            elif delta[:1].isspace():
                delta = delta.lstrip()
            self.owed = "" if delta else self.owed
        return delta
