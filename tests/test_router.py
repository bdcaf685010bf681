"""The LLM router: endpoint choice, breakers, retries, failover, deadlines, cache."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    GenerationTimeoutError,
    ModelNotFoundError,
    UnknownBackendError,
)
from mongars_core.resilience import Backoff
from mongars_core.response_cache import MemoryResponseCache, RedisResponseCache
from mongars_core.router import LLMRouter
from mongars_core.settings import EndpointSpec
from mongars_core.types import ChatMessage, GenerationRequest

REPLY = "The quick brown fox jumps over the lazy dog."


def request(text: str = "hello", **fields: Any) -> GenerationRequest:
    return GenerationRequest(messages=[ChatMessage(role="user", content=text)], **fields)


def words(text: str) -> list[str]:
    parts = text.split(" ")
    return [parts[0], *(" " + part for part in parts[1:])]


class Backend:
    """Streams ``REPLY`` word by word, continuing from ``request.prefix``; ``fail``
    decides, per call, to raise before the first word or after ``n`` words."""

    def __init__(
        self,
        name: str,
        *,
        fail: Callable[[int], tuple[int, Exception] | None] = lambda call: None,
        delay_s: float = 0.0,
        first_delay_s: float = 0.0,
        honour_prefix: bool = True,
    ) -> None:
        self.name = name
        self.fail = fail
        self.delay_s = delay_s
        self.first_delay_s = first_delay_s
        self.honour_prefix = honour_prefix
        self.calls: list[GenerationRequest] = []
        self.active = 0
        self.peak = 0

    async def generate(self, request: GenerationRequest) -> str:
        return "".join([d async for d in self.stream(request)])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        call = len(self.calls)
        self.calls.append(request)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            text = REPLY
            if self.honour_prefix and request.prefix:
                text = REPLY[len(request.prefix) :]
            failure = self.fail(call)
            if self.first_delay_s:
                await asyncio.sleep(self.first_delay_s)
            for index, word in enumerate(words(text) if text else []):
                if failure is not None and index == failure[0]:
                    raise failure[1]
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                yield word
            if failure is not None and failure[0] >= len(words(text)):
                raise failure[1]
        finally:
            self.active -= 1


def dead(after_words: int = 0, retry_after: float | None = None) -> Callable[[int], Any]:
    return lambda call: (
        after_words,
        BackendUnavailableError("connection refused", retry_after=retry_after),
    )


def router(*backends: Backend, **options: Any) -> LLMRouter:
    options.setdefault("backoff", Backoff(0.01, 0.05))
    options.setdefault("first_token_timeout_s", 1.0)
    options.setdefault("timeout_s", 5.0)
    roles = {"general": [EndpointSpec(backend=b.name) for b in backends]}
    return LLMRouter({b.name: b for b in backends}, backends[0].name, roles=roles, **options)


async def collect(llm: LLMRouter, **kwargs: Any) -> str:
    return "".join([delta async for delta in llm.stream(request(), **kwargs)])


async def test_requests_go_round_robin_and_to_the_least_busy() -> None:
    a, b = Backend("a"), Backend("b")
    llm = router(a, b)
    for _ in range(4):
        assert await collect(llm) == REPLY
    assert (len(a.calls), len(b.calls)) == (2, 2)
    slow_a, slow_b = Backend("a", delay_s=0.01), Backend("b", delay_s=0.01)
    busy = router(slow_a, slow_b)
    await asyncio.gather(*(collect(busy) for _ in range(6)))
    assert (len(slow_a.calls), len(slow_b.calls)) == (3, 3)
    assert slow_a.peak == slow_b.peak == 3


async def test_an_unreachable_endpoint_fails_over_at_once() -> None:
    down, up = Backend("down", fail=dead()), Backend("up")
    llm = router(down, up, backoff=Backoff(5, 5))  # a back-off would blow the deadline
    started = time.perf_counter()
    served: list[str] = []
    text = "".join(
        [
            d
            async for d in llm.stream(
                request(), on_endpoint=lambda e: served.append(e.backend_name)
            )
        ]
    )
    assert text == REPLY
    assert served[-1] == "up"
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("honour_prefix", [True, False])
async def test_a_backend_dying_mid_stream_is_continued_without_repeats(honour_prefix: bool) -> None:
    dies = Backend("dies", fail=dead(after_words=4))
    rescuer = Backend("rescuer", honour_prefix=honour_prefix)
    llm = router(dies, rescuer)
    deltas = [delta async for delta in llm.stream(request(), role="general")]
    assert "".join(deltas) == REPLY, "no text repeated or lost"
    assert deltas[:4] == words(REPLY)[:4]
    assert rescuer.calls[0].prefix == "The quick brown fox"


async def test_a_slow_first_token_fails_over_and_the_total_deadline_holds() -> None:
    slow, fast = Backend("slow", first_delay_s=5), Backend("fast")
    llm = router(slow, fast, first_token_timeout_s=0.2)
    started = time.perf_counter()
    assert await collect(llm) == REPLY
    assert time.perf_counter() - started < 1.5

    crawling = Backend("crawling", delay_s=0.3)
    alone = router(crawling, timeout_s=0.5)
    started = time.perf_counter()
    with pytest.raises(GenerationTimeoutError):
        await collect(alone)
    assert time.perf_counter() - started < 1.0


async def test_a_flapping_endpoint_opens_its_breaker_and_a_probe_closes_it() -> None:
    flapping_calls = {"fail": True}

    def flaky(call: int) -> Any:
        return (0, BackendUnavailableError("503")) if flapping_calls["fail"] else None

    flapping, steady = Backend("flapping", fail=flaky), Backend("steady")
    llm = router(flapping, steady, breaker_failures=2, breaker_reset_s=0.3)
    for _ in range(4):
        assert await collect(llm) == REPLY
    status = {s.backend: s for s in llm.status()}
    assert status["flapping"].state == "open"
    assert len(flapping.calls) == 2, "no calls once the breaker is open"
    for _ in range(3):
        await collect(llm)
    assert len(flapping.calls) == 2

    await asyncio.sleep(0.35)
    flapping_calls["fail"] = False
    assert {s.backend: s.state for s in llm.status()}["flapping"] == "half_open"
    results = await asyncio.gather(*(collect(llm) for _ in range(4)))
    assert results == [REPLY] * 4
    assert len(flapping.calls) == 3, "one probe while half-open"
    assert {s.backend: s.state for s in llm.status()}["flapping"] == "closed"


async def test_every_endpoint_down_is_a_clear_error_within_the_deadline() -> None:
    a, b = Backend("a", fail=dead()), Backend("b", fail=dead())
    llm = router(a, b, breaker_failures=1, breaker_reset_s=30, timeout_s=2)
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError) as failed:
        await collect(llm)
    assert time.perf_counter() - started < 2
    assert failed.value.retry_after is not None and 29 < failed.value.retry_after <= 30
    # With every breaker open the answer is immediate, and says when to come back.
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match="every LLM endpoint"):
        await collect(llm)
    assert time.perf_counter() - started < 0.05


async def test_retries_wait_at_least_retry_after_and_stop_at_the_deadline() -> None:
    once = Backend(
        "once",
        fail=lambda call: (
            (0, BackendUnavailableError("busy", retry_after=0.3)) if call == 0 else None
        ),
    )
    llm = router(once)
    started = time.perf_counter()
    assert await collect(llm) == REPLY
    assert time.perf_counter() - started >= 0.3

    busy = Backend("busy", fail=dead(retry_after=10))
    llm = router(busy, timeout_s=1)
    started = time.perf_counter()
    with pytest.raises(BackendUnavailableError):
        await collect(llm)
    assert time.perf_counter() - started < 0.5, "a wait past the deadline is not taken"
    assert len(busy.calls) == 1


async def test_bad_requests_are_not_retried() -> None:
    bad = Backend("bad", fail=lambda call: (0, BackendError("400 bad request")))
    other = Backend("other")
    llm = router(bad, other)
    with pytest.raises(BackendError, match="400"):
        await collect(llm)
    assert other.calls == []


async def test_identical_non_personalised_requests_share_a_cached_reply() -> None:
    backend = Backend("a")
    clock = {"now": 0.0}
    cache = MemoryResponseCache(clock=lambda: clock["now"])
    llm = router(backend, cache=cache, cache_ttl_s=60)
    cacheable = request("what is a fox?", cacheable=True)
    first = "".join([d async for d in llm.stream(cacheable)])
    second = "".join([d async for d in llm.stream(cacheable)])
    assert first == second == REPLY
    assert len(backend.calls) == 1
    personal = request("what is a fox?")
    assert "".join([d async for d in llm.stream(personal)]) == REPLY
    assert len(backend.calls) == 2, "personalised requests are never cached"
    clock["now"] = 61
    assert "".join([d async for d in llm.stream(cacheable)]) == REPLY
    assert len(backend.calls) == 3, "the TTL ran out"


async def test_closing_the_stream_stops_the_backend_and_frees_the_probe() -> None:
    backend = Backend("a", delay_s=0.01)
    llm = router(backend)
    stream = llm.stream(request())
    await anext(stream)
    await stream.aclose()
    assert backend.active == 0
    assert llm.endpoints()[0].outstanding == 0


async def test_metrics_and_status() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    down, up = Backend("down", fail=dead()), Backend("up")
    llm = router(down, up)
    llm.instrument(provider.get_meter("test"))
    assert await collect(llm) == REPLY
    data = reader.get_metrics_data()
    points = {
        metric.name: [
            (dict(p.attributes), getattr(p, "value", None)) for p in metric.data.data_points
        ]
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    assert ({"endpoint": "general#1:up", "outcome": "ok"}, 1) in points["mongars_llm_requests"]
    assert ({"endpoint": "general#0:down", "kind": "BackendUnavailableError"}, 1) in points[
        "mongars_llm_failures"
    ]
    assert ({"endpoint": "general#1:up"}, 9) in points["mongars_llm_tokens"]
    assert {"endpoint": "general#0:down"} in [a for a, _ in points["mongars_llm_breaker_state"]]
    provider.shutdown()
    status = {s.name: s for s in llm.status()}
    assert status["general#0:down"].consecutive_failures == 1
    assert status["general#0:down"].last_error == "connection refused"
    assert status["general#1:up"].served == 1


def test_an_unknown_backend_in_a_role_is_named() -> None:
    llm = LLMRouter({"a": Backend("a")}, "a", roles={"coding": [EndpointSpec(backend="nope")]})
    with pytest.raises(UnknownBackendError, match="nope"):
        llm.endpoints("coding")


async def test_endpoint_parameters_reach_the_backend() -> None:
    backend = Backend("a")
    llm = LLMRouter(
        {"a": backend},
        "a",
        roles={
            "coding": [
                EndpointSpec(
                    backend="a", model="coder:7b", params={"temperature": 0, "num_ctx": 4096}
                )
            ]
        },
    )
    await collect(llm, role="coding")
    sent = backend.calls[0]
    assert (sent.model, sent.temperature, sent.options) == ("coder:7b", 0, {"num_ctx": 4096})


failure_plans = st.lists(
    st.one_of(st.none(), st.integers(min_value=0, max_value=9)), min_size=1, max_size=8
)


@settings(max_examples=150, deadline=None)
@given(
    plans=st.lists(failure_plans, min_size=1, max_size=3),
    retries=st.integers(min_value=0, max_value=4),
)
def test_whatever_fails_the_caller_gets_the_whole_reply_once_or_a_clear_error(
    plans: list[list[int | None]], retries: int
) -> None:
    """Each endpoint fails (before its first word, or after n words) or succeeds,
    call after call, as its plan says. Whatever happens, the caller gets the
    whole reply with nothing repeated, or BackendUnavailableError; and no more
    than ``retries + 1`` attempts are made."""

    def plan_for(plan: list[int | None]) -> Callable[[int], Any]:
        def fail(call: int) -> Any:
            step = plan[call] if call < len(plan) else None
            return None if step is None else (step, BackendUnavailableError("down"))

        return fail

    backends = [Backend(f"b{n}", fail=plan_for(plan)) for n, plan in enumerate(plans)]
    llm = router(*backends, retries=retries, backoff=Backoff(0, 0), breaker_failures=100)

    async def run() -> tuple[list[str], Exception | None]:
        deltas: list[str] = []
        try:
            async for delta in llm.stream(request()):
                deltas.append(delta)
        except BackendUnavailableError as exc:
            return deltas, exc
        return deltas, None

    deltas, error = asyncio.run(run())
    attempts = sum(len(backend.calls) for backend in backends)
    assert attempts <= retries + 1
    text = "".join(deltas)
    assert REPLY.startswith(text), "what was sent is a prefix of the reply: no repeats"
    if error is None:
        assert text == REPLY
    else:
        assert attempts == retries + 1


@pytest.mark.redis
async def test_the_response_cache_can_live_in_redis(redis_url: str) -> None:
    url = redis_url
    first_process, second_process = Backend("a"), Backend("a")
    caches = [owned_redis_cache(url), owned_redis_cache(url)]
    try:
        question = request(f"what is a fox? {uuid.uuid4().hex}", cacheable=True)
        one = router(first_process, cache=caches[0], cache_ttl_s=30)
        two = router(second_process, cache=caches[1], cache_ttl_s=30)
        assert "".join([d async for d in one.stream(question)]) == REPLY
        # Another process (another router and connection) gets the cached reply.
        assert "".join([d async for d in two.stream(question)]) == REPLY
        assert (len(first_process.calls), len(second_process.calls)) == (1, 0)
    finally:
        for cache in caches:
            await cache.aclose()


def owned_redis_cache(url: str) -> RedisResponseCache:
    import redis.asyncio as redis

    return RedisResponseCache(redis.Redis.from_url(url), owned=True)


@pytest.mark.parametrize(
    "probe_error",
    [ModelNotFoundError("no model 'x' here"), BackendError("400 bad request")],
    ids=["model-error", "not-retryable"],
)
async def test_a_probe_that_fails_without_a_retry_frees_the_breaker(
    probe_error: Exception,
) -> None:
    """A half-open probe ending in an error that is not retried (a missing model,
    a bad request) must not leave the endpoint refused until a restart."""
    failures = [BackendUnavailableError("503"), probe_error]
    backend = Backend("a", fail=lambda call: (0, failures[call]) if call < len(failures) else None)
    clock = {"now": 0.0}
    llm = router(
        backend, retries=0, breaker_failures=1, breaker_reset_s=30, clock=lambda: clock["now"]
    )
    with pytest.raises(BackendUnavailableError):
        await collect(llm)
    assert llm.status()[0].state == "open"
    clock["now"] = 31.0
    with pytest.raises(type(probe_error)):
        await collect(llm)  # the probe
    assert await collect(llm) == REPLY, "the next request probes the endpoint again"
    assert llm.status()[0].state == "closed"
    assert len(backend.calls) == 3


async def test_a_probe_cut_by_the_deadline_frees_the_breaker() -> None:
    backend = Backend(
        "a", fail=lambda call: (0, BackendUnavailableError("503")) if call == 0 else None
    )
    llm = router(backend, retries=0, breaker_failures=1, breaker_reset_s=0.05, timeout_s=0.5)
    with pytest.raises(BackendUnavailableError):
        await collect(llm)
    await asyncio.sleep(0.06)
    backend.delay_s = 0.3
    with pytest.raises(GenerationTimeoutError):
        await collect(llm)  # the probe streams, but not all of it within the deadline
    backend.delay_s = 0.0
    assert await collect(llm) == REPLY, "the next request probes the endpoint again"
    assert llm.status()[0].state == "closed"


def redis_connections(url: str, client_name: str) -> int:
    """How many connections named ``client_name`` the Redis server has open."""
    import redis

    with redis.Redis.from_url(url) as admin:
        return sum(1 for client in admin.client_list() if client["name"] == client_name)


async def wait_for_connections(url: str, client_name: str, expected: int) -> int:
    for _ in range(50):
        found = redis_connections(url, client_name)
        if found == expected:
            break
        await asyncio.sleep(0.02)
    return found


@pytest.mark.redis
async def test_closing_the_router_closes_the_redis_connection_its_cache_owns(
    redis_url: str,
) -> None:
    name = f"mongars-test-{uuid.uuid4().hex}"
    cache = owned_redis_cache(f"{redis_url}?client_name={name}")
    llm = router(Backend("a"), cache=cache, cache_ttl_s=30)
    await llm.generate(request(cacheable=True))
    assert await wait_for_connections(redis_url, name, 1) == 1
    await llm.aclose()
    assert await wait_for_connections(redis_url, name, 0) == 0


@pytest.mark.redis
async def test_a_shared_redis_client_stays_open_when_the_router_closes(redis_url: str) -> None:
    import redis.asyncio as redis

    name = f"mongars-test-{uuid.uuid4().hex}"
    shared = redis.Redis.from_url(f"{redis_url}?client_name={name}")
    try:
        llm = router(
            Backend("a"), cache=RedisResponseCache(client=shared, prefix="t:"), cache_ttl_s=30
        )
        await llm.generate(request(cacheable=True))
        await llm.aclose()
        assert await shared.ping()
        assert await wait_for_connections(redis_url, name, 1) == 1, "the connection was kept"
    finally:
        await shared.aclose()


async def test_a_redis_cache_that_cannot_be_reached_is_a_miss_and_the_reply_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis down must not fail cacheable turns: the cache misses, skips the store,
    and says so once rather than on every turn."""
    backend = Backend("a")
    llm = router(backend, cache=owned_redis_cache("redis://127.0.0.1:1"), cache_ttl_s=30)
    try:
        with caplog.at_level(logging.WARNING, logger="mongars_core.response_cache"):
            for _ in range(3):
                assert await llm.generate(request("what is a fox?", cacheable=True)) == REPLY
    finally:
        await llm.aclose()
    assert len(backend.calls) == 3
    warnings = [r for r in caplog.records if r.name == "mongars_core.response_cache"]
    assert len(warnings) == 1, "one warning when Redis goes away, not one per turn"
