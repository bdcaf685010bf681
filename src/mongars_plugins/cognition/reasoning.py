"""The reasoning plugin: compute what a small model can't, and keep its reply honest.

A 135M-parameter model cannot multiply 17 by 23. :func:`mongars_reason` finds the
arithmetic (written or phrased in words), unit conversions, dates, times of day
and ages in the message and hands the model the answers as verified facts; a
word problem no rule reads is translated by the model into an expression that
the evaluator computes (:mod:`.word_problems`, settings ``MONGARS_REASONING__*``);
:func:`mongars_adapt_reply` then drops the reply's sentences that claim a
computed value the facts disprove (:mod:`.claims`), and prepends each answer
the reply doesn't state ("17 * 23 = 391."), so a user never sees a wrong or missing computed value.
"""

from __future__ import annotations

import re
from datetime import date

from mongars_core import hookimpl
from mongars_core.hookspecs import RegisterSection
from mongars_core.offload import run_by_size
from mongars_core.text import without_spans
from mongars_core.types import ReasoningHint, Turn
from mongars_plugins.cognition.claims import contradictions, written_numbers
from mongars_plugins.cognition.dates import WEEKDAYS, mentioned_dates
from mongars_plugins.cognition.evaluator import find_hints
from mongars_plugins.cognition.word_problems import REASONING, looks_like_word_problem, translate

CHECKED_KINDS = frozenset({"arithmetic", "unit", "date", "time", "age", "word_problem"})

_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_CLOCK = re.compile(r"(\d{2}):(\d{2})(?: \((\d{1,2}:\d{2} [ap]m)\))?")


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(REASONING)


@hookimpl(trylast=True)
async def mongars_reason(turn: Turn) -> list[ReasoningHint]:
    """Facts computed from ``turn.message``; a word problem no rule reads is translated
    by the model when ``reasoning.word_problems`` is on and the turn has services."""
    hints = await run_by_size(len(turn.message), find_hints, turn.message)
    if hints or turn.services is None or not looks_like_word_problem(turn.message):
        return hints
    settings = turn.services.settings.section(REASONING)
    if not settings.word_problems:
        return hints
    hint = await translate(turn.services.router, turn.message, settings)
    return [hint] if hint is not None else []


@hookimpl(tryfirst=True)
async def mongars_adapt_reply(turn: Turn, text: str) -> str | None:
    """Drop what contradicts the verified facts, prepend those the reply doesn't
    state (see :func:`correct`)."""
    if not turn.reasoning:
        return None
    return await run_by_size(len(text), correct, turn, text)


def correct(turn: Turn, text: str) -> str | None:
    """Drop the reply's sentences that contradict the verified facts of
    ``turn.reasoning``, then prepend each fact the reply doesn't state.

    Runs first among reply transforms (``tryfirst``) so it judges the model's
    own words, before other plugins reshape them. A sentence contradicts when
    it claims a computed value that disagrees with a fact or with the evaluator
    (:func:`.claims.contradictions`). A reply left starting with "= 36" gets
    the fact's expression in front.

    A number counts as stated when the reply holds it in any common form ("391",
    "391.0", "1,000" for 1000) to the precision the reply writes it, within 1%;
    it must appear more often than in the expression itself, so "4 / 2 = 3" does
    not pass for 2. A date counts when the reply names the day (ISO or with a month
    name), a weekday when the reply names it. Returns ``None`` when every fact is
    stated and none contradicted, so the reply is left as the model wrote it.
    """
    checked = [hint for hint in turn.reasoning if hint.kind in CHECKED_KINDS]
    kept = _complete_leading_equals(without_spans(text, contradictions(text, checked)), checked)
    missing = [hint for hint in checked if not states(kept, hint)]
    if not missing:
        return None if kept == text else kept
    facts = " ".join(f"{hint.as_fact()}." for hint in missing)
    return f"{facts}\n\n{kept}" if kept.strip() else facts


def _complete_leading_equals(text: str, hints: list[ReasoningHint]) -> str:
    """ "= 37.7778 °C." becomes "100 °F in °C = 37.7778 °C." when a fact says so."""
    stripped = text.lstrip()
    if not stripped.startswith("="):
        return text
    claimed = next(written_numbers(stripped), None)
    for hint in hints:
        expected = next(written_numbers(hint.result), None)
        if claimed is not None and expected is not None and expected.agrees_with(claimed):
            return f"{hint.expression} {stripped}"
    return text


def states(reply: str, hint: ReasoningHint) -> bool:
    """Whether ``reply`` states the result of ``hint``."""
    result = hint.result.strip()
    if hint.kind == "time" and (clock := _CLOCK.match(result)) is not None:
        return _names_time(reply, int(clock[1]), int(clock[2]))
    if _ISO_DAY.match(result):
        return _names_day(reply, date.fromisoformat(result[:10]))
    if result in WEEKDAYS:
        return re.search(rf"\b{result}\b", reply, re.IGNORECASE) is not None
    expected = next(written_numbers(result), None)
    if expected is None:
        return result.lower() in reply.lower()
    in_reply = sum(expected.agrees_with(number) for number in written_numbers(reply))
    in_expression = sum(expected.agrees_with(number) for number in written_numbers(hint.expression))
    return in_reply > in_expression


def _names_day(reply: str, day: date) -> bool:
    return any(
        (month, number) == (day.month, day.day) and year in {None, day.year}
        for year, month, number in mentioned_dates(reply)
    )


def _names_time(reply: str, hour: int, minute: int) -> bool:
    """Whether ``reply`` names the time of day ``hour:minute``, 24- or 12-hour."""
    twelve = hour % 12 or 12
    suffix = "pm" if hour >= 12 else "am"
    patterns = [
        rf"(?<!\d){hour:02d}:{minute:02d}(?!\d)",
        rf"(?<!\d){hour}:{minute:02d}(?!\d)",
        rf"(?<!\d){twelve}:{minute:02d}\s*{suffix[0]}\.?m\b",
    ]
    if minute == 0:
        patterns.append(rf"(?<!\d){twelve}\s*{suffix[0]}\.?m\b")
    return any(re.search(pattern, reply, re.IGNORECASE) for pattern in patterns)
