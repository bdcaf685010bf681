"""Typed values that flow through a conversation turn.

Everything a hook receives or returns is one of these pydantic models, so
plugins, the CLI's ``--json`` output and (later) the HTTP API share one shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from mongars_core.services import Services


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class ChatMessage(BaseModel):
    """One message of a prompt in chat-template form."""

    role: Literal["system", "user", "assistant"]
    content: str


class HistoryTurn(BaseModel):
    """A stored exchange: what the user said and what the assistant replied.

    ``id`` is the row's number (the order of turns); ``turn_id`` the id a reply
    carries (``Reply.turn_id``), by which a client rates it.
    """

    id: int
    user_id: str
    session_id: str
    message: str
    reply: str
    created_at: datetime
    turn_id: str | None = None
    rating: int | None = None
    """The user's rating of the reply: 1 thumbs up, -1 thumbs down, ``None`` unrated."""
    adapter: str | None = None
    """The LoRA adapter that answered (``name@version``); ``None``: the base model."""


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


def remembered_line(memories: list[Memory], width: int = 60) -> str | None:
    """One plain line naming the memories a reply had, for the CLI; ``None`` without any.

    ``remembered: "My dog is called Rex" (0.82), "I prefer tea" (0.41)``: each
    text on one line, cut at a word to at most ``width`` characters, with its
    relevance score.
    """
    if not memories:
        return None
    shown = [
        f'"{_shortened(" ".join(memory.text.split()), width)}" ({memory.score:.2f})'
        for memory in memories
    ]
    return "remembered: " + ", ".join(shown)


def _shortened(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "…"


class ReasoningHint(BaseModel):
    """A fact the assistant computed itself and hands the model as verified.

    ``expression`` is the expression computed (as found in the message, or what a
    phrase or a word problem was read as), ``result`` the exact answer as text,
    ``kind`` one of ``arithmetic``, ``unit``, ``date``, ``time``, ``age``,
    ``word_problem``.
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


PassageKind = Literal["memory", "document"]
"""What a retrieved passage is: one of the user's memories, or a chunk of a document."""


class Passage(BaseModel):
    """A passage retrieval found: one memory or one document chunk, with its source.

    ``key`` is unique across kinds (``"memory:12"``, ``"chunk:34"``); ``score`` is the
    fused relevance (higher is better, comparable only within one retrieval);
    ``source`` names it for a person ("notes.md › Setup", "conversation of
    2026-11-03"). ``before``/``after`` hold the neighbouring turns or chunks, oldest
    first, when the query asked for neighbours.
    """

    key: str
    kind: PassageKind
    text: str
    score: float = 0.0
    source: str = ""
    memory_id: int | None = None
    document_id: int | None = None
    collection: str | None = None
    position: int | None = None
    """The chunk's place in its document (0 first), or ``None`` for a memory."""
    heading: str | None = None
    """The document section the chunk belongs to ("Setup › Linux"), when it has one."""
    session_id: str | None = None
    created_at: datetime | None = None
    """When the memory was said, or the document added (its version's time)."""
    before: list[str] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list)
    ranks: dict[str, int] = Field(default_factory=dict)
    """Its rank (1 first) in each method that found it: ``{"bm25": 3, "dense": 1}``."""


class RetrievalQuery(BaseModel):
    """What :func:`mongars_core.retrieval.retrieve` (and ``mongars_retrieve``) is asked.

    Implementations return passages of ``user_id`` only (their own memories, their
    documents and the shared collections), of the ``kinds`` asked for.
    """

    user_id: str
    text: str
    kinds: frozenset[PassageKind] = frozenset({"memory", "document"})
    limit: int = Field(10, ge=1, le=1000)
    neighbours: int = Field(0, ge=0, le=5)
    """Adjacent turns or chunks to attach on each side of a hit."""
    collections: list[str] | None = None
    """Only these document collections (by name); ``None``: every one the user can read."""
    now: datetime = Field(default_factory=utcnow)
    """The moment "last week" and "yesterday" are counted from."""


class Source(BaseModel):
    """A numbered source of a reply: the passage behind ``[n]`` in its text."""

    number: int
    kind: PassageKind
    title: str
    """The document's title (and section) or the conversation it was said in."""
    text: str
    """The passage the model was given."""
    document_id: int | None = None
    memory_id: int | None = None
    created_at: datetime | None = None


class Finding(BaseModel):
    """What research found about a knowledge gap.

    ``number`` is its source number in the prompt (``[1]``) and ``passage`` the
    retrieved passage it comes from, when it came from retrieval.
    """

    topic: str
    text: str
    source: str = ""
    number: int | None = None
    passage: Passage | None = None


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


FinishReason = Literal["stop", "length", "repetition"]
"""Why a reply ended: ``"stop"`` the model finished, ``"length"`` it was cut at
``max_new_tokens``, ``"repetition"`` the pipeline stopped a loop (one copy kept)."""


