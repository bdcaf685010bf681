"""Per-user rate limits (token bucket) and the request body size limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, ``per_minute`` sustained.

    ``take`` returns 0 when the request may go ahead, else the seconds to wait.
    """

    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, cost: float = 1.0) -> float:
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens >= cost:
            self._buckets[key] = (tokens - cost, now)
            self._forget_full_buckets(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (cost - tokens) / self.rate

    def _forget_full_buckets(self, now: float) -> None:
        if len(self._buckets) < 10_000:
            return
        refill = self.burst / self.rate
        self._buckets = {
            key: value for key, value in self._buckets.items() if now - value[1] < refill
        }


# KEYS[1]: the bucket; ARGV: rate per second, burst, cost. Redis' own clock, so
# every server process agrees on "now".
_TAKE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - updated) * rate)
local wait = 0
if tokens >= cost then tokens = tokens - cost else wait = (cost - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return tostring(wait)
"""


class RedisRateLimiter(RateLimiter):
    """The same token bucket, kept in Redis so every server process shares it."""

    def __init__(self, redis: Any, per_minute: float, burst: int, prefix: str = "mongars:") -> None:
        super().__init__(per_minute, burst)
        self._script = redis.register_script(_TAKE_SCRIPT)
        self._prefix = f"{prefix}rate:"

    async def take(self, key: str, cost: float = 1.0) -> float:
        wait = await self._script(keys=[self._prefix + key], args=[self.rate, self.burst, cost])
        return float(wait)


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


# How long a refused request's body is still read (and dropped) before the
# connection closes, so the client reads the answer rather than a reset.
LINGER_S = 1.0


class BodySizeLimit:
    """ASGI middleware: answer 413 to a body larger than ``max_bytes``.

    Every request body is counted here, whatever its headers say (a
    ``Content-Length``, ``Transfer-Encoding: chunked`` in any spelling, or
    none): a ``Content-Length`` over the limit is refused unread, any other
    body is read here, at most ``max_bytes`` of it, before routing,
    authentication or parsing, and then handed on. So no route can be made to
    buffer more than ``max_bytes``, even one that would never read its body.

    The whole body must arrive within ``timeout_s`` of the request's headers
    (a client trickling a never-ending body gets 408). Both refusals close the
    connection (see :meth:`_refuse`): the rest of the body is not read.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        timeout_s: float = 30.0,
        upload_max_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        # File uploads (multipart/form-data: documents, history files) may be larger.
        self.upload_max_bytes = max(upload_max_bytes or max_bytes, max_bytes)

    def _limit(self, scope: Scope) -> int:
        for name, value in scope.get("headers", []):
            if name == b"content-type" and value.lower().startswith(b"multipart/form-data"):
                return self.upload_max_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope)
        lengths = [value for name, value in scope.get("headers", []) if name == b"content-length"]
        if lengths:
            try:
                too_big = max(int(value) for value in lengths) > limit
            except ValueError:
                await send_json_error(scope, send, 400, "invalid Content-Length", "bad_request")
                return
            if too_big:
                await self._refuse(scope, receive, send, limit)
                return
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive, limit)
        except TimeoutError:
            detail = f"the request body did not arrive within {self.timeout_s:g} seconds"
            await self._refuse(scope, receive, send, limit, 408, detail, "body_timeout")
            return
        if body is None:
            return  # the client went away
        if len(body) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive, limit: int) -> bytes | None:
        """The body, or its first chunks once they pass ``limit``; None if the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if size > limit or not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int,
        status: int = 413,
        detail: str | None = None,
        code: str = "body_too_large",
    ) -> None:
        """Answer, then close the connection after a bounded lingering read.

        Closing at once with the client's bytes still unread makes the kernel
        reset the connection, and a client still sending its body would lose
        the answer. So, as a web server's lingering close, the answer goes out
        first; then at most ``2 * max_bytes`` more of the body is read (and
        dropped) for at most ``LINGER_S`` seconds, and the connection closes.
        """
        detail = detail or f"the request body is larger than {limit} bytes"
        await send_json_error(scope, send, status, detail, code, more=True)
        budget = 2 * limit
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while budget > 0:
                    message = await receive()
                    budget -= len(message.get("body", b""))
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_json_error(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    code: str,
    kind: str = "http.",
    more: bool = False,
) -> None:
    """Answer with the same JSON shapes as mongars_server.errors (from outside FastAPI).

    ``kind="websocket.http."`` refuses a websocket handshake with this response.
    The connection is closed after it (``Connection: close``): uvicorn then reads
    nothing more of a request refused before its body was read. ``more=True``
    leaves the response open (its body is complete: ``Content-Length``) for the
    caller to end.
    """
    if scope.get("path", "").startswith("/v1/"):
        error = {"message": detail, "type": "invalid_request_error", "param": None, "code": code}
        body = json.dumps({"error": error}).encode()
    else:
        body = json.dumps({"detail": detail, "code": code}).encode()
    await send(
        {
            "type": f"{kind}response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": f"{kind}response.body", "body": body, "more_body": more})
