"""The library: users' collections of documents, stored and searched.

Adding a file parses, chunks and embeds it first (off the event loop, the
embedding in batches), then one transaction writes the document and its
chunks: a file that cannot be read, or a write that fails, leaves nothing.
Search goes through one :class:`~mongars_plugins.search.HybridIndex` per
collection (BM25 and MiniLM, fused by reciprocal rank), loaded from the
database the first time a collection is searched and kept in step with every
change this process makes.

Who sees what: a user reads their own collections and the shared ones, and
writes only their own; shared collections are written by administrators
(``admin=True``). Another user's document is "not found", never "forbidden".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Any

import numpy as np
from pydantic import BaseModel
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import defer
from sqlmodel import col

from mongars_core.services import Services
from mongars_core.storage.models import ChunkRecord, CollectionRecord, DocumentRecord
from mongars_core.storage.turns import aware
from mongars_core.types import Passage, RetrievalQuery, utcnow
from mongars_plugins.knowledge.chunking import Chunk, chunk_document
from mongars_plugins.knowledge.errors import (
    DocumentNotFoundError,
    InvalidCollectionError,
    SharedCollectionError,
)
from mongars_plugins.knowledge.indexes import CollectionIndexes, chunk_key, indexed_text, live
from mongars_plugins.knowledge.parsing import parse
from mongars_plugins.knowledge.settings import KNOWLEDGE, KnowledgeSettings

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]
"""``progress(stage, done, total)``: stages ``parse`` and ``embed`` (chunks embedded)."""

_TEXT: Any = DocumentRecord.text  # an instrumented attribute, whatever sqlmodel declares
_WITHOUT_TEXT = defer(_TEXT, raiseload=True)
"""Listings leave a document's text (large) unread; reading it by mistake raises."""
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class DocumentInfo(BaseModel):
    """A document as listed (``GET /api/v1/documents``, ``mongars docs list --json``)."""

    id: int
    title: str
    filename: str
    media_type: str
    collection: str
    shared: bool
    size: int
    chunks: int
    sha256: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class CollectionInfo(BaseModel):
    """A collection the user can read, with its retention and how many documents it holds."""

    name: str
    shared: bool
    retention_days: int | None
    documents: int
    writable: bool


@dataclass
class _Prepared:
    filename: str
    title: str
    media_type: str
    size: int
    sha256: str
    text: str
    chunks: list[Chunk]
    vectors: list[bytes | None]


def _one_line(text: str) -> str:
    """``text`` without control characters, its blank space folded: a name to show."""
    return " ".join("".join(c for c in text if c.isprintable() or c.isspace()).split())


def check_collection_name(name: str) -> str:
    """A collection's name: lower-case letters, digits, ``-``, ``_`` and ``.``, 1-100."""
    cleaned = name.strip().lower()
    if not cleaned or len(cleaned) > 100 or not set(cleaned) <= _NAME_CHARS:
        raise InvalidCollectionError(
            f"collection name {name[:100]!r}: use 1-100 lower-case letters, digits, '-', '_', '.'"
        )
    return cleaned


def _expiry(moment: datetime, retention_days: int | None) -> datetime | None:
    return None if retention_days is None else moment + timedelta(days=retention_days)


