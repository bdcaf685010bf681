"""Speech planning: how a reply would be spoken, sentence by sentence.

:func:`plan_speech` cuts a reply into segments (sentences, and clauses of very
long sentences), estimates how long each takes to say and how long to pause
after it, and picks a tempo. It synthesises nothing: a text-to-speech plugin
can replace the bundled ``mongars_plan_speech`` (which is ``trylast``) or use
the plan to pace its own output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mongars_core import hookimpl
from mongars_core.hookspecs import RegisterSection
from mongars_core.offload import run_by_size
from mongars_core.text import CLOSERS, ends_sentence, whitespace_tokens
from mongars_core.types import SpeechPlan, SpeechSegment, Turn
from mongars_plugins.speech.settings import DEFAULT_WORDS_PER_SECOND, SPEECH

_CITATION = re.compile(r"\s*\[\d{1,3}\]")

MIN_TEMPO = 0.8
MAX_TEMPO = 1.2


# Sentences longer than this are cut at their commas and semicolons so that a
# listener (and a TTS engine) gets a breath; no piece is made shorter than
# MIN_CLAUSE_WORDS, which would sound choppy.
LONG_SENTENCE_WORDS = 25
MIN_CLAUSE_WORDS = 8

# Seconds of silence after a segment, by how it ends.
_PAUSES = {
    "paragraph": 0.9,
    "ellipsis": 0.7,
    "question": 0.6,
    "line": 0.5,
    "period": 0.5,
    "exclamation": 0.45,
    "none": 0.35,
    "semicolon": 0.3,
    "comma": 0.25,
}
# Commas inside a segment still cost a short breath when spoken.
_INNER_COMMA_SECONDS = 0.15

# Digits with the marks read aloud between them: "27,360.45", "3.14", "10:30".
_DIGIT_GROUP = re.compile(r"\d+(?:[.,:]\d+)*")
_SPOKEN_SYMBOLS = frozenset("%&+=@#$€£§°")
_LONG_WORD_LETTERS = 10

Ending = Literal[
    "paragraph",
    "ellipsis",
    "question",
    "line",
    "period",
    "exclamation",
    "none",
    "semicolon",
    "comma",
]


@dataclass
class _Piece:
    """A segment being built: its words and what follows it."""

    words: list[str] = field(default_factory=list)
    ending: Ending = "none"
    paragraph_after: bool = False


def _bare(token: str) -> str:
    """``token`` without closing quotes or brackets, to see its real last mark."""
    return token.rstrip(CLOSERS)


def _sentence_ending(token: str) -> Ending | None:
    bare = _bare(token)
    if bare.endswith(("…", "...")):
        return "ellipsis"
    if bare.endswith("?"):
        return "question"
    if bare.endswith("!"):
        return "exclamation"
    if bare.endswith("."):
        return "period"
    return None


def _clause_ending(token: str) -> Ending | None:
    bare = _bare(token)
    if bare.endswith((";", ":")):
        return "semicolon"
    if bare.endswith((",", "—", "–")):
        return "comma"
    return None


def _split_long(piece: _Piece) -> list[_Piece]:
    """Cut a long sentence at clause punctuation, keeping pieces of a sayable size."""
    if len(piece.words) <= LONG_SENTENCE_WORDS:
        return [piece]
    pieces: list[_Piece] = []
    current: list[str] = []
    for index, word in enumerate(piece.words):
        current.append(word)
        ending = _clause_ending(word)
        remaining = len(piece.words) - index - 1
        if ending and len(current) >= MIN_CLAUSE_WORDS and remaining >= MIN_CLAUSE_WORDS // 2:
            pieces.append(_Piece(current, ending))
            current = []
    pieces.append(_Piece(current, piece.ending, piece.paragraph_after))
    return pieces


def _pieces(text: str) -> list[_Piece]:
    """The sentences and lines of ``text``, cut as :func:`mongars_core.text.sentence_spans` does."""
    tokens = whitespace_tokens(text)
    pieces: list[_Piece] = []
    current = _Piece()
    for index, (token, _, _, breaks) in enumerate(tokens):
        next_token = tokens[index + 1].text if index + 1 < len(tokens) else None
        first = not current.words
        current.words.append(token)
        ending = _sentence_ending(token) if ends_sentence(token, next_token, first=first) else None
        if ending is not None or breaks or next_token is None:
            current.ending = ending or ("line" if breaks else "none")
            current.paragraph_after = breaks >= 2
            pieces.extend(_split_long(current))
            current = _Piece()
    return pieces


def _spoken_weight(word: str) -> float:
    """How many plain words saying ``word`` is worth: numbers and jargon take longer."""
    weight = 0.0
    for number in _DIGIT_GROUP.findall(word):
        digits = sum(ch.isdigit() for ch in number)
        separators = len(number) - digits
        # "2024" is "twenty twenty-four", "3.14" is "three point one four".
        weight += max(1.0, 0.6 * digits + 0.5 * separators)
    letters = sum(ch.isalpha() for ch in word)
    if letters:
        weight += 1.5 if letters > _LONG_WORD_LETTERS else 1.0
    weight += sum(1.0 for ch in word if ch in _SPOKEN_SYMBOLS)
    return weight


def _tempo(words: list[str], pieces: list[_Piece]) -> float:
    """1.0 for plain prose; slower for questions and dense text, faster for short cheers."""
    tempo = 1.0
    dense = sum(
        1
        for word in words
        if any(ch.isdigit() for ch in word) or sum(ch.isalpha() for ch in word) > _LONG_WORD_LETTERS
    )
    density = dense / len(words)
    tempo -= min(density, 0.5) * 0.3
    if len(words) > 60:
        tempo -= 0.03
    if any(piece.ending == "question" for piece in pieces):
        tempo -= 0.05
    if len(words) <= 12 and any(piece.ending == "exclamation" for piece in pieces):
        tempo += 0.1
    return round(min(max(tempo, MIN_TEMPO), MAX_TEMPO), 3)


def _pause(piece: _Piece) -> float:
    pause = _PAUSES[piece.ending]
    if piece.paragraph_after:
        pause = max(pause, _PAUSES["paragraph"])
    return pause


def plan_speech(
    text: str, turn_id: str, words_per_second: float = DEFAULT_WORDS_PER_SECOND
) -> SpeechPlan:
    """Cut ``text`` into spoken segments with durations, pauses and a tempo.

    ``words_per_second`` is the speaking rate at tempo 1.0. Durations are in
    seconds at the plan's tempo; the last segment has no pause after it.
    ``average_words_per_second`` counts speaking time only, not pauses.
    Blank text gives a plan without segments.
    """
    if words_per_second <= 0:
        raise ValueError(f"words_per_second must be positive, got {words_per_second}")
    # Source numbers ("[1]") are for the eye: a voice does not read them.
    words = _CITATION.sub("", text).split()
    if not words:
        return SpeechPlan(turn_id=turn_id, text=text)
    pieces = _pieces(_CITATION.sub("", text))
    tempo = _tempo(words, pieces)
    rate = words_per_second * tempo
    segments: list[SpeechSegment] = []
    for index, piece in enumerate(pieces):
        weight = sum(_spoken_weight(word) for word in piece.words)
        inner_commas = sum(1 for word in piece.words[:-1] if _clause_ending(word))
        duration = weight / rate + inner_commas * _INNER_COMMA_SECONDS
        last = index == len(pieces) - 1
        segments.append(
            SpeechSegment(
                text=" ".join(piece.words),
                estimated_duration=round(duration, 3),
                pause_after=0.0 if last else _pause(piece),
            )
        )
    speaking_time = sum(segment.estimated_duration for segment in segments)
    average = len(words) / speaking_time if speaking_time > 0 else 0.0
    return SpeechPlan(
        turn_id=turn_id,
        text=text,
        segments=segments,
        average_words_per_second=round(average, 3),
        tempo=tempo,
    )


def _words_per_second(turn: Turn) -> float:
    """The configured speaking rate; services or settings are absent in some tests."""
    settings = turn.services.settings if turn.services is not None else None
    if settings is None:
        return DEFAULT_WORDS_PER_SECOND
    rate: float = settings.section(SPEECH).words_per_second
    return rate


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(SPEECH)


@hookimpl(trylast=True)
async def mongars_plan_speech(turn: Turn, text: str) -> SpeechPlan:
    """The bundled planner: a plan for ``text`` at the configured speaking rate."""
    return await run_by_size(len(text), plan_speech, text, turn.turn_id, _words_per_second(turn))
