"""The ollama plugin's settings section, ``MONGARS_OLLAMA__*``."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import NoDecode

from mongars_core.settings import Section, empty_as_none, split_comma_list


class OllamaSettings(BaseModel):
    """Ollama servers (the ollama plugin)."""

    hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:11434"],
        json_schema_extra={"documented_default": "`http://127.0.0.1:11434`"},
        description="Comma-separated Ollama servers, each `URL` or `NAME=URL`. One unnamed host "
        "is the backend `ollama`; otherwise each is `ollama:NAME`.",
    )
    model: str = Field(
        "smollm2:135m",
        description="Model that generates replies (an endpoint's `model` overrides it).",
    )
    embed_model: str | None = Field(
        None, description="Model for embeddings; unset registers no Ollama embedder."
    )
    timeout_s: float = Field(60.0, gt=0, description="Deadline in seconds for one HTTP call.")
    keep_alive: str | None = Field(
        None,
        description="How long Ollama keeps the model loaded (`5m`, `-1`); unset: Ollama's default.",
    )

    _split_hosts = field_validator("hosts", mode="before")(split_comma_list)
    _optional = field_validator("embed_model", "keep_alive", mode="before")(empty_as_none)


OLLAMA = Section("ollama", OllamaSettings)
