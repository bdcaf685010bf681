"""An OpenAI-compatible API: ``POST /v1/chat/completions`` and ``GET /v1/models``.

The monGARS pipeline answers (memory, reasoning, style): the last user message
is the turn; earlier messages are not replayed, because monGARS keeps the
conversation history itself (per ``user`` field, used as the session id).
Authenticate with an API key (``Authorization: Bearer mgs_...``).

Only the models the operator exposes (``MONGARS_SERVER__EXPOSED_MODELS``) are
listed and served; any other name is a 404 ``model_not_found``, so a user's
request never loads a backend the operator did not choose. A request with an
``Idempotency-Key`` (or ``X-Client-Request-Id``) header stores its turn once:
a retry gets the stored reply back.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.errors import MongarsError
from mongars_core.types import Reply, StreamEvent
from mongars_core.validation import check_length
from mongars_server.app import ServerState
from mongars_server.deps import CurrentCaller, State
from mongars_server.errors import ApiError, classify
from mongars_server.settings import SERVER

router = APIRouter(prefix="/v1", tags=["openai"])

DEFAULT_MODEL = "mongars"


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: Annotated[list[Message], Field(min_length=1, max_length=1000)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: Annotated[str | None, Field(max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mongars"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def exposed_models(server: ServerState) -> list[str]:
    """The models users may name: the operator's list, less backends not registered."""
    registered = set(server.assistant.router.names)
    names = server.settings.section(SERVER).exposed_models
    return [name for name in dict.fromkeys(names) if name == DEFAULT_MODEL or name in registered]


@router.get("/models", response_model=ModelList)
async def list_models(server: State, caller: CurrentCaller) -> ModelList:
    """The models the operator exposes (``mongars``, the configured backend, by default)."""
    created = int(time.time())
    return ModelList(data=[ModelCard(id=name, created=created) for name in exposed_models(server)])


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


def _usage(reply: Reply) -> dict[str, int]:
    usage = reply.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _finish_reason(reply: Reply) -> str:
    """OpenAI's reason: ``length`` when the reply was cut at the token cap."""
    return "length" if reply.truncated or reply.finish_reason == "length" else "stop"


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    server: State,
    caller: CurrentCaller,
    request: CompletionRequest,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    x_client_request_id: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any] | StreamingResponse:
    """A chat completion from the monGARS pipeline; ``stream: true`` answers with SSE.

    ``Idempotency-Key`` (else ``X-Client-Request-Id``), with the ``user`` field,
    makes a retry return the stored turn instead of storing it again.
    """
    if request.model not in exposed_models(server):
        raise ApiError(
            404,
            f"the model {request.model!r} does not exist or is not served here "
            f"(models: {', '.join(exposed_models(server))})",
            "model_not_found",
        )
    backend = None if request.model == DEFAULT_MODEL else request.model
    text = _last_user_text(request)
    check_length(server.settings, text.strip())
    session = request.user or "openai"
    started = int(time.time())
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    stream = server.assistant.stream(
        caller.user_id,
        text,
        session_id=session,
        backend=backend,
        idempotency_key=idempotency_key or x_client_request_id,
    )
    if not request.stream:
        reply = None
        async for event in stream:
            if event.reply is not None:
                reply = event.reply
        assert reply is not None
        await server.changed(caller.user_id)
        response.headers["X-Request-Id"] = completion_id
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": started,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": _finish_reason(reply),
                }
            ],
            "usage": _usage(reply),
        }
    # Start the turn before answering, so a bad request still gets a proper status.
    first = await anext(aiter(stream))
    include_usage = request.stream_options is not None and request.stream_options.include_usage
    return StreamingResponse(
        _sse(
            _Chunks(completion_id, request.model, started, include_usage),
            first,
            stream,
            functools.partial(server.changed, caller.user_id),
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Request-Id": completion_id},
    )


class _Chunks:
    """The ``chat.completion.chunk`` events of one streamed completion."""

    def __init__(self, completion_id: str, model: str, created: int, include_usage: bool):
        self.completion_id = completion_id
        self.model = model
        self.created = created
        self.include_usage = include_usage

    def event(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        if self.include_usage and "usage" not in body:
            body["usage"] = None  # OpenAI: every chunk but the last has a null usage
        return f"data: {json.dumps(body)}\n\n"

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> str:
        return self.event([{"index": 0, "delta": delta, "finish_reason": finish}])


async def _sse(
    chunks: _Chunks,
    first: StreamEvent,
    stream: AsyncIterator[StreamEvent],
    on_done: Callable[[], Awaitable[None]],
) -> AsyncIterator[str]:
    streamed: list[str] = []
    try:
        yield chunks.delta({"role": "assistant", "content": ""})
        event = first
        while True:
            if event.type == "token":
                streamed.append(event.delta)
                yield chunks.delta({"content": event.delta})
            elif event.reply is not None:
                # Plugins may append to the reply after generation (a signature):
                # send what they added, so the streamed text matches the stored one.
                reply = event.reply
                sent = "".join(streamed).strip()
                if reply.text.startswith(sent) and reply.text != sent:
                    yield chunks.delta({"content": reply.text[len(sent) :]})
                yield chunks.delta({}, _finish_reason(reply))
                if chunks.include_usage:
                    yield chunks.event([], usage=_usage(reply))
                await on_done()
                break
            event = await anext(stream)
    except MongarsError as exc:
        error = classify(exc)
        kind = "invalid_request_error" if error.status_code < 500 else "server_error"
        body = {"error": {"message": error.detail, "type": kind, "param": None, "code": error.code}}
        yield f"data: {json.dumps(body)}\n\n"
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    yield "data: [DONE]\n\n"
