"""Settings: one pydantic-settings class, environment prefix ``MONGARS_``, and sections.

The core's own settings are fields of :class:`Settings`: the general ones and
the ``llm`` and ``memory`` sections (recall limits and the embedder apply to
every plugin's recall, so memory stays in the core). A plugin owns its section:
it declares a :class:`Section` through the ``mongars_register_settings`` hook
and reads it with :meth:`Settings.section`.

Set a nested value from the environment with a double underscore, e.g.
``MONGARS_LLM__BACKEND=local``, ``MONGARS_MEMORY__TTL_DAYS=30`` or a plugin's
``MONGARS_OLLAMA__HOSTS=...``. Nothing reads settings at import time: the CLI
or the host application builds a :class:`Settings` and passes it down.
docs/configuration.md is generated from these models (``python -m
mongars_core.settings_docs``) and a test keeps it so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Generic, Literal, TypeVar, cast

import platformdirs
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    SettingsConfigDict,
    SettingsError,
)

from mongars_core.errors import ConfigurationError, InvalidSectionError

logger = logging.getLogger(__name__)

ENV_PREFIX = "MONGARS_"
NESTED_DELIMITER = "__"

DEFAULT_SYSTEM_PROMPT = (
    "You are monGARS, a helpful, honest and concise personal assistant. "
    "Answer the user's last message directly."
)

M = TypeVar("M", bound=BaseModel)

_SECTION_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_NOT_GIVEN = object()


def split_comma_list(value: Any) -> Any:
    """``"a, b,,c"`` as ``["a", "b", "c"]``: the ``mode="before"`` validator of list settings."""
    if isinstance(value, str):
        return [name.strip() for name in value.split(",") if name.strip()]
    return value


def empty_as_none(value: Any) -> Any:
    """An empty environment variable means "no value" for optional settings."""
    return None if isinstance(value, str) and not value.strip() else value


def _without_password(url: str) -> str:
    """``url`` with any password removed (it is hashed into a Redis namespace)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not sep or not at or ":" not in credentials or "/" in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}@{location}"


class Section(Generic[M]):
    """A settings section a plugin owns: ``MONGARS_<NAME>__<FIELD>``, validated by ``model``.

    Declared through the ``mongars_register_settings`` hook and read with
    :meth:`Settings.section`, which needs no plugin manager. ``name`` is
    lower-case words joined by single underscores; every field of ``model``
    needs a default unless the section must be set. Two sections are the same
    if they are the same object. A bad name, one starting with ``model_`` or
    naming an attribute of pydantic's models or of :class:`Settings`, or a
    ``model`` that is not a pydantic model class raises
    :class:`~mongars_core.errors.InvalidSectionError`.
    """

    __slots__ = ("model", "name")

    def __init__(self, name: str, model: type[M]) -> None:
        if not _SECTION_NAME.fullmatch(name):
            raise InvalidSectionError(
                f"section name {name!r} must be lower-case words joined by single underscores"
            )
        if name.startswith("model_") or hasattr(Settings, name):
            raise InvalidSectionError(
                f"section name {name!r} clashes with pydantic: it starts with 'model_' or names "
                "an attribute of pydantic's models or of mongars_core.settings.Settings"
            )
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise InvalidSectionError(
                f"section {name!r}: its model {model!r} is not a pydantic BaseModel subclass"
            )
        self.name = name
        self.model = model

    def __repr__(self) -> str:
        return f"Section({self.name!r}, {self.model.__name__})"

    @property
    def env_prefix(self) -> str:
        """``MONGARS_<NAME>__``, the start of each of the section's variables."""
        return f"{ENV_PREFIX}{self.name.upper()}{NESTED_DELIMITER}"

    def read(self, given: Any = _NOT_GIVEN) -> M:
        """The section's values: the environment, overridden field by field by ``given``
        (a dict or a ``model``). Raises pydantic's ``ValidationError``, located at
        ``(name, field)``, or pydantic-settings' ``SettingsError`` for a variable
        that is not valid JSON."""
        reader = self._settings_class()
        values = reader() if given is _NOT_GIVEN else reader(**{self.name: given})
        return cast(M, getattr(values, self.name))

    def _settings_class(self) -> type[_SectionReader]:
        """The pydantic-settings class that reads the section (its one field)."""
        return _reader(self.name, self.model)


