"""The ray_serve plugin's settings section, ``MONGARS_RAY__*``."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from mongars_core.settings import Section, empty_as_none


class RayServeSettings(BaseModel):
    """The local model on Ray Serve replicas (the ray_serve plugin)."""

    address: str | None = Field(
        None,
        description="Ray cluster to join: its GCS address `host:port` or `auto` (`ray://` works "
        "for `mongars ray` only; the streaming backend cannot use Ray Client); unset: `mongars "
        "ray deploy` starts a local Ray.",
    )
    app_name: str = Field("mongars-llm", description="Name of the Serve application.")
    replicas: int = Field(1, ge=1, description="Replicas when autoscaling is off.")
    min_replicas: int | None = Field(
        None, ge=0, description="Autoscaling lower bound; set both bounds to autoscale."
    )
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling upper bound.")
    num_cpus: float = Field(
        1.0,
        gt=0,
        description="CPUs reserved by each replica; its engine runs that many threads (whole "
        "CPUs, at least one) unless `MONGARS_LLAMACPP__THREADS` says otherwise.",
    )
    num_gpus: float = Field(
        0.0, ge=0, description="GPUs reserved by each replica; 0 runs on the CPU."
    )
    max_ongoing_requests: int = Field(
        4,
        ge=1,
        description="Requests one replica handles at once; its llama.cpp engine gets as many "
        "slots and generates them together (unless `MONGARS_LLAMACPP__SLOTS` is set).",
    )

    _optional = field_validator("address", "min_replicas", "max_replicas", mode="before")(
        empty_as_none
    )


RAY = Section("ray", RayServeSettings)
