"""An OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

The monGARS pipeline answers (memory, reasoning, style): the last user message
is the turn; earlier messages are not replayed, because monGARS keeps the
conversation history itself (per ``user`` field, used as the session id).
Authenticate with an API key (``Authorization: Bearer mgs_...``).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.errors import MongarsError
from mongars_server.app import ServerState
from mongars_server.deps import CurrentCaller, State
from mongars_server.errors import ApiError, classify

router = APIRouter(prefix="/v1", tags=["openai"])

DEFAULT_MODEL = "mongars"


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[Message], Field(min_length=1, max_length=1000)]
    stream: bool = False
    user: Annotated[str | None, Field(max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mongars"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _models(server: ServerState) -> list[str]:
    return [DEFAULT_MODEL, *server.assistant.router.names]


@router.get("/models", response_model=ModelList)
async def list_models(server: State, caller: CurrentCaller) -> ModelList:
    """``mongars`` (the default backend) and every registered backend by name."""
    created = int(time.time())
    return ModelList(data=[ModelCard(id=name, created=created) for name in _models(server)])


def _last_user_text(request: CompletionRequest) -> str:
    for message in reversed(request.messages):
        if message.role != "user":
            continue
        if isinstance(message.content, str):
            return message.content
        if isinstance(message.content, list):
            parts = [
                str(part.get("text", ""))
                for part in message.content
                if isinstance(part, dict) and part.get("type") == "text"
            ]
            return "\n".join(parts)
    raise ApiError(422, "messages holds no user message with text", "invalid_input")


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    server: State, caller: CurrentCaller, request: CompletionRequest
) -> dict[str, Any] | StreamingResponse:
    """A chat completion from the monGARS pipeline; ``stream: true`` answers with SSE."""
    if request.model not in _models(server):
        raise ApiError(404, f"the model {request.model!r} does not exist", "model_not_found")
    backend = None if request.model == DEFAULT_MODEL else request.model
    text = _last_user_text(request)
    session = request.user or "openai"
    started = int(time.time())
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    stream = server.assistant.stream(caller.username, text, session_id=session, backend=backend)
    if not request.stream:
        reply = None
        async for event in stream:
            if event.reply is not None:
                reply = event.reply
        assert reply is not None
        await server.changed(caller.username)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": started,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": "stop",
                }
            ],
        }
    # Start the turn before answering, so a bad request still gets a proper status.
    first = await anext(aiter(stream))
    return StreamingResponse(
        _sse(
            completion_id,
            request.model,
            started,
            first,
            stream,
            functools.partial(server.changed, caller.username),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _sse(
    completion_id: str,
    model: str,
    created: int,
    first: Any,
    stream: AsyncIterator[Any],
    on_done: Callable[[], Awaitable[None]],
) -> AsyncIterator[str]:
    streamed: list[str] = []

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": ""})
        event = first
        while True:
            if event.type == "token":
                streamed.append(event.delta)
                yield chunk({"content": event.delta})
            elif event.reply is not None:
                # Plugins may append to the reply after generation (a signature):
                # send what they added, so the streamed text matches the stored one.
                sent = "".join(streamed).strip()
                if event.reply.text.startswith(sent) and event.reply.text != sent:
                    yield chunk({"content": event.reply.text[len(sent) :]})
                yield chunk({}, "stop")
                await on_done()
                break
            event = await anext(stream)
    except MongarsError as exc:
        error = classify(exc)
        body = {"error": {"message": error.detail, "type": "server_error", "code": error.code}}
        yield f"data: {json.dumps(body)}\n\n"
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    yield "data: [DONE]\n\n"
