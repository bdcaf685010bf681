"""The reasoning plugin: compute what a small model can't, and keep its reply honest.

A 135M-parameter model cannot multiply 17 by 23. :func:`mongars_reason` finds the
arithmetic, unit conversions and date arithmetic in the message and hands the
model the answers as verified facts; :func:`mongars_adapt_reply` then checks the
reply states each answer and prepends the ones it doesn't ("17 * 23 = 391."),
so a user never sees a wrong or missing computed value on its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

from mongars_core import hookimpl
from mongars_core.offload import run_by_size
from mongars_core.types import ReasoningHint, Turn
from mongars_plugins.cognition.dates import WEEKDAYS, mentioned_dates
from mongars_plugins.cognition.evaluator import find_hints

CHECKED_KINDS = frozenset({"arithmetic", "unit", "date"})

RELATIVE_TOLERANCE = Fraction(1, 100)
"""A reply's number may differ from the fact by 1% ("3.1 miles" for 3.10686) and no more."""

_NUMBER = re.compile(
    r"(?<![\w.])-?(?P<digits>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<decimals>\d+))?"
    r"(?:e(?P<exponent>[+-]?\d{1,3}))?",
    re.IGNORECASE,
)
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@hookimpl(trylast=True)
async def mongars_reason(turn: Turn) -> list[ReasoningHint]:
    """Arithmetic, unit and date facts computed from ``turn.message``."""
    return await run_by_size(len(turn.message), find_hints, turn.message)


@hookimpl(tryfirst=True)
async def mongars_adapt_reply(turn: Turn, text: str) -> str | None:
    """Prepend the verified facts the reply doesn't state (see :func:`correct`)."""
    if not turn.reasoning:
        return None
    return await run_by_size(len(text), correct, turn, text)


def correct(turn: Turn, text: str) -> str | None:
    """Prepend each verified fact of ``turn.reasoning`` that the reply doesn't state.

    Runs first among reply transforms (``tryfirst``) so it judges the model's
    own words, before other plugins reshape them.

    A number counts as stated when the reply holds it in any common form ("391",
    "391.0", "1,000" for 1000) to the precision the reply writes it, within 1%;
    it must appear more often than in the expression itself, so "4 / 2 = 3" does
    not pass for 2. A date counts when the reply names the day (ISO or with a month
    name), a weekday when the reply names it. Returns ``None`` when every fact is
    stated, so the reply is left as the model wrote it.
    """
    missing = [
        hint for hint in turn.reasoning if hint.kind in CHECKED_KINDS and not states(text, hint)
    ]
    if not missing:
        return None
    facts = " ".join(f"{hint.as_fact()}." for hint in missing)
    return f"{facts}\n\n{text}" if text.strip() else facts


def states(reply: str, hint: ReasoningHint) -> bool:
    """Whether ``reply`` states the result of ``hint``."""
    result = hint.result.strip()
    if _ISO_DAY.match(result):
        return _names_day(reply, date.fromisoformat(result[:10]))
    if result in WEEKDAYS:
        return re.search(rf"\b{result}\b", reply, re.IGNORECASE) is not None
    expected = next(_numbers(result), None)
    if expected is None:
        return result.lower() in reply.lower()
    in_reply = sum(expected.agrees_with(number) for number in _numbers(reply))
    in_expression = sum(expected.agrees_with(number) for number in _numbers(hint.expression))
    return in_reply > in_expression


@dataclass(frozen=True)
class _WrittenNumber:
    """A number as written, with half a unit of its last written digit as its precision."""

    value: Fraction
    half_unit: Fraction

    def agrees_with(self, other: _WrittenNumber) -> bool:
        difference = abs(self.value - other.value)
        return difference <= max(
            self.half_unit, other.half_unit
        ) and difference <= RELATIVE_TOLERANCE * abs(self.value)


def _numbers(text: str) -> Iterator[_WrittenNumber]:
    for match in _NUMBER.finditer(text.replace("−", "-")):
        decimals = match["decimals"] or ""
        exponent = int(match["exponent"] or 0)
        mantissa = Fraction(f"{match['digits'].replace(',', '')}.{decimals or '0'}")
        scale = Fraction(10) ** exponent
        sign = -1 if match[0].startswith("-") else 1
        yield _WrittenNumber(
            value=sign * mantissa * scale, half_unit=scale / (2 * 10 ** len(decimals))
        )


def _names_day(reply: str, day: date) -> bool:
    return any(
        (month, number) == (day.month, day.day) and year in {None, day.year}
        for year, month, number in mentioned_dates(reply)
    )
