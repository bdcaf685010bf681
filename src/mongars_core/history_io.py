"""History in and out: import a conversation history, export everything of a user.

Two formats come in (:func:`parse_history`, ``format="auto"`` tells them apart):

* **monGARS JSONL** (``mongars``), one JSON object a line, told apart by
  ``type``: a header ``{"type": "mongars-export", "version": 1}``, ``session``
  lines (``session_id``, ``title``), ``turn`` lines (``session_id``,
  ``message``, ``reply``, ``created_at``, optionally the reply's ``rating``, 1
  or -1; ``type`` may be left out) and the ``memory``, ``style`` and
  ``adapter`` lines an export writes, which an import reads past (memories and
  the style profile are learnt again from the turns). After the header, lines of
  other types (a plugin's ``document``, a newer monGARS's) are read past too,
  with a warning per type; before it, an unknown type is refused.
* **A ChatGPT export** (``chatgpt``), its ``conversations.json``: each
  conversation's current branch, from ``current_node`` back to the root,
  becomes a session of the same title, each user message and the assistant
  messages that follow it a turn.

:func:`import_history` stores the turns with their own times, as history and
memories like any others (the ``mongars_remember`` and
``mongars_turn_completed`` hooks see each turn), all in one transaction: a
malformed file is refused whole (:class:`~mongars_core.errors.HistoryFormatError`
naming the line, or the conversation and node), and a turn already stored
(same session, time and message) is not stored twice.

What comes in is cleaned (:func:`clean_text`): terminal escapes, control characters
but newline and tab, and bidi embeddings, overrides and isolates are removed from
messages, replies and titles. A message with nothing visible left (empty, or only
zero-width and other format characters) is left out with a warning of the summary,
not refused. A file is refused when it is nested too deeply to read, holds a number
of more than 4300 digits, a non-string ``type``, text that is not valid Unicode (a
lone surrogate) or a time more than a day ahead of now. :func:`export_records`
writes a user's history, memories, style profile and adapters as JSONL records.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

from sqlalchemy import bindparam, case, select
from sqlmodel import col

from mongars_core.capabilities import Progress
from mongars_core.errors import (
    DuplicateRecordError,
    HistoryFormatError,
    InvalidInputError,
    MessageTooLongError,
    UnknownUserError,
)
from mongars_core.services import Services
from mongars_core.settings import Settings
from mongars_core.storage.models import TurnRecord
from mongars_core.storage.statements import CONVERSATIONS, dialect_insert, insert_turn, insert_user
from mongars_core.storage.store import Store, conversation_title
from mongars_core.storage.turns import RATINGS, adapter_of
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.turn_context import TurnContext
from mongars_core.types import Reply, Turn, utcnow
from mongars_core.validation import check_id, check_length

Format = Literal["auto", "mongars", "chatgpt"]

FORMAT_VERSION = 1
HEADER_TYPE = "mongars-export"
IMPORT_BACKEND = "import"
"""The ``backend`` of an imported turn."""
MAX_REPLY_CHARS = 100_000
"""The longest imported reply (messages have ``max_message_chars``, as in a turn)."""
STYLE_NAMESPACE = "style"
"""The plugin-state namespace of the style profile (the personality plugin's)."""
EXPORTED_ONLY = {"memory", "style", "adapter"}
"""Record types an export writes and an import reads past."""
_KEY_PREFIX = "import:"
FUTURE_SLACK = timedelta(days=1)
"""How far ahead of now an imported time may be (clocks and zones differ, not by more)."""
_TERMINAL_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, links
    r"|\x1b[@-Z\\-_]"  # the other two-character escapes
)
_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
)  # C0 but tab and newline, DEL, C1, bidi embeddings, overrides and isolates


@dataclass(frozen=True)
class ImportedTurn:
    """One turn read from a file; ``where`` says where it was, for errors."""

    session_id: str
    message: str
    reply: str
    created_at: datetime
    where: str
    rating: int | None = None
    """The reply's rating (1 up, -1 down) the file gives, if any."""

    @property
    def key(self) -> str:
        """What makes a turn the same turn: session, time (to the µs) and message."""
        return turn_key(self.session_id, self.created_at, self.message)


@dataclass
class ParsedHistory:
    """A file's turns in file order and its sessions' titles."""

    format: Literal["mongars", "chatgpt"]
    turns: list[ImportedTurn] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    skipped_records: int = 0
    """``memory``, ``style`` and ``adapter`` lines read past, and an export's lines of
    types this monGARS does not import (plugins' ``document``...)."""
    warnings: list[str] = field(default_factory=list)
    """Messages left out (nothing visible in them), sessions renamed apart, naming where."""


