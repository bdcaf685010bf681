"""A server process is built once: one PluginHost and one Redis client for everything."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mongars_core.response_cache import RedisResponseCache
from tests.server.conftest import LiveServer


@pytest.mark.redis
def test_a_server_process_has_one_plugin_host_and_one_redis_client(
    make_server: Callable[..., LiveServer], redis_url: str
) -> None:
    live = make_server(redis_url=redis_url, llm={"cache_ttl_s": 60})
    state = live.state
    # The routers and the assistant come from the same facade over the same manager.
    assert live.app.state.plugins is state.assistant.plugins
    # The response cache shares the process's client with tickets, limits and events.
    cache = state.assistant.router.cache
    assert isinstance(cache, RedisResponseCache)
    assert state.redis is not None
    assert cache.client is state.redis
