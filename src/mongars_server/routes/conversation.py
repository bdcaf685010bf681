"""Chat and history: the original monGARS HTTP contract."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mongars_core.types import HistoryTurn, Reply, SpeechPlan, SpeechSegment
from mongars_server.app import ServerState
from mongars_server.deps import CurrentCaller, State
from mongars_server.errors import ApiError
from mongars_server.events import make_event

router = APIRouter(tags=["conversation"])

SessionId = Annotated[str, Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9_.@-]+$")]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[str, Field(min_length=1, max_length=1000)]
    session_id: SessionId = "default"

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


class ChatResponse(BaseModel):
    response: str
    confidence: float
    processing_time: float = Field(description="Seconds the turn took.")
    speech_turn: SpeechTurn | None
    turn_id: str
    session_id: str


class HistoryItem(BaseModel):
    id: int
    user_id: str
    session_id: str
    query: str
    response: str
    timestamp: datetime


def chat_response(reply: Reply, started: float) -> ChatResponse:
    speech = reply.speech or SpeechPlan(turn_id=reply.turn_id, text=reply.text)
    return ChatResponse(
        response=reply.text,
        confidence=reply.confidence,
        processing_time=round(time.perf_counter() - started, 4),
        speech_turn=SpeechTurn(**speech.model_dump()),
        turn_id=reply.turn_id,
        session_id=reply.session_id,
    )


def history_item(turn: HistoryTurn) -> HistoryItem:
    return HistoryItem(
        id=turn.id,
        user_id=turn.user_id,
        session_id=turn.session_id,
        query=turn.message,
        response=turn.reply,
        timestamp=turn.created_at,
    )


async def run_chat(
    server: ServerState, user: str, message: str, session_id: str, on_delta: Any = None
) -> ChatResponse:
    """One turn through the pipeline, counted in the metrics; ``on_delta`` gets each
    token piece as it is generated."""
    started = time.perf_counter()
    reply: Reply | None = None
    deltas = 0
    async for event in server.assistant.stream(user, message, session_id=session_id):
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
async def chat(server: State, caller: CurrentCaller, request: ChatRequest) -> ChatResponse:
    """One turn; the reply is also pushed to the caller's open websockets."""
    response = await run_chat(server, caller.username, request.message, request.session_id)
    data = {**response.model_dump(mode="json"), "ref": None}
    await server.hub.publish(make_event("chat.reply", caller.username, data))
    return response


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
    turns = await server.assistant.store.history(caller.username, min(limit, 100))
    return [history_item(turn) for turn in turns]
