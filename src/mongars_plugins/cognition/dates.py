"""Date arithmetic found in free text, relative to a given day.

:func:`find_date_hints` reads "days between 2024-01-01 and 2024-03-01", "how many
days until 2026-12-25", "2024-02-28 plus 2 days", "what date is 30 days from
today" and "what day of the week is 2025-12-25". Dates are ISO (2024-03-01,
2024/03/01) or written with a month name ("March 3, 2025", "3 March 2025",
"March 3rd"); a date without a year is taken in the year of ``today``.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import date, timedelta

from mongars_core.types import ReasoningHint

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
}  # fmt: skip
_RELATIVE_DAYS = {"today": 0, "now": 0, "tomorrow": 1, "yesterday": -1}

_MONTH = "(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_ISO = r"\d{4}[-/]\d{1,2}[-/]\d{1,2}"
_MONTH_FIRST = rf"{_MONTH}\s+{_DAY}(?:,?\s+\d{{4}})?"
_DAY_FIRST = rf"{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+\d{{4}})?"
_LITERAL = rf"(?:{_ISO}|{_MONTH_FIRST}|{_DAY_FIRST})(?![\w-])"
_DATE = rf"(?<![\w-])(?:{_LITERAL}|(?:today|tomorrow|yesterday|now)(?!\w))"
_COUNT = r"\d{1,5}|" + "|".join(_NUMBER_WORDS)
_UNIT = r"(?:day|week|month|year)s?"

DATE_LITERAL = re.compile(rf"(?<![\w-]){_LITERAL}", re.IGNORECASE)
"""Written dates (ISO or with a month name); arithmetic must not read them as numbers."""

_ISO_PARTS = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")
_MONTH_FIRST_PARTS = re.compile(rf"({_MONTH})\s+(\d{{1,2}})\D*?(?:,?\s+(\d{{4}}))?$", re.IGNORECASE)
_DAY_FIRST_PARTS = re.compile(
    rf"(\d{{1,2}})\D*?\s+(?:of\s+)?({_MONTH})(?:,?\s+(\d{{4}}))?$", re.IGNORECASE
)

# A relative phrase ("in 3 weeks", "2 days ago") only asks for a date when the message
# talks about dates or the phrase directly follows "what is"; otherwise "I'll be back in
# 3 days" would earn a date nobody asked for.
_DATE_WORDS = re.compile(
    r"\b(?:dates?|when|what\s+day|which\s+day|weekday|day\s+of\s+the\s+week)\b", re.IGNORECASE
)
_WHAT_IS = re.compile(r"\bwhat(?:\s+is|\s+was|\s+will\s+be|'s|’s)\s*$", re.IGNORECASE)


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_BETWEEN = _compile(
    rf"days\s+(?:are\s+there\s+)?(?:between|from)\s+(?P<a>{_DATE})\s+"
    rf"(?:and|to|until|till)\s+(?P<b>{_DATE})"
)
_UNTIL = _compile(rf"days\s+(?:are\s+)?(?:left\s+)?(?:until|till|to)\s+(?P<a>{_DATE})")
_SINCE = _compile(rf"days\s+(?:have\s+passed\s+)?since\s+(?P<a>{_DATE})")
_PLUS = _compile(
    rf"(?P<a>{_DATE})\s*(?P<op>\+|-|−|plus|minus)\s*(?P<n>{_COUNT})\s+(?P<u>{_UNIT})\b"
)
_AFTER = _compile(
    rf"(?<!\w)(?P<n>{_COUNT})\s+(?P<u>{_UNIT})\s+(?P<op>after|from|before)\s+(?P<a>{_DATE})"
)
_IN = _compile(rf"\bin\s+(?P<n>{_COUNT})\s+(?P<u>{_UNIT})\b")
_AGO = _compile(rf"(?<!\w)(?P<n>{_COUNT})\s+(?P<u>{_UNIT})\s+ago\b")
_WEEKDAY = _compile(
    r"(?:what|which)\s+(?:day(?:\s+of\s+the\s+week)?|weekday)\s+"
    r"(?:(?:is|was|will\s+be|falls\s+on)\s+)?(?:it\s+)?(?:on\s+)?"
    rf"(?P<a>{_DATE})"
)


_Rule = Callable[[re.Match[str], date], ReasoningHint | None]


def weekday_name(day: date) -> str:
    return WEEKDAYS[day.weekday()]


def format_date(day: date) -> str:
    """``2024-03-01 (Friday)``: ISO so it can't be misread, with the weekday."""
    return f"{day.isoformat()} ({weekday_name(day)})"


def parse_date(text: str, today: date, *, roll_forward: bool = False) -> date | None:
    """The day ``text`` names, or ``None`` if it names no real day.

    A date without a year falls in ``today``'s year, or with ``roll_forward`` on
    its next occurrence (so "days until March 3" never counts backwards).
    """
    words = " ".join(text.lower().split())
    if words in _RELATIVE_DAYS:
        return today + timedelta(days=_RELATIVE_DAYS[words])
    parts = mentioned_date(words)
    if parts is None:
        return None
    year, month, day = parts
    try:
        found = date(year or today.year, month, day)
        if year is None and roll_forward and found < today:
            found = date(today.year + 1, month, day)
    except ValueError:
        return None
    return found


