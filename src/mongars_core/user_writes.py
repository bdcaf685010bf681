"""The gate between writes of a user's data and their erasure, in one process.

A reply being generated, a document being indexed or memories being imported
take a while before they are stored. "Forget me" must not be followed by one of
them landing: each such write notes the user's erasure generation when it
starts and stores only through :meth:`UserWrites.storing`, which refuses
(:class:`~mongars_core.errors.UserErasedError`) once the user was erased since;
:meth:`UserWrites.erasing` holds the same per-user lock, so a write stores
wholly before an erasure or not at all. Other processes are covered by the
erasure's final check of every table (:mod:`mongars_core.erasure`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mongars_core.errors import UserErasedError


class UserWrites:
    """Per-user erasure generations and the lock that orders writes and erasures."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def generation(self, user_id: str) -> int:
        """Note this when a write of ``user_id``'s data starts; give it to :meth:`storing`."""
        return self._generations.get(user_id, 0)

    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    @asynccontextmanager
    async def storing(self, user_id: str, since: int) -> AsyncIterator[None]:
        """Store inside this block; raises :class:`UserErasedError` when ``user_id``
        was erased after generation ``since`` was noted."""
        async with self._lock(user_id):
            if self._generations.get(user_id, 0) != since:
                raise UserErasedError(
                    f"{user_id}'s data was erased while this was being written: "
                    "nothing of it was stored"
                )
            yield

    @asynccontextmanager
    async def erasing(self, user_id: str) -> AsyncIterator[None]:
        """Erase inside this block: writes started before it will not be stored."""
        async with self._lock(user_id):
            self._generations[user_id] = self._generations.get(user_id, 0) + 1
            yield