@dataclass
class ImportSummary:
    """What an import stored."""

    user_id: str
    format: str
    turns: int
    sessions: int
    memories: int
    duplicates: int
    """Turns of the file already stored (or twice in it), not stored again."""
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        text = (
            f"imported {self.turns} turns in {self.sessions} sessions for {self.user_id} "
            f"({self.format}); {self.memories} memories added"
        )
        if self.duplicates:
            text += f"; {self.duplicates} turns already there were skipped"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "format": self.format,
            "turns": self.turns,
            "sessions": self.sessions,
            "memories": self.memories,
            "duplicates": self.duplicates,
            "warnings": self.warnings,
        }


def turn_key(session_id: str, created_at: datetime, message: str) -> str:
    moment = _utc(created_at).isoformat(timespec="microseconds")
    digest = hashlib.sha256(f"{session_id}\n{moment}\n{message}".encode()).hexdigest()
    return _KEY_PREFIX + digest[:48]


# -- parsing -------------------------------------------------------------------------


def parse_history(data: str | bytes, settings: Settings, format: Format = "auto") -> ParsedHistory:
    """The turns of a history file, checked as a turn's message is; raises
    :class:`HistoryFormatError` (or the limit's error) naming where the file is wrong."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise HistoryFormatError(
                f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)"
            ) from None
    else:
        text = data.removeprefix("\ufeff")
    if format == "auto":
        format = "chatgpt" if text.lstrip().startswith("[") else "mongars"
    if format == "chatgpt":
        from mongars_core.history_chatgpt import parse_chatgpt  # it builds on this module

        return parse_chatgpt(text, settings)
    if format == "mongars":
        return _parse_jsonl(text, settings)
    raise InvalidInputError(f"unknown history format {format!r}: use auto, mongars or chatgpt")


def located(where: str, check: Callable[[], Any]) -> Any:
    """``check()``, its error prefixed with ``where``: a :class:`HistoryFormatError`,
    but for a message over the limit, which stays a :class:`MessageTooLongError`."""
    try:
        return check()
    except InvalidInputError as exc:
        error = MessageTooLongError if isinstance(exc, MessageTooLongError) else HistoryFormatError
        raise error(f"{where}: {exc}") from None


def clean_text(text: str) -> str:
    """``text`` without terminal escapes, control characters (but newline and tab) and
    bidi embeddings, overrides and isolates, stripped: what an imported text keeps."""
    return _CONTROL.sub("", _TERMINAL_ESCAPE.sub("", text)).strip()


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: not only spaces and format characters
    (zero-width spaces and joiners, word joiners, byte-order marks)."""
    return any(not char.isspace() and unicodedata.category(char) != "Cf" for char in text)


def check_message(settings: Settings, value: object, where: str) -> str | None:
    """The message, cleaned (:func:`clean_text`) and checked; ``None`` when nothing
    visible is left of it (the caller leaves the turn out, with a warning)."""
    if not isinstance(value, str):
        raise HistoryFormatError(f"{where}: 'message' must be a string")
    _plain(value, where, "message")
    text = clean_text(value)
    if not visible(text):
        return None
    located(where, lambda: check_length(settings, text))
    return text


def skipped_message(where: str) -> str:
    return f"{where}: the message shows no text (once control characters are removed); skipped"


