"""Server events and their fan-out to a user's open websockets.

Every event a socket receives is ``{id, type, ts, user, data}``. Each socket
has a bounded queue drained by its own sender task; a client that falls
``queue_size`` events behind is disconnected instead of letting the queue grow
without bound. With a Redis URL, events published by one server process reach
sockets held by the others (pub/sub on ``<prefix>events``), and each process
hears on ``<prefix>changes`` which users the others changed, so it can drop
its cached state of them. The prefix (``Settings.redis_prefix()``) names the
deployment: pub/sub ignores Redis' database number, so without it two
deployments on one Redis server would hear each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# The account's credentials changed (password, deletion): its sockets close.
REVOKED = "session.revoked"


def make_event(kind: str, user: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": uuid.uuid4().hex,
        "type": kind,
        "ts": time.time(),
        "user": user,
        "data": data or {},
    }


@dataclass(eq=False)
class Subscriber:
    """One open socket's outgoing queue."""

    user: str
    queue: asyncio.Queue[dict[str, Any] | None]
    on_overflow: Callable[[], Coroutine[Any, Any, None]]
    overflowed: bool = field(default=False)

    def offer(self, event: dict[str, Any]) -> bool:
        if self.overflowed:
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            return False
        return True


class EventHub:
    """Who is connected, per user, and delivery of events to them."""

    def __init__(
        self,
        queue_size: int,
        redis: Any = None,
        on_change: Callable[[str], Coroutine[Any, Any, None]] | None = None,
        prefix: str = "mongars:",
    ) -> None:
        self.queue_size = queue_size
        self.channel = f"{prefix}events"
        self.changes = f"{prefix}changes"
        self._on_change = on_change
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._redis = redis
        self._origin = uuid.uuid4().hex
        self._listener: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.dropped_clients = 0

    @property
    def connections(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    @property
    def users(self) -> list[str]:
        """The users (event keys) with an open socket here."""
        return list(self._subscribers)

    def subscribe(
        self, user: str, on_overflow: Callable[[], Coroutine[Any, Any, None]]
    ) -> Subscriber:
        subscriber = Subscriber(user, asyncio.Queue(self.queue_size), on_overflow)
        self._subscribers.setdefault(user, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.user)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[subscriber.user]

    async def publish(self, event: dict[str, Any], *, exclude: Subscriber | None = None) -> int:
        """Queue ``event`` for every socket of ``event["user"]`` (here and, with Redis,
        in the other processes); returns how many local sockets took it."""
        delivered = self._deliver(event, exclude)
        if self._redis is not None:
            message = json.dumps({"origin": self._origin, "event": event})
            await self._redis.publish(self.channel, message)
        return delivered

    async def revoke(self, user: str, reason: str) -> int:
        """Close every open socket of ``user`` here and, with Redis, in the other
        processes (a :data:`REVOKED` event; each socket closes when it reads it)."""
        return await self.publish(make_event(REVOKED, user, {"reason": reason}))

    async def announce_change(self, user: str) -> None:
        """Tell the other server processes that ``user``'s data changed here."""
        if self._redis is not None:
            await self._redis.publish(
                self.changes, json.dumps({"origin": self._origin, "user": user})
            )

    def _deliver(self, event: dict[str, Any], exclude: Subscriber | None = None) -> int:
        delivered = 0
        for subscriber in list(self._subscribers.get(event["user"], ())):
            if subscriber is exclude:
                continue
            if subscriber.offer(event):
                delivered += 1
            else:
                self.drop(subscriber)
        return delivered

    def drop(self, subscriber: Subscriber) -> None:
        """Disconnect a subscriber whose queue overflowed (once)."""
        subscribers = self._subscribers.get(subscriber.user, set())
        if subscriber not in subscribers:
            return
        self.unsubscribe(subscriber)
        self.dropped_clients += 1
        logger.warning(
            "disconnecting a websocket of %s: %d events behind", subscriber.user, self.queue_size
        )
        task = asyncio.get_running_loop().create_task(subscriber.on_overflow())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def start(self) -> None:
        if self._redis is None:
            return
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.channel, self.changes)
        self._listener = asyncio.create_task(self._listen(pubsub))

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        # None tells each socket's sender to close; a full queue closes anyway.
        for subscribers in list(self._subscribers.values()):
            for subscriber in list(subscribers):
                if not subscriber.queue.full():
                    subscriber.queue.put_nowait(None)

    async def _listen(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    payload = json.loads(message["data"])
                    if payload["origin"] == self._origin:
                        continue
                    if message["channel"] in (self.changes, self.changes.encode()):
                        if self._on_change is not None:
                            await self._on_change(str(payload["user"]))
                    else:
                        self._deliver(payload["event"])
                except (TypeError, ValueError, KeyError):
                    logger.warning("ignoring a malformed message on %s", message.get("channel"))
                except Exception:
                    # One bad message must not stop fan-out for the whole process.
                    logger.exception("handling a message from %s failed", message.get("channel"))
        finally:
            await pubsub.aclose()
