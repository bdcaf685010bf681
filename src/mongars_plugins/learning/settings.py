"""The learning plugin's settings section, ``MONGARS_LEARNING__*``."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mongars_core.settings import Section, empty_as_none


class LearningSettings(BaseModel):
    """Self-training: LoRA runs on consenting users' scrubbed turns (docs/learning.md)."""

    # -- training (the worker's parameters) ---------------------------------------
    rank: int = Field(8, ge=1, le=256, description="LoRA rank.")
    alpha: int = Field(
        16, ge=1, le=1024, description="LoRA alpha (the update is scaled by alpha / rank)."
    )
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="The model's modules that get a LoRA pair (llama names: q_proj, k_proj, "
        "v_proj, o_proj, gate_proj, up_proj, down_proj).",
    )
    steps: int = Field(30, ge=1, le=100_000, description="Optimizer steps of a run.")
    learning_rate: float = Field(5e-4, ge=1e-9, le=1, description="AdamW learning rate.")
    batch_size: int = Field(4, ge=1, le=512, description="Examples per step.")
    max_tokens: int = Field(
        128, ge=16, le=4096, description="Tokens of an example kept (longer ones are cut)."
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed of the LoRA initialisation and the example order."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the worker trains: `auto` takes a CUDA GPU when there is one."
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=512,
        description="CPU threads of the training worker; default: the cores less one (at least "
        "one), so a turn arriving during a run still gets a core.",
    )
    nice: int = Field(
        10, ge=0, le=19, description="The worker's scheduling niceness (19: lowest priority)."
    )
    # -- curation ----------------------------------------------------------------
    min_examples: int = Field(
        30, ge=2, description="Curated examples a run needs at least (held-out ones included)."
    )
    max_examples: int = Field(
        400, ge=2, description="The most recent curated examples a run uses at most."
    )
    heldout_fraction: float = Field(
        0.15,
        gt=0,
        lt=0.9,
        description="The newest share of the curated examples kept out of training, to measure "
        "the adapter on.",
    )
    min_chars: int = Field(12, ge=1, description="Shorter texts are not curated.")
    max_chars: int = Field(2000, ge=16, description="Longer texts are not curated.")
    # -- the gate, approval, validation --------------------------------------------
    heldout_improvement: float = Field(
        0.20,
        ge=0,
        lt=1,
        description="How much lower the held-out perplexity must be with the adapter (0.20: "
        "at least 20% lower), or the run is rejected.",
    )
    general_tolerance: float = Field(
        0.05,
        ge=0,
        description="How much higher the general-text perplexity may be with the adapter "
        "(0.05: at most 5% higher), or the run is rejected.",
    )
    auto_approve: bool = Field(
        False,
        description="Approve a run that passes the gate without waiting for an operator; an "
        "active adapter that later fails its validation is then rolled back on its own too.",
    )
    validate_every_hours: float = Field(
        24.0, gt=0, description="How often an active adapter is measured on newer turns."
    )
    min_validation_examples: int = Field(
        5, ge=1, description="Newer curated turns a validation needs; with fewer it waits."
    )
    # -- scheduling ------------------------------------------------------------------
    schedule: bool = Field(
        True, description="Start runs by themselves while the node is idle (in `mongars serve`)."
    )
    idle_minutes: float = Field(
        30.0, ge=0, description="Minutes without a turn before the node counts as idle."
    )
    min_new_examples: int = Field(
        50,
        ge=1,
        description="New curated examples (since the user's last run) a scheduled run needs.",
    )
    check_seconds: float = Field(60.0, gt=0, description="How often the scheduler looks for work.")
    # -- energy and carbon -------------------------------------------------------------
    cpu_watts: float = Field(
        15.0,
        gt=0,
        allow_inf_nan=False,
        description="Watts one busy core draws, for the energy estimate where no meter can be "
        "read (RAPL, NVML).",
    )
    grid_intensity: float | list[float] = Field(
        400.0,
        description="Grid carbon intensity in gCO2e/kWh: one number, or 24 numbers, one per "
        "hour of the local day.",
    )
    carbon_threshold: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="A scheduled run waits while the grid intensity is above this (gCO2e/kWh); "
        "unset: never waits. Runs by hand are not held back.",
    )

    _optional = field_validator("threads", "carbon_threshold", mode="before")(empty_as_none)

    @field_validator("grid_intensity")
    @classmethod
    def _intensity(cls, value: float | list[float]) -> float | list[float]:
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) != 24:
            raise ValueError(f"give one intensity or 24 (one per hour), not {len(value)}")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError("a grid intensity is a finite number, not negative")
        return value


LEARNING = Section("learning", LearningSettings)
