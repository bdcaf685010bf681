"""One ``/metrics`` page for every server process sharing a Redis server.

A scrape lands on one process. That process publishes a request on
``<prefix>metrics:scrape``; ``PUBLISH`` answers how many processes listen, and
each of them (the scraped one included) pushes its snapshot onto the
request's reply list. The scraped process waits for that many replies, at
most ``timeout_s``, and renders them as one page, each sample labelled with
its ``worker``. A process that does not answer in time is left out of that
scrape (and logged), never waited for longer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from mongars_server.telemetry import Telemetry

logger = logging.getLogger(__name__)

REPLY_TTL_S = 30


class SharedMetrics:
    """Answers other processes' scrape requests, and gathers theirs for a scrape here."""

    def __init__(
        self, telemetry: Telemetry, redis: Any, prefix: str, timeout_s: float = 2.0
    ) -> None:
        self.telemetry = telemetry
        self._redis = redis
        self.channel = f"{prefix}metrics:scrape"
        self._replies = f"{prefix}metrics:reply:"
        self.timeout_s = timeout_s
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._redis is None:
            return
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.channel)
        self._listener = asyncio.create_task(self._listen(pubsub))

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def render(self) -> bytes:
        """The page for a scrape: this process and, with Redis, every other one."""
        if self._redis is None or self._listener is None:
            return self.telemetry.render_prometheus()
        reply = f"{self._replies}{uuid.uuid4().hex}"
        listeners = int(await self._redis.publish(self.channel, json.dumps({"reply": reply})))
        snapshots: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while len(snapshots) < listeners:
            remaining = deadline - loop.time()
            popped = await self._redis.blpop([reply], timeout=max(0.01, remaining))
            if popped is None:
                logger.warning(
                    "/metrics: %d of %d server processes answered within %s s",
                    len(snapshots),
                    listeners,
                    self.timeout_s,
                )
                break
            answer = json.loads(popped[1])
            snapshots[str(answer["worker"])] = str(answer["text"])
        await self._redis.delete(reply)
        snapshots.pop(self.telemetry.worker_id, None)  # this process is rendered fresh
        return self.telemetry.render_prometheus(sorted(snapshots.items()))

    async def _listen(self, pubsub: Any) -> None:
        try:
            async for message in pubsub.listen():
                if message.get("type") != "message":
                    continue
                try:
                    reply = str(json.loads(message["data"])["reply"])
                    if not reply.startswith(self._replies):
                        raise ValueError(reply)
                    answer = {"worker": self.telemetry.worker_id, "text": self.telemetry.snapshot()}
                    await self._redis.rpush(reply, json.dumps(answer))
                    await self._redis.expire(reply, REPLY_TTL_S)
                except (TypeError, ValueError, KeyError):
                    logger.warning("ignoring a malformed message on %s", self.channel)
                except Exception:
                    # One failed answer must not stop this process answering later scrapes.
                    logger.exception("answering a metrics scrape failed")
        finally:
            await pubsub.aclose()
