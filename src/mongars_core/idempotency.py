"""Idempotency keys: a client that retries a turn gets the stored one back.

:meth:`~mongars_core.pipeline.Assistant.stream` takes a key per turn; the store
keeps it with the turn, unique per user (``turns.idempotency_key``). These
helpers check a key and turn a stored turn back into the :class:`Reply` of a retry.
"""

from __future__ import annotations

import json
import re

from mongars_core.errors import IdempotencyKeyReusedError, InvalidInputError
from mongars_core.storage.models import TurnRecord
from mongars_core.types import Reply, TokenUsage

IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,200}")


def check_idempotency_key(key: str) -> None:
    if not isinstance(key, str) or not IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        raise InvalidInputError(
            "invalid idempotency key: use 1-200 printable ASCII characters without spaces"
        )


def replayed_reply(record: TurnRecord, message: str, session_id: str) -> Reply:
    """The reply of a turn stored under an idempotency key, for a retry of it."""
    if record.message != message or record.session_id != session_id:
        raise IdempotencyKeyReusedError(
            f"the idempotency key {record.idempotency_key!r} was already used for another "
            f"message (turn {record.turn_id}, session {record.session_id!r}): "
            "send a new key for a new message"
        )
    meta = json.loads(record.meta or "{}")
    return Reply(
        turn_id=record.turn_id,
        user_id=record.user_id,
        session_id=record.session_id,
        text=record.reply,
        confidence=record.confidence,
        backend=record.backend,
        truncated=bool(meta.get("truncated", False)),
        finish_reason=meta.get("finish_reason") or "stop",
        usage=TokenUsage.model_validate(meta.get("usage") or {}),
        created_at=record.created_at,
        adapter=meta.get("adapter"),
        replayed=True,
    )
