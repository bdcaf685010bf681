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
_UNITS = {"day": 1, "week": 7, "month": 30, "year": 365}
_NUMBERS = {
    "a": 1,
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
    "few": 3,
    "couple of": 2,
}
_AGO = re.compile(
    r"\b(?P<count>\d+|a|one|two|three|four|five|six|seven|eight|nine|ten|a\s+few|a\s+couple\s+of)"
    r"\s+(?P<unit>day|week|month|year)s?\s+ago\b",
    re.IGNORECASE,
)
_LAST = re.compile(r"\b(?:last|past|previous)\s+(?P<unit>day|week|month|year)\b", re.IGNORECASE)
_THIS = re.compile(r"\bthis\s+(?P<unit>week|month|year)\b", re.IGNORECASE)
_DAY_WORDS = re.compile(r"\b(?P<word>yesterday|today|tonight|this\s+morning)\b", re.IGNORECASE)
_RECENT = re.compile(r"\b(?:recently|lately|the\s+other\s+day)\b", re.IGNORECASE)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def time_intent(text: str, now: datetime) -> TimeIntent:
    """Read the time window and the *when* question of ``text``, counted from ``now``.

    "yesterday", "today", "last week" (the 7 days before today), "this month",
    "three days ago" (that day, a day either side, a day more for each week
    further back), "recently" (the last 30 days).
    A window's bounds are in ``now``'s time zone. Nothing said: an empty intent.
    """
    asks_when = _WHEN.search(text) is not None
    today = _day_start(now)
    if match := _DAY_WORDS.search(text):
        word = match.group("word").lower()
        if word == "yesterday":
            return TimeIntent(today - timedelta(days=1), today, asks_when)
        return TimeIntent(today, today + timedelta(days=1), asks_when)
    if match := _AGO.search(text):
        raw = " ".join(match.group("count").lower().split())
        count = int(raw) if raw.isdigit() else _NUMBERS.get(raw.removeprefix("a "), 1)
        days = count * _UNITS[match.group("unit").lower()]
        slack = max(1, days // 7)
        centre = today - timedelta(days=days)
        return TimeIntent(centre - timedelta(days=slack), centre + timedelta(days=slack + 1), True)
    if match := _LAST.search(text):
        days = _UNITS[match.group("unit").lower()]
        return TimeIntent(today - timedelta(days=days), today, asks_when)
    if match := _THIS.search(text):
        unit = match.group("unit").lower()
        if unit == "week":
            start = today - timedelta(days=today.weekday())
        elif unit == "month":
            start = today.replace(day=1)
        else:
            start = today.replace(month=1, day=1)
        return TimeIntent(start, today + timedelta(days=1), asks_when)
    if _RECENT.search(text):
        return TimeIntent(today - timedelta(days=30), now + timedelta(seconds=1), asks_when)
    return TimeIntent(asks_when=asks_when)
