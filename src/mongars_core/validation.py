"""Checks of what callers hand the pipeline: user and session ids, messages, titles.

The same checks :meth:`~mongars_core.pipeline.Assistant.stream` makes first,
importable by callers that refuse bad input before building an assistant (the
CLI, the server's local route).
"""

from __future__ import annotations

import re

from mongars_core.errors import (
    EmptyMessageError,
    InvalidInputError,
    InvalidUserIdError,
    MessageTooLongError,
)
from mongars_core.settings import Settings

ID_PATTERN = re.compile(r"[A-Za-z0-9_.@-]{1,150}")


def check_id(kind: str, value: str) -> None:
    """User and session ids: 1-150 letters, digits, '_', '-', '.' or '@'."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        error = InvalidUserIdError if kind == "user id" else InvalidInputError
        raise error(f"invalid {kind} {value!r}: use 1-150 letters, digits, '_', '-', '.' or '@'")


def check_length(settings: Settings, text: str) -> None:
    """Refuse a message over ``max_message_chars``, saying the limit: one limit everywhere."""
    limit = settings.max_message_chars
    if len(text) > limit:
        raise MessageTooLongError(f"the message has {len(text)} characters; the limit is {limit}")


def validate_turn(settings: Settings, user_id: str, message: str, session_id: str) -> str:
    """The message of a turn as the pipeline runs it (stripped), or the error that
    refuses the turn: the same checks :meth:`Assistant.stream` makes first, for
    callers that refuse bad input before building an assistant (the CLI)."""
    check_id("user id", user_id)
    check_id("session id", session_id)
    text = (message or "").strip()
    if not text:
        raise EmptyMessageError("the message is empty")
    check_length(settings, text)
    if "\x00" in text:
        raise InvalidInputError("the message contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            "the message is not valid text (it holds bytes that are not UTF-8)"
        ) from None
    return text


def conversation_title(title: str) -> str:
    """A conversation title as stored: whitespace collapsed, 1-200 characters."""
    text = " ".join((title or "").split())
    if not text:
        raise InvalidInputError("the title is empty")
    if len(text) > 200:
        raise InvalidInputError(f"the title has {len(text)} characters; the limit is 200")
    if any(ord(char) < 32 for char in text):
        raise InvalidInputError("the title contains a control character")
    return text
