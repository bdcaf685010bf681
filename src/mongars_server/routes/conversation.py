"""Chat and history: the original monGARS HTTP contract."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mongars_core.types import (
    GenerationStats,
    HistoryTurn,
    Reply,
    SpeechPlan,
    SpeechSegment,
    StreamEvent,
)
from mongars_core.validation import check_length
from mongars_server.app import ServerState
from mongars_server.deps import CurrentCaller, State
from mongars_server.errors import ApiError
from mongars_server.events import make_event

router = APIRouter(tags=["conversation"])

SessionId = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[
        str,
        Field(
            min_length=1,
            description="At most `max_message_chars` characters (see GET /api/v1/limits).",
        ),
    ]
    session_id: SessionId = "default"
    idempotency_key: IdempotencyKey | None = Field(
        None,
        description="Stores the turn once: a retry with the same key gets the stored reply "
        "(the HTTP route also takes an Idempotency-Key header).",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("the message is blank")
        if "\x00" in value:
            raise ValueError("the message contains a NUL character")
        return value


class SpeechTurn(BaseModel):
    turn_id: str
    text: str
    created_at: datetime
    segments: list[SpeechSegment]
    average_words_per_second: float
    tempo: float


class RecalledMemory(BaseModel):
    """A memory that was in the reply's prompt."""

    id: int | str
    text: str
    score: float


class ReplySource(BaseModel):
    """A numbered source the reply was given (``[1]`` in its text)."""

    number: int
    kind: Literal["memory", "document"]
    title: str = Field(description="The document (and section) or conversation it is from.")
    text: str = Field(description="The passage the model read.")
    document_id: int | None = None
    memory_id: int | None = None
    created_at: datetime | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    counted: bool = Field(description="Counted by the model's tokenizer, not estimated.")


class ChatResponse(BaseModel):
    response: str
    confidence: float
    processing_time: float = Field(description="Seconds the turn took.")
    speech_turn: SpeechTurn | None
    turn_id: str
    session_id: str
    truncated: bool = Field(False, description="The reply was cut at the length limit.")
    replayed: bool = Field(
        False, description="An idempotency key found the turn already stored: this is that one."
    )
    memories: list[RecalledMemory] = Field(
        default_factory=list, description="The memories the reply had in its prompt."
    )
    sources: list[ReplySource] = Field(
        default_factory=list,
        description="The numbered sources from the user's documents and memories the reply "
        "was given to cite ([1], [2]...).",
    )
    usage: Usage = Field(description="Tokens of the prompt and the reply.")
    generation: GenerationStats = Field(
        description="Time to first token (ms) and decode speed (tokens/s)."
    )
    adapter: str | None = Field(
        None, description="The user's LoRA adapter that answered (`name@version`); null: the base."
    )


Rating = Literal["up", "down"]
RATING_NAMES: dict[int, Rating] = {1: "up", -1: "down"}


class HistoryItem(BaseModel):
    id: int
    user_id: str
    session_id: str
    query: str
    response: str
    timestamp: datetime
    turn_id: str | None = Field(None, description="What rates the reply (PUT .../rating).")
    rating: Rating | None = Field(None, description="Your rating of the reply; null: none.")
    adapter: str | None = Field(
        None, description="The LoRA adapter that answered (`name@version`); null: the base."
    )


def chat_response(reply: Reply, started: float) -> ChatResponse:
    speech = reply.speech or SpeechPlan(turn_id=reply.turn_id, text=reply.text)
    return ChatResponse(
        response=reply.text,
        confidence=reply.confidence,
        processing_time=round(time.perf_counter() - started, 4),
        speech_turn=SpeechTurn(**speech.model_dump()),
        turn_id=reply.turn_id,
        session_id=reply.session_id,
        truncated=reply.truncated,
        replayed=reply.replayed,
        memories=[
            RecalledMemory(id=memory.id, text=memory.text, score=round(memory.score, 3))
            for memory in reply.memories
        ],
        sources=[ReplySource(**source.model_dump()) for source in reply.sources],
        usage=Usage(
            prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens,
            total_tokens=reply.usage.total_tokens,
            counted=reply.usage.counted,
        ),
        generation=reply.generation,
        adapter=reply.adapter,
    )


