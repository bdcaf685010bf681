"""Assembling a running assistant from its plugins: one builder for every host.

``Assistant.from_settings``, ``mongars_server.create_app`` and the test kit all
build through these functions, so a server process has one
:class:`~mongars_core.plugins.PluginHost` and one Redis client, and a test
builds exactly what a user's process builds:

1. :func:`build_host`: the plugin manager, its typed facade, and every
   plugin's settings section, validated at once (a bad setting fails here);
2. :func:`build_services`: backends, embedders, the LLM router (with the
   shared response cache) and the store, as :class:`Services`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pluggy
from opentelemetry import metrics, trace

from mongars_core.errors import ConfigurationError, MissingDependencyError
from mongars_core.llm import Embedder, LLMBackend
from mongars_core.local_engine import with_local_engine
from mongars_core.model_roles import read_roles
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.response_cache import RedisResponseCache, ResponseCache
from mongars_core.router import LLMRouter
from mongars_core.services import Services
from mongars_core.settings import Settings, bind_sections
from mongars_core.storage.store import Store

if TYPE_CHECKING:
    from redis.asyncio import Redis

REDIS_TIMEOUT_S = 5.0
"""Longest wait for a connection to Redis."""


def build_host(
    settings: Settings, *, plugin_manager: pluggy.PluginManager | None = None
) -> PluginHost:
    """The plugin host for ``settings``: the given manager or one with the installed
    plugins, and every plugin's settings section checked now."""
    host = PluginHost(plugin_manager or build_plugin_manager(settings), settings)
    # Every plugin's section read now: a bad setting fails at start-up, in one line.
    bind_sections(settings, host.settings_sections())
    return host


def connect_redis(settings: Settings) -> Redis | None:
    """A client for ``settings.redis_url`` (``None`` without one); the caller closes it."""
    if settings.redis_url is None:
        return None
    try:
        import redis.asyncio as redis
    except ImportError:
        raise MissingDependencyError("redis", "redis") from None
    # A bounded connect: a Redis host that drops packets must not hang a turn (the
    # reply cache takes an error as a miss) for the OS connect timeout. No read
    # timeout: the event hub's pub/sub listens on idle connections.
    client: Redis = redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S)
    return client


async def build_services(
    host: PluginHost,
    *,
    store: Store | None = None,
    redis: Redis | None = None,
    tracer: trace.Tracer | None = None,
    meter: metrics.Meter | None = None,
) -> Services:
    """Collect backends and embedders, build the router, open the store.

    ``store`` is an already-open store to use instead of opening
    ``settings.resolved_database_url()``. ``redis`` is the process's Redis
    client, which the response cache shares (without one, the cache opens
    its own when ``settings.redis_url`` is set). Whoever closes the returned
    services closes the router (and its cache) and the store.
    """
    settings = host.settings
    backends = host.llm_backends()
    embedder_name, embedder = _choose_embedder(host.embedders(), settings.memory.embedder)
    cache: RedisResponseCache | None = None
    client = redis
    if settings.llm.cache_ttl_s > 0 and client is None:
        client = connect_redis(settings)  # None without a Redis URL: the in-process cache
    if settings.llm.cache_ttl_s > 0 and client is not None:
        cache = RedisResponseCache(client, settings.redis_prefix(), owned=redis is None)
    router = build_router(backends, settings, cache=cache)
    try:
        store = store or await Store.open(settings.resolved_database_url())
    except BaseException:
        await router.aclose()
        raise
    services = Services(
        settings=settings,
        store=store,
        router=router,
        plugins=host,
        embedder=embedder,
        embedder_name=embedder_name,
    )
    if tracer is not None:
        services.tracer = tracer
    if meter is not None:
        services.meter = meter
    return services


def build_router(
    backends: dict[str, LLMBackend], settings: Settings, *, cache: ResponseCache | None = None
) -> LLMRouter:
    """The router over ``backends``: ``local`` added from ``llm.local_engines``
    (:mod:`mongars_core.local_engine`) and the roles of ``<data dir>/model_roles.json``
    under those of the settings."""
    roles = {**read_roles(settings.data_dir), **settings.llm.roles}
    return LLMRouter.from_settings(
        with_local_engine(backends, settings.llm.local_engines),
        settings.llm,
        cache=cache,
        roles=roles,
    )


def _choose_embedder(
    embedders: dict[str, Embedder], wanted: str
) -> tuple[str | None, Embedder | None]:
    if wanted == "none" or not embedders:
        return None, None
    if wanted == "auto":
        name = next(iter(embedders))
        return name, embedders[name]
    if wanted not in embedders:
        raise ConfigurationError(
            f"no embedder named {wanted!r} (registered: {', '.join(sorted(embedders))})"
        )
    return wanted, embedders[wanted]


__all__ = ["build_host", "build_router", "build_services", "connect_redis"]


@asynccontextmanager
async def unstarted_services(settings: Settings) -> AsyncIterator[Services]:
    """The services of ``settings`` (plugins loaded, store open, router built) without
    starting the plugins: no model loads, no memory index warms up. For commands that
    only read and write stored data; everything is closed on the way out."""
    host = build_host(settings)
    try:
        services = await build_services(host)
    except BaseException:
        host.close()
        raise
    try:
        yield services
    finally:
        try:
            await services.router.aclose()
        finally:
            host.close()
            await services.store.close()