def mentioned_date(text: str) -> tuple[int | None, int, int] | None:
    """``(year or None, month, day)`` of one written date, without checking it exists."""
    if match := _ISO_PARTS.fullmatch(text.strip()):
        return int(match[1]), int(match[2]), int(match[3])
    if match := _MONTH_FIRST_PARTS.match(text.strip()):
        month, day, year = match[1], match[2], match[3]
    elif match := _DAY_FIRST_PARTS.match(text.strip()):
        day, month, year = match[1], match[2], match[3]
    else:
        return None
    return (int(year) if year else None), _MONTHS[month.lower().rstrip(".")], int(day)


def mentioned_dates(text: str) -> list[tuple[int | None, int, int]]:
    """Every written date in ``text`` as ``(year or None, month, day)``."""
    parts = (mentioned_date(match[0]) for match in DATE_LITERAL.finditer(text))
    return [found for found in parts if found is not None]


def shift(day: date, count: int, unit: str) -> date:
    """``day`` moved by ``count`` units; month and year steps clamp to the month's end.

    Raises ``OverflowError`` or ``ValueError`` outside the years 1 to 9999.
    """
    unit = unit.lower().rstrip("s")
    if unit == "day":
        return day + timedelta(days=count)
    if unit == "week":
        return day + timedelta(weeks=count)
    months = count * (12 if unit == "year" else 1)
    year, month_index = divmod(day.month - 1 + months, 12)
    year += day.year
    last_day = calendar.monthrange(year, month_index + 1)[1] if 1 <= year <= 9999 else 31
    return date(year, month_index + 1, min(day.day, last_day))


def _count(text: str) -> int:
    return _NUMBER_WORDS.get(text.lower()) or int(text)


def _plural(count: int, unit: str) -> str:
    unit = unit.lower().rstrip("s")
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def find_date_hints(text: str, today: date) -> list[tuple[int, int, ReasoningHint]]:
    """Date computations in ``text`` as ``(start, end, hint)``, in order of appearance."""
    found: list[tuple[int, int, ReasoningHint]] = []
    # Explicit offsets first, so "3 days after 2024-01-01" is not read as "days after ...".
    rules: list[tuple[re.Pattern[str], _Rule]] = [
        (_PLUS, _offset),
        (_AFTER, _offset),
        (_BETWEEN, _between),
        (_UNTIL, _until),
        (_SINCE, _since),
        (_IN, _offset),
        (_AGO, _offset),
        (_WEEKDAY, _weekday),
    ]
    for pattern, compute in rules:
        for match in pattern.finditer(text):
            if any(start < match.end() and match.start() < end for start, end, _ in found):
                continue
            if _is_relative(match) and not (
                _DATE_WORDS.search(text) or _WHAT_IS.search(text[: match.start()])
            ):
                continue
            try:
                hint = compute(match, today)
            except (OverflowError, ValueError):
                # Outside the calendar (year 10000, day 0): nothing true to tell the model.
                continue
            if hint is not None:
                found.append((match.start(), match.end(), hint))
    return sorted(found, key=lambda item: item[0])


def _is_relative(match: re.Match[str]) -> bool:
    if match.re is _IN or match.re is _AGO:
        return True
    return match.re is _AFTER and match["a"].lower() in _RELATIVE_DAYS


def _between(match: re.Match[str], today: date) -> ReasoningHint | None:
    first, second = parse_date(match["a"], today), parse_date(match["b"], today)
    if first is None or second is None:
        return None
    return ReasoningHint(
        kind="date",
        expression=f"days between {first.isoformat()} and {second.isoformat()}",
        result=_plural(abs((second - first).days), "days"),
    )


def _until(match: re.Match[str], today: date) -> ReasoningHint | None:
    target = parse_date(match["a"], today, roll_forward=True)
    if target is None:
        return None
    days = (target - today).days
    return ReasoningHint(
        kind="date",
        expression=f"days from {today.isoformat()} until {target.isoformat()}",
        result=_plural(days, "days") if days >= 0 else f"{_plural(-days, 'days')} ago",
    )


def _since(match: re.Match[str], today: date) -> ReasoningHint | None:
    start = parse_date(match["a"], today)
    if start is None:
        return None
    return ReasoningHint(
        kind="date",
        expression=f"days from {start.isoformat()} until {today.isoformat()}",
        result=_plural((today - start).days, "days"),
    )


def _offset(match: re.Match[str], today: date) -> ReasoningHint | None:
    groups = match.groupdict()
    start = parse_date(groups["a"], today) if groups.get("a") else today
    if start is None:
        return None
    count = _count(match["n"])
    operation = (groups.get("op") or "+").lower()
    backwards = operation in {"-", "−", "minus", "before"} or match.re is _AGO
    end = shift(start, -count if backwards else count, match["u"])
    sign = "-" if backwards else "+"
    return ReasoningHint(
        kind="date",
        expression=f"{start.isoformat()} {sign} {_plural(count, match['u'])}",
        result=format_date(end),
    )


def _weekday(match: re.Match[str], today: date) -> ReasoningHint | None:
    day = parse_date(match["a"], today)
    if day is None:
        return None
    return ReasoningHint(
        kind="date", expression=f"day of the week of {day.isoformat()}", result=weekday_name(day)
    )
