"""The conversation pipeline: :class:`Assistant` runs a turn through every stage.

Stages, each a hook (docs/architecture.md has the picture): history, recall,
gaps and research, reasoning, style, generation, adaptation, speech,
persistence and memory, observation. Optional stages that fail are logged and
reported in ``Reply.warnings``; the turn still completes. A failing LLM raises
:class:`~mongars_core.errors.BackendError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import pluggy
from opentelemetry import metrics, trace

from mongars_core.assembly import build_host, build_services
from mongars_core.capabilities import Progress
from mongars_core.changes import ChangeStamps
from mongars_core.confidence import estimate_confidence
from mongars_core.erasure import ErasureSummary, forget_user
from mongars_core.errors import (
    DuplicateTurnError,
    GenerationTimeoutError,
    MongarsError,
    UnknownUserError,
)
from mongars_core.history_io import (
    Format,
    ImportSummary,
    ParsedHistory,
    export_records,
    import_history,
    parse_history,
)
from mongars_core.idempotency import check_idempotency_key, replayed_reply
from mongars_core.llm import generation_stats, generation_usage
from mongars_core.memory_import import MemoryImportSummary, MemoryItem, import_memories
from mongars_core.prompt import build_messages, reply_sources
from mongars_core.recall import select_memories
from mongars_core.reply_text import RepetitionGuard, finished_text
from mongars_core.retrieval import retrieve
from mongars_core.router import Endpoint
from mongars_core.services import Services
from mongars_core.settings import Settings
from mongars_core.storage.models import MemoryRecord, TurnRecord
from mongars_core.storage.store import Store
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.turn_context import HookFailure, TurnContext, ms_since
from mongars_core.types import (
    AdapterRef,
    Conversation,
    GenerationRequest,
    HistoryTurn,
    Memory,
    Passage,
    PassageKind,
    Reply,
    RetrievalQuery,
    StreamEvent,
    Turn,
)
from mongars_core.validation import check_id, conversation_title, validate_turn

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from mongars_core.plugins import PluginHost

logger = logging.getLogger(__name__)

NO_ANSWER = "Sorry, I have no answer to that. Could you put it another way?"
CLARIFICATION_BACKEND = "clarification"
"""``Reply.backend`` of a reply that asks research's clarifying question (no model ran)."""
CLARIFICATION_CONFIDENCE = 0.9