def history_item(turn: HistoryTurn, *, username: str) -> HistoryItem:
    """A stored turn as the client sees it: ``user_id`` shows the account's
    username, never the internal id that owns the data."""
    return HistoryItem(
        id=turn.id,
        user_id=username,
        session_id=turn.session_id,
        query=turn.message,
        response=turn.reply,
        timestamp=turn.created_at,
        turn_id=turn.turn_id,
        rating=None if turn.rating is None else RATING_NAMES[turn.rating],
        adapter=turn.adapter,
    )


async def run_chat(
    server: ServerState,
    user: str,
    message: str,
    session_id: str,
    on_delta: Any = None,
    idempotency_key: str | None = None,
) -> ChatResponse:
    """One turn through the pipeline, counted in the metrics; ``on_delta`` gets each
    token piece as it is generated."""
    started = time.perf_counter()
    reply: Reply | None = None
    deltas = 0
    # Assistant.stream is an async generator (typed as the iterator it is to callers).
    stream = cast(
        AsyncGenerator[StreamEvent, None],
        server.assistant.stream(
            user, message, session_id=session_id, idempotency_key=idempotency_key
        ),
    )
    # aclosing: when on_delta raises (the turn was stopped), the backend stops at once.
    async with aclosing(stream) as events:
        async for event in events:
            if event.type == "token":
                deltas += 1
                if on_delta is not None:
                    await on_delta(event.delta)
            elif event.reply is not None:
                reply = event.reply
    assert reply is not None, "a stream always ends with the reply"
    await server.changed(user)
    server.telemetry.tokens.add(deltas, {"backend": reply.backend})
    server.telemetry.turns.add(1, {"backend": reply.backend})
    return chat_response(reply, started)


@router.post("/api/v1/conversation/chat", response_model=ChatResponse)
async def chat(
    server: State,
    caller: CurrentCaller,
    request: ChatRequest,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> ChatResponse:
    """One turn; the reply is also pushed to the caller's open websockets.

    With an ``Idempotency-Key`` header the turn is stored once: a retry gets the
    stored reply back (``replayed: true``), the same key with another message a 422.
    """
    check_length(server.settings, request.message)
    key = idempotency_key_of(idempotency_key, request.idempotency_key)
    response = await run_chat(
        server, caller.user_id, request.message, request.session_id, idempotency_key=key
    )
    # A replayed turn was pushed when first answered (or is in the history): not twice.
    if not response.replayed:
        data = {**response.model_dump(mode="json"), "ref": None}
        await server.hub.publish(make_event("chat.reply", caller.user_id, data))
    return response


def idempotency_key_of(header: str | None, body: str | None) -> str | None:
    """The request's idempotency key, from its header or its body (not two different)."""
    if header is not None and body is not None and header != body:
        raise ApiError(
            422, "the Idempotency-Key header and idempotency_key differ: send one", "invalid_input"
        )
    return header if header is not None else body


@router.get("/api/v1/conversation/history", response_model=list[HistoryItem])
async def history(
    server: State,
    caller: CurrentCaller,
    user_id: Annotated[str | None, Query(max_length=150)] = None,
    limit: Annotated[int, Query(ge=1)] = 50,
) -> list[HistoryItem]:
    """Your turns across sessions, newest first (at most 100)."""
    if user_id is not None and user_id != caller.username:
        raise ApiError(403, "you can only read your own history", "forbidden")
    turns = await server.assistant.store.history(caller.user_id, min(limit, 100))
    return [history_item(turn, username=caller.username) for turn in turns]
