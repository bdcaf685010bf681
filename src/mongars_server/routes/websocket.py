"""``/ws/chat/``: streaming chat and live events over a websocket.

Connect with a ticket from ``POST /api/v1/auth/ws/ticket``:
``/ws/chat/?t=<ticket>``. The server sends ``ws.connected`` then
``history.snapshot``; every client frame gets an ``ack``; ``chat.send`` frames
stream ``chat.delta`` events and end with ``chat.reply`` (or ``chat.error``);
``chat.stop`` stops the running turn (``chat.stopped``, nothing stored);
``chat.rate`` rates a reply (``turn.rated``).
docs/http_api.md describes every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from mongars_core.errors import MongarsError
from mongars_core.validation import check_length
from mongars_server.app import ServerState
from mongars_server.errors import classify
from mongars_server.events import REVOKED, Subscriber, make_event
from mongars_server.hosts import origin_allowed
from mongars_server.routes.conversation import ChatRequest, history_item, run_chat
from mongars_server.routes.conversations import RateFrame, announce_rating, rate_turn
from mongars_server.security import AuthenticationError
from mongars_server.settings import SERVER

logger = logging.getLogger(__name__)

router = APIRouter(tags=["websocket"])

MAX_FRAME_CHARS = 16_384
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
HISTORY_SNAPSHOT = 20


@router.websocket("/ws/chat/")
async def chat_socket(websocket: WebSocket) -> None:
    server: ServerState = websocket.state.server
    if not origin_allowed(
        websocket.headers.get("origin"),
        websocket.headers.get("host"),
        server.allowed_hosts,
        server.settings.section(SERVER).allowed_origins,
    ):
        await websocket.close(POLICY_VIOLATION, "origin not allowed")
        return
    try:
        claims = await server.tickets.redeem(websocket.query_params.get("t", ""))
    except AuthenticationError as exc:
        await websocket.close(POLICY_VIOLATION, str(exc))
        return
    problem = await _account_problem(
        server, claims.username, claims.user_id, claims.password_version
    )
    if problem is not None:
        await websocket.close(POLICY_VIOLATION, problem)
        return
    await websocket.accept()
    await ChatConnection(
        server, websocket, claims.user_id, claims.username, claims.password_version
    ).run()


async def _account_problem(
    server: ServerState, username: str, user_id: str, password_version: int
) -> str | None:
    """Why a socket's credentials no longer hold (deleted, re-registered, new password)."""
    account = await server.accounts.get(username)
    if account is None or account.user_id != user_id:
        return "the account no longer exists"
    if account.password_version != password_version:
        return "the password changed: log in again"
    return None


