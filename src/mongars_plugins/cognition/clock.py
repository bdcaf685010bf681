"""Times of day moved by a duration, and ages: "45 minutes after 10:30", "born in 1990".

:func:`find_clock_hints` reads "what time is it 45 minutes after 10:30",
"2 hours and 15 minutes after 9pm", "10:30 plus 45 minutes", "it's 9:15, what
time will it be in 2 hours"; the result is a 24-hour time, with the 12-hour
form when the question used one, and says when it falls on another day.
:func:`find_age_hints` reads "how old is someone born in 1990" and "I was born
on 12 March 1985, how old am I", relative to ``today``.
"""

from __future__ import annotations

import re
from datetime import date

from mongars_core.types import ReasoningHint
from mongars_plugins.cognition.dates import DATE_LITERAL, parse_date

_TIME = (
    r"(?<![\w:.])(?:(?P<{p}h>\d{{1,2}}):(?P<{p}m>\d{{2}})(?!:?\d)\s*(?P<{p}ap>[ap]\.?m\.?)?"
    r"|(?P<{p}h12>\d{{1,2}})\s*(?P<{p}ap12>[ap]\.?m\.?|o'?clock)"
    r"|(?P<{p}word>noon|midday|midnight))(?![\w])"
)
_AMOUNT = r"\d+(?:\.\d+)?"
_DURATION = (
    r"(?P<dur>(?:(?:an?|one)\s+hour\s+and\s+a\s+half|half\s+an\s+hour|(?:a\s+)?quarter\s+of\s+an\s+hour"
    rf"|(?:(?:{_AMOUNT}|an?)\s*(?:hours?|hrs?|h)\b(?:\s*,?\s*(?:and\s+)?{_AMOUNT}\s*"
    rf"(?:minutes?|mins?|m)\b)?)|{_AMOUNT}\s*(?:minutes?|mins?)\b))"
)
_AFTER = re.compile(
    rf"{_DURATION}\s+(?P<op>after|from|past|later\s+than|before|earlier\s+than|until|to)\s+"
    + _TIME.format(p="t"),
    re.IGNORECASE,
)
_PLUS = re.compile(
    _TIME.format(p="t") + rf"\s*(?P<op>\+|-|plus|minus|and)\s*{_DURATION}", re.IGNORECASE
)
_IN = re.compile(
    rf"(?:\bin\s+(?:another\s+)?){_DURATION}|(?<!\w){_DURATION.replace('?P<dur>', '?P<later>')}"
    r"\s+(?:later|from\s+now)\b",
    re.IGNORECASE,
)
_NOW = re.compile(
    r"\b(?:it\s*(?:is|'s|’s)|now|the\s+time\s+is|at|starts?\s+at|leave\s+at)\s+(?:now\s+)?"
    + _TIME.format(p="t"),
    re.IGNORECASE,
)
_ASKS_TIME = re.compile(r"\bwhat\s+time\b|\bwhen\b|\?|\bcalculate\b|\bwhat(?:'s|\s+is)\b", re.I)
_MINUTES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:minutes?|mins?|m)\b", re.IGNORECASE)
_HOURS = re.compile(r"(\d+(?:\.\d+)?|an?)\s*(?:hours?|hrs?|h)\b", re.IGNORECASE)
_DAY_MINUTES = 24 * 60
_MAX_MINUTES = 100 * _DAY_MINUTES


def _minutes_of_day(match: re.Match[str], prefix: str = "t") -> tuple[int, bool] | None:
    """Minutes since midnight of the time matched, and whether it was written 12-hour."""
    groups = match.groupdict()
    word = groups.get(f"{prefix}word")
    if word:
        return (0 if word.lower() == "midnight" else 12 * 60), True
    hour_text = groups.get(f"{prefix}h") or groups.get(f"{prefix}h12")
    if hour_text is None:
        return None
    hour, minute = int(hour_text), int(groups.get(f"{prefix}m") or 0)
    suffix = (groups.get(f"{prefix}ap") or groups.get(f"{prefix}ap12") or "").lower()
    twelve = suffix.startswith(("a", "p"))
    if minute > 59 or hour > 23 or (twelve and not 1 <= hour <= 12):
        return None
    if suffix.startswith("o") and not 1 <= hour <= 12:
        return None
    if twelve:
        hour = hour % 12 + (12 if suffix.startswith("p") else 0)
    return hour * 60 + minute, twelve


def _duration_minutes(text: str) -> int | None:
    lower = " ".join(text.lower().split())
    if "half an hour" in lower and "hour and" not in lower:
        return 30
    if "quarter of an hour" in lower:
        return 15
    if lower.endswith("hour and a half"):
        return 90
    total = 0.0
    if (hours := _HOURS.search(lower)) is not None:
        total += 60 * (1 if hours[1] in {"a", "an"} else float(hours[1]))
    rest = lower[hours.end() :] if hours is not None else lower
    if (minutes := _MINUTES.search(rest)) is not None:
        total += float(minutes[1])
    if total <= 0 or total > _MAX_MINUTES or not float(total).is_integer():
        return None
    return int(total)


