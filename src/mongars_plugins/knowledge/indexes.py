"""The search side of the library: one :class:`~mongars_plugins.search.HybridIndex`
per collection, loaded from the database when first searched.

An index is kept in step with every change this process makes. A change made by
another process (a ``mongars docs`` command beside the server, another server
worker) is seen through the collection's *fingerprint* (how many documents, the
newest id and update, the earliest and latest expiry), read with each search in
one small query: when it differs from the loaded one, the index reloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, or_, select
from sqlmodel import col

from mongars_core.llm import Embedder
from mongars_core.retrieval import fuse, time_intent
from mongars_core.storage.models import ChunkRecord, CollectionRecord, DocumentRecord
from mongars_core.storage.store import Store
from mongars_core.storage.turns import aware
from mongars_core.types import Passage, RetrievalQuery, utcnow
from mongars_plugins.knowledge.chunking import HEADING_SEPARATOR
from mongars_plugins.search import HybridIndex, IndexItem

Fingerprint = tuple[str, ...]
EMPTY: Fingerprint = ("0", "None", "None", "None", "None")
"""The fingerprint of a collection without documents."""


def chunk_key(chunk_id: int | None) -> str:
    return f"chunk:{chunk_id}"


def indexed_text(heading: str, text: str) -> str:
    """What is indexed and embedded: the section's headings, then the chunk."""
    return f"{heading}\n{text}" if heading else text


def live(now: datetime) -> Any:
    """The condition of a document not expired at ``now``."""
    return or_(col(DocumentRecord.expires_at).is_(None), col(DocumentRecord.expires_at) > now)


@dataclass(frozen=True)
class _Document:
    id: int
    title: str
    updated_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True)
class ChunkMeta:
    document_id: int
    title: str
    heading: str
    position: int
    text: str
    created_at: datetime


@dataclass
class CollectionIndex:
    index: HybridIndex
    chunks: dict[str, ChunkMeta]
    name: str
    owner: str | None
    fingerprint: Fingerprint | None = None