class _SectionReader(BaseSettings):
    """Reads one section exactly as :class:`Settings` reads its own (NoDecode lists,
    JSON values, a whole section as JSON in ``MONGARS_<NAME>``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER, extra="ignore"
    )


@functools.lru_cache(maxsize=64)
def _reader(name: str, model: type[BaseModel]) -> type[_SectionReader]:
    """A settings class whose one field is the section ``name`` of ``model``, kept for the
    sections read most recently."""
    # validate_default: a model with required fields reports them as MONGARS_<NAME>__<FIELD>.
    field = Field(default_factory=dict, validate_default=True)
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{model.__name__}Reader", __base__=_SectionReader, **{name: (model, field)}
    )


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
    local_engines: list[str] = Field(
        default_factory=lambda: ["llamacpp", "torch"],
        description="The engines behind the backend `local`, in order of preference: the first "
        "registered one that can run here serves (llama.cpp needs AVX2), and one whose model "
        "fails to load hands over to the next; `mongars backends` shows the choice and why.",
    )
    timeout_s: float = Field(120.0, gt=0, description="Deadline in seconds for a whole generation.")
    first_token_timeout_s: float = Field(
        60.0, gt=0, description="Deadline in seconds for the first streamed token."
    )
    max_new_tokens: int = Field(192, ge=1, le=8192, description="Most tokens in one reply.")
    temperature: float = Field(
        0.2, ge=0, le=2, description="Sampling temperature; 0 means greedy decoding."
    )
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling probability mass.")
    system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT,
        description="The assistant's base prompt.",
        json_schema_extra={"documented_default": "see below"},
    )
    role: str = Field("general", description="Model role that answers conversation turns.")
    roles: dict[str, list[EndpointSpec]] = Field(
        default_factory=dict,
        description='The model profile: each role\'s ordered endpoints, `{"general": [{"backend": '
        '"ollama:ws", "model": "qwen2.5:7b", "params": {"temperature": 0.3}}, {"backend": '
        '"local"}]}`. A role that is not listed is served by `BACKEND` alone. `params` may set '
        "`temperature`, `top_p`, `max_new_tokens` and `stop`; other keys go to the backend as "
        "options.",
    )
    retries: int = Field(
        2, ge=0, le=10, description="Attempts after the first, across endpoints, for one request."
    )
    retry_base_s: float = Field(
        0.2,
        ge=0,
        description="Back-off before the first retry on the same endpoint; it doubles each time, "
        "with full jitter, and is never shorter than the backend's `Retry-After`.",
    )
    retry_max_s: float = Field(
        2.0, ge=0, description="Longest jittered back-off between two attempts."
    )
    breaker_failures: int = Field(
        3, ge=1, description="Failures in a row that open an endpoint's circuit breaker."
    )
    breaker_reset_s: float = Field(
        30.0,
        gt=0,
        description="Seconds an open breaker refuses requests before it lets one probe through.",
    )
    cache_ttl_s: float = Field(
        0.0,
        ge=0,
        description="Seconds a reply to a non-personalised request (no history, memories, facts "
        "or style in the prompt) is reused for an identical request; 0 turns the cache off. In "
        "Redis when `MONGARS_REDIS_URL` is set, else in process.",
    )
    cache_size: int = Field(
        1024,
        ge=1,
        description="Most replies the in-process cache keeps (least recently used go first).",
    )


class MemorySettings(BaseModel):
    """Long-term memory (the Hippocampus plugin)."""

    ttl_days: float | None = Field(
        365.0, gt=0, description="Days a memory is kept; empty (or `null` in JSON) for forever."
    )
    capacity: int = Field(
        50_000,
        ge=1,
        description="Most memories kept per user; past it the oldest go, down to a tenth below.",
    )
    recall_limit: int = Field(5, ge=0, description="Most memories handed to the model per turn.")
    recall_token_budget: int = Field(
        300, ge=0, description="Most words of recalled memories handed to the model per turn."
    )
    min_score: float = Field(
        0.22,
        ge=0,
        le=1,
        description="Least relevance score for a memory matched by embedding to be recalled or "
        "found by search. Calibrated with MiniLM: see "
        "[architecture](architecture.md#recall-thresholds).",
    )
    min_lexical_score: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Least relevance score for a memory matched by words alone (no embedding): "
        "the share of the query's IDF-weighted words it contains.",
    )
    remember: Literal["statements", "all"] = Field(
        "statements",
        description="What becomes a memory: `statements` worth remembering (facts, preferences, "
        "plans, people, dates; not questions, commands, requests, greetings or sums), or `all` "
        "messages.",
    )
    duplicate_similarity: float = Field(
        0.95,
        ge=0,
        le=1,
        description="Least embedding cosine at which a new memory counts as a repeat of a stored "
        "one and refreshes it instead of adding one; `1` merges only the same wording.",
    )
    embedder: str = Field(
        "auto",
        description="Embedder name; `auto` takes the first registered, `none` forces lexical.",
    )
    ann_min_memories: int | None = Field(
        20_000,
        ge=1,
        description="Embedded memories of a user from which dense recall searches an HNSW graph "
        "(usearch, fp16) rather than scanning every embedding; empty for always the exact scan. "
        "See [the measurements](../benchmarks/results/memory_recall.md).",
    )
    snapshot_min_memories: int | None = Field(
        1000,
        ge=1,
        description="Memories of a user from which their index is also kept in a file of the "
        "data folder (`memory-index/`), checked against the database before use, so that "
        "loading them skips tokenising and graph building; empty for never.",
    )
    rerank: bool = Field(
        False,
        description="Re-order the best fused matches by exact cosine and BM25 combined "
        "(0.7/0.3) rather than keep the reciprocal-rank order.",
    )

    _optional = field_validator(
        "ttl_days", "ann_min_memories", "snapshot_min_memories", mode="before"
    )(empty_as_none)

    def min_score_for(self, source: str) -> float:
        """The recall threshold for a memory found by ``source`` (``"lexical"``, ...)."""
        return self.min_lexical_score if source == "lexical" else self.min_score


class Settings(BaseSettings):
    """The core's settings, and the values given for plugins' sections (read with
    :meth:`section`). Build one and pass it to ``Assistant.from_settings``."""

    # "allow" keeps the values given for plugin sections, ``Settings(ollama={...})``,
    # for :meth:`section`; environment variables never become extras.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=NESTED_DELIMITER, extra="allow"
    )

    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("mongars")),
        description="Folder for the SQLite database and other state.",
        json_schema_extra={"documented_default": "user data folder¹"},
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir("mongars")),
        description="Folder for downloaded and converted models.",
        json_schema_extra={"documented_default": "user cache folder¹"},
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL; default: SQLite in the data directory "
        "(`sqlite+aiosqlite:///<data dir>/mongars.sqlite3`).",
    )
    redis_url: str | None = Field(
        None,
        description="Redis URL (`redis://host:6379/0`) shared by server processes: used websocket "
        "tickets, rate-limit buckets and websocket events live there. Unset keeps them in "
        "process, which is right for one server process; `mongars serve --workers N` (N > 1) "
        "requires it. Needs the `redis` extra.",
    )
    redis_namespace: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Name in every Redis key and channel (`mongars:<namespace>:...`; letters, "
        "digits, `_`, `.`, `-`, at most 64), so deployments can share one Redis server: pub/sub "
        "ignores the database number in the URL. Unset: a hash of the database URL without its "
        "password, so the processes of one deployment agree and two deployments differ. Set it "
        "when processes reach the same database under different URLs.",
    )
    _optional_url = field_validator("database_url", "redis_url", "redis_namespace", mode="before")(
        empty_as_none
    )
    load_plugins: Annotated[list[str] | None, NoDecode] = Field(
        None, description="Comma-separated allow-list of plugin names; unset or empty loads all."
    )
    disable_plugins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated plugin names not to load."
    )
    strict_plugins: bool = Field(
        False, description="Raise when a plugin fails to load instead of skipping it."
    )
    max_message_chars: int = Field(
        4000,
        ge=1,
        description="Longest accepted user message, counted after surrounding whitespace is "
        "stripped.",
    )
    history_turns: int = Field(
        6, ge=0, description="Earlier turns of the session handed to the model."
    )
    stage_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Deadline in seconds for each optional pipeline stage. It applies to each "
        "hook implementation on its own.",
    )
    llm: LLMSettings = Field(default_factory=LLMSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    _sections: dict[Section[Any], tuple[object, BaseModel]] = PrivateAttr(default_factory=dict)

    _split_plugin_lists = field_validator("load_plugins", "disable_plugins", mode="before")(
        split_comma_list
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

    def section(self, section: Section[M]) -> M:
        """The values of a plugin's settings section (see :class:`Section`).

        Read from the environment (and the ``Settings(<name>={...})`` value) the
        first time, then kept for this object. Raises
        :class:`~mongars_core.errors.ConfigurationError` naming each bad
        variable, the way the CLI reports an invalid core setting.
        """
        try:
            return self._read_section(section)
        except (ValidationError, SettingsError) as exc:
            problems = _problems(exc, section._settings_class())
            raise ConfigurationError(f"invalid settings: {problems}") from None

    def _read_section(self, section: Section[M]) -> M:
        given = (self.__pydantic_extra__ or {}).get(section.name, _NOT_GIVEN)
        cached = self._sections.get(section)
        # The given value is compared too: ``model_copy(update=...)`` shares this cache.
        if cached is not None and cached[0] is given:
            return cast(M, cached[1])
        values = section.read(given)
        self._sections[section] = (given, values)
        return values


def read_settings() -> Settings:
    """``Settings()``, read from the environment; a bad variable raises one
    :class:`ConfigurationError` line naming each bad variable (never its value)."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        raise ConfigurationError(f"invalid settings: {_problems(exc, Settings)}") from None