def _describe_duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append(f"{hours} hour" + ("s" if hours != 1 else ""))
    if rest:
        parts.append(f"{rest} minute" + ("s" if rest != 1 else ""))
    return " ".join(parts)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _twelve_hour(minutes: int) -> str:
    hour, minute = divmod(minutes, 60)
    return f"{hour % 12 or 12}:{minute:02d} {'pm' if hour >= 12 else 'am'}"


def _hint(start: int, duration: int, backwards: bool, twelve: bool) -> ReasoningHint:
    end = start - duration if backwards else start + duration
    days, minute_of_day = divmod(end, _DAY_MINUTES)
    result = _clock(minute_of_day)
    if twelve:
        result += f" ({_twelve_hour(minute_of_day)})"
    if days:
        unit = "day" if abs(days) == 1 else "days"
        result += f", {abs(days)} {unit} {'later' if days > 0 else 'earlier'}"
    sign = "-" if backwards else "+"
    return ReasoningHint(
        kind="time",
        expression=f"{_clock(start)} {sign} {_describe_duration(duration)}",
        result=result,
    )


def find_clock_hints(text: str) -> list[tuple[int, int, ReasoningHint]]:
    """Times of day moved by a duration in ``text``, as ``(start, end, hint)``.

    Only in a message that asks ("what time", "when", a question mark): "I'll
    call 10 minutes after 9pm." earns nothing.
    """
    if not _ASKS_TIME.search(text):
        return []
    found: list[tuple[int, int, ReasoningHint]] = []
    for pattern in (_AFTER, _PLUS):
        for match in pattern.finditer(text):
            if any(start < match.end() and match.start() < end for start, end, _ in found):
                continue
            time = _minutes_of_day(match)
            duration = _duration_minutes(match["dur"])
            if time is None or duration is None:
                continue
            op = match["op"].lower()
            backwards = op in {"before", "earlier than", "until", "to", "-", "minus"}
            found.append((match.start(), match.end(), _hint(time[0], duration, backwards, time[1])))
    if not found and (now := _NOW.search(text)) is not None:
        later = _IN.search(text)
        time = _minutes_of_day(now)
        if later is not None and time is not None:
            duration = _duration_minutes(later["dur"] or later["later"])
            if duration is not None:
                span = (min(now.start(), later.start()), max(now.end(), later.end()))
                found.append((*span, _hint(time[0], duration, False, time[1])))
    return sorted(found, key=lambda item: item[0])


# -- ages --------------------------------------------------------------------------------

_HOW_OLD = re.compile(
    r"\bhow\s+old\b|\bwhat(?:'s|\s+is|\s+was|\s+will\s+be)\s+(?:my|his|her|their|the)\s+age\b|\bage\s+of\b",
    re.I,
)
_BORN = re.compile(
    r"\bborn\s+(?:on\s+|in\s+)?(?:the\s+)?(?P<when>"
    + DATE_LITERAL.pattern[len(r"(?<![\w-])") :]
    + r"|(?P<year>\d{4})(?!\d))",
    re.IGNORECASE,
)
_AT_YEAR = re.compile(
    r"\b(?:in|by)\s+(?:the\s+year\s+)?(?P<year>\d{4})\b(?!\s*[-/]\d)", re.IGNORECASE
)
_ON_DATE = re.compile(r"\bon\s+(?P<when>" + DATE_LITERAL.pattern[len(r"(?<![\w-])") :] + ")", re.I)


def find_age_hints(text: str, today: date) -> list[tuple[int, int, ReasoningHint]]:
    """The age of someone whose birth year or day ``text`` gives, when it asks "how old"."""
    ask = _HOW_OLD.search(text)
    born = _BORN.search(text)
    if ask is None or born is None:
        return []
    at = today
    for match in _AT_YEAR.finditer(text):
        if not born.start() <= match.start() < born.end():
            at = date(int(match["year"]), 12, 31)
    for match in _ON_DATE.finditer(text):
        if not born.start() <= match.start() < born.end():
            when = parse_date(match["when"], today)
            if when is not None:
                at = when
    span = (min(ask.start(), born.start()), max(ask.end(), born.end()))
    if born["year"]:
        year = int(born["year"])
        if not 1 <= year <= at.year or at.year - year > 150:
            return []
        age = at.year - year
        result = f"{age} years (or {age - 1} before the birthday in {at.year})"
        return [(*span, ReasoningHint(kind="age", expression=f"{at.year} - {year}", result=result))]
    birthday = parse_date(born["when"], today)
    if birthday is None or birthday > at or at.year - birthday.year > 150:
        return []
    age = at.year - birthday.year - ((at.month, at.day) < (birthday.month, birthday.day))
    return [
        (
            *span,
            ReasoningHint(
                kind="age",
                expression=f"age on {at.isoformat()} of someone born on {birthday.isoformat()}",
                result=f"{age} years",
            ),
        )
    ]
