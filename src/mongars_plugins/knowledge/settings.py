"""The knowledge plugin's settings section, ``MONGARS_KNOWLEDGE__*``."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from mongars_core.settings import Section


class KnowledgeSettings(BaseModel):
    """Documents: collections of files, chunked and searched (docs/knowledge.md)."""

    max_file_bytes: int = Field(
        10_485_760,
        ge=1024,
        description="Largest file accepted (bytes). An upload through the server is also "
        "bounded by `server.max_upload_bytes` (16 MiB): raise both for larger documents.",
    )
    max_chunks: int = Field(
        2000, ge=1, description="Most chunks one document may make; a longer one is refused."
    )
    max_documents: int = Field(1000, ge=1, description="Most documents one collection may hold.")
    chunk_words: int = Field(
        200, ge=20, le=2000, description="Words a chunk aims at (paragraphs are packed up to it)."
    )
    min_chunk_words: int = Field(
        120,
        ge=1,
        description="Words under which a chunk takes in the next paragraph of its section.",
    )
    max_chunk_words: int = Field(
        250,
        ge=20,
        description="Words a chunk never exceeds, unless one sentence alone is longer (then it "
        "is cut between words).",
    )
    embed_batch: int = Field(
        64, ge=1, le=4096, description="Chunks embedded per batch (progress moves per batch)."
    )
    default_collection: str = Field(
        "notes", min_length=1, max_length=100, description="The collection a document goes to."
    )
    sweep_minutes: float = Field(
        60.0,
        gt=0,
        description="How often expired documents are deleted (also once at start-up); search "
        "leaves them out as soon as they expire.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> KnowledgeSettings:
        if not self.min_chunk_words <= self.chunk_words <= self.max_chunk_words:
            raise ValueError(
                "chunk sizes must satisfy min_chunk_words <= chunk_words <= max_chunk_words"
            )
        return self


KNOWLEDGE = Section("knowledge", KnowledgeSettings)