class Library:
    """The documents of one running assistant (one per :class:`Services`)."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store
        self.settings: KnowledgeSettings = services.settings.section(KNOWLEDGE)
        self.embedder = services.embedder
        self.embedder_name = services.embedder_name
        self.indexes = CollectionIndexes(self.store, self.embedder, self.embedder_name)

    # -- reading files -----------------------------------------------------------------

    async def prepare(
        self, filename: str, data: bytes, title: str | None, progress: Progress | None = None
    ) -> _Prepared:
        """Parse, chunk and embed ``data``; nothing is stored yet."""
        limits = self.settings
        name = _one_line(PurePath(filename.replace("\\", "/")).name)[-300:] or "document"
        document = await asyncio.to_thread(parse, name, data, max_bytes=limits.max_file_bytes)
        # Stops at the first chunk past the limit: a huge file fails fast.
        chunks = await asyncio.to_thread(
            chunk_document,
            document,
            chunk_words=limits.chunk_words,
            min_words=limits.min_chunk_words,
            max_words=limits.max_chunk_words,
            max_chunks=limits.max_chunks,
            name=name,
        )
        if progress is not None:
            progress("parse", 1, 1)
        vectors = await self._embed_chunks(chunks, progress)
        chosen = _one_line(title or document.title or PurePath(name).stem)[:300]
        return _Prepared(
            filename=name,
            title=chosen or name,
            media_type=document.media_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            text=document.text,
            chunks=chunks,
            vectors=vectors,
        )

    async def _embed_chunks(
        self, chunks: Sequence[Chunk], progress: Progress | None
    ) -> list[bytes | None]:
        if self.embedder is None:
            return [None] * len(chunks)
        vectors: list[bytes | None] = []
        batch = self.settings.embed_batch
        for first in range(0, len(chunks), batch):
            texts = [indexed_text(c.heading, c.text) for c in chunks[first : first + batch]]
            rows = await asyncio.to_thread(self.embedder.embed, texts)
            vectors.extend(np.asarray(row, dtype=np.float32).tobytes() for row in rows)
            if progress is not None:
                progress("embed", len(vectors), len(chunks))
        return vectors

    # -- writing -------------------------------------------------------------------------

    async def add(
        self,
        user_id: str,
        filename: str,
        data: bytes,
        *,
        collection: str | None = None,
        title: str | None = None,
        shared: bool = False,
        admin: bool = False,
        progress: Progress | None = None,
    ) -> DocumentInfo:
        """Add a file to one of ``user_id``'s collections (made when missing), or, with
        ``shared`` (administrators only), to a shared collection."""
        name = check_collection_name(collection or self.settings.default_collection)
        if shared and not admin:
            raise SharedCollectionError("only administrators add documents to shared collections")
        since = self.services.user_writes.generation(user_id)
        prepared = await self.prepare(filename, data, title, progress)
        await self.store.ensure_user(user_id)
        now = utcnow()
        # Forgotten meanwhile ("forget me" during a long upload): nothing is stored.
        async with (
            self.services.user_writes.storing(user_id, since),
            self.store.session(write=True) as session,
        ):
            owner = None if shared else user_id
            found = await self._collection_row(session, owner, name)
            if found is None:
                found = CollectionRecord(user_id=owner, name=name, shared=shared, created_at=now)
                session.add(found)
                await session.flush()
            assert found.id is not None
            count = select(func.count(col(DocumentRecord.id))).where(
                col(DocumentRecord.collection_id) == found.id
            )
            if int((await session.execute(count)).scalar_one()) >= self.settings.max_documents:
                raise InvalidCollectionError(
                    f"collection {name!r} holds {self.settings.max_documents} documents: the limit"
                )
            record = DocumentRecord(
                collection_id=found.id,
                user_id=owner,
                added_by=user_id,
                title=prepared.title,
                filename=prepared.filename,
                media_type=prepared.media_type,
                size=prepared.size,
                sha256=prepared.sha256,
                text=prepared.text,
                created_at=now,
                updated_at=now,
                expires_at=_expiry(now, found.retention_days),
            )
            session.add(record)
            await session.flush()
            assert record.id is not None
            rows = self._chunk_rows(record.id, prepared)
            session.add_all(rows)
            await session.commit()
        self.indexes.added(found.id, record, rows)
        await self.indexes.changed(found.id)
        return self._info(record, found, len(rows))

    async def update(
        self,
        user_id: str,
        document_id: int,
        filename: str,
        data: bytes,
        *,
        title: str | None = None,
        admin: bool = False,
        progress: Progress | None = None,
    ) -> DocumentInfo:
        """Replace a document's content (same id), in one transaction."""
        since = self.services.user_writes.generation(user_id)
        record, found = await self._writable(user_id, document_id, admin)
        prepared = await self.prepare(filename, data, title or record.title, progress)
        now = utcnow()
        async with (
            self.services.user_writes.storing(user_id, since),
            self.store.session(write=True) as session,
        ):
            old = (
                await session.execute(
                    select(col(ChunkRecord.id)).where(col(ChunkRecord.document_id) == document_id)
                )
            ).scalars()
            old_keys = [chunk_key(chunk_id) for chunk_id in old]
            await session.execute(
                delete(ChunkRecord).where(col(ChunkRecord.document_id) == document_id)
            )
            changed = await session.execute(
                update(DocumentRecord)
                .where(col(DocumentRecord.id) == document_id)
                .values(
                    title=prepared.title,
                    filename=prepared.filename,
                    media_type=prepared.media_type,
                    size=prepared.size,
                    sha256=prepared.sha256,
                    text=prepared.text,
                    updated_at=now,
                    expires_at=_expiry(now, found.retention_days),
                )
            )
            if getattr(changed, "rowcount", 1) == 0:  # deleted meanwhile
                await session.rollback()
                raise DocumentNotFoundError(f"no document {document_id} for this user")
            rows = self._chunk_rows(document_id, prepared)
            session.add_all(rows)
            await session.commit()
        record.title = prepared.title
        record.filename = prepared.filename
        record.media_type = prepared.media_type
        record.size = prepared.size
        record.sha256 = prepared.sha256
        record.text = prepared.text
        record.updated_at = now
        record.expires_at = _expiry(now, found.retention_days)
        assert found.id is not None
        self.indexes.removed(found.id, old_keys)
        self.indexes.added(found.id, record, rows)
        await self.indexes.changed(found.id)
        return self._info(record, found, len(rows))

    async def delete(self, user_id: str, document_id: int, *, admin: bool = False) -> None:
        """Delete a document and its chunks; search stops finding it at once."""
        _, found = await self._writable(user_id, document_id, admin)
        assert found.id is not None
        keys = await self._delete_documents([document_id])
        self.indexes.removed(found.id, keys)
        await self.indexes.changed(found.id)

    async def _delete_documents(self, document_ids: Sequence[int]) -> list[str]:
        if not document_ids:
            return []
        async with self.store.session(write=True) as session:
            ids = (
                await session.execute(
                    select(col(ChunkRecord.id)).where(
                        col(ChunkRecord.document_id).in_(document_ids)
                    )
                )
            ).scalars()
            keys = [chunk_key(chunk_id) for chunk_id in ids]
            await session.execute(
                delete(ChunkRecord).where(col(ChunkRecord.document_id).in_(document_ids))
            )
            await session.execute(
                delete(DocumentRecord).where(col(DocumentRecord.id).in_(document_ids))
            )
            await session.commit()
        return keys

    def _chunk_rows(self, document_id: int, prepared: _Prepared) -> list[ChunkRecord]:
        embedder = self.embedder_name if self.embedder is not None else None
        return [
            ChunkRecord(
                document_id=document_id,
                position=chunk.position,
                text=chunk.text,
                heading=chunk.heading,
                start=chunk.start,
                end=chunk.end,
                embedding=vector,
                embedder=embedder if vector is not None else None,
            )
            for chunk, vector in zip(prepared.chunks, prepared.vectors, strict=True)
        ]

    # -- collections -------------------------------------------------------------------

    async def _collection_row(
        self, session: Any, owner: str | None, name: str
    ) -> CollectionRecord | None:
        owned = (
            col(CollectionRecord.user_id).is_(None)
            if owner is None
            else col(CollectionRecord.user_id) == owner
        )
        query = select(CollectionRecord).where(owned, col(CollectionRecord.name) == name)
        found: CollectionRecord | None = (await session.execute(query)).scalars().first()
        return found

    async def _readable(self, user_id: str) -> list[CollectionRecord]:
        query = select(CollectionRecord).where(
            or_(col(CollectionRecord.user_id) == user_id, col(CollectionRecord.shared))
        )
        async with self.store.session() as session:
            rows = list((await session.execute(query.order_by(col(CollectionRecord.id)))).scalars())
        return rows

    async def collections(self, user_id: str, *, admin: bool = False) -> list[CollectionInfo]:
        """The collections ``user_id`` can read (their own first), with document counts."""
        rows = await self._readable(user_id)
        now = utcnow()
        counts_query = (
            select(col(DocumentRecord.collection_id), func.count(col(DocumentRecord.id)))
            .where(live(now))
            .group_by(col(DocumentRecord.collection_id))
        )
        async with self.store.session() as session:
            counts = dict((await session.execute(counts_query)).all())
        rows.sort(key=lambda row: (row.shared, row.name))
        return [
            CollectionInfo(
                name=row.name,
                shared=row.shared,
                retention_days=row.retention_days,
                documents=int(counts.get(row.id or 0, 0)),
                writable=admin or not row.shared,
            )
            for row in rows
        ]

    async def set_retention(
        self,
        user_id: str,
        name: str,
        retention_days: int | None,
        *,
        shared: bool = False,
        admin: bool = False,
    ) -> CollectionInfo:
        """Set how long a collection keeps its documents (``None``: for ever). The
        collection is made when missing; its documents' expiry is recomputed from when
        each was added or last updated, and search follows at once."""
        name = check_collection_name(name)
        if retention_days is not None and not 1 <= retention_days <= 36_500:
            raise InvalidCollectionError("retention_days is a number of days from 1 to 36500")
        if shared and not admin:
            raise SharedCollectionError("only administrators change shared collections")
        if not shared:
            await self.store.ensure_user(user_id)
        owner = None if shared else user_id
        async with self.store.session(write=True) as session:
            found = await self._collection_row(session, owner, name)
            if found is None:
                found = CollectionRecord(user_id=owner, name=name, shared=shared)
                session.add(found)
                await session.flush()
            found.retention_days = retention_days
            session.add(found)
            documents = list(
                (
                    await session.execute(
                        select(DocumentRecord)
                        .options(_WITHOUT_TEXT)
                        .where(col(DocumentRecord.collection_id) == found.id)
                    )
                ).scalars()
            )
            for document in documents:
                document.expires_at = _expiry(aware(document.updated_at), retention_days)
                session.add(document)
            await session.commit()
        assert found.id is not None
        self.indexes.drop(found.id)  # expiries changed: reload when next searched
        kept = sum(1 for d in documents if d.expires_at is None or aware(d.expires_at) > utcnow())
        return CollectionInfo(
            name=found.name,
            shared=found.shared,
            retention_days=retention_days,
            documents=kept,
            writable=True,
        )

    # -- reading -----------------------------------------------------------------------------

    async def _visible(
        self, user_id: str, document_id: int
    ) -> tuple[DocumentRecord, CollectionRecord]:
        query = (
            select(DocumentRecord, CollectionRecord)
            .join(CollectionRecord, col(CollectionRecord.id) == col(DocumentRecord.collection_id))
            .where(
                col(DocumentRecord.id) == document_id,
                or_(col(CollectionRecord.user_id) == user_id, col(CollectionRecord.shared)),
                live(utcnow()),
            )
        )
        async with self.store.session() as session:
            row = (await session.execute(query)).first()
        if row is None:
            raise DocumentNotFoundError(f"no document {document_id} for this user")
        return row

    async def _writable(
        self, user_id: str, document_id: int, admin: bool
    ) -> tuple[DocumentRecord, CollectionRecord]:
        record, found = await self._visible(user_id, document_id)
        if found.shared and not admin:
            raise SharedCollectionError(
                f"document {document_id} is in the shared collection {found.name!r}: only "
                "administrators change it"
            )
        return record, found

    async def get(self, user_id: str, document_id: int) -> tuple[DocumentInfo, str]:
        """One document the user can read, with its extracted text."""
        record, found = await self._visible(user_id, document_id)
        count = select(func.count(col(ChunkRecord.id))).where(
            col(ChunkRecord.document_id) == document_id
        )
        async with self.store.session() as session:
            chunks = int((await session.execute(count)).scalar_one())
        return self._info(record, found, chunks), record.text

    async def list_documents(
        self, user_id: str, collection: str | None = None
    ) -> list[DocumentInfo]:
        """The live documents ``user_id`` can read (their own, then shared), newest first."""
        chunks = (
            select(func.count(col(ChunkRecord.id)))
            .where(col(ChunkRecord.document_id) == col(DocumentRecord.id))
            .scalar_subquery()
        )
        query = (
            select(DocumentRecord, CollectionRecord, chunks)
            .options(_WITHOUT_TEXT)
            .join(CollectionRecord, col(CollectionRecord.id) == col(DocumentRecord.collection_id))
            .where(
                or_(col(CollectionRecord.user_id) == user_id, col(CollectionRecord.shared)),
                live(utcnow()),
            )
            .order_by(col(CollectionRecord.shared), col(DocumentRecord.id).desc())
        )
        if collection is not None:
            query = query.where(col(CollectionRecord.name) == check_collection_name(collection))
        async with self.store.session() as session:
            rows = (await session.execute(query)).all()
        return [self._info(record, found, int(count)) for record, found, count in rows]

    def _info(self, record: DocumentRecord, found: CollectionRecord, chunks: int) -> DocumentInfo:
        assert record.id is not None
        return DocumentInfo(
            id=record.id,
            title=record.title,
            filename=record.filename,
            media_type=record.media_type,
            collection=found.name,
            shared=found.shared,
            size=record.size,
            chunks=chunks,
            sha256=record.sha256,
            created_at=aware(record.created_at),
            updated_at=aware(record.updated_at),
            expires_at=None if record.expires_at is None else aware(record.expires_at),
        )

    # -- search ----------------------------------------------------------------------------

    async def search(
        self,
        user_id: str,
        text: str,
        *,
        limit: int = 10,
        collections: Sequence[str] | None = None,
        neighbours: int = 0,
        now: datetime | None = None,
    ) -> list[Passage]:
        """The chunks most relevant to ``text`` among the collections ``user_id`` can
        read (only ``collections`` when given), best first."""
        query = RetrievalQuery(
            user_id=user_id,
            text=text,
            kinds=frozenset({"document"}),
            limit=limit,
            neighbours=neighbours,
            collections=None if collections is None else list(collections),
            now=now or utcnow(),
        )
        return await self.retrieve(query)

    async def retrieve(self, query: RetrievalQuery) -> list[Passage]:
        """``mongars_retrieve`` for documents: one ranking per readable collection, fused."""
        if "document" not in query.kinds or not query.text.strip():
            return []
        readable = await self._readable(query.user_id)
        if query.collections is not None:
            wanted = {name.strip().lower() for name in query.collections}
            readable = [row for row in readable if row.name in wanted]
        return await self.indexes.search(readable, query)

    def forget_cached(self, user_id: str) -> None:
        """Drop the loaded indexes of ``user_id``'s collections and of the shared ones
        (another process changed them); they reload when next searched."""
        self.indexes.forget_user(user_id)

    # -- retention, export, erasure ------------------------------------------------------

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete every expired document; returns how many went."""
        moment = now or utcnow()
        query = select(col(DocumentRecord.id), col(DocumentRecord.collection_id)).where(
            col(DocumentRecord.expires_at).is_not(None), col(DocumentRecord.expires_at) <= moment
        )
        async with self.store.session() as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return 0
        keys = await self._delete_documents([int(document_id or 0) for document_id, _ in rows])
        for collection_id in {int(collection_id) for _, collection_id in rows}:
            self.indexes.removed(collection_id, keys)
            await self.indexes.changed(collection_id)
        logger.info("knowledge: %d expired documents deleted", len(rows))
        return len(rows)

    async def export_user(self, user_id: str) -> list[dict[str, Any]]:
        """The user's collections and documents (with their text) as export records."""
        query = select(CollectionRecord).where(col(CollectionRecord.user_id) == user_id)
        async with self.store.session() as session:
            owned = list(
                (await session.execute(query.order_by(col(CollectionRecord.id)))).scalars()
            )
            ids = [row.id for row in owned]
            documents = list(
                (
                    await session.execute(
                        select(DocumentRecord)
                        .where(col(DocumentRecord.collection_id).in_(ids))
                        .order_by(col(DocumentRecord.id))
                    )
                ).scalars()
            )
        names = {row.id: row.name for row in owned}
        records: list[dict[str, Any]] = [
            {
                "type": "collection",
                "name": row.name,
                "retention_days": row.retention_days,
                "created_at": aware(row.created_at).isoformat(),
            }
            for row in owned
        ]
        for document in documents:
            records.append(
                {
                    "type": "document",
                    "id": document.id,
                    "collection": names[document.collection_id],
                    "title": document.title,
                    "filename": document.filename,
                    "media_type": document.media_type,
                    "size": document.size,
                    "sha256": document.sha256,
                    "created_at": aware(document.created_at).isoformat(),
                    "updated_at": aware(document.updated_at).isoformat(),
                    "expires_at": None
                    if document.expires_at is None
                    else aware(document.expires_at).isoformat(),
                    "text": document.text,
                }
            )
        return records

    async def erase_user(self, user_id: str) -> int:
        """Delete the user's collections, documents and chunks (shared collections stay,
        no longer naming them as who added what). Returns the documents deleted."""
        async with self.store.session(write=True) as session:
            ids = list(
                (
                    await session.execute(
                        select(col(CollectionRecord.id)).where(
                            col(CollectionRecord.user_id) == user_id
                        )
                    )
                ).scalars()
            )
            documents = list(
                (
                    await session.execute(
                        select(col(DocumentRecord.id)).where(
                            col(DocumentRecord.collection_id).in_(ids)
                        )
                    )
                ).scalars()
            )
            await session.execute(
                delete(ChunkRecord).where(col(ChunkRecord.document_id).in_(documents))
            )
            await session.execute(
                delete(DocumentRecord).where(col(DocumentRecord.collection_id).in_(ids))
            )
            await session.execute(delete(CollectionRecord).where(col(CollectionRecord.id).in_(ids)))
            await session.execute(
                update(DocumentRecord)
                .where(col(DocumentRecord.added_by) == user_id)
                .values(added_by=None)
            )
            await session.commit()
        for collection_id in ids:
            self.indexes.drop(int(collection_id or 0))
        return len(documents)
