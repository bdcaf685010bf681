"""Hippocampus: long-term memory of what each user told the assistant.

What a user says is worth remembering (statements about them, their
preferences, plans, people and dates; see :mod:`.memorable`) becomes a memory
of that user; questions, commands, greetings and sums do not, nor do the
assistant's own replies (a small model's mistakes should not become facts).
Saying the same thing again refreshes the memory rather than adding one.
Recall is per user, by semantic similarity when an embedder is registered,
with lexical matching for memories without an embedding or when there is no
embedder. Memories expire after ``settings.memory.ttl_days`` and each user
keeps at most ``settings.memory.capacity``, the oldest going first.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from datetime import timedelta

import numpy as np

from mongars_core import hookimpl
from mongars_core.services import Services, StashKey
from mongars_core.storage.memories import stage_memory, stage_prune
from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.text import fingerprint
from mongars_core.types import Memory, Reply, Turn, utcnow
from mongars_plugins.memory.index import MemoryIndex, Vector
from mongars_plugins.memory.memorable import memorable_text

logger = logging.getLogger(__name__)

PRUNE_EVERY = 100
"""Turns of a user between two deletions of their expired memories."""


class Hippocampus:
    """The memory of one running assistant: the store plus an in-process index."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.memory
        self.embedder = services.embedder
        self.embedder_name = services.embedder_name
        self.index = MemoryIndex(self.embedder.dimension if self.embedder else None)
        self._locks: dict[str, asyncio.Lock] = {}
        self._since_prune: dict[str, int] = {}
        # Per user, the wordings staged by turns not committed yet, each with
        # the event set once that turn is committed or given up.
        self._pending: dict[str, dict[str, asyncio.Event]] = {}
        # The (user, wording) pairs each uncommitted unit of work staged: one that
        # holds many turns (an import) stores a wording said twice once, rather
        # than wait for its own commit.
        self._staged: weakref.WeakKeyDictionary[UnitOfWork, set[tuple[str, str]]] = (
            weakref.WeakKeyDictionary()
        )

    async def warm_up(self) -> None:
        """Load the embedding model now rather than in the first turn's recall."""
        await self._embed("warm up")

    async def recall(self, user_id: str, query: str) -> list[Memory]:
        await self._ensure_loaded(user_id)
        vector = await self._embed_query(query)
        return self.index.search(
            user_id, query, vector, now=utcnow(), limit=max(self.settings.recall_limit, 1) * 2
        )

    async def remember(
        self, user_id: str, session_id: str, turn_id: str, message: str, writes: UnitOfWork
    ) -> None:
        """Stage in ``writes`` what ``message`` says worth remembering.

        A repeat of a live memory (same wording, or an embedding at least
        ``duplicate_similarity`` close) refreshes that memory: its text, time
        and expiry become the new ones, and its id stays. The index follows
        once ``writes`` are committed. A turn of the user staging the same
        wording as one not committed yet waits for that one's commit, then
        refreshes what it stored (or stores it, if that turn failed).
        """
        text = message if self.settings.remember == "all" else memorable_text(message)
        if text is None:
            return
        # Recall embedded the message as its query: that vector is reused when
        # the whole message is kept.
        vector = await self._embed_query(text)
        expires = (
            utcnow() + timedelta(days=self.settings.ttl_days) if self.settings.ttl_days else None
        )
        record = MemoryRecord(
            user_id=user_id,
            session_id=session_id,
            turn_id=turn_id,
            text=text,
            embedding=vector.tobytes() if vector is not None else None,
            embedder=self.embedder_name if vector is not None else None,
            expires_at=expires,
        )
        wording = fingerprint(text)
        staged = self._staged.setdefault(writes, set())
        if (user_id, wording) in staged:
            return
        staged.add((user_id, wording))
        existing, done = await self._claim(user_id, wording, text, vector)
        pending = self._pending[user_id]
        pruned: list[int] = []

        def settled() -> None:
            if pending.get(wording) is done:
                del pending[wording]
            done.set()

        async def committed() -> None:
            async with self._lock(user_id):
                try:
                    if existing is not None:
                        self.index.forget(user_id, [existing])
                    assert record.id is not None
                    self.index.add(
                        user_id, record.id, text, record.created_at, session_id, expires, vector
                    )
                finally:
                    settled()
            if pruned:
                await self.forget(user_id, pruned)

        # First, so that the claim on the wording is released whatever follows.
        writes.after_commit(committed)
        writes.after_rollback(settled)
        stage_memory(writes, record, replacing=existing)
        if existing is None:
            pruned = self._stage_prune(user_id, writes)

    async def _claim(
        self, user_id: str, wording: str, text: str, vector: Vector | None
    ) -> tuple[int | None, asyncio.Event]:
        """Claim ``wording`` for a turn of the user: the id of the live memory it
        repeats (if any), and the event to set once the turn is committed or given up.

        Under the user's lock, so two turns saying the same at once leave one
        memory; a turn that claimed the wording first is waited for.
        """
        pending = self._pending.setdefault(user_id, {})
        while True:
            async with self._lock(user_id):
                await self._load(user_id)
                earlier = pending.get(wording)
                if earlier is None:
                    existing = self.index.find_duplicate(
                        user_id,
                        text,
                        vector,
                        now=utcnow(),
                        similarity=self.settings.duplicate_similarity,
                    )
                    done = asyncio.Event()
                    pending[wording] = done
                    return existing, done
            await earlier.wait()

    def _stage_prune(self, user_id: str, writes: UnitOfWork) -> list[int]:
        """Now and then, delete expired memories and the oldest past capacity.

        Over capacity, the user is pruned a tenth below it, so pruning (a
        delete and an index update) happens once in many turns, not every turn.
        Returns the list that gets the ids deleted once ``writes`` run.
        """
        capacity = self.settings.capacity
        self._since_prune[user_id] = self._since_prune.get(user_id, 0) + 1
        over = self.index.size(user_id) >= capacity
        if not over and self._since_prune[user_id] < PRUNE_EVERY:
            return []
        self._since_prune[user_id] = 0
        keep = capacity - capacity // 10 if over else capacity
        return stage_prune(writes, user_id, keep)

    async def forget(self, user_id: str, memory_ids: list[int] | None) -> None:
        # Under the user's lock: a load that read the database before the
        # deletion finishes first, and its stale rows are then dropped.
        async with self._lock(user_id):
            self.index.forget(user_id, memory_ids)

    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    async def _ensure_loaded(self, user_id: str) -> None:
        if self.index.loaded(user_id):
            return
        async with self._lock(user_id):
            await self._load(user_id)

    async def _load(self, user_id: str) -> None:
        """Load the user's memories into the index unless there; the caller holds the lock."""
        if not self.index.loaded(user_id):
            records = await self.services.store.list_memories(user_id)
            rows = [
                (
                    record.id or 0,
                    record.text,
                    record.created_at,
                    record.session_id,
                    record.expires_at,
                    self._stored_vector(record.embedding, record.embedder),
                )
                for record in records
            ]
            # Tokenising tens of thousands of memories takes a while: not on the loop.
            await asyncio.to_thread(self.index.load, user_id, rows)

    def _stored_vector(self, blob: bytes | None, embedder: str | None) -> Vector | None:
        if blob is None or self.embedder is None or embedder != self.embedder_name:
            return None
        vector = np.frombuffer(blob, dtype=np.float32)
        return vector if vector.shape == (self.embedder.dimension,) else None

    async def _embed(self, text: str) -> Vector | None:
        if self.embedder is None:
            return None
        vectors = await asyncio.to_thread(self.embedder.embed, [text])
        return np.asarray(vectors[0], dtype=np.float32)

    async def _embed_query(self, text: str) -> Vector | None:
        if self.embedder is None:
            return None
        cached = self.index.cached_query(text)
        if cached is None:
            cached = await self._embed(text)
            if cached is not None:
                self.index.cache_query(text, cached)
        return cached


MEMORY = StashKey[Hippocampus]("memory")
"""The assistant's :class:`Hippocampus`, made at startup."""


def _memory(services: Services | None) -> Hippocampus:
    assert services is not None, "turns of a running assistant carry its services"
    return services.stash[MEMORY]


@hookimpl(trylast=True)
async def mongars_startup(services: Services) -> None:
    hippocampus = Hippocampus(services)
    services.stash[MEMORY] = hippocampus
    await hippocampus.warm_up()


@hookimpl(trylast=True)
async def mongars_recall(turn: Turn) -> list[Memory]:
    return await _memory(turn.services).recall(turn.user_id, turn.message)


@hookimpl(trylast=True)
async def mongars_remember(turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
    await _memory(turn.services).remember(
        turn.user_id, turn.session_id, turn.turn_id, turn.message, writes
    )


@hookimpl(trylast=True)
async def mongars_invalidate(services: Services, user_id: str) -> None:
    # Dropping the user's partition makes the next recall reload it from storage.
    await _memory(services).forget(user_id, None)


@hookimpl(trylast=True)
async def mongars_forget(services: Services, user_id: str, memory_ids: list[int] | None) -> None:
    await _memory(services).forget(user_id, memory_ids)