def _problems(error: ValidationError | SettingsError, settings_cls: type[BaseSettings]) -> str:
    if isinstance(error, ValidationError):
        return describe_invalid_settings(error)
    return describe_unreadable_settings(error, settings_cls)


def describe_invalid_settings(error: ValidationError) -> str:
    """One line naming each bad setting by its environment variable."""
    problems = []
    for item in error.errors():
        name = ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in item["loc"])
        problems.append(f"{name}: {item['msg']}")
    return "; ".join(problems)


def describe_unreadable_settings(error: SettingsError, settings_cls: type[BaseSettings]) -> str:
    """One line naming each environment variable of ``settings_cls`` that cannot be decoded
    (a JSON value that is not JSON), and why, without its value: it may hold a secret."""
    source = EnvSettingsSource(settings_cls)
    problems = []
    for name, value in sorted(source.env_vars.items()):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        source.env_vars = {name: value}  # each variable alone: which one fails
        try:
            source()
        except SettingsError as exc:
            problems.append(f"{name.upper()}: {_why_unreadable(exc)}")
    return "; ".join(problems) or str(error)


def _why_unreadable(error: SettingsError) -> str:
    cause = error.__cause__
    if isinstance(cause, json.JSONDecodeError):  # its message quotes no part of the value
        return f"not valid JSON ({cause.msg}: line {cause.lineno} column {cause.colno})"
    return f"cannot be decoded ({type(cause).__name__})"


