"""The llamacpp plugin's settings section, ``MONGARS_LLAMACPP__*``, and its defaults."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from mongars_core.settings import Section, empty_as_none

SLOT_CONTEXT = 2048
"""Tokens of context each slot gets by default (prompt and reply together)."""


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> int:
    """Decode threads for ``cores`` cores: all but one, at least one.

    llama.cpp's threads wait on each other at every layer, so when another
    process holds one of them the whole step waits for it: on two cores, two
    threads fall from about 138 to about 22 tokens/s when a busy-loop holds a
    core, while one thread keeps about 80 (docs/llamacpp.md). Leaving one core
    free keeps the server, the database and the rest of the machine from
    taking a core the engine's threads count on.
    """
    return max(1, (available_cores() if cores is None else cores) - 1)


class LlamaCppSettings(BaseModel):
    """The llama.cpp engine (the llamacpp plugin): the default local engine on CPUs with AVX2."""

    enabled: bool = Field(
        True,
        description="Offer the llama.cpp engine; false makes the `local` backend use the next "
        "engine of `llm.local_engines` (torch).",
    )
    model: str | None = Field(
        None,
        description="The model it serves when a request names none: a name from `mongars models "
        "list` (one added with `mongars models add FILE.gguf`); default: the bundled "
        "smollm2-135m-instruct.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=512,
        description="CPU threads for decoding and prompt processing; default: the cores this "
        "process may use, less one (at least one), so a busy core does not stall every step.",
    )
    slots: int = Field(
        4,
        ge=1,
        le=64,
        description="Sequences generated at once (continuous batching): that many users' replies "
        "stream together; more requests wait for a free slot.",
    )
    context_size: int | None = Field(
        None,
        ge=256,
        description=f"Tokens of context in all, split evenly across the slots; default: "
        f"{SLOT_CONTEXT} per slot (at most the model's own context length). A prompt longer than "
        "its slot's share is refused.",
    )
    batch_size: int = Field(
        512,
        ge=32,
        le=8192,
        description="Prompt tokens processed in one step (llama.cpp's n_batch).",
    )
    poll: int = Field(
        0,
        ge=0,
        le=100,
        description="How hard idle engine threads spin waiting for work (0-100, llama.cpp's "
        "--poll); 0 yields the core at once, which helps when the machine is shared.",
    )
    kv_cache_type: Literal["f16", "q8_0"] = Field(
        "q8_0",
        description="How the KV cache (each slot's context) is stored: `q8_0` takes half the "
        "memory of `f16` (about 85 MB less for the bundled model's 4 x 2048 tokens) for a "
        "rounding of the attention keys and values that rarely changes a word.",
    )
    prompt_cache_mib: int = Field(
        0,
        ge=0,
        description="Memory (MiB) for prompts kept after their slot moved on, restored when the "
        "conversation comes back; 0: off (only each slot's own last prompt is reused).",
    )

    _optional = field_validator("model", "threads", "context_size", mode="before")(empty_as_none)

    @model_validator(mode="after")
    def _context_per_slot(self) -> LlamaCppSettings:
        if self.context_size is not None and self.context_size // self.slots < 256:
            raise ValueError(
                f"context_size {self.context_size} gives each of the {self.slots} slots fewer "
                "than 256 tokens; raise it or lower slots"
            )
        return self

    @property
    def resolved_threads(self) -> int:
        return self.threads or default_threads()

    def context_for(self, model_context: int | None) -> int:
        """The total context (all slots) for a model trained on ``model_context`` tokens."""
        if self.context_size is not None:
            return self.context_size
        per_slot = SLOT_CONTEXT if not model_context else min(SLOT_CONTEXT, model_context)
        return per_slot * self.slots


LLAMACPP = Section("llamacpp", LlamaCppSettings)
