"""The last turns of recently used conversations, kept in process.

A turn's prompt holds the session's last few turns; reading them from the
database every turn costs a query the store can answer from memory, since
every turn this process stores passes through it. :class:`HistoryCache` is
filled from the database on a session's first use, appended to as turns are
committed, and dropped when the conversation is deleted or when
``Assistant.invalidate`` says another process changed the user.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

from mongars_core.types import HistoryTurn

Key = tuple[str, str]
"""(user id, session id)"""


@dataclass
class _Entry:
    depth: int
    """How many of the session's last turns the entry holds at most."""
    turns: list[HistoryTurn] = field(default_factory=list)


class HistoryCache:
    """The last ``depth`` turns of up to ``sessions`` recently used sessions (LRU).

    Reads deeper than :data:`MAX_DEPTH` turns are not cached.
    """

    MAX_DEPTH = 32

    def __init__(self, sessions: int = 2048) -> None:
        self.sessions = sessions
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        # A fill that started before a write to its session must not install
        # what it read: the write would be missing from the cache.
        self._filling: dict[Key, object] = {}

    def get(self, user_id: str, session_id: str, limit: int) -> list[HistoryTurn] | None:
        """The session's last ``limit`` turns, oldest first, or ``None`` when not cached."""
        key = (user_id, session_id)
        entry = self._entries.get(key)
        if entry is None or limit > entry.depth:
            return None
        self._entries.move_to_end(key)
        return entry.turns[-limit:] if limit else []

    def start_fill(self, user_id: str, session_id: str, limit: int) -> object | None:
        """A token for :meth:`finish_fill`, or ``None`` when a read this deep is not cached."""
        if limit > self.MAX_DEPTH:
            return None
        token = object()
        self._filling[(user_id, session_id)] = token
        return token

    def finish_fill(
        self, user_id: str, session_id: str, limit: int, turns: list[HistoryTurn], token: object
    ) -> None:
        """Keep ``turns`` (read from the database) unless the session changed meanwhile."""
        key = (user_id, session_id)
        if self._filling.get(key) is not token:
            return
        del self._filling[key]
        self._entries[key] = _Entry(limit, list(turns))
        self._entries.move_to_end(key)
        while len(self._entries) > self.sessions:
            self._entries.popitem(last=False)

    def abandon_fill(self, user_id: str, session_id: str, token: object) -> None:
        """The read of ``token`` failed: forget it."""
        key = (user_id, session_id)
        if self._filling.get(key) is token:
            del self._filling[key]

    def append(self, turn: HistoryTurn) -> None:
        """A turn was committed: add it to its session, if cached, in id order."""
        key = (turn.user_id, turn.session_id)
        self._filling.pop(key, None)
        entry = self._entries.get(key)
        if entry is None:
            return
        bisect.insort(entry.turns, turn, key=lambda stored: stored.id)
        if len(entry.turns) > entry.depth:
            del entry.turns[: len(entry.turns) - entry.depth]

    def drop_session(self, user_id: str, session_id: str) -> None:
        key = (user_id, session_id)
        self._entries.pop(key, None)
        self._filling.pop(key, None)

    def drop_user(self, user_id: str) -> None:
        for key in [key for key in (*self._entries, *self._filling) if key[0] == user_id]:
            self._entries.pop(key, None)
            self._filling.pop(key, None)