class Assistant:
    """A conversational assistant assembled from plugins.

    Build one with :meth:`from_settings` and close it with :meth:`aclose` (or
    use ``async with``).
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.store
        self.router = services.router
        self.plugins = services.plugins
        self.changes = ChangeStamps(services.settings.data_dir / "changes")

    @classmethod
    async def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        host: PluginHost | None = None,
        store: Store | None = None,
        redis: Redis | None = None,
        tracer: trace.Tracer | None = None,
        meter: metrics.Meter | None = None,
    ) -> Assistant:
        """Load plugins, open storage, collect backends and embedders, start plugins.

        ``host`` is an already-built plugin host (the server's) and
        ``plugin_manager`` a manager to build one from; by default the
        installed plugins load. ``store`` is an already-open store to use
        instead of opening ``settings.resolved_database_url()``; the assistant
        closes it. ``redis`` is the host process's Redis client, shared by the
        response cache (the caller closes it); ``tracer`` and ``meter`` the host's
        OpenTelemetry tracer and meter.
        """
        if host is None:
            host = build_host(settings or Settings(), plugin_manager=plugin_manager)
        services = await build_services(host, store=store, redis=redis, tracer=tracer, meter=meter)
        assistant = cls(services)
        try:
            await host.startup(services)
        except BaseException:
            await assistant.aclose()
            raise
        return assistant

    async def aclose(self) -> None:
        """Shut the plugins down, then close the router (its cache) and the store."""
        try:
            await self.plugins.shutdown(self.services)
        finally:
            try:
                await self.router.aclose()
            finally:
                self.plugins.close()
                await self.store.close()

    async def __aenter__(self) -> Assistant:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- public API ------------------------------------------------------------------

    async def chat(
        self,
        user_id: str,
        message: str,
        *,
        session_id: str | None = None,
        backend: str | None = None,
        idempotency_key: str | None = None,
    ) -> Reply:
        """Run one turn and return the whole reply (see :meth:`stream` for
        ``idempotency_key``)."""
        reply: Reply | None = None
        events = self.stream(
            user_id,
            message,
            session_id=session_id,
            backend=backend,
            idempotency_key=idempotency_key,
        )
        async for event in events:
            if event.reply is not None:
                reply = event.reply
        assert reply is not None, "stream always ends with the reply"
        return reply

    async def stream(
        self,
        user_id: str,
        message: str,
        *,
        session_id: str | None = None,
        backend: str | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Run one turn, yielding token deltas as they come, then the final reply.

        Closing the iterator early stops generation; nothing of the turn is
        stored then. With ``idempotency_key`` (scoped to ``user_id``) a turn is
        stored once: a retry with the same key gets the stored reply back
        (``Reply.replayed``) without generating or remembering again, and the
        same key with another message or session raises
        :class:`~mongars_core.errors.IdempotencyKeyReusedError`.
        """
        session_id = session_id or "default"
        text = self._validate(user_id, message, session_id)
        role = self.settings.llm.role
        self.router.endpoints(role, backend)  # an unknown backend fails before any work
        await self._reload_if_changed(user_id)
        if idempotency_key is not None:
            check_idempotency_key(idempotency_key)
            stored = await self.store.turn_for_key(user_id, idempotency_key)
            if stored is not None:
                reply = replayed_reply(stored, text, session_id)
                yield StreamEvent(type="token", delta=reply.text)
                yield StreamEvent(type="reply", reply=reply)
                return
        turn = Turn(
            turn_id=uuid.uuid4().hex,
            user_id=user_id,
            session_id=session_id,
            message=text,
            services=self.services,
        )
        tracer = self.services.tracer
        # Not "current": an async generator's context changes at every yield.
        turn_span = tracer.start_span(
            "mongars.turn", attributes={"mongars.backend": backend or "", "mongars.role": role}
        )
        context = TurnContext(tracer, trace.set_span_in_context(turn_span))
        try:
            # aclosing: a consumer that stops early stops the backend at once.
            async with aclosing(self._run_turn(turn, context, backend, idempotency_key)) as events:
                async for event in events:
                    yield event
        except GeneratorExit:
            turn_span.set_attribute("mongars.stopped_early", True)
            raise
        except BaseException as exc:
            turn_span.record_exception(exc)
            turn_span.set_status(trace.StatusCode.ERROR, type(exc).__name__)
            raise
        finally:
            turn_span.end()

    async def _run_turn(
        self,
        turn: Turn,
        context: TurnContext,
        backend: str | None,
        idempotency_key: str | None,
    ) -> AsyncGenerator[StreamEvent, None]:
        since = self.services.user_writes.generation(turn.user_id)
        with context.stage("prepare"):
            await self._prepare(turn, context)
        if turn.clarification:
            async with aclosing(self._clarify(turn, context, idempotency_key, since)) as events:
                async for event in events:
                    yield event
            return

        adapter = self._adapter_for(turn.user_id, context)
        request = GenerationRequest(
            messages=build_messages(self.settings, turn),
            max_new_tokens=self.settings.llm.max_new_tokens,
            temperature=self.settings.llm.temperature,
            top_p=self.settings.llm.top_p,
            adapter=adapter,
            cacheable=not (
                turn.history
                or turn.memories
                or turn.style_instructions
                or turn.findings
                or turn.reasoning
                or adapter
            ),
        )
        served: list[Endpoint] = []
        pieces: list[str] = []
        guard = RepetitionGuard()
        timed_out = False
        first_token_ms: float | None = None
        started = time.perf_counter()
        span = context.tracer.start_span("mongars.generate", context=context.trace_context)
        try:
            # aclosing: a consumer that stops early stops the backend at once,
            # not whenever the abandoned generator is collected.
            stream = self.router.stream(
                request, backend, role=self.settings.llm.role, on_endpoint=served.append
            )
            async with aclosing(stream) as deltas:
                async for delta in deltas:
                    if delta:
                        if first_token_ms is None:
                            first_token_ms = ms_since(started)
                        pieces.append(delta)
                        yield StreamEvent(type="token", delta=delta)
                        if guard.feed(delta):
                            break  # a loop: stop the backend, keep one copy
        except GenerationTimeoutError:
            if not pieces:
                raise
            # The deadline passed mid-reply: keep what the user already read,
            # cut as at the token limit, rather than throw it away.
            timed_out = True
            request.outcome.finish_reason = "length"
        finally:
            span.set_attribute("mongars.deltas", len(pieces))
            span.end()
        context.timings["generate"] = ms_since(started)
        generated, finish_reason = finished_text(guard, request)
        # The endpoint that finished the reply ("cache" when none had to).
        backend_name = served[-1].backend_name if served else "cache"
        if adapter is not None and request.outcome.adapter is None:
            context.notes.append(
                f"your adapter {adapter.id} was not applied ({backend_name} cannot use it): "
                "the base model answered"
            )

        with context.stage("adapt"):
            final_text = await self.plugins.adapt_reply(turn, generated, context)
        if not final_text.strip():
            # The model said nothing, or the transforms dropped all of it (a
            # reply that only echoed its instructions): never answer with nothing.
            final_text = NO_ANSWER
        with context.stage("speech"):
            speech = await self.plugins.plan_speech(turn, final_text, context)
        reply = Reply(
            turn_id=turn.turn_id,
            user_id=turn.user_id,
            session_id=turn.session_id,
            text=final_text,
            confidence=(
                0.05
                if final_text == NO_ANSWER
                else estimate_confidence(turn, final_text, finish_reason)
            ),
            backend=backend_name,
            model=served[-1].model if served else None,
            truncated=finish_reason == "length",
            finish_reason=finish_reason,
            memories=turn.memories,
            reasoning=turn.reasoning,
            gaps=turn.gaps,
            findings=turn.findings,
            sources=reply_sources(turn.findings),
            style_instructions=turn.style_instructions,
            speech=speech,
            usage=generation_usage(
                served[-1].backend if served else None, request, generated, len(served)
            ),
            adapter=request.outcome.adapter,
        )
        reply.generation = generation_stats(
            request.outcome, reply.usage, first_token_ms, context.timings["generate"]
        )
        with context.stage("finish"):
            stored = await self._finish(turn, reply, backend_name, context, idempotency_key, since)
        if stored is not None:  # a concurrent request with the same key stored first
            yield StreamEvent(
                type="reply", reply=replayed_reply(stored, turn.message, turn.session_id)
            )
            return
        reply.timings = dict(context.timings)
        reply.warnings = context.warnings()
        if timed_out:
            reply.warnings.append(
                f"the reply was cut at the time limit of {self.settings.llm.timeout_s:g} s "
                "(MONGARS_LLM__TIMEOUT_S)"
            )
        elif reply.truncated:
            reply.warnings.append(
                f"the reply was cut at the length limit of {request.max_new_tokens} tokens "
                "(MONGARS_LLM__MAX_NEW_TOKENS)"
            )
        yield StreamEvent(type="reply", reply=reply)

    async def _clarify(
        self, turn: Turn, context: TurnContext, idempotency_key: str | None, since: int
    ) -> AsyncGenerator[StreamEvent, None]:
        """Reply with research's clarifying question instead of generating: the
        question depends on something neither the user's data nor the model knows,
        and a small model would invent it. Stored like any reply."""
        text = turn.clarification or ""
        yield StreamEvent(type="token", delta=text)
        with context.stage("speech"):
            speech = await self.plugins.plan_speech(turn, text, context)
        reply = Reply(
            turn_id=turn.turn_id,
            user_id=turn.user_id,
            session_id=turn.session_id,
            text=text,
            # Nothing invented: a question about what is unknown is very likely right.
            confidence=CLARIFICATION_CONFIDENCE,
            backend=CLARIFICATION_BACKEND,
            finish_reason="stop",
            memories=turn.memories,
            reasoning=turn.reasoning,
            gaps=turn.gaps,
            findings=turn.findings,
            style_instructions=turn.style_instructions,
            speech=speech,
        )
        with context.stage("finish"):
            stored = await self._finish(
                turn, reply, CLARIFICATION_BACKEND, context, idempotency_key, since
            )
        if stored is not None:  # a concurrent request with the same key stored first
            yield StreamEvent(
                type="reply", reply=replayed_reply(stored, turn.message, turn.session_id)
            )
            return
        reply.timings = dict(context.timings)
        reply.warnings = context.warnings()
        yield StreamEvent(type="reply", reply=reply)

    def _adapter_for(self, user_id: str, context: TurnContext) -> AdapterRef | None:
        """The user's active LoRA adapter, if any; a registry that cannot be read
        costs the adapter (a warning), not the turn."""
        try:
            adapter = self.services.adapter_registry().for_user(user_id)
        except (MongarsError, ValueError, OSError) as exc:  # a damaged manifest too
            logger.warning("the adapter registry cannot be read: %s", exc)
            context.notes.append(f"answered without the user's adapter: {exc}")
            return None
        return None if adapter is None else adapter.ref()

    async def _finish(
        self,
        turn: Turn,
        reply: Reply,
        backend_name: str,
        context: TurnContext,
        idempotency_key: str | None,
        since: int,
    ) -> TurnRecord | None:
        """Stages 9-10 and the commit: the turn row and what remember and observe
        stage side by side, stored in one transaction before the reply is returned.

        A failed commit raises :class:`~mongars_core.errors.StorageError` and
        stores nothing of the turn; so does a user erased since the turn began
        (``since``, their erasure generation then): ``UserErasedError``.
        Returns the turn stored under
        ``idempotency_key`` by a concurrent request, when that one won: nothing
        of this one is stored then.
        """
        writes = UnitOfWork()
        self.store.stage_turn(
            writes,
            turn_id=turn.turn_id,
            user_id=turn.user_id,
            session_id=turn.session_id,
            message=turn.message,
            reply=reply.text,
            confidence=reply.confidence,
            backend=backend_name,
            meta={
                "memories": [memory.id for memory in turn.memories],
                "reasoning": [hint.as_fact() for hint in turn.reasoning],
                "gaps": [gap.topic for gap in turn.gaps],
                "finish_reason": reply.finish_reason,
                "truncated": reply.truncated,
                "usage": reply.usage.model_dump(),
                "adapter": reply.adapter,
            },
            idempotency_key=idempotency_key,
        )

        async def remember() -> None:
            with context.stage("remember"):
                await self.plugins.remember(turn, reply, writes, context)

        async def observe() -> None:
            with context.stage("observe"):
                await self.plugins.turn_completed(turn, reply, writes, context)

        try:
            await asyncio.gather(remember(), observe())
            with context.stage("persist"):
                async with self.services.user_writes.storing(turn.user_id, since):
                    await self.store.commit(writes, deadline=self.settings.stage_timeout_s)
        except DuplicateTurnError:
            assert idempotency_key is not None, "only a keyed turn is a duplicate turn"
            stored = await self.store.turn_for_key(turn.user_id, idempotency_key)
            if stored is None:  # stored and then deleted in between: nothing to return
                raise
            return stored
        finally:
            # A turn stopped before its commit leaves nothing staged behind.
            await writes.discard(self.settings.stage_timeout_s)
        context.failures.extend(
            HookFailure("after_commit", name, error) for name, error in writes.failures
        )
        return None

    async def history(self, user_id: str, limit: int = 50) -> list[HistoryTurn]:
        """A user's turns across sessions, newest first."""
        await self._require_user(user_id)
        return await self.store.history(user_id, limit)

    async def rate(self, user_id: str, turn_id: str, rating: int | None) -> HistoryTurn:
        """Rate the reply of one of ``user_id``'s turns: 1 thumbs up, -1 thumbs down,
        ``None`` clears (``TurnNotFoundError`` when the turn isn't theirs). Learning
        reads ratings: replies rated up are examples, those rated down are left out."""
        check_id("user id", user_id)
        return await self.store.rate_turn(user_id, turn_id, rating)

    async def import_history(
        self,
        user_id: str,
        data: str | bytes | ParsedHistory,
        *,
        format: Format = "auto",
        progress: Progress | None = None,
    ) -> ImportSummary:
        """Import a history file (monGARS JSONL or a ChatGPT ``conversations.json``) as
        ``user_id``'s turns and memories, all or nothing (:mod:`~mongars_core.history_io`)."""
        check_id("user id", user_id)
        if not isinstance(data, ParsedHistory):
            data = parse_history(data, self.settings, format)
        try:
            return await import_history(self.services, user_id, data, progress=progress)
        finally:
            self.changes.touch(user_id)

    async def export_history(self, user_id: str) -> list[dict[str, Any]]:
        """All of a user's data as JSONL records (``history_io.dumps_jsonl`` writes them)."""
        return await export_records(self.services, user_id)

    async def list_memories(self, user_id: str) -> list[MemoryRecord]:
        """A user's live memories, oldest first."""
        await self._require_user(user_id)
        return await self.store.list_memories(user_id)

    async def search_memories(self, user_id: str, query: str, limit: int = 10) -> list[Memory]:
        """A user's memories most relevant to ``query``, best first, as recall finds them.

        Matches below the recall threshold (``memory.min_score``, or
        ``min_lexical_score`` for word matches) are left out, as in a turn.
        """
        await self._require_user(user_id)
        text = self._validate(user_id, query, "search")
        await self._reload_if_changed(user_id)
        turn = Turn(
            turn_id=uuid.uuid4().hex,
            user_id=user_id,
            session_id="search",
            message=text,
            services=self.services,
        )
        context = TurnContext(self.services.tracer)
        found = await self.plugins.recall(turn, context)
        if context.failures:
            raise context.failures[0].error
        settings = self.settings.memory
        found = [m for m in found if m.score >= settings.min_score_for(m.source)]
        found.sort(key=lambda memory: memory.score, reverse=True)
        return found[:limit]

    async def retrieve(
        self,
        user_id: str,
        query: str,
        *,
        limit: int = 10,
        kinds: frozenset[PassageKind] = frozenset({"memory", "document"}),
        neighbours: int = 0,
        collections: list[str] | None = None,
    ) -> list[Passage]:
        """The passages of the user's memories and documents (and shared collections)
        most relevant to ``query``, best first, each with its source
        (:func:`mongars_core.retrieval.retrieve`)."""
        check_id("user id", user_id)
        text = self._validate(user_id, query, "search")
        await self._reload_if_changed(user_id)
        request = RetrievalQuery(
            user_id=user_id,
            text=text,
            limit=limit,
            kinds=kinds,
            neighbours=neighbours,
            collections=collections,
        )
        return await retrieve(self.services, request)

    async def import_memories(
        self,
        user_id: str,
        items: Iterable[MemoryItem | dict[str, Any]],
        *,
        progress: Progress | None = None,
    ) -> MemoryImportSummary:
        """Store ``items`` (text, and optionally when it was said and in which session)
        as ``user_id``'s memories, all or nothing (:mod:`mongars_core.memory_import`)."""
        check_id("user id", user_id)
        try:
            return await import_memories(self.services, user_id, items, progress=progress)
        finally:
            self.changes.touch(user_id)

    async def forget_user(self, user_id: str) -> ErasureSummary:
        """Forget everything of ``user_id``: their history and conversations, memories,
        documents, style profile and other plugin state, and the adapters learnt from
        them (:mod:`mongars_core.erasure`). Their account, if any, stays."""
        check_id("user id", user_id)
        try:
            return await forget_user(self.services, user_id)
        finally:  # even a partial erasure leaves caches that must go
            self.changes.touch(user_id)

    async def delete_memory(self, user_id: str, memory_id: int) -> None:
        """Delete one of a user's memories (``MemoryNotFoundError`` when it isn't theirs)."""
        await self._require_user(user_id)
        await self.store.delete_memory(user_id, memory_id)
        self.changes.touch(user_id)
        await self._forget(user_id, [memory_id])

    async def delete_memories(self, user_id: str) -> int:
        """Delete all of a user's memories; returns how many."""
        await self._require_user(user_id)
        count = await self.store.delete_memories(user_id)
        self.changes.touch(user_id)
        await self._forget(user_id, None)
        return count

    async def list_conversations(self, user_id: str, limit: int = 100) -> list[Conversation]:
        """A user's conversations (sessions), most recently used first."""
        await self._require_user(user_id)
        return await self.store.list_conversations(user_id, limit)

    async def create_conversation(
        self, user_id: str, title: str = "", *, session_id: str | None = None
    ) -> Conversation:
        """A new, empty conversation; its id is drawn at random unless given.

        An empty title is replaced by the first message once a turn is stored.
        """
        check_id("user id", user_id)
        session_id = session_id or f"c-{uuid.uuid4().hex[:20]}"
        check_id("session id", session_id)
        return await self.store.create_conversation(
            user_id, session_id, conversation_title(title) if title else ""
        )

    async def conversation_turns(
        self, user_id: str, session_id: str, limit: int = 100
    ) -> list[HistoryTurn]:
        """The last ``limit`` turns of one conversation, oldest first."""
        check_id("user id", user_id)
        check_id("session id", session_id)
        await self.store.get_conversation(user_id, session_id)
        return await self.store.recent_turns(user_id, session_id, limit)

    async def rename_conversation(self, user_id: str, session_id: str, title: str) -> Conversation:
        """Give a conversation a new title (``ConversationNotFoundError`` when it isn't theirs)."""
        check_id("user id", user_id)
        check_id("session id", session_id)
        return await self.store.rename_conversation(user_id, session_id, conversation_title(title))

    async def delete_conversation(self, user_id: str, session_id: str) -> int:
        """Delete a conversation and its turns; returns how many turns went.

        Memories learnt in it stay: list and delete them with the memory methods.
        """
        check_id("user id", user_id)
        check_id("session id", session_id)
        return await self.store.delete_conversation(user_id, session_id)

    async def invalidate(self, user_id: str) -> None:
        """Make the store (its cached history) and every plugin drop what they keep
        in process about ``user_id`` (another process changed it); the next turn
        reloads from storage."""
        check_id("user id", user_id)
        self.store.forget_cached(user_id)
        await self.plugins.invalidate(self.services, user_id)

    def forget_adapters(self, user_id: str) -> int:
        """Erase the LoRA adapters trained on ``user_id``'s data (their files, their
        registry entries, their converted copies in the cache) and the user's adapter
        assignment: with an account's data, what was learnt from it goes too. The
        number of adapters removed."""
        from mongars_core.adapters import erase_user

        return erase_user(self.services.adapter_registry(), self.settings.cache_dir, user_id)

    # -- internals --------------------------------------------------------------------

    def _validate(self, user_id: str, message: str, session_id: str) -> str:
        return validate_turn(self.settings, user_id, message, session_id)

    async def _forget(self, user_id: str, memory_ids: list[int] | None) -> None:
        # A plugin that fails to forget could still recall a deleted memory:
        # its error is raised, never passed over.
        await self.plugins.forget(self.services, user_id, memory_ids)

    async def _reload_if_changed(self, user_id: str) -> None:
        """Drop what this process caches of ``user_id`` when another process changed
        their data (:mod:`mongars_core.changes`)."""
        if self.changes.changed_elsewhere(user_id):
            logger.info("%s's data changed in another process: reloading it", user_id)
            await self.invalidate(user_id)

    async def _require_user(self, user_id: str) -> None:
        check_id("user id", user_id)
        if not await self.store.user_exists(user_id):
            raise UnknownUserError(f"no user {user_id!r} has talked to this assistant")

    async def _prepare(self, turn: Turn, context: TurnContext) -> None:
        """Stages 1-5: history and recall, then gaps and research; beside them
        reasoning and style. Only gap detection needs what the others found.
        Research may set ``turn.clarification``; a reasoning hint clears it."""

        async def load_history() -> None:
            with context.stage("history"):
                turn.history = await self.store.recent_turns(
                    turn.user_id, turn.session_id, self.settings.history_turns
                )

        async def recall() -> list[Memory]:
            with context.stage("recall"):
                return await self.plugins.recall(turn, context)

        async def recall_and_research() -> None:
            _, memories = await asyncio.gather(load_history(), recall())
            turn.memories = select_memories(memories, turn, self.settings.memory)
            with context.stage("gaps"):
                turn.gaps = await self.plugins.find_gaps(turn, context)
            # Every turn, gaps or not: documents may answer a question nobody flagged.
            with context.stage("research"):
                turn.findings = await self.plugins.research(turn, turn.gaps, context)

        async def reason() -> None:
            with context.stage("reason"):
                turn.reasoning = await self.plugins.reason(turn, context)

        async def style() -> None:
            with context.stage("style"):
                turn.style_instructions = await self.plugins.style_instructions(turn, context)

        await asyncio.gather(recall_and_research(), reason(), style())
        if turn.reasoning:
            # A computed fact answers the question: nothing to ask the user.
            turn.clarification = None
