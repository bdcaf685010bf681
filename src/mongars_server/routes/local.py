"""``POST /api/v1/local/chat``: turns of ``mongars chat`` on this machine, as a library user.

The caller names a library user id (the ids ``mongars chat --user`` uses,
apart from server accounts), so only a process that can read the data dir may
call it: it must present the credential derived from the server secret
(:func:`mongars_core.local_server.local_credential`) and connect from a
loopback address. The reply streams back as NDJSON, one event a line:
``{"type": "token", "delta"}``, then ``{"type": "reply", "reply": Reply}`` or
``{"type": "error", "detail", "code"}``. A client that disconnects stops the
generation, and nothing of that turn is stored.

``backend`` obeys the rule of the OpenAI-compatible API: the configured backend
(the default) or one named in ``MONGARS_SERVER__EXPOSED_MODELS``; any other is a
403, so no request loads a backend the operator did not choose.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.errors import MongarsError
from mongars_core.local_server import CREDENTIAL_HEADER, LOCAL_CHAT_PATH
from mongars_core.types import StreamEvent
from mongars_core.validation import validate_turn
from mongars_server.app import ServerState
from mongars_server.deps import State
from mongars_server.errors import ApiError, classify
from mongars_server.routes.openai_api import DEFAULT_MODEL, exposed_models

router = APIRouter(tags=["local"])


class LocalChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(description="A library user id, as `mongars chat --user`.")]
    message: str
    session_id: str | None = None
    backend: str | None = None


async def local_caller(
    server: State,
    request: Request,
    credential: Annotated[str | None, Header(alias=CREDENTIAL_HEADER)] = None,
) -> None:
    """Refuse any client that is not on this machine or lacks the local credential."""
    client = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(client).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ApiError(403, "the local route answers only this machine", "forbidden")
    expected = server.local_credential.encode()
    if not credential or not expected or not hmac.compare_digest(credential.encode(), expected):
        raise ApiError(401, f"send the local credential in {CREDENTIAL_HEADER}", "unauthorized")


@router.post(LOCAL_CHAT_PATH, dependencies=[Depends(local_caller)], include_in_schema=False)
async def local_chat(server: State, body: LocalChatRequest) -> StreamingResponse:
    """One turn of a library user, streamed as NDJSON events."""
    session_id = body.session_id or "default"
    allowed = exposed_models(server)
    if body.backend not in (None, DEFAULT_MODEL):
        try:
            server.assistant.router.get(body.backend)  # an unknown name says so first
        except MongarsError as exc:
            raise classify(exc) from None
    if body.backend not in (None, DEFAULT_MODEL, server.settings.llm.backend, *allowed):
        raise ApiError(
            403,
            f"the backend {body.backend!r} is not exposed by this server "
            f"(MONGARS_SERVER__EXPOSED_MODELS: {', '.join(allowed)})",
            "backend_not_exposed",
        )
    backend = None if body.backend == DEFAULT_MODEL else body.backend
    try:
        text = validate_turn(server.settings, body.user_id, body.message, session_id)
    except MongarsError as exc:
        raise classify(exc) from None
    events = _events(server, body.user_id, text, session_id, backend)
    return StreamingResponse(events, media_type="application/x-ndjson")


async def _events(
    server: ServerState, user_id: str, message: str, session_id: str, backend: str | None
) -> AsyncIterator[str]:
    deltas = 0
    stream = cast(
        "AsyncGenerator[StreamEvent, None]",  # what Assistant.stream is: an async generator
        server.assistant.stream(user_id, message, session_id=session_id, backend=backend),
    )
    try:
        # aclosing: a client that disconnects stops the backend at once.
        async with aclosing(stream) as turn:
            async for event in turn:
                if event.type == "token":
                    deltas += 1
                    yield _line({"type": "token", "delta": event.delta})
                elif event.reply is not None:
                    reply = event.reply
                    await server.changed(user_id)
                    server.telemetry.tokens.add(deltas, {"backend": reply.backend})
                    server.telemetry.turns.add(1, {"backend": reply.backend})
                    yield _line({"type": "reply", "reply": reply.model_dump(mode="json")})
    except MongarsError as exc:
        # The status line has gone: the error travels as the last event. The
        # caller is this machine's owner, so it gets the whole message.
        yield _line({"type": "error", "detail": str(exc), "code": classify(exc).code})


def _line(event: dict[str, object]) -> str:
    return json.dumps(event, ensure_ascii=False) + "\n"
