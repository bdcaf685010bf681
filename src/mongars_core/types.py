"""Typed values that flow through a conversation turn.

Everything a hook receives or returns is one of these pydantic models, so
plugins, the CLI's ``--json`` output and (later) the HTTP API share one shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class ChatMessage(BaseModel):
    """One message of a prompt in chat-template form."""

    role: Literal["system", "user", "assistant"]
    content: str


class HistoryTurn(BaseModel):
    """A stored exchange: what the user said and what the assistant replied."""

    id: int
    user_id: str
    session_id: str
    message: str
    reply: str
    created_at: datetime


class Memory(BaseModel):
    """A long-term memory recalled for a turn.

    ``score`` is the relevance to the current message in [0, 1]; ``source`` names
    the plugin or method that produced it (``"semantic"``, ``"lexical"``...).
    """

    id: int | str
    text: str
    score: float = 0.0
    source: str = ""
    created_at: datetime | None = None
    session_id: str | None = None


class ReasoningHint(BaseModel):
    """A fact the assistant computed itself and hands the model as verified.

    ``expression`` is what was found in the message, ``result`` the exact answer
    as text, ``kind`` one of ``arithmetic``, ``unit``, ``date``.
    """

    kind: str
    expression: str
    result: str

    def as_fact(self) -> str:
        return f"{self.expression} = {self.result}"


class KnowledgeGap(BaseModel):
    """Something the user asked about that neither memory nor history knows."""

    topic: str
    reason: str = "not found in memory or history"


class Finding(BaseModel):
    """What research found about a knowledge gap."""

    topic: str
    text: str
    source: str = ""


class StyleProfile(BaseModel):
    """How a user writes, learned from their messages."""

    messages_seen: int = 0
    average_words: float = 0.0
    formality: float = 0.5
    emoji_rate: float = 0.0
    exclamation_rate: float = 0.0
    question_rate: float = 0.0
    language: str = "en"


class SpeechSegment(BaseModel):
    text: str
    estimated_duration: float
    pause_after: float


class SpeechPlan(BaseModel):
    """How a reply would be spoken: sentence segments with timing."""

    turn_id: str
    text: str
    created_at: datetime = Field(default_factory=utcnow)
    segments: list[SpeechSegment] = Field(default_factory=list)
    average_words_per_second: float = 0.0
    tempo: float = 1.0


class GenerationRequest(BaseModel):
    """What the pipeline asks an LLM backend to generate."""

    messages: list[ChatMessage]
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    stop: list[str] = Field(default_factory=list)
    model: str | None = None
    prefix: str = ""
    """Reply text already sent: the backend continues it (failover mid-stream)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Backend-specific options from the endpoint's ``params``."""
    cacheable: bool = False
    """No user history, memory or style in it: identical requests may share a reply."""


class Reply(BaseModel):
    """The result of one conversation turn."""

    model_config = ConfigDict(ser_json_timedelta="float")

    turn_id: str
    user_id: str
    session_id: str
    text: str
    confidence: float
    backend: str
    memories: list[Memory] = Field(default_factory=list)
    reasoning: list[ReasoningHint] = Field(default_factory=list)
    gaps: list[KnowledgeGap] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    style_instructions: list[str] = Field(default_factory=list)
    speech: SpeechPlan | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)


class Turn(BaseModel):
    """The state of a turn in progress, handed to every runtime hook.

    Stages fill it in order: ``history`` before recall, ``memories`` before gap
    detection, and so on. ``services`` gives plugins the shared objects of the
    running assistant (settings, storage, embedder); it is excluded from dumps.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    turn_id: str
    user_id: str
    session_id: str
    message: str
    history: list[HistoryTurn] = Field(default_factory=list)
    memories: list[Memory] = Field(default_factory=list)
    gaps: list[KnowledgeGap] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    reasoning: list[ReasoningHint] = Field(default_factory=list)
    style_instructions: list[str] = Field(default_factory=list)
    services: Any = Field(default=None, exclude=True, repr=False)


class TokenDelta(BaseModel):
    """A piece of streamed reply text."""

    text: str


class StreamEvent(BaseModel):
    """One item of ``Assistant.stream``: token deltas, then the final reply."""

    type: Literal["token", "reply"]
    delta: str = ""
    reply: Reply | None = None
