"""Bulk import of memories: ``Assistant.import_memories`` and ``mongars memories import``.

Each item is a text, and optionally when it was said (``created_at``: ISO 8601
or seconds since 1970, not ahead of now) and in which session (``session_id``).
Every item is checked before anything is stored; a bad one refuses the whole
import with an :class:`~mongars_core.errors.InvalidInputError` naming the item
(``item 3: ...``; the CLI names the file's line). The good ones are embedded in
batches (``progress("embed", done, total)``), then stored in one transaction
with the user created if new, and the memory index is told to reload them.
A text the user already has as a live memory, or said twice in the import
(same wording up to case, accents and punctuation), is stored once: the
summary counts it as skipped. Imported memories expire ``memory.ttl_days``
after the import, as learnt ones do after their turn, and capacity applies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from mongars_core.capabilities import Progress
from mongars_core.errors import HistoryFormatError, InvalidInputError
from mongars_core.history_io import clean_text, located, parse_moment, shown, visible
from mongars_core.storage.memories import stage_prune
from mongars_core.storage.models import MemoryRecord
from mongars_core.storage.statements import insert_user
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.text import fingerprint
from mongars_core.types import utcnow
from mongars_core.validation import check_id, check_length

if TYPE_CHECKING:
    from mongars_core.services import Services

EMBED_BATCH = 64
"""Texts embedded at once."""
IMPORT_SESSION = "import"
"""The session of an imported memory that names none."""


class MemoryItem(BaseModel):
    """One memory to import: its text, and optionally when and in which session it was said."""

    model_config = ConfigDict(extra="forbid")

    text: str
    created_at: datetime | None = None
    session_id: str | None = None


class MemoryImportSummary(BaseModel):
    """What an import stored."""

    user_id: str
    imported: int = 0
    skipped: int = 0
    """Items already held as live memories of the user, or repeated in the import."""
    embedded: int = 0
    """Imported memories stored with an embedding (0 without an embedder)."""

    def line(self) -> str:
        text = f"imported {self.imported} memories for {self.user_id}"
        if self.skipped:
            text += f"; {self.skipped} already there were skipped"
        return text


def _checked(services: Services, number: int, raw: MemoryItem | dict[str, Any]) -> MemoryItem:
    """Item ``number`` (1 first) checked and cleaned, or the error that names it."""
    where = f"item {number}"
    if isinstance(raw, MemoryItem):
        fields: dict[str, Any] = raw.model_dump(exclude_none=True)
    elif isinstance(raw, dict):
        fields = dict(raw)
    else:
        raise InvalidInputError(f"{where}: expected an object with a 'text', not {shown(raw)}")
    unknown = sorted(set(fields) - set(MemoryItem.model_fields))
    if unknown:
        raise InvalidInputError(f"{where}: unknown field {', '.join(map(repr, unknown))}")
    text = fields.get("text")
    if not isinstance(text, str):
        raise InvalidInputError(f"{where}: 'text' must be a string, not {shown(text)}")
    text = clean_text(text)
    if not visible(text):
        raise InvalidInputError(f"{where}: the text is empty")
    located(where, lambda: check_length(services.settings, text))
    moment = fields.get("created_at")
    if moment is not None:
        raw_moment = moment.isoformat() if isinstance(moment, datetime) else moment
        try:
            moment = parse_moment(raw_moment, where)
        except HistoryFormatError as exc:
            raise InvalidInputError(str(exc)) from None
    session = fields.get("session_id")
    if session is not None:
        if not isinstance(session, str):
            raise InvalidInputError(f"{where}: 'session_id' must be a string")
        located(where, lambda: check_id("session id", session))
    try:
        return MemoryItem(text=text, created_at=moment, session_id=session)
    except ValidationError as exc:
        raise InvalidInputError(f"{where}: {exc.errors()[0]['msg']}") from None


def read_items(text: str) -> list[dict[str, Any]]:
    """The items of a file: a JSON array of objects, or JSON Lines (one object a line).

    A line that is not a JSON object raises :class:`InvalidInputError` naming it.
    """
    body = text.removeprefix("\ufeff")
    if body.lstrip().startswith("["):
        try:
            items = json.loads(body)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        if not isinstance(items, list):
            raise InvalidInputError("expected a JSON array of objects")
        for number, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise InvalidInputError(f"item {number}: expected an object, not {shown(item)}")
        return items
    found: list[dict[str, Any]] = []
    for number, raw in enumerate(body.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        if not isinstance(record, dict):
            raise InvalidInputError(f"line {number}: expected a JSON object, not {shown(record)}")
        record["__line__"] = number
        found.append(record)
    return found


def _line_of(raw: MemoryItem | dict[str, Any]) -> int | None:
    return raw.pop("__line__", None) if isinstance(raw, dict) else None


async def import_memories(
    services: Services,
    user_id: str,
    items: Iterable[MemoryItem | dict[str, Any]],
    *,
    progress: Progress | None = None,
) -> MemoryImportSummary:
    """Store ``items`` as ``user_id``'s memories, all or nothing (see the module)."""
    check_id("user id", user_id)
    store, settings = services.store, services.settings
    since = services.user_writes.generation(user_id)
    checked: list[MemoryItem] = []
    for number, raw in enumerate(items, 1):
        line = _line_of(raw)
        try:
            checked.append(_checked(services, number, raw))
        except InvalidInputError as exc:
            if line is None:
                raise
            message = str(exc).replace(f"item {number}", f"line {line}", 1)
            raise type(exc)(message) from None
    summary = MemoryImportSummary(user_id=user_id)
    held = (
        {fingerprint(memory.text) for memory in await store.list_memories(user_id)}
        if await store.user_exists(user_id)
        else set()
    )
    fresh: list[MemoryItem] = []
    for item in checked:
        wording = fingerprint(item.text)
        if wording in held:
            summary.skipped += 1
            continue
        held.add(wording)
        fresh.append(item)
    if not fresh:
        return summary
    vectors = await _embed(services, [item.text for item in fresh], progress)
    now = utcnow()
    ttl = settings.memory.ttl_days
    expires = now + timedelta(days=ttl) if ttl else None
    # Stored oldest first: ids follow the order things were said in.
    fresh_order = sorted(range(len(fresh)), key=lambda i: (fresh[i].created_at or now, i))
    writes = UnitOfWork()
    writes.execute(insert_user(store.engine.dialect.name), {"id": user_id, "now": now})
    for position in fresh_order:
        item, vector = fresh[position], vectors[position]
        writes.add(
            MemoryRecord(
                user_id=user_id,
                session_id=item.session_id or IMPORT_SESSION,
                text=item.text,
                embedding=vector,
                embedder=services.embedder_name if vector is not None else None,
                created_at=item.created_at or now,
                expires_at=expires,
            )
        )
    if len(held) > settings.memory.capacity:
        stage_prune(writes, user_id, settings.memory.capacity)
    try:
        async with services.user_writes.storing(user_id, since):  # not if forgotten meanwhile
            await store.commit(writes, deadline=settings.stage_timeout_s)
    finally:
        await writes.discard(settings.stage_timeout_s)
    store.forget_cached(user_id)
    # The memory index (and any other cache of the user) reloads from the table.
    await services.plugins.invalidate(services, user_id)
    summary.imported = len(fresh)
    summary.embedded = sum(vector is not None for vector in vectors)
    return summary


async def _embed(
    services: Services, texts: list[str], progress: Progress | None
) -> list[bytes | None]:
    embedder = services.embedder
    if embedder is None:
        return [None] * len(texts)
    found: list[bytes | None] = []
    for start in range(0, len(texts), EMBED_BATCH):
        batch = texts[start : start + EMBED_BATCH]
        vectors = await asyncio.to_thread(embedder.embed, batch)
        found.extend(np.asarray(vector, dtype=np.float32).tobytes() for vector in vectors)
        if progress is not None:
            progress("embed", len(found), len(texts))
    return found