class GenerationOutcome(BaseModel):
    """How a generation ended, filled in by a backend that knows (all optional).

    A backend that reports nothing leaves ``finish_reason`` as ``None``; the
    pipeline then judges from the text, counts usage with the backend's
    tokenizer (or estimates it) and measures the time to first token itself.
    """

    finish_reason: Literal["stop", "length"] | None = None
    tokens: int | None = None
    """Tokens the backend generated, when it counts them."""
    prompt_tokens: int | None = None
    """Tokens of the prompt as the model read it (chat template included), when counted."""
    tokens_per_second: float | None = None
    """Decode speed of this generation (tokens after the first, per second), when measured."""
    adapter: str | None = None
    """The :attr:`AdapterRef.id` of the adapter that generated the reply; ``None``: the base."""


class OutputConstraint(BaseModel):
    """Structured output a backend must keep to: a JSON schema or a GBNF grammar, one of the two.

    Only backends with the :class:`~mongars_core.capabilities.ConstrainsOutput`
    ability accept a request that carries one; the router skips the others.
    """

    model_config = ConfigDict(frozen=True)

    json_schema: dict[str, Any] | None = None
    """A JSON Schema the reply must validate against (the reply is that JSON and nothing else)."""
    grammar: str | None = None
    """A GBNF grammar (llama.cpp's format) the reply must match."""

    @model_validator(mode="after")
    def _exactly_one(self) -> OutputConstraint:
        if (self.json_schema is None) == (self.grammar is None):
            raise ValueError("give exactly one of json_schema and grammar")
        return self


class AdapterRef(BaseModel):
    """A LoRA adapter (peft format) a request is generated with, from the adapter registry."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    path: str
    """The folder that holds ``adapter_config.json`` and ``adapter_model.safetensors``."""
    base_model: str
    """The model it was trained on (``smollm2-135m-instruct``); another model refuses it."""
    sha256: str = ""
    """The registry's checksum of its files: converted copies are keyed by it."""

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"


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
    constraint: OutputConstraint | None = None
    """Structured output the reply must keep to (see :class:`OutputConstraint`)."""
    adapter: AdapterRef | None = None
    """The user's active LoRA adapter; a backend that serves adapters generates with it,
    others with the base model (``outcome.adapter`` says which)."""
    outcome: GenerationOutcome = Field(default_factory=GenerationOutcome, exclude=True)
    """Where the backend reports how generation ended (see :class:`GenerationOutcome`).

    Shared by the copies the router makes for each endpoint, and never dumped,
    so it changes no cache key and never travels to a remote backend.
    """


class TokenUsage(BaseModel):
    """Tokens of one generation: the prompt the model read and the reply it wrote.

    ``counted`` is true when the serving backend's tokenizer counted them, false
    for the estimate (about four characters a token) used otherwise.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class GenerationStats(BaseModel):
    """How fast a reply was generated."""

    time_to_first_token_ms: float | None = None
    """From the request to the backend until the first reply text arrived."""
    tokens_per_second: float | None = None
    """Decode speed: measured by the backend where it reports one, else completion
    tokens after the first over the time after the first token."""


class Reply(BaseModel):
    """The result of one conversation turn."""

    model_config = ConfigDict(ser_json_timedelta="float")

    turn_id: str
    user_id: str
    session_id: str
    text: str
    confidence: float
    """How likely the reply is right, in [0, 1]: calibrated on a labelled set
    (benchmarks/results/confidence.md); 0 for an empty reply."""
    backend: str
    model: str | None = None
    """The model the answering endpoint names (a role's model); ``None``: the backend's default."""
    truncated: bool = False
    """The reply was cut at the length limit (``llm.max_new_tokens``): its text
    ends at the last complete sentence or with an ellipsis."""
    finish_reason: FinishReason = "stop"
    memories: list[Memory] = Field(default_factory=list)
    reasoning: list[ReasoningHint] = Field(default_factory=list)
    gaps: list[KnowledgeGap] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    sources: list[Source] = Field(default_factory=list)
    """The numbered sources (``[1]``...) the reply was given, from research."""
    style_instructions: list[str] = Field(default_factory=list)
    speech: SpeechPlan | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    generation: GenerationStats = Field(default_factory=GenerationStats)
    adapter: str | None = None
    """The adapter that answered (``name@version``); ``None``: the base model."""
    replayed: bool = False
    """True when an idempotency key found this turn already stored: nothing was generated."""


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
    clarification: str | None = None
    """Set by research when the question depends on something nobody knows: the reply
    is this one clarifying question instead of a generated (invented) answer."""
    reasoning: list[ReasoningHint] = Field(default_factory=list)
    style_instructions: list[str] = Field(default_factory=list)
    if TYPE_CHECKING:
        services: Services  # always set by the pipeline
    else:
        # Not validated, nor dumped; a unit test of a plugin may leave it out.
        services: Any = Field(default=None, exclude=True, repr=False)


class TokenDelta(BaseModel):
    """A piece of streamed reply text."""

    text: str


class StreamEvent(BaseModel):
    """One item of ``Assistant.stream``: token deltas, then the final reply."""

    type: Literal["token", "reply"]
    delta: str = ""
    reply: Reply | None = None


class Conversation(BaseModel):
    """One conversation (session) of a user: its title, size and when it was last used.

    ``title`` is empty until the first turn names it after its message.
    """

    session_id: str
    title: str
    turns: int = 0
    created_at: datetime
    updated_at: datetime
