"""``create_app(settings)``: the FastAPI app, assembled from the installed plugins.

Every router, the bundled ones included, comes from the
``mongars_register_routers`` hook. The assistant, accounts, signers, rate
limiter, event hub and telemetry are built in the app's lifespan and reach
routes through :func:`mongars_server.deps.server_state`; nothing is global.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pluggy
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from mongars_core import DISTRIBUTION
from mongars_core.assembly import build_host, connect_redis
from mongars_core.errors import ConfigurationError, MongarsError
from mongars_core.local_server import local_credential
from mongars_core.pipeline import Assistant
from mongars_core.settings import Settings
from mongars_server.accounts import AccountStore
from mongars_server.errors import install_error_handlers
from mongars_server.events import EventHub
from mongars_server.hosts import HostCheck, allowed_hosts
from mongars_server.limits import BodySizeLimit, RateLimiter, RedisRateLimiter
from mongars_server.login_throttle import LoginThrottle
from mongars_server.security import (
    AccessTokens,
    RedisUsedTickets,
    TicketSigner,
    UsedTickets,
    load_or_create_secret,
)
from mongars_server.settings import SERVER
from mongars_server.shared_metrics import SharedMetrics
from mongars_server.telemetry import RedactQueryStrings, RequestTelemetry, Telemetry

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)


@dataclass
class ServerState:
    """Everything a route needs, built once per app in its lifespan."""

    settings: Settings
    assistant: Assistant
    accounts: AccountStore
    tokens: AccessTokens
    tickets: TicketSigner
    limiter: RateLimiter
    logins: LoginThrottle  # failed password checks per account and address
    hub: EventHub
    telemetry: Telemetry
    metrics: SharedMetrics  # /metrics of every server process
    redis: Redis | None = None  # the process's one Redis client (None without a URL)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    model_error: str | None = None
    # What `mongars chat` presents to /api/v1/local/chat (mongars_core.local_server).
    local_credential: str = ""
    allowed_hosts: list[str] = field(default_factory=list)  # see mongars_server.hosts

    async def changed(self, user: str) -> None:
        """``user``'s turns or memories changed: other server processes drop their caches."""
        await self.hub.announce_change(user)

    def spawn(self, coroutine: Any) -> None:
        """Run ``coroutine`` in the background, kept referenced until it ends."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


def create_app(
    settings: Settings | None = None,
    *,
    plugin_manager: pluggy.PluginManager | None = None,
) -> FastAPI:
    """Build the server for ``settings`` from the installed (or given) plugins."""
    settings = settings or Settings()
    # One plugin host for the whole process: routers here, the assistant in the lifespan.
    host = build_host(settings, plugin_manager=plugin_manager)
    routers = host.routers()
    secret = load_or_create_secret(settings)  # fail at build time, not at first login
    limits = settings.section(SERVER)
    telemetry = Telemetry(limits)
    hosts = allowed_hosts(limits)  # once: it may look up this machine's names

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # One Redis client for the process: tickets, limits, events, metrics, reply cache.
        redis = connect_redis(settings)
        try:
            async with await Assistant.from_settings(
                settings,
                host=host,
                redis=redis,
                tracer=telemetry.pipeline_tracer,
                meter=telemetry.meter,
            ) as assistant:
                server = _server_state(settings, assistant, secret, telemetry, redis, hosts)
                RedactQueryStrings.install()  # uvicorn logs /ws/chat/?t=<ticket>, ?q=<search>
                await server.hub.start()
                await server.metrics.start()
                try:
                    server.spawn(_load_model(server))
                    yield {"server": server}
                finally:
                    await server.metrics.stop()
                    await server.hub.stop()
                    for task in list(server.background):
                        task.cancel()
                    await asyncio.gather(*server.background, return_exceptions=True)
        finally:
            if redis is not None:
                await redis.aclose()
            telemetry.shutdown()

    app = FastAPI(
        title="monGARS",
        version=_version(),
        description="A self-hosted, privacy-first conversational assistant.",
        lifespan=lifespan,
        # Swagger UI and ReDoc load from CDNs: routes/console.py serves /docs itself.
        docs_url=None,
        redoc_url=None,
    )
    app.state.plugins = host  # the process's one PluginHost (the assistant's too)
    install_error_handlers(app)
    for name, router in routers.items():
        if not isinstance(router, APIRouter):
            raise ConfigurationError(f"router {name!r} is not a fastapi.APIRouter")
        app.include_router(router)
    # Middleware runs outside-in in reverse order of adding: Host check, then size limit.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=limits.allowed_origins,
        allow_credentials=False,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,
    )
    app.add_middleware(RequestTelemetry, telemetry=telemetry)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=limits.max_body_bytes,
        timeout_s=limits.body_timeout_s,
        upload_max_bytes=limits.max_upload_bytes,
    )
    app.add_middleware(HostCheck, allowed_hosts=hosts)
    return app


def _server_state(
    settings: Settings,
    assistant: Assistant,
    secret: bytes,
    telemetry: Telemetry,
    redis: Redis | None,
    hosts: list[str],
) -> ServerState:
    assistant.router.instrument(telemetry.meter)
    limits = settings.section(SERVER)
    prefix = settings.redis_prefix()
    return ServerState(
        settings=settings,
        assistant=assistant,
        accounts=AccountStore(assistant.store),
        tokens=AccessTokens(secret, limits.token_ttl_s),
        tickets=TicketSigner(
            secret,
            limits.ticket_ttl_s,
            RedisUsedTickets(redis, prefix) if redis is not None else UsedTickets(),
        ),
        limiter=(
            RedisRateLimiter(redis, limits.rate_limit_per_minute, limits.rate_limit_burst, prefix)
            if redis is not None
            else RateLimiter(limits.rate_limit_per_minute, limits.rate_limit_burst)
        ),
        logins=LoginThrottle.build(limits, redis, prefix),
        hub=EventHub(limits.ws_queue_size, redis, assistant.invalidate, prefix),
        telemetry=telemetry,
        metrics=SharedMetrics(telemetry, redis, prefix),
        redis=redis,
        local_credential=local_credential(secret),
        allowed_hosts=hosts,
    )


async def _load_model(server: ServerState) -> None:
    """Load the default backend's model at start-up, so the first chat doesn't wait."""
    try:
        await server.assistant.router.prepare()
    except MongarsError as exc:
        server.model_error = str(exc)
        logger.error("the LLM backend failed to load: %s", exc)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
