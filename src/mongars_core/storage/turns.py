"""Stored turns as :class:`~mongars_core.types.HistoryTurn` values, and their ratings.

A turn's row keeps the adapter that answered in its ``meta`` JSON
(``"adapter": "name@version"``) and the user's rating of the reply in
``rating`` (1 up, -1 down, NULL none), with ``rated_at``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from mongars_core.errors import InvalidInputError
from mongars_core.storage.models import TurnRecord
from mongars_core.storage.unit_of_work import StagedTurn
from mongars_core.types import HistoryTurn

RATINGS = (1, -1)
"""A reply's rating: 1 thumbs up, -1 thumbs down (``None``: unrated)."""


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def history_turn(record: TurnRecord | StagedTurn) -> HistoryTurn:
    """A stored (or just committed) turn as the pipeline and clients see it."""
    assert record.id is not None
    if isinstance(record, StagedTurn):
        rating, adapter = None, record.adapter
    else:
        rating, adapter = record.rating, adapter_of(record.meta)
    return HistoryTurn(
        id=record.id,
        user_id=record.user_id,
        session_id=record.session_id,
        message=record.message,
        reply=record.reply,
        created_at=aware(record.created_at),
        turn_id=record.turn_id,
        rating=rating,
        adapter=adapter,
    )


def adapter_of(meta: str) -> str | None:
    """The adapter a turn's meta names, or ``None`` (the base model answered).

    Every turn's history is read from its row, so most (answered by the base
    model) are told by a substring instead of parsed: a quote inside a JSON
    string is escaped, so only the key itself can match.
    """
    if '"adapter": "' not in meta:
        return None
    adapter = json.loads(meta).get("adapter")
    return adapter if isinstance(adapter, str) else None


def check_rating(rating: object) -> int | None:
    """``rating`` if it is 1, -1 or ``None``; :class:`InvalidInputError` otherwise."""
    if rating is None or (type(rating) is int and rating in RATINGS):
        return rating
    raise InvalidInputError(f"a rating is 1 (up), -1 (down) or null (none), not {rating!r:.40}")
