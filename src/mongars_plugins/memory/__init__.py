"""Hippocampus: long-term memory of what each user told the assistant.

What a user says is worth remembering (statements about them, their
preferences, plans, people and dates; see :mod:`.memorable`) becomes a memory
of that user; questions, commands, greetings and sums do not, nor do the
assistant's own replies (a small model's mistakes should not become facts).
Saying the same thing again refreshes the memory rather than adding one.
Recall is per user and goes through the one retrieval
(:func:`mongars_core.retrieval.retrieve`, this plugin's ``mongars_retrieve``):
BM25 and, when an embedder is registered, dense similarity, fused by
reciprocal rank, time-aware, with the memories said just before and after a hit
as its neighbours. Memories expire after ``settings.memory.ttl_days`` and each
user keeps at most ``settings.memory.capacity``, the oldest going first. A
large user's index is kept in a file (:mod:`.snapshots`) that is checked
against the database before use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from datetime import timedelta
from typing import Any

import numpy as np

from mongars_core import hookimpl
from mongars_core.retrieval import retrieve, time_intent
from mongars_core.services import Services, StashKey
from mongars_core.storage.memories import stage_memory, stage_prune
from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.text import fingerprint
from mongars_core.turn_context import TurnContext
from mongars_core.types import Memory, Passage, Reply, RetrievalQuery, Turn, utcnow
from mongars_plugins.memory import snapshots
from mongars_plugins.memory.index import MemoryIndex, Row, Vector
from mongars_plugins.memory.memorable import memorable_text
from mongars_plugins.search import Hit

logger = logging.getLogger(__name__)

PRUNE_EVERY = 100
"""Turns of a user between two deletions of their expired memories."""
PLUGIN_NAME = "memory"
"""The name this plugin is registered under (its entry point)."""
SAVE_EVERY = 1000
"""Changes to a user's index between two snapshots of it (one is also written at shutdown)."""