class CollectionIndexes:
    """The loaded indexes of one library, by collection id."""

    def __init__(self, store: Store, embedder: Embedder | None, embedder_name: str | None) -> None:
        self.store = store
        self.embedder = embedder
        self.embedder_name = embedder_name
        self._loaded: dict[int, CollectionIndex] = {}
        self._loading: dict[int, asyncio.Lock] = {}

    # -- search ------------------------------------------------------------------------

    async def search(
        self, collections: Sequence[CollectionRecord], query: RetrievalQuery
    ) -> list[Passage]:
        """``query`` over ``collections`` (those the user may read): each ranked by its
        index, the rankings fused by reciprocal rank."""
        if not collections:
            return []
        vector = await self._embed_query(query.text)
        intent = time_intent(query.text, query.now)
        fingerprints = await self.fingerprints([row.id for row in collections if row.id])
        rankings: list[list[Passage]] = []
        for row in collections:
            assert row.id is not None
            loaded = await self._index(row, fingerprints.get(row.id, EMPTY))
            hits = loaded.index.search(
                query.text, vector, limit=query.limit, now=query.now, intent=intent
            )
            ranking = [
                _passage(hit.key, hit.score, hit.ranks, loaded.chunks[hit.key], loaded, query)
                for hit in hits
                if hit.key in loaded.chunks
            ]
            if ranking:
                rankings.append(ranking)
        if len(rankings) == 1:
            return rankings[0][: query.limit]
        return fuse(rankings, limit=query.limit)

    async def _embed_query(self, text: str) -> np.ndarray | None:
        if self.embedder is None:
            return None
        rows = await asyncio.to_thread(self.embedder.embed, [text])
        return np.asarray(rows[0], dtype=np.float32)

    # -- loading -----------------------------------------------------------------------

    async def fingerprints(self, collection_ids: Sequence[int]) -> dict[int, Fingerprint]:
        """Per collection, what changes whenever a document is added, replaced, deleted
        or given another expiry, by this process or any other."""
        if not collection_ids:
            return {}
        query = (
            select(
                col(DocumentRecord.collection_id),
                func.count(col(DocumentRecord.id)),
                func.max(col(DocumentRecord.id)),
                func.max(col(DocumentRecord.updated_at)),
                func.min(col(DocumentRecord.expires_at)),
                func.max(col(DocumentRecord.expires_at)),
            )
            .where(col(DocumentRecord.collection_id).in_(collection_ids))
            .group_by(col(DocumentRecord.collection_id))
        )
        async with self.store.session() as session:
            rows = (await session.execute(query)).all()
        return {int(row[0]): tuple(str(value) for value in row[1:]) for row in rows}

    async def _index(self, row: CollectionRecord, fingerprint: Fingerprint) -> CollectionIndex:
        """The collection's index, (re)loaded when its documents changed since."""
        assert row.id is not None
        loaded = self._loaded.get(row.id)
        if loaded is not None and loaded.fingerprint == fingerprint:
            return loaded
        async with self._loading.setdefault(row.id, asyncio.Lock()):
            loaded = self._loaded.get(row.id)
            if loaded is None or loaded.fingerprint != fingerprint:
                loaded = await self._load(row)
                loaded.fingerprint = fingerprint
                self._loaded[row.id] = loaded
        return loaded

    async def _load(self, row: CollectionRecord) -> CollectionIndex:
        # The documents' own columns apart from the chunks: a document's text is large,
        # and one row per chunk would repeat it.
        documents = select(
            col(DocumentRecord.id),
            col(DocumentRecord.title),
            col(DocumentRecord.updated_at),
            col(DocumentRecord.expires_at),
        ).where(col(DocumentRecord.collection_id) == row.id, live(utcnow()))
        async with self.store.session() as session:
            found: dict[int, _Document] = {}
            for doc_id, title, updated, expires in (await session.execute(documents)).all():
                assert doc_id is not None
                found[doc_id] = _Document(doc_id, title, aware(updated), expires)
            chunks = (
                select(ChunkRecord)
                .where(col(ChunkRecord.document_id).in_(list(found)))
                .order_by(col(ChunkRecord.document_id), col(ChunkRecord.position))
            )
            rows = list((await session.execute(chunks)).scalars()) if found else []
        loaded = CollectionIndex(HybridIndex(self._dimension()), {}, row.name, row.user_id)
        items = [self._item(chunk, found[chunk.document_id], loaded) for chunk in rows]
        await asyncio.to_thread(loaded.index.add, items)
        return loaded

    def _dimension(self) -> int | None:
        return None if self.embedder is None else int(self.embedder.dimension)

    def _item(self, chunk: ChunkRecord, document: _Document, loaded: CollectionIndex) -> IndexItem:
        assert chunk.id is not None
        key = chunk_key(chunk.id)
        created = document.updated_at
        loaded.chunks[key] = ChunkMeta(
            document.id, document.title, chunk.heading, chunk.position, chunk.text, created
        )
        vector = None
        dimension = self._dimension()
        # A chunk embedded by another embedder (or none) is found by its words only.
        if (
            chunk.embedding is not None
            and dimension is not None
            and chunk.embedder == self.embedder_name
            and len(chunk.embedding) == 4 * dimension
        ):
            vector = np.frombuffer(chunk.embedding, dtype=np.float32)
        return IndexItem(
            key=key,
            text=indexed_text(chunk.heading, chunk.text),
            group=str(document.id),
            position=chunk.position,
            created_at=created,
            expires_at=None if document.expires_at is None else aware(document.expires_at),
            vector=vector,
        )

    # -- keeping in step -----------------------------------------------------------------

    def added(
        self, collection_id: int, document: DocumentRecord, rows: Sequence[ChunkRecord]
    ) -> None:
        """Index a committed document's chunks, when the collection is loaded."""
        loaded = self._loaded.get(collection_id)
        if loaded is not None:
            assert document.id is not None
            found = _Document(
                document.id, document.title, aware(document.updated_at), document.expires_at
            )
            loaded.index.add([self._item(chunk, found, loaded) for chunk in rows])

    def removed(self, collection_id: int, keys: Sequence[str]) -> None:
        """Take deleted chunks out of the collection's index, when it is loaded."""
        loaded = self._loaded.get(collection_id)
        if loaded is not None and keys:
            loaded.index.remove(keys)
            for key in keys:
                loaded.chunks.pop(key, None)

    async def changed(self, collection_id: int) -> None:
        """After a change this process made and applied to the loaded index: note the
        collection's new fingerprint, so the next search does not reload it."""
        loaded = self._loaded.get(collection_id)
        if loaded is not None:
            found = await self.fingerprints([collection_id])
            loaded.fingerprint = found.get(collection_id, EMPTY)

    def drop(self, collection_id: int) -> None:
        """Forget a collection's index: it reloads when next searched."""
        self._loaded.pop(collection_id, None)

    def forget_user(self, user_id: str) -> None:
        """Drop the indexes of ``user_id``'s collections and of the shared ones."""
        for collection_id, loaded in list(self._loaded.items()):
            if loaded.owner is None or loaded.owner == user_id:
                del self._loaded[collection_id]


def _passage(
    key: str,
    score: float,
    ranks: dict[str, int],
    meta: ChunkMeta,
    loaded: CollectionIndex,
    query: RetrievalQuery,
) -> Passage:
    before: list[str] = []
    after: list[str] = []
    if query.neighbours:
        earlier, later = loaded.index.neighbours(key, query.neighbours)
        before = [loaded.chunks[i.key].text for i in earlier if i.key in loaded.chunks]
        after = [loaded.chunks[i.key].text for i in later if i.key in loaded.chunks]
    sections = meta.heading.split(HEADING_SEPARATOR) if meta.heading else []
    if sections and sections[0] == meta.title:  # a Markdown title heading is the title
        sections = sections[1:]
    return Passage(
        key=key,
        kind="document",
        text=meta.text,
        score=score,
        source=HEADING_SEPARATOR.join([meta.title, *sections]),
        document_id=meta.document_id,
        collection=loaded.name,
        position=meta.position,
        heading=meta.heading or None,
        created_at=meta.created_at,
        before=before,
        after=after,
        ranks=dict(ranks),
    )
