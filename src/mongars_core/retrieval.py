"""One retrieval for memories and documents, shared by recall, research and the RAG route.

:func:`retrieve` asks every ``mongars_retrieve`` implementation (the memory
plugin for memories, the knowledge plugin for document chunks) for its ranked
passages and fuses the lists by reciprocal rank (:func:`fuse`): a passage ranked
well by several methods or plugins beats one ranked first by a single one, and
scores of different scales never have to be compared. :func:`time_intent` reads
what a query says about time ("last week", "when did I...") so that each index
can favour dated items that fit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from mongars_core.turn_context import TurnContext
from mongars_core.types import Passage, RetrievalQuery

if TYPE_CHECKING:
    from mongars_core.services import Services

RRF_K = 60
"""The constant of reciprocal rank fusion (Cormack et al. 2009): 1 / (k + rank)."""


def fuse(rankings: Iterable[Sequence[Passage]], *, limit: int, k: int = RRF_K) -> list[Passage]:
    """Reciprocal rank fusion of ranked lists: each passage scores the sum of
    ``1 / (k + rank)`` over the lists it is in (by ``key``); best first, at most
    ``limit``. The kept copy is the one ranked best, its ``ranks`` merged, its
    ``score`` the fused one."""
    scores: dict[str, float] = {}
    best: dict[str, tuple[int, Passage]] = {}
    ranks: dict[str, dict[str, int]] = {}
    for ranking in rankings:
        for rank, passage in enumerate(ranking, start=1):
            scores[passage.key] = scores.get(passage.key, 0.0) + 1.0 / (k + rank)
            if passage.key not in best or rank < best[passage.key][0]:
                best[passage.key] = (rank, passage)
            ranks.setdefault(passage.key, {}).update(passage.ranks)
    ordered = sorted(scores, key=lambda key: (-scores[key], best[key][0], key))[:limit]
    return [
        best[key][1].model_copy(update={"score": round(scores[key], 6), "ranks": ranks[key]})
        for key in ordered
    ]


async def retrieve(
    services: Services, query: RetrievalQuery, context: TurnContext | None = None
) -> list[Passage]:
    """The passages of ``query.user_id`` most relevant to ``query.text``, best first.

    A plugin that fails is recorded in ``context`` (and logged) and the others'
    passages are still returned; without a ``context`` the first failure is raised.
    """
    own = context is None
    context = context or TurnContext(services.tracer)
    rankings = await services.plugins.retrieve(services, query, context)
    if own and context.failures:
        raise context.failures[0].error
    if len(rankings) == 1:
        return rankings[0][: query.limit]
    return fuse(rankings, limit=query.limit)


# -- time in a query ------------------------------------------------------------------


@dataclass(frozen=True)
class TimeIntent:
    """What a query says about time: a window its answer lies in, and whether it
    asks *when* something happened (so dated items are worth more)."""

    start: datetime | None = None
    end: datetime | None = None
    asks_when: bool = False

    @property
    def window(self) -> bool:
        return self.start is not None or self.end is not None

    def contains(self, moment: datetime | None) -> bool:
        if moment is None or not self.window:
            return False
        return (self.start is None or moment >= self.start) and (
            self.end is None or moment < self.end
        )


_WHEN = re.compile(
    r"\b(?:when|what\s+(?:day|date|time|year|month)|how\s+long\s+ago|since\s+when|"
    r"quand|depuis\s+quand)\b",
    re.IGNORECASE,
)
_UNITS = {"day": 1, "week": 7, "fortnight": 14, "month": 30, "year": 365}
_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "few": 3,
    "couple": 2,
    "couple of": 2,
    "several": 4,
}
_COUNT = (
    r"(?P<count>\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"several|a\s+few|few|a\s+couple(?:\s+of)?)"
)
_UNIT = r"(?P<unit>day|week|fortnight|month|year)s?"
_AGO = re.compile(
    rf"\b{_COUNT}\s+{_UNIT}\s+(?:ago|back|before\s+now|earlier)\b|\b(?P<single>a\s+fortnight)\s+ago\b",
    re.IGNORECASE,
)
_SPAN = re.compile(
    rf"\b(?:in\s+|over\s+|during\s+|within\s+)?(?:the\s+)?(?:last|past)\s+{_COUNT}\s+{_UNIT}\b",
    re.IGNORECASE,
)
_LAST = re.compile(
    r"\b(?:last|past|previous)\s+(?P<unit>day|night|week|fortnight|month|year)\b", re.IGNORECASE
)
_THIS = re.compile(r"\b(?:earlier\s+)?this\s+(?P<unit>week|month|year)\b", re.IGNORECASE)
_DAY_BEFORE = re.compile(r"\bthe\s+day\s+before\s+yesterday\b", re.IGNORECASE)
_DAY_WORDS = re.compile(
    r"\b(?P<word>yesterday|today|tonight|this\s+(?:morning|afternoon|evening))\b", re.IGNORECASE
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY = re.compile(
    r"\b(?:last|on|this\s+past|past)\s+(?P<day>" + "|".join(_WEEKDAYS) + r")\b", re.IGNORECASE
)
_WEEKEND = re.compile(
    r"\b(?:last|this\s+past|past|over\s+the|at\s+the|on\s+the|during\s+the)\s+weekend\b",
    re.IGNORECASE,
)
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = re.compile(
    r"\b(?:(?P<since>since)|in|during|last|back\s+in|early|late|mid|throughout)\s+(?:early\s+|late\s+)?"
    r"(?P<month>" + "|".join(_MONTHS) + r")(?:\s+(?P<year>(?:19|20)\d{2}))?\b",
    re.IGNORECASE,
)
_YEAR = re.compile(
    r"\b(?:in|during|back\s+in|throughout)\s+(?P<year>(?:19|20)\d{2})\b", re.IGNORECASE
)
_RECENT = re.compile(r"\b(?:recently|lately|the\s+other\s+day)\b", re.IGNORECASE)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _count(raw: str | None) -> int:
    words = " ".join((raw or "a").lower().split())
    return int(words) if words.isdigit() else _NUMBERS.get(words.removeprefix("a "), 1)


def _month_window(today: datetime, month: int, year: int | None) -> tuple[datetime, datetime]:
    """The named month: of ``year``, else its latest start not after ``today``."""
    if year is None:
        year = today.year if month <= today.month else today.year - 1
    start = today.replace(year=year, month=month, day=1)
    end = start.replace(year=year + 1, month=1) if month == 12 else start.replace(month=month + 1)
    return start, end


def time_intent(text: str, now: datetime) -> TimeIntent:
    """Read the time window and the *when* question of ``text`` (:func:`_time_intent`);
    a window past the calendar ("3000 years ago") is no window."""
    try:
        return _time_intent(text, now)
    except (OverflowError, ValueError):
        return TimeIntent(asks_when=_WHEN.search(text) is not None)


def _time_intent(text: str, now: datetime) -> TimeIntent:
    """Read the time window and the *when* question of ``text``, counted from ``now``.

    Windows: "yesterday", "the day before yesterday", "today", "last night",
    "last week" (the 7 days before today), "this month", "earlier this year",
    "the past three weeks" (up to now); "three days ago", "two weeks back", "a
    fortnight ago" (that day, a day either side, a day more for each week further
    back); "last Monday" / "on Monday" (the latest such day before today, a day
    either side); "last weekend" / "over the weekend" (the latest Saturday to
    Monday); "in March" (the latest March begun, or of the year named), "in 2025";
    "recently" (the last 30 days).
    A window's bounds are in ``now``'s time zone. Nothing said: an empty intent.
    """
    asks_when = _WHEN.search(text) is not None
    today = _day_start(now)

    def window(start: datetime, end: datetime, when: bool = asks_when) -> TimeIntent:
        return TimeIntent(start, end, when)

    if _DAY_BEFORE.search(text):
        return window(today - timedelta(days=2), today - timedelta(days=1))
    if match := _DAY_WORDS.search(text):
        word = match.group("word").lower()
        if word == "yesterday":
            return window(today - timedelta(days=1), today)
        return window(today, today + timedelta(days=1))
    if match := _AGO.search(text):
        if match.group("single"):
            days = _UNITS["fortnight"]
        else:
            days = _count(match.group("count")) * _UNITS[match.group("unit").lower()]
        slack = max(1, days // 7)
        centre = today - timedelta(days=days)
        return window(centre - timedelta(days=slack), centre + timedelta(days=slack + 1), True)
    if match := _SPAN.search(text):
        days = _count(match.group("count")) * _UNITS[match.group("unit").lower()]
        return window(today - timedelta(days=days), now + timedelta(seconds=1))
    if match := _WEEKDAY.search(text):
        wanted = _WEEKDAYS.index(match.group("day").lower())
        back = (today.weekday() - wanted) % 7 or 7
        day = today - timedelta(days=back)
        return window(day - timedelta(days=1), day + timedelta(days=2))
    if _WEEKEND.search(text):
        back = (today.weekday() - 5) % 7  # days since the latest Saturday (today included)
        saturday = today - timedelta(days=back)
        return window(saturday, saturday + timedelta(days=3))
    if match := _LAST.search(text):
        unit = match.group("unit").lower()
        if unit == "night":
            return window(today - timedelta(days=1), today + timedelta(hours=6))
        return window(today - timedelta(days=_UNITS[unit]), today)
    if match := _THIS.search(text):
        unit = match.group("unit").lower()
        if unit == "week":
            start = today - timedelta(days=today.weekday())
        elif unit == "month":
            start = today.replace(day=1)
        else:
            start = today.replace(month=1, day=1)
        return window(start, today + timedelta(days=1))
    if match := _MONTH.search(text):
        month = _MONTHS.index(match.group("month").lower()) + 1
        year = int(match.group("year")) if match.group("year") else None
        start, end = _month_window(today, month, year)
        return window(start, now + timedelta(seconds=1) if match.group("since") else end)
    if match := _YEAR.search(text):
        year = int(match.group("year"))
        start = today.replace(year=year, month=1, day=1)
        return window(start, start.replace(year=year + 1))
    if _RECENT.search(text):
        return window(today - timedelta(days=30), now + timedelta(seconds=1))
    return TimeIntent(asks_when=asks_when)
