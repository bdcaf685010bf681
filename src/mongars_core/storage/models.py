"""Database tables (SQLModel). Schema changes go through migrations/versions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel

from mongars_core.types import utcnow


def _timestamp() -> datetime:
    return Field(  # type: ignore[no-any-return]
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


class UserRecord(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=150)
    created_at: datetime = _timestamp()


class TurnRecord(SQLModel, table=True):
    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_user_session", "user_id", "session_id", "id"),
        # A client that retries a turn with the same key gets the stored turn back.
        Index("ix_turns_user_idempotency", "user_id", "idempotency_key", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    turn_id: str = Field(max_length=64, unique=True)
    user_id: str = Field(foreign_key="users.id", max_length=150, index=True)
    session_id: str = Field(max_length=150)
    message: str = Field(sa_column=Column(Text, nullable=False))
    reply: str = Field(sa_column=Column(Text, nullable=False))
    confidence: float = 0.0
    backend: str = Field(default="", max_length=100)
    meta: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    idempotency_key: str | None = Field(default=None, max_length=200)
    created_at: datetime = _timestamp()
    # The user's thumbs on the reply: 1 up, -1 down, NULL none (Store.rate_turn).
    rating: int | None = Field(default=None)
    rated_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class ConversationRecord(SQLModel, table=True):
    """One conversation (session) of a user: its title and when it was last used."""

    __tablename__ = "conversations"

    user_id: str = Field(foreign_key="users.id", primary_key=True, max_length=150)
    session_id: str = Field(primary_key=True, max_length=150)
    title: str = Field(max_length=200)
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()


class MemoryRecord(SQLModel, table=True):
    __tablename__ = "memories"
    __table_args__ = (Index("ix_memories_user_id_id", "user_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=150)
    session_id: str = Field(default="", max_length=150)
    turn_id: str | None = Field(default=None, max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    embedder: str | None = Field(default=None, max_length=100)
    created_at: datetime = _timestamp()
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )


class PluginStateRecord(SQLModel, table=True):
    __tablename__ = "plugin_state"

    namespace: str = Field(primary_key=True, max_length=100)
    user_id: str = Field(primary_key=True, max_length=150)
    value: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = _timestamp()


class AccountRecord(SQLModel, table=True):
    """A server login.

    ``username`` is stored casefolded. ``user_id`` owns the account's
    conversations and memories: it is drawn at random when the account is
    created, so an account never inherits data it did not create (a library
    user of the same name, or a deleted account of the same name).
    """

    __tablename__ = "accounts"

    username: str = Field(primary_key=True, max_length=150)
    user_id: str = Field(max_length=150, unique=True, index=True)
    # Who made it: NULL when it registered itself, "operator" for the CLI,
    # "admin:<username>" for an administrator.
    created_by: str | None = Field(default=None, max_length=150)
    password_hash: str = Field(max_length=255)
    is_admin: bool = False
    # Bumped on every password change; access tokens carry it, so older ones stop working.
    password_version: int = 1
    created_at: datetime = _timestamp()


class ApiKeyRecord(SQLModel, table=True):
    """A per-user API key (OpenAI-compatible API). Only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(foreign_key="accounts.username", max_length=150, index=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=64, unique=True)
    # The account's user_id when the key was made: a key of a deleted account
    # never works for a new account of the same name.
    account_user_id: str | None = Field(default=None, max_length=150)
    created_at: datetime = _timestamp()
    last_used_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class CollectionRecord(SQLModel, table=True):
    """A collection of documents (the knowledge plugin): a user's own, or a shared one
    an administrator publishes (``user_id`` NULL, readable by every user)."""

    __tablename__ = "document_collections"
    __table_args__ = (Index("ix_document_collections_owner_name", "user_id", "name", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: str | None = Field(default=None, foreign_key="users.id", max_length=150)
    name: str = Field(max_length=100)
    shared: bool = False
    # Documents expire this many days after they were added or last updated; NULL: never.
    retention_days: int | None = Field(default=None)
    created_at: datetime = _timestamp()


class DocumentRecord(SQLModel, table=True):
    """One uploaded document and the text extracted from it (exports carry the text)."""

    __tablename__ = "documents"
    __table_args__ = (Index("ix_documents_collection", "collection_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    collection_id: int = Field(foreign_key="document_collections.id")
    # The owner; NULL for a document of a shared collection.
    user_id: str | None = Field(default=None, max_length=150, index=True)
    # Who added it (for a shared document: the administrator's user id).
    added_by: str | None = Field(default=None, max_length=150)
    title: str = Field(max_length=300)
    filename: str = Field(max_length=300)
    media_type: str = Field(max_length=100)
    size: int = 0
    sha256: str = Field(max_length=64)
    text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _timestamp()
    updated_at: datetime = _timestamp()
    expires_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True, index=True)
    )


class ChunkRecord(SQLModel, table=True):
    """A passage of a document: what search indexes and retrieval returns."""

    __tablename__ = "document_chunks"
    __table_args__ = (Index("ix_document_chunks_document", "document_id", "position"),)

    id: int | None = Field(default=None, primary_key=True)
    document_id: int = Field(foreign_key="documents.id")
    position: int = 0
    text: str = Field(sa_column=Column(Text, nullable=False))
    # The section it belongs to, "Setup › Linux"; "" outside any heading.
    heading: str = Field(default="", sa_column=Column(Text, nullable=False))
    # Its span in the document's extracted text.
    start: int = 0
    end: int = 0
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    embedder: str | None = Field(default=None, max_length=100)
