"""The LLM router's response cache: reply texts of identical, non-personalised requests.

The router asks the cache only for a request marked ``cacheable`` (no history,
memory or style in its prompt), under :func:`cache_key`, and stores the whole
reply for ``llm.cache_ttl_s``. :class:`MemoryResponseCache` lives in one
process; :class:`RedisResponseCache` is shared by every process using the same
Redis server. A cache that cannot answer is a miss, never a failed turn.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from mongars_core.endpoints import Endpoint
from mongars_core.types import GenerationRequest

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)


class ResponseCache(Protocol):
    """Where the router keeps replies for ``ttl_s`` seconds."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, text: str, ttl_s: float) -> None: ...

    async def aclose(self) -> None:
        """Release what the cache holds open (a connection it owns)."""
        ...


def cache_key(request: GenerationRequest, endpoints: Sequence[Endpoint]) -> str:
    """The key of ``request`` served by ``endpoints``: the same question asked of
    another model, or with other parameters, is another entry."""
    body = {
        "request": request.model_dump(mode="json", exclude={"cacheable", "prefix"}),
        "endpoints": [(e.backend_name, e.model, e.params) for e in endpoints],
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class MemoryResponseCache:
    """An in-process LRU cache of reply texts with a TTL."""

    def __init__(self, size: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, text = found
        if expires <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return text

    async def set(self, key: str, text: str, ttl_s: float) -> None:
        self._items[key] = (self._clock() + ttl_s, text)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisResponseCache:
    """The same cache in Redis, under ``<prefix>reply:<key>``.

    ``client`` is an open ``redis.asyncio.Redis``; the cache closes it in
    :meth:`aclose` only when ``owned`` (a client shared with the rest of the
    process is closed by whoever opened it). While Redis cannot be reached, a
    read is a miss and a store is skipped; the log says so once when Redis
    goes away and once when it is back.
    """

    def __init__(self, client: Redis, prefix: str = "mongars:", *, owned: bool = False) -> None:
        from redis.exceptions import RedisError

        self.client = client
        self._prefix = f"{prefix}reply:"
        self._owned = owned
        self._errors = (RedisError, OSError)
        self._reachable = True

    async def get(self, key: str) -> str | None:
        try:
            value = await self.client.get(self._prefix + key)
        except self._errors as exc:
            self._unreachable(exc)
            return None
        self._reached()
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set(self, key: str, text: str, ttl_s: float) -> None:
        try:
            await self.client.set(self._prefix + key, text.encode(), px=max(1, int(ttl_s * 1000)))
        except self._errors as exc:
            self._unreachable(exc)
            return
        self._reached()

    async def aclose(self) -> None:
        if self._owned:
            await self.client.aclose()

    def _unreachable(self, error: Exception) -> None:
        if self._reachable:
            self._reachable = False
            logger.warning(
                "the Redis reply cache is unavailable, replies are not cached: %s", error
            )

    def _reached(self) -> None:
        if not self._reachable:
            self._reachable = True
            logger.info("the Redis reply cache is available again")