def bind_sections(settings: Settings, sections: Mapping[str, Section[Any]]) -> None:
    """Read every section of ``sections`` for ``settings`` now, at assembly.

    ``sections`` is what ``PluginHost.settings_sections()`` returns. A bad
    value then stops the assistant, the server or the ``mongars`` command
    before anything starts, as one :class:`ConfigurationError` naming every
    bad variable of every section; the values read are kept for
    :meth:`Settings.section`. A ``MONGARS_<SECTION>__<FIELD>`` variable naming
    no field of its section (a misspelling) is logged as a warning.
    """
    _log_unknown_variables(sections.values())
    problems = []
    for section in sections.values():
        try:
            settings._read_section(section)
        except (ValidationError, SettingsError) as exc:
            problems.append(_problems(exc, section._settings_class()))
    if problems:
        raise ConfigurationError(f"invalid settings: {'; '.join(problems)}")


def _log_unknown_variables(sections: Iterable[Section[Any]]) -> None:
    for section in sections:
        fields = section.model.model_fields
        known = {name.upper() for name in fields}
        known |= {info.alias.upper() for info in fields.values() if info.alias}
        for variable in sorted(name.upper() for name in os.environ):
            if not variable.startswith(section.env_prefix):
                continue
            field = variable.removeprefix(section.env_prefix).split(NESTED_DELIMITER, 1)[0]
            if field not in known:
                logger.warning(
                    "%s is not a setting of the section %r and is ignored (its settings: %s)",
                    variable,
                    section.name,
                    ", ".join(fields),
                )
