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
from datetime import timedelta
from typing import Any

import numpy as np

from mongars_core import hookimpl
from mongars_core.pipeline import Services
from mongars_core.types import Memory, Reply, Turn, utcnow
from mongars_plugins.memory.index import MemoryIndex, Vector
from mongars_plugins.memory.memorable import memorable_text

logger = logging.getLogger(__name__)

STASH_KEY = "memory"
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
        self, user_id: str, session_id: str, turn_id: str, message: str
    ) -> int | None:
        """Store what ``message`` says worth remembering; the memory's id, or ``None``.

        A repeat of a live memory (same wording, or an embedding at least
        ``duplicate_similarity`` close) refreshes that memory: its text, time
        and expiry become the new ones, and its id stays.
        """
        text = message if self.settings.remember == "all" else memorable_text(message)
        if text is None:
            return None
        # Recall embedded the message as its query: that vector is reused when
        # the whole message is kept.
        vector = await self._embed_query(text)
        expires = (
            utcnow() + timedelta(days=self.settings.ttl_days) if self.settings.ttl_days else None
        )
        fields: dict[str, Any] = {
            "text": text,
            "session_id": session_id,
            "turn_id": turn_id,
            "embedding": vector.tobytes() if vector is not None else None,
            "embedder": self.embedder_name if vector is not None else None,
            "expires_at": expires,
        }
        # Under the user's lock, so two turns saying the same at once leave one memory.
        async with self._lock(user_id):
            await self._load(user_id)
            record = None
            existing = self.index.find_duplicate(
                user_id, text, vector, now=utcnow(), similarity=self.settings.duplicate_similarity
            )
            if existing is not None:
                record = await self.services.store.refresh_memory(user_id, existing, **fields)
                self.index.forget(user_id, [existing])
            if record is None:
                record = await self.services.store.add_memory(user_id=user_id, **fields)
            assert record.id is not None
            self.index.add(user_id, record.id, text, record.created_at, session_id, expires, vector)
        if existing is None:
            await self._prune(user_id)
        return record.id

    async def _prune(self, user_id: str) -> None:
        """Delete expired memories now and then, and the oldest past capacity.

        Over capacity, the user is pruned a tenth below it, so pruning (a
        delete and an index update) happens once in many turns, not every turn.
        """
        capacity = self.settings.capacity
        self._since_prune[user_id] = self._since_prune.get(user_id, 0) + 1
        over = self.index.size(user_id) > capacity
        if not over and self._since_prune[user_id] < PRUNE_EVERY:
            return
        self._since_prune[user_id] = 0
        keep = capacity - capacity // 10 if over else capacity
        doomed = await self.services.store.prune_memories(user_id, keep)
        if doomed:
            await self.forget(user_id, doomed)

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


def _memory(services: Any) -> Hippocampus:
    found: Hippocampus = services.stash[STASH_KEY]
    return found


@hookimpl(trylast=True)
async def mongars_startup(services: Services) -> None:
    hippocampus = Hippocampus(services)
    services.stash[STASH_KEY] = hippocampus
    await hippocampus.warm_up()


@hookimpl(trylast=True)
async def mongars_recall(turn: Turn) -> list[Memory]:
    return await _memory(turn.services).recall(turn.user_id, turn.message)


@hookimpl(trylast=True)
async def mongars_remember(turn: Turn, reply: Reply) -> None:
    await _memory(turn.services).remember(turn.user_id, turn.session_id, turn.turn_id, turn.message)


@hookimpl(trylast=True)
async def mongars_invalidate(services: Services, user_id: str) -> None:
    # Dropping the user's partition makes the next recall reload it from storage.
    await _memory(services).forget(user_id, None)


@hookimpl(trylast=True)
async def mongars_forget(services: Services, user_id: str, memory_ids: list[int] | None) -> None:
    await _memory(services).forget(user_id, memory_ids)
