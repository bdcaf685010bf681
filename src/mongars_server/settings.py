"""The server plugin's settings section, ``MONGARS_SERVER__*``.

``mongars serve`` reads it before any app or plugin manager exists:
``settings.section(SERVER)`` needs neither.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from mongars_core.settings import Section, empty_as_none, split_comma_list


class ServerSettings(BaseModel):
    """The HTTP server (``mongars serve``, the ``mongars_server`` package)."""

    host: str = Field(
        "127.0.0.1", description="Address the server listens on. `mongars serve --host` sets it."
    )
    port: int = Field(
        8000, ge=0, le=65535, description="Port the server listens on. `--port` sets it."
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Server processes. More than one needs `MONGARS_REDIS_URL`. `--workers` sets "
        "it.",
    )
    jwt_secret: SecretStr | None = Field(
        None,
        description="Secret that signs access tokens and websocket tickets, at least 32 "
        "characters. Unset: generated on first run and kept in `<data dir>/server-secret` with "
        "mode 0600; the server refuses a secret file other users can read.",
    )
    token_ttl_s: int = Field(
        3600,
        ge=60,
        le=30 * 86400,
        description="Access token lifetime in seconds (1 minute to 30 days).",
    )
    ticket_ttl_s: int = Field(
        30,
        ge=1,
        le=60,
        description="Websocket ticket lifetime in seconds. No clock-skew allowance is added.",
    )
    allow_registration: bool = Field(
        True,
        description="Let anyone create a (non-admin) account with `POST /api/v1/user/register`.",
    )
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated origins (`https://app.example`) allowed for CORS and "
        "websockets besides the server's own origin. `*` allows any origin.",
    )
    rate_limit_per_minute: float = Field(
        120.0,
        gt=0,
        description="Sustained requests per minute per user (per client address for login and "
        "registration).",
    )
    rate_limit_burst: int = Field(
        30, ge=1, description="Requests a user may make at once before the rate applies."
    )
    login_failures_per_minute: float = Field(
        5.0,
        gt=0,
        description="Sustained failed logins per minute per account, whatever the client address "
        "(token bucket keyed `login:<username>`); beyond, logins to that account, right or wrong, "
        "get 429 with `Retry-After`.",
    )
    login_failure_burst: int = Field(
        10, ge=1, description="Failed logins an account may take in a row before that rate applies."
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body accepted; larger ones get 413 and the connection is "
        "closed.",
    )
    max_upload_bytes: int = Field(
        16_777_216,
        ge=1024,
        description="Largest file upload (a `multipart/form-data` body: documents, history "
        "files); other bodies keep to `max_body_bytes`.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Seconds a client has to send a whole request body, from the end of its "
        "headers; a slower one gets 408 `body_timeout` and its connection is closed.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Open connections (websockets included) and requests in progress one server "
        "process takes (uvicorn's `limit_concurrency`); beyond, requests get 503.",
    )
    keep_alive_s: int = Field(
        5,
        ge=1,
        le=300,
        description="Seconds an idle keep-alive connection stays open (uvicorn's "
        "`timeout_keep_alive`).",
    )
    metrics_access: Literal["public", "admin", "off"] = Field(
        "admin",
        description="Who may read `GET /metrics`: anyone, administrators (bearer token or API "
        "key), or nobody (404).",
    )
    traces_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where OpenTelemetry traces go. `none` exports nothing."
    )
    metrics_exporter: Literal["prometheus", "console", "otlp"] = Field(
        "prometheus",
        description="Where metrics go besides `/metrics`; `prometheus` means only `/metrics`.",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP collector base URL (`http://collector:4318`); `/v1/traces` and "
        "`/v1/metrics` are appended. Unset: the OpenTelemetry SDK's default and its "
        "`OTEL_EXPORTER_OTLP_*` variables.",
    )
    ws_heartbeat_s: float = Field(
        20.0,
        gt=0,
        description="Seconds between the server's `ping` events on a websocket. A client silent "
        "for three of them is disconnected.",
    )
    ws_queue_size: int = Field(
        512,
        ge=8,
        description="Events queued for one websocket. A client that falls this far behind is "
        "disconnected (close code 1013) instead of growing the queue.",
    )
    exposed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["mongars"],
        json_schema_extra={"documented_default": "`mongars`"},
        description="Comma-separated models the OpenAI-compatible API lists (`GET /v1/models`) "
        "and serves: `mongars` (the configured role and backend, `MONGARS_LLM__ROLE` / "
        "`MONGARS_LLM__BACKEND`) and names of registered backends (`local`, `ollama`, ...), in "
        "the order given. A name no plugin registers is left out. Any other `model` gets 404 "
        "`model_not_found`, so a user's request never loads a backend the operator did not expose "
        "(the local model loads torch and its weights on first use).",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host names the server answers to, matched against the `Host` "
        "header (`chat.example.com`, `*.example.com` for sub-domains, `*` for any). `Host` must "
        "be a strict `host[:port]`, its port absent or the port the request came in on; an entry "
        "`name:port` (`chat.example.com:8443`) also allows that port, for a proxy or a port "
        "mapping. Other hosts get 400 `bad_host` and their websockets are refused (DNS-rebinding "
        "protection); browser websockets must come from a page on one of these hosts. Empty: "
        "`localhost`, `127.0.0.1`, `[::1]` and `MONGARS_SERVER__HOST`; when that is `0.0.0.0` or "
        "`::`, this machine's name, `<name>.local` and its main address instead.",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated addresses or networks (`127.0.0.1`, `10.0.0.0/8`) of reverse "
        "proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` headers `mongars serve` "
        "believes. Empty: none, the TCP peer's address is the client's (per-address rate limits "
        "cannot be dodged with a forged header).",
    )

    _split_origins = field_validator(
        "allowed_origins", "allowed_hosts", "trusted_proxies", mode="before"
    )(split_comma_list)
    _split_models = field_validator("exposed_models", mode="before")(split_comma_list)
    _optional = field_validator("jwt_secret", "otlp_endpoint", mode="before")(empty_as_none)


SERVER = Section("server", ServerSettings)