def check_reply(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise HistoryFormatError(f"{where}: 'reply' must be a string")
    _plain(value, where, "reply")
    text = clean_text(value)
    if len(text) > MAX_REPLY_CHARS:
        raise HistoryFormatError(
            f"{where}: the reply has {len(text)} characters; the limit is {MAX_REPLY_CHARS}"
        )
    return text


def _plain(text: str, where: str, name: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HistoryFormatError(f"{where}: the {name} is not valid text") from None


def parse_moment(value: object, where: str) -> datetime:
    """An ISO 8601 time (UTC when it names no zone) or seconds since the epoch, not
    more than :data:`FUTURE_SLACK` ahead of now."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            moment = _utc(datetime.fromisoformat(value))
        else:
            raise TypeError
    except (TypeError, ValueError, OverflowError, OSError):
        raise HistoryFormatError(
            f"{where}: 'created_at' must be an ISO 8601 time or seconds since 1970, "
            f"not {shown(value)}"
        ) from None
    if moment > utcnow() + FUTURE_SLACK:
        raise HistoryFormatError(
            f"{where}: 'created_at' is in the future ({moment.isoformat()}); "
            "a history is of what was said"
        )
    return moment


def shown(value: object) -> str:
    """``value`` as JSON, cut to 40 characters, for an error (a value nested too
    deeply to write is shown cut too)."""
    try:
        return json.dumps(value, ensure_ascii=False)[:40]
    except (RecursionError, ValueError):
        return repr(type(value).__name__)


def loads(text: str, where: str | None = None) -> Any:
    """``json.loads(text)``; a :class:`HistoryFormatError` naming ``where`` (the line)
    or the line and column when the text is not JSON, is nested too deeply to read,
    or holds a number of more digits than Python reads."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if where is None:
            problem = f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        else:
            problem = f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        problem = _json_problem(where, "nested too deeply")
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) ..."
        limit = re.search(r"\((\d+) digits\)", str(exc))
        digits = limit.group(1) if limit else "the allowed"
        problem = _json_problem(where, f"a number has more than {digits} digits")
    raise HistoryFormatError(problem) from None


def _json_problem(where: str | None, what: str) -> str:
    return f"not valid JSON: {what}" if where is None else f"{where}: not valid JSON ({what})"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def clean_title(value: object, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise HistoryFormatError(f"{where}: 'title' must be a string")
    _plain(value, where, "title")
    text = " ".join(clean_text(value).split())
    return text[:200] if visible(text) else ""


def _session(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise HistoryFormatError(f"{where}: 'session_id' must be a string")
    located(where, lambda: check_id("session id", value))
    return value


def _rating(value: object, where: str) -> int | None:
    # type(): True and False are ints too, and not ratings.
    if value is None or (type(value) is int and value in RATINGS):
        return value
    raise HistoryFormatError(f"{where}: 'rating' must be 1 (up) or -1 (down), not {shown(value)}")


def _parse_jsonl(text: str, settings: Settings) -> ParsedHistory:
    history = ParsedHistory("mongars")
    exported = False  # past a header: an export, whose other record types are read past
    unknown: dict[str, str] = {}  # record type -> where it first was
    # split("\n"), not splitlines(): JSON strings may hold U+2028 and friends as they are.
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {number}"
        record = loads(line, where)
        if not isinstance(record, dict):
            raise HistoryFormatError(
                f"{where}: expected a JSON object, not {type(record).__name__}"
            )
        kind = record.get("type", "turn")
        if not isinstance(kind, str):
            raise HistoryFormatError(f"{where}: 'type' must be a string, not {shown(kind)}")
        if kind == HEADER_TYPE:
            version = record.get("version")
            if version != FORMAT_VERSION:
                raise HistoryFormatError(
                    f"{where}: this monGARS reads export version {FORMAT_VERSION}, "
                    f"not {shown(version)}"
                )
        elif kind == "session":
            session_id = _session(record.get("session_id"), where)
            title = clean_title(record.get("title"), where)
            if title:
                history.titles[session_id] = title
        elif kind == "turn":
            missing = [
                name
                for name in ("session_id", "message", "reply", "created_at")
                if name not in record
            ]
            if missing:
                raise HistoryFormatError(f"{where}: a turn needs {', '.join(map(repr, missing))}")
            session_id = _session(record["session_id"], where)
            message = check_message(settings, record["message"], where)
            reply = check_reply(record["reply"], where)
            created_at = parse_moment(record["created_at"], where)
            rating = _rating(record.get("rating"), where)
            if message is None:
                history.warnings.append(skipped_message(where))
                continue
            history.turns.append(
                ImportedTurn(session_id, message, reply, created_at, where, rating)
            )
        elif kind in EXPORTED_ONLY:
            history.skipped_records += 1
        elif exported:
            # An export holds plugins' records (documents...) and a newer monGARS's:
            # read past, counted, and said once per type.
            history.skipped_records += 1
            if len(unknown) < 10 or kind in unknown:  # a warning each for the first ten
                unknown.setdefault(kind, where)
        else:
            raise HistoryFormatError(f"{where}: unknown record type {shown(kind)}")
        exported = exported or kind == HEADER_TYPE
    for kind, where in unknown.items():
        history.warnings.append(
            f"{where}: {shown(kind)} records are not imported (this monGARS reads turns "
            "and sessions; memories and the style profile are learnt again from the turns)"
        )
    return history


# -- import ----------------------------------------------------------------------------


@cache
def _upsert_conversation(dialect: str) -> Any:
    """Create an imported session, or widen a stored one: its title only when it has
    none, its last use only forward. Parameters: ``user_id``, ``session_id``,
    ``title``, ``first``, ``last``."""
    table = CONVERSATIONS
    statement = dialect_insert(dialect, table).values(
        user_id=bindparam("user_id"),
        session_id=bindparam("session_id"),
        title=bindparam("title"),
        created_at=bindparam("first"),
        updated_at=bindparam("last"),
    )
    excluded = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["user_id", "session_id"],
        set_={
            "updated_at": case(
                (table.c.updated_at < excluded.updated_at, excluded.updated_at),
                else_=table.c.updated_at,
            ),
            "title": case((table.c.title == "", excluded.title), else_=table.c.title),
        },
    )


async def _stored_keys(store: Store, user_id: str, sessions: set[str]) -> set[str]:
    """The keys of the user's stored turns in ``sessions``, and their idempotency keys."""
    keys: set[str] = set()
    names = sorted(sessions)
    for start in range(0, len(names), 500):
        query = select(
            col(TurnRecord.session_id),
            col(TurnRecord.created_at),
            col(TurnRecord.message),
            col(TurnRecord.idempotency_key),
        ).where(
            col(TurnRecord.user_id) == user_id,
            col(TurnRecord.session_id).in_(names[start : start + 500]),
        )
        async with store.session() as session:
            rows = (await session.execute(query)).all()
        for session_id, created_at, message, idempotency_key in rows:
            keys.add(turn_key(session_id, created_at, message))
            if idempotency_key:
                keys.add(idempotency_key)
    return keys


async def _memory_count(store: Store, user_id: str) -> int:
    return len(await store.list_memories(user_id)) if await store.user_exists(user_id) else 0


async def import_history(
    services: Services,
    user_id: str,
    history: ParsedHistory,
    *,
    progress: Progress | None = None,
) -> ImportSummary:
    """Store ``history``'s turns as ``user_id``'s (created if new), in one transaction.

    Each turn goes through ``mongars_remember`` and ``mongars_turn_completed``
    with the import's unit of work, as a turn of the pipeline does; a failing
    hook is a warning of the summary, not a failed import. ``progress("import",
    done, total)`` is called as turns are staged.
    """
    check_id("user id", user_id)
    store, settings = services.store, services.settings
    stored = await _stored_keys(store, user_id, {turn.session_id for turn in history.turns})
    fresh: list[ImportedTurn] = []
    duplicates = 0
    for turn in history.turns:
        if turn.key in stored:
            duplicates += 1
            continue
        stored.add(turn.key)
        fresh.append(turn)
    # Stored in time order: turns are read back in id order.
    fresh.sort(key=lambda turn: turn.created_at)
    sessions: dict[str, list[ImportedTurn]] = {}
    for turn in fresh:
        sessions.setdefault(turn.session_id, []).append(turn)
    summary = ImportSummary(user_id, history.format, len(fresh), len(sessions), 0, duplicates)
    summary.warnings = list(history.warnings)
    if not fresh:
        return summary
    memories_before = await _memory_count(store, user_id)

    writes = UnitOfWork()
    dialect = store.engine.dialect.name
    writes.execute(insert_user(dialect), {"id": user_id, "now": utcnow()})
    for session_id, turns in sessions.items():
        title = history.titles.get(session_id) or conversation_title(turns[0].message)
        writes.execute(
            _upsert_conversation(dialect),
            {
                "user_id": user_id,
                "session_id": session_id,
                "title": title,
                "first": turns[0].created_at,
                "last": turns[-1].created_at,
            },
        )
    context = TurnContext(services.tracer)
    try:
        for done, imported in enumerate(fresh, 1):
            await _stage(services, writes, context, user_id, imported)
            if progress is not None:
                progress("import", done, len(fresh))
        await store.commit(writes, deadline=settings.stage_timeout_s)
    except DuplicateRecordError as exc:
        raise DuplicateRecordError(
            f"another import stored some of these turns of {user_id!r} meanwhile: "
            "run the import again (what is stored is skipped)"
        ) from exc
    finally:
        await writes.discard(settings.stage_timeout_s)
    # The store's cached sessions and users did not see these turns come in.
    store.forget_cached(user_id)
    summary.memories = max(0, await _memory_count(store, user_id) - memories_before)
    summary.warnings += dict.fromkeys(failure.describe() for failure in context.failures)
    summary.warnings += [
        f"after commit: {name} failed: {error!r}" for name, error in writes.failures
    ]
    return summary


async def _stage(
    services: Services,
    writes: UnitOfWork,
    context: TurnContext,
    user_id: str,
    imported: ImportedTurn,
) -> None:
    turn_id = uuid.uuid4().hex
    writes.execute(
        insert_turn(),
        {
            "turn_id": turn_id,
            "user_id": user_id,
            "session_id": imported.session_id,
            "message": imported.message,
            "reply": imported.reply,
            "confidence": 0.0,
            "backend": IMPORT_BACKEND,
            "meta": json.dumps({"imported": True}),
            "idempotency_key": imported.key,
            "created_at": imported.created_at,
            "rating": imported.rating,
            "rated_at": None if imported.rating is None else utcnow(),
        },
    )
    turn = Turn(
        turn_id=turn_id,
        user_id=user_id,
        session_id=imported.session_id,
        message=imported.message,
        services=services,
    )
    reply = Reply(
        turn_id=turn_id,
        user_id=user_id,
        session_id=imported.session_id,
        text=imported.reply,
        confidence=0.0,
        backend=IMPORT_BACKEND,
        created_at=imported.created_at,
    )
    with context.stage("remember"):
        await services.plugins.remember(turn, reply, writes, context)
    with context.stage("observe"):
        await services.plugins.turn_completed(turn, reply, writes, context)


# -- export ----------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _utc(moment).isoformat(timespec="microseconds")


async def export_records(services: Services, user_id: str) -> list[dict[str, Any]]:
    """All of ``user_id``'s data as typed JSONL records: the header, their sessions,
    turns (oldest first), memories, style profile and adapters, then each plugin's
    records (``mongars_export_user``: documents...)."""
    store = services.store
    check_id("user id", user_id)
    if not await store.user_exists(user_id):
        raise UnknownUserError(f"no user {user_id!r} has talked to this assistant")
    records: list[dict[str, Any]] = [
        {
            "type": HEADER_TYPE,
            "version": FORMAT_VERSION,
            "user_id": user_id,
            "exported_at": _iso(utcnow()),
        }
    ]
    conversations = await store.list_conversations(user_id, limit=1_000_000)
    for conversation in sorted(conversations, key=lambda c: (c.created_at, c.session_id)):
        records.append(
            {
                "type": "session",
                "session_id": conversation.session_id,
                "title": conversation.title,
                "created_at": _iso(conversation.created_at),
            }
        )
    query = (
        select(TurnRecord)
        .where(col(TurnRecord.user_id) == user_id)
        .order_by(col(TurnRecord.created_at), col(TurnRecord.id))
    )
    async with store.session() as session:
        turns = (await session.execute(query)).scalars().all()
    for record in turns:
        line: dict[str, Any] = {
            "type": "turn",
            "session_id": record.session_id,
            "message": record.message,
            "reply": record.reply,
            "created_at": _iso(record.created_at),
            "turn_id": record.turn_id,
            "backend": record.backend,
        }
        adapter = adapter_of(record.meta or "{}")
        if adapter:
            line["adapter"] = adapter
        if record.rating is not None:
            line["rating"] = record.rating
        records.append(line)
    for memory in await store.list_memories(user_id):
        records.append(
            {
                "type": "memory",
                "id": memory.id,
                "text": memory.text,
                "session_id": memory.session_id,
                "created_at": _iso(memory.created_at),
                "expires_at": _iso(memory.expires_at),
            }
        )
    style = await store.get_state(STYLE_NAMESPACE, user_id)
    if style is not None:
        records.append({"type": "style", "profile": style})
    records.extend(_adapter_records(services, user_id))
    # What plugins store of the user (the knowledge plugin's documents...).
    records.extend(await services.plugins.export_user(services, user_id))
    return records


def _adapter_records(services: Services, user_id: str) -> list[dict[str, Any]]:
    registry = services.adapter_registry()
    name = registry.users().get(user_id)
    if name is None:
        return []
    answering = registry.for_user(user_id)
    return [
        {
            "type": "adapter",
            "name": adapter.name,
            "version": adapter.version,
            "base_model": adapter.base_model,
            "sha256": adapter.sha256,
            "created_at": _iso(adapter.created_at),
            "active": answering is not None and answering.version == adapter.version,
        }
        for adapter in registry.adapters()
        if adapter.name == name
    ]


def dumps_jsonl(records: Iterable[dict[str, Any]]) -> str:
    """``records`` as JSONL text, one object a line."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