class Hippocampus:
    """The memory of one running assistant: the store plus an in-process index."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings.memory
        self.embedder = services.embedder
        self.embedder_name = services.embedder_name
        self.index = MemoryIndex(
            self.embedder.dimension if self.embedder else None,
            ann_min_items=self.settings.ann_min_memories,
            rerank=self.settings.rerank,
        )
        self.data_dir = services.settings.data_dir
        self._locks: dict[str, asyncio.Lock] = {}
        # Per user, changes to the index since its snapshot was written (or read).
        self._changes: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = threading.Event()
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

    async def retrieve(self, query: RetrievalQuery) -> list[Passage]:
        """The user's memories for ``query`` as passages, best first (fused rank).

        Ranked, not filtered: what to keep is the caller's choice (recall keeps
        memories over the recall threshold, research those that name the gap,
        the RAG route the top ``limit``).
        """
        user_id = query.user_id
        await self._ensure_loaded(user_id)
        vector = await self._embed_query(query.text)
        intent = time_intent(query.text, query.now)
        hits = self.index.hits(
            user_id, query.text, vector, now=query.now, limit=query.limit, intent=intent
        )
        partition = self.index.partition(user_id)
        passages: list[Passage] = []
        for hit in hits:
            before, after = (
                partition.neighbours(hit.key, query.neighbours)
                if partition is not None and query.neighbours
                else ([], [])
            )
            passages.append(
                Passage(
                    key=f"memory:{hit.key}",
                    kind="memory",
                    text=hit.text,
                    score=hit.score,
                    source=_conversation_of(hit),
                    memory_id=int(hit.key),
                    session_id=hit.group,
                    created_at=hit.created_at,
                    before=[item.text for item in before],
                    after=[item.text for item in after],
                    ranks=hit.ranks,
                )
            )
        return passages

    def memory(self, user_id: str, query: str, passage: Passage) -> Memory | None:
        """The recalled :class:`Memory` of a memory passage, with its calibrated score;
        one said inside the query's time window scores at least the threshold."""
        partition = self.index.partition(user_id)
        if passage.memory_id is None or partition is None:
            return None
        key = str(passage.memory_id)
        vector = self.index.cached_query(query)
        stored = partition.vector(key) if vector is not None else None
        cosine = float(stored @ vector) if stored is not None and vector is not None else None
        hit = Hit(key, passage.score, passage.ranks, passage.text, "", 0, None, cosine)
        score, source = self.index.calibrated(user_id, query, hit)
        if "time" in passage.ranks:
            score = max(score, self.settings.min_score_for(source))
        return Memory(
            id=passage.memory_id,
            text=passage.text,
            score=score,
            source=source,
            created_at=passage.created_at,
            session_id=passage.session_id,
        )

    async def recall(self, user_id: str, query: str) -> list[Memory]:
        """The user's memories for ``query``: the one retrieval, memories only."""
        request = RetrievalQuery(
            user_id=user_id,
            text=query,
            kinds=frozenset({"memory"}),
            limit=max(self.settings.recall_limit, 1) * 2,
        )
        # Another plugin's failing retrieval is its own problem (logged); this one's is raised.
        context = TurnContext(self.services.tracer)
        passages = await retrieve(self.services, request, context)
        for failure in context.failures:
            if failure.plugin == PLUGIN_NAME:
                raise failure.error
        found = (self.memory(user_id, query, p) for p in passages if p.kind == "memory")
        return [memory for memory in found if memory is not None]

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
                        user_id,
                        Row(record.id, text, record.created_at, session_id, expires, vector),
                    )
                    self._changed(user_id)
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
            if memory_ids:
                self._changed(user_id)
            else:
                self._changes.pop(user_id, None)

    async def erase(self, user_id: str) -> None:
        """Forget the user in memory and delete their snapshot file."""
        async with self._lock(user_id):
            self.index.forget(user_id, None)
            self._changes.pop(user_id, None)
            # Query vectors are not kept per user: the user's own queries go with the rest.
            self.index.clear_queries()
            await asyncio.to_thread(snapshots.erase_snapshot, self.data_dir, user_id)

    async def close(self) -> None:
        """Stop graph building, let other background work finish, and snapshot the
        users changed since their last snapshot."""
        self._closing.set()
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for user_id in [user for user, count in self._changes.items() if count]:
            await self._save(user_id)

    def _lock(self, user_id: str) -> asyncio.Lock:
        return self._locks.setdefault(user_id, asyncio.Lock())

    def _changed(self, user_id: str, count: int = 1) -> None:
        self._changes[user_id] = self._changes.get(user_id, 0) + count
        if self._changes[user_id] >= SAVE_EVERY:
            self._changes[user_id] = 0
            self._background(self._save(user_id))

    def _background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("memory index background work failed", exc_info=task.exception())

    def _wants_snapshot(self, user_id: str) -> bool:
        least = self.settings.snapshot_min_memories
        return least is not None and self.index.size(user_id) >= least

    async def _save(self, user_id: str) -> None:
        """Write the user's snapshot, under their lock (nothing changes it meanwhile)."""
        async with self._lock(user_id):
            partition = self.index.partition(user_id)
            if partition is None or not self._wants_snapshot(user_id):
                return
            wordings = dict(self.index.wordings(user_id))
            path = snapshots.snapshot_path(self.data_dir, user_id)
            await asyncio.to_thread(
                snapshots.write_snapshot, path, user_id, partition, wordings, self.embedder_name
            )
            self._changes[user_id] = 0

    async def _build_graph(self, user_id: str) -> None:
        """Build the user's HNSW graph in a worker thread; recall scans meanwhile."""
        partition = self.index.partition(user_id)
        if partition is None or not partition.wants_graph():
            return
        built = await asyncio.to_thread(partition.build_graph, 0, self._closing.is_set)
        if built is None:
            return
        graph, covered = built
        async with self._lock(user_id):
            if self.index.partition(user_id) is partition and partition.graph is None:
                partition.install_graph(graph, covered)
                self._changed(user_id, SAVE_EVERY)

    async def _ensure_loaded(self, user_id: str) -> None:
        if self.index.loaded(user_id):
            return
        async with self._lock(user_id):
            await self._load(user_id)

    async def _load(self, user_id: str) -> None:
        """Load the user's memories into the index unless there; the caller holds the lock.

        From the user's snapshot when it matches the table, else from the table
        (then a snapshot is written, for a user large enough).
        """
        if self.index.loaded(user_id):
            return
        store = self.services.store
        path = snapshots.snapshot_path(self.data_dir, user_id)
        if self.settings.snapshot_min_memories is not None and path.exists():
            expected = await snapshots.signature(store, user_id)
            found = await asyncio.to_thread(
                snapshots.read_snapshot, path, user_id, self.index, self.embedder_name, expected
            )
            if found is not None:
                self.index.install(user_id, *found)
                self._changes[user_id] = 0
                self._background(self._build_graph(user_id))
                return
        rows = await snapshots.read_rows(store, user_id, self.index.dimension, self.embedder_name)
        # Tokenising tens of thousands of memories takes a while: not on the loop.
        self.index.install(user_id, *await asyncio.to_thread(self.index.build, rows))
        self._changes[user_id] = 0
        if self._wants_snapshot(user_id):
            self._changes[user_id] = SAVE_EVERY // 2
            self._background(self._save(user_id))
        self._background(self._build_graph(user_id))

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


def _conversation_of(hit: Hit) -> str:
    """A memory's source for a person: the conversation it was said in, by its day."""
    if hit.created_at is None:
        return "conversation"
    return f"conversation of {hit.created_at:%Y-%m-%d}"


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
async def mongars_shutdown(services: Services) -> None:
    hippocampus = services.stash.get(MEMORY, None)
    if hippocampus is not None:
        await hippocampus.close()


@hookimpl(trylast=True)
async def mongars_retrieve(services: Services, query: RetrievalQuery) -> list[Passage] | None:
    if "memory" not in query.kinds:
        return None
    return await _memory(services).retrieve(query)


@hookimpl(trylast=True)
async def mongars_erase_user(services: Services, user_id: str) -> None:
    await _memory(services).erase(user_id)


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