class ChatConnection:
    """One accepted socket: a sender task draining the queue, a heartbeat, a reader.

    ``user`` is the account's ``user_id`` (its data and its events); events
    show the client ``username`` instead.
    """

    def __init__(
        self,
        server: ServerState,
        websocket: WebSocket,
        user: str,
        username: str,
        password_version: int,
    ) -> None:
        self.server = server
        self.websocket = websocket
        self.user = user
        self.username = username
        self.password_version = password_version
        self.subscriber: Subscriber = server.hub.subscribe(user, self._overflowed)
        self.turn: asyncio.Task[None] | None = None
        self.ratings: set[asyncio.Task[None]] = set()
        self.turn_ref: Any = None  # the chat.send frame id of the running turn
        self.stop_requested = False
        self.last_pong = time.monotonic()
        self.closing = False

    async def run(self) -> None:
        telemetry = self.server.telemetry
        telemetry.websockets.add(1)
        heartbeat_s = self.server.settings.section(SERVER).ws_heartbeat_s
        sender = asyncio.create_task(self._send_loop())
        heartbeat = asyncio.create_task(self._heartbeat(heartbeat_s))
        try:
            self._emit("ws.connected", {"heartbeat_s": heartbeat_s})
            turns = await self.server.assistant.store.history(self.user, HISTORY_SNAPSHOT)
            items = [
                history_item(turn, username=self.username).model_dump(mode="json") for turn in turns
            ]
            self._emit("history.snapshot", {"items": items})
            await self._read_loop()
        except WebSocketDisconnect:
            pass
        finally:
            self.closing = True
            self.server.hub.unsubscribe(self.subscriber)
            tasks = [t for t in (heartbeat, self.turn, sender, *self.ratings) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            telemetry.websockets.add(-1)

    # -- outgoing ----------------------------------------------------------------

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if not self.subscriber.offer(make_event(kind, self.user, data)):
            self.server.hub.drop(self.subscriber)

    def _ack(self, ref: Any, error: dict[str, str] | None = None) -> None:
        data: dict[str, Any] = {"ref": ref, "ok": error is None}
        if error is not None:
            data["error"] = error
        self._emit("ack", data)

    async def _send_loop(self) -> None:
        queue = self.subscriber.queue
        while True:
            event = await queue.get()
            if event is None:
                await self._close(1001, "server shutting down")
                return
            await self.websocket.send_text(json.dumps({**event, "user": self.username}))
            if event["type"] == REVOKED:
                await self._close(POLICY_VIOLATION, str(event["data"].get("reason", "revoked")))
                return

    async def _overflowed(self) -> None:
        await self._close(
            TRY_AGAIN_LATER,
            f"too slow: {self.server.hub.queue_size} events behind",
        )

    async def _close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.websocket.close(code, reason)

    async def _heartbeat(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.last_pong > 3 * interval:
                await self._close(POLICY_VIOLATION, "no pong to three heartbeats")
                return
            self._emit("ping", {})

    # -- incoming ----------------------------------------------------------------

    async def _read_loop(self) -> None:
        while not self.closing:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            text = message.get("text")
            if text is None:
                self._ack(None, _error("invalid_frame", "frames must be JSON text"))
                continue
            self._handle(text)

    def _handle(self, text: str) -> None:
        if len(text) > MAX_FRAME_CHARS:
            self._ack(
                None, _error("frame_too_large", f"frames are at most {MAX_FRAME_CHARS} characters")
            )
            return
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            self._ack(None, _error("invalid_json", "the frame is not valid JSON"))
            return
        if not isinstance(frame, dict):
            self._ack(None, _error("invalid_frame", "a frame is a JSON object"))
            return
        ref = frame.get("id")
        if ref is not None and not (isinstance(ref, str | int) and len(str(ref)) <= 100):
            self._ack(
                None, _error("invalid_frame", "id is a string or number of at most 100 characters")
            )
            return
        kind = frame.get("type")
        self.last_pong = time.monotonic()  # any frame shows the client is alive
        if kind == "pong":
            self._ack(ref)
        elif kind == "ping":
            self._ack(ref)
            self._emit("pong", {})
        elif kind == "chat.send":
            self._start_turn(ref, frame.get("data"))
        elif kind == "chat.stop":
            self._stop_turn(ref, frame.get("data"))
        elif kind == "chat.rate":
            self._start_rating(ref, frame.get("data"))
        else:
            self._ack(ref, _error("unknown_type", f"unknown frame type {str(kind)[:50]!r}"))

    def _start_turn(self, ref: Any, data: Any) -> None:
        if self.turn is not None and not self.turn.done():
            self._ack(ref, _error("busy", "a turn is still running on this socket"))
            return
        try:
            request = ChatRequest.model_validate(data)
        except ValidationError as exc:
            self._ack(ref, _invalid(exc))
            return
        try:
            check_length(self.server.settings, request.message)
        except MongarsError as exc:
            error = classify(exc)
            self._ack(ref, _error(error.code, error.detail))
            return
        self._ack(ref)
        self.turn_ref = ref
        self.stop_requested = False
        self.turn = asyncio.create_task(self._turn(ref, request))

    def _stop_turn(self, ref: Any, data: Any) -> None:
        """``chat.stop`` with ``{"ref": <the chat.send id>}``: cancel that turn. The
        backend stops at once and nothing of the turn is stored."""
        target = data.get("ref") if isinstance(data, dict) else None
        running = self.turn is not None and not self.turn.done()
        if not running or target is None or target != self.turn_ref:
            self._ack(ref, _error("not_running", "no turn with that ref is running"))
            return
        assert self.turn is not None
        self.stop_requested = True
        self.turn.cancel()
        self._ack(ref)

    def _start_rating(self, ref: Any, data: Any) -> None:
        """``chat.rate`` with ``{"turn_id", "rating"}``: acknowledged once stored (or
        refused), then ``turn.rated`` reaches every socket of the user."""
        try:
            request = RateFrame.model_validate(data)
        except ValidationError as exc:
            self._ack(ref, _invalid(exc))
            return
        task = asyncio.create_task(self._rate(ref, request))
        self.ratings.add(task)
        task.add_done_callback(self.ratings.discard)

    async def _admitted(self) -> float | None:
        """``None`` when the account is gone or changed (``REVOKED`` is sent: the
        account may have changed in a process that could not tell this one), else
        the seconds the user's rate limit asks to wait (0: go)."""
        problem = await _account_problem(
            self.server, self.username, self.user, self.password_version
        )
        if problem is not None:
            self._emit(REVOKED, {"reason": problem})
            return None
        return await self.server.limiter.take(f"user:{self.user}")

    async def _rate(self, ref: Any, request: RateFrame) -> None:
        wait = await self._admitted()
        if wait is None:
            return
        if wait > 0:
            self._ack(ref, _error("rate_limited", f"retry in {wait:.1f} s"))
            return
        try:
            rated = await rate_turn(self.server, self.user, request.turn_id, request.stored())
        except MongarsError as exc:
            error = classify(exc)
            self._ack(ref, _error(error.code, error.detail))
            return
        except Exception:
            logger.exception("a websocket rating of %s failed", self.user)
            self._ack(ref, _error("internal_error", "internal error"))
            return
        self._ack(ref)
        await announce_rating(self.server, self.user, rated, ref)

    async def _turn(self, ref: Any, request: ChatRequest) -> None:
        wait = await self._admitted()
        if wait is None:
            return
        if wait > 0:
            self._emit(
                "chat.error",
                {"ref": ref, "code": "rate_limited", "message": f"retry in {wait:.1f} s"},
            )
            return

        async def on_delta(delta: str) -> None:
            if self.stop_requested:
                # The cancellation can be lost in a race (asyncio.wait_for on 3.11
                # returns a result that completed as it was cancelled): stop here too.
                raise TurnStopped
            self._emit("chat.delta", {"ref": ref, "delta": delta})

        try:
            response = await run_chat(
                self.server,
                self.user,
                request.message,
                request.session_id,
                on_delta,
                idempotency_key=request.idempotency_key,
            )
        except (asyncio.CancelledError, TurnStopped) as exc:
            if not self.stop_requested or self.closing:
                raise
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and task is not None:
                task.uncancel()
            self._emit("chat.stopped", {"ref": ref})
            return
        except MongarsError as exc:
            error = classify(exc)
            self._emit("chat.error", {"ref": ref, "code": error.code, "message": error.detail})
            return
        except Exception:
            logger.exception("a websocket turn of %s failed", self.user)
            self._emit(
                "chat.error", {"ref": ref, "code": "internal_error", "message": "internal error"}
            )
            return
        data = {**response.model_dump(mode="json"), "ref": ref}
        await self.server.hub.publish(make_event("chat.reply", self.user, data))


class TurnStopped(Exception):
    """Raised between two deltas of a turn that ``chat.stop`` stopped."""


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _invalid(exc: ValidationError) -> dict[str, str]:
    """A frame's invalid ``data``, told by its first problem."""
    problem = exc.errors()[0]
    where = ".".join(str(part) for part in problem["loc"]) or "data"
    return _error("invalid_input", f"{where}: {problem['msg']}")
