"""The LLM router: model roles, endpoints, breakers, retries, failover, cache.

A *role* ("general", "coding", ...) is served by an ordered list of
*endpoints* (a registered backend, a model name, parameters) from
``settings.llm.roles``; a role that is not listed is served by
``settings.llm.backend`` alone. For each request the router:

1. answers from the response cache when the request is cacheable (no user
   history, memory or style in it) and an identical one was answered within
   ``cache_ttl_s``;
2. picks an endpoint whose circuit breaker lets requests through, with the
   fewest requests outstanding, round robin among equals;
3. streams from it within the deadlines: the first token within
   ``first_token_timeout_s``, the whole request within ``timeout_s``;
4. on a failure that another try may fix (unreachable, overloaded, too slow
   to start), records it on the endpoint's breaker and tries again: at once on
   another endpoint, or after an exponential back-off with jitter (at least
   ``Retry-After``) on the same one, up to ``retries`` more attempts, never
   past the deadline. This is the one retry loop across endpoints (a backend
   may only retry inside itself, as Ray Serve does across its replicas).
5. When a backend dies after some text has gone to the caller, the next
   endpoint continues from that text (``GenerationRequest.prefix``); text it
   repeats is dropped, so nothing is sent twice.

When no endpoint can serve, :class:`BackendUnavailableError` says so at once,
with ``retry_after`` set to when the first breaker will let a probe through.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import metrics
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    GenerationTimeoutError,
    ModelError,
    MongarsError,
    UnknownBackendError,
)
from mongars_core.llm import LLMBackend, prepare_backend
from mongars_core.resilience import Backoff, BreakerState, CircuitBreaker
from mongars_core.settings import EndpointSpec, LLMSettings
from mongars_core.types import GenerationRequest

logger = logging.getLogger(__name__)

_REQUEST_FIELDS = {"temperature", "top_p", "max_new_tokens", "stop"}


@dataclass(eq=False)
class Endpoint:
    """A backend serving a role with one model and parameters, and its health."""

    role: str
    index: int
    backend_name: str
    backend: LLMBackend
    model: str | None
    params: dict[str, Any]
    breaker: CircuitBreaker
    outstanding: int = 0
    served: int = 0
    failed: int = 0
    last_error: str | None = None

    @property
    def name(self) -> str:
        model = f"/{self.model}" if self.model else ""
        return f"{self.role}#{self.index}:{self.backend_name}{model}"

    def request_for(self, request: GenerationRequest, prefix: str) -> GenerationRequest:
        fields = {key: value for key, value in self.params.items() if key in _REQUEST_FIELDS}
        options = {key: value for key, value in self.params.items() if key not in fields}
        return request.model_copy(
            update={
                **fields,
                "model": self.model or request.model,
                "options": {**request.options, **options},
                "prefix": prefix,
            }
        )


class EndpointStatus(BaseModel):
    """What ``mongars backends`` and the server's ``/api/v1/llm/health`` show."""

    model_config = ConfigDict(frozen=True)

    name: str
    role: str
    backend: str
    model: str | None
    state: str = Field(description='Circuit breaker: "closed", "open" or "half_open".')
    outstanding: int
    served: int
    failed: int
    consecutive_failures: int
    retry_after_s: float
    last_error: str | None
    healthy: bool | None = Field(
        None, description="The backend's own health check; null when it has none."
    )


class ResponseCache(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, text: str, ttl_s: float) -> None: ...


class MemoryResponseCache:
    """An in-process LRU cache of reply texts with a TTL."""

    def __init__(self, size: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, str]] = OrderedDict()

    async def get(self, key: str) -> str | None:
        found = self._items.get(key)
        if found is None:
            return None
        expires, text = found
        if expires <= self._clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return text

    async def set(self, key: str, text: str, ttl_s: float) -> None:
        self._items[key] = (self._clock() + ttl_s, text)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class RedisResponseCache:
    """The same cache in Redis, shared by every process (``MONGARS_REDIS_URL``)."""

    def __init__(self, url: str, prefix: str = "mongars:") -> None:
        self._prefix = f"{prefix}reply:"
        try:
            import redis.asyncio as redis
        except ImportError:
            from mongars_core.errors import MissingDependencyError

            raise MissingDependencyError("redis", "redis") from None
        self._redis = redis.from_url(url)

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(self._prefix + key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set(self, key: str, text: str, ttl_s: float) -> None:
        await self._redis.set(self._prefix + key, text.encode(), px=max(1, int(ttl_s * 1000)))

    async def aclose(self) -> None:
        await self._redis.aclose()


@dataclass
class _Instruments:
    requests: Any
    failures: Any
    latency: Any
    tokens: Any


@dataclass
class _Attempt:
    """Bookkeeping of one request across its attempts."""

    deadline: float
    sent: list[str] = field(default_factory=list)
    attempts: int = 0
    tried: set[int] = field(default_factory=set)

    @property
    def text(self) -> str:
        return "".join(self.sent)


class LLMRouter:
    """Chooses endpoints for requests and keeps conversations going through failures."""

    def __init__(
        self,
        backends: Mapping[str, LLMBackend],
        default: str,
        *,
        timeout_s: float = 120.0,
        first_token_timeout_s: float = 60.0,
        roles: Mapping[str, Sequence[EndpointSpec]] | None = None,
        retries: int = 2,
        backoff: Backoff | None = None,
        breaker_failures: int = 3,
        breaker_reset_s: float = 30.0,
        cache: ResponseCache | None = None,
        cache_ttl_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backends = dict(backends)
        self.default = default
        self.timeout_s = timeout_s
        self.first_token_timeout_s = first_token_timeout_s
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.cache = cache
        self.cache_ttl_s = cache_ttl_s
        self._clock = clock
        self._breaker_args = (breaker_failures, breaker_reset_s)
        # One breaker per backend and model: roles sharing an endpoint share its health.
        self._breakers: dict[tuple[str, str | None], CircuitBreaker] = {}
        self._role_specs = {role: list(specs) for role, specs in (roles or {}).items()}
        self._endpoints: dict[str, list[Endpoint]] = {}
        self._round_robin: dict[str, int] = {}
        self._instruments: _Instruments | None = None
        self.instrument(metrics.get_meter("mongars_core"))

    @classmethod
    def from_settings(
        cls,
        backends: Mapping[str, LLMBackend],
        settings: LLMSettings,
        *,
        cache: ResponseCache | None = None,
    ) -> LLMRouter:
        return cls(
            backends,
            settings.backend,
            timeout_s=settings.timeout_s,
            first_token_timeout_s=settings.first_token_timeout_s,
            roles=settings.roles,
            retries=settings.retries,
            backoff=Backoff(settings.retry_base_s, settings.retry_max_s),
            breaker_failures=settings.breaker_failures,
            breaker_reset_s=settings.breaker_reset_s,
            cache=cache
            or (MemoryResponseCache(settings.cache_size) if settings.cache_ttl_s > 0 else None),
            cache_ttl_s=settings.cache_ttl_s,
        )

    # -- what there is ---------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Registered backend names."""
        return sorted(self._backends)

    @property
    def roles(self) -> list[str]:
        return sorted({*self._role_specs, "general"})

    def get(self, name: str | None = None) -> tuple[str, LLMBackend]:
        """The backend called ``name`` (default: the configured one)."""
        chosen = name or self.default
        try:
            return chosen, self._backends[chosen]
        except KeyError:
            known = (
                ", ".join(self.names)
                or "none; install mongars-assistant[local] or a backend plugin"
            )
            raise UnknownBackendError(
                f"no LLM backend named {chosen!r} (registered: {known})"
            ) from None

    def endpoints(self, role: str | None = None, backend: str | None = None) -> list[Endpoint]:
        """The endpoints that serve ``role`` (or the one backend ``backend``)."""
        key = f"backend:{backend}" if backend else (role or "general")
        found = self._endpoints.get(key)
        if found is None:
            if backend:
                specs = [EndpointSpec(backend=backend)]
            else:
                specs = self._role_specs.get(key) or [EndpointSpec(backend=self.default)]
            found = [self._endpoint(key, index, spec) for index, spec in enumerate(specs)]
            self._endpoints[key] = found
        return found

    def _endpoint(self, role: str, index: int, spec: EndpointSpec) -> Endpoint:
        _, backend = self.get(spec.backend)
        breaker_key = (spec.backend, spec.model)
        if breaker_key not in self._breakers:
            self._breakers[breaker_key] = CircuitBreaker(*self._breaker_args, clock=self._clock)
        return Endpoint(
            role=role,
            index=index,
            backend_name=spec.backend,
            backend=backend,
            model=spec.model,
            params=dict(spec.params),
            breaker=self._breakers[breaker_key],
        )

    def status(self) -> list[EndpointStatus]:
        """Every endpoint of every role, with its breaker state and counters."""
        for role in self.roles:
            self.endpoints(role)
        return [
            EndpointStatus(
                name=endpoint.name,
                role=endpoint.role,
                backend=endpoint.backend_name,
                model=endpoint.model,
                state=endpoint.breaker.state.value,
                outstanding=endpoint.outstanding,
                served=endpoint.served,
                failed=endpoint.failed,
                consecutive_failures=endpoint.breaker.failures,
                retry_after_s=round(endpoint.breaker.retry_after(), 3),
                last_error=endpoint.last_error,
            )
            for key, endpoints in sorted(self._endpoints.items())
            if not key.startswith("backend:")
            for endpoint in endpoints
        ]

    async def health(self, timeout_s: float = 3.0) -> list[EndpointStatus]:
        """:meth:`status`, with each backend's own ``health()`` asked where it has one."""
        statuses = self.status()
        results: dict[str, bool | None] = {}

        async def probe(name: str) -> None:
            check = getattr(self._backends[name], "health", None)
            if check is None:
                results[name] = None
                return
            try:
                async with asyncio.timeout(timeout_s):
                    results[name] = bool(await check())
            except (MongarsError, TimeoutError, OSError):
                results[name] = False

        await asyncio.gather(*(probe(name) for name in {s.backend for s in statuses}))
        return [
            status.model_copy(update={"healthy": results.get(status.backend)})
            for status in statuses
        ]

    def instrument(self, meter: metrics.Meter) -> None:
        """Report requests, failures, latency, tokens and breaker states on ``meter``."""
        self._instruments = _Instruments(
            requests=meter.create_counter(
                "mongars_llm_requests", description="LLM requests by endpoint and outcome."
            ),
            failures=meter.create_counter(
                "mongars_llm_failures", description="Failed LLM attempts by endpoint and kind."
            ),
            latency=meter.create_histogram(
                "mongars_llm_request_duration", unit="s", description="LLM attempt latency."
            ),
            tokens=meter.create_counter(
                "mongars_llm_tokens", description="Token deltas streamed per endpoint."
            ),
        )
        states = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

        def observe(_options: metrics.CallbackOptions) -> list[metrics.Observation]:
            return [
                metrics.Observation(states[status_state], {"endpoint": name})
                for name, status_state in (
                    (endpoint.name, endpoint.breaker.state)
                    for endpoints in self._endpoints.values()
                    for endpoint in endpoints
                )
            ]

        meter.create_observable_gauge(
            "mongars_llm_breaker_state",
            callbacks=[observe],
            description="Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open.",
        )

    # -- serving ---------------------------------------------------------------------

    async def prepare(self, backend: str | None = None) -> None:
        """Load the backend now (a local model), so the first turn doesn't wait for it."""
        await prepare_backend(self.get(backend)[1])

    async def generate(
        self, request: GenerationRequest, backend: str | None = None, *, role: str | None = None
    ) -> str:
        """The whole reply text, collected from :meth:`stream`."""
        return "".join([delta async for delta in self.stream(request, backend, role=role)])

    async def stream(
        self,
        request: GenerationRequest,
        backend: str | None = None,
        *,
        role: str | None = None,
        on_endpoint: Callable[[Endpoint], None] | None = None,
    ) -> AsyncGenerator[str, None]:
        """Stream reply deltas for ``request`` from ``role``'s endpoints (or ``backend``).

        ``on_endpoint`` is told each endpoint that starts serving (more than one
        after a failover).
        """
        endpoints = self.endpoints(role, backend)
        cache_key = self._cache_key(request, endpoints) if self._caching(request) else None
        if cache_key is not None and self.cache is not None:
            cached = await self.cache.get(cache_key)
            if cached is not None:
                yield cached
                return
        state = _Attempt(deadline=self._clock() + self.timeout_s)
        while True:
            endpoint = self._choose(endpoints, state)
            if endpoint is None:
                raise self._unavailable(endpoints, role or backend or "general")
            state.attempts += 1
            state.tried.add(endpoint.index)
            if on_endpoint is not None:
                on_endpoint(endpoint)
            try:
                # aclosing: a caller that stops early stops the backend at once.
                async with aclosing(self._attempt(endpoint, request, state)) as deltas:
                    async for delta in deltas:
                        state.sent.append(delta)
                        yield delta
            except _Retryable as failure:
                await self._after_failure(endpoint, failure, endpoints, state)
                continue
            break
        if cache_key is not None and self.cache is not None:
            await self.cache.set(cache_key, state.text, self.cache_ttl_s)

    def _choose(self, endpoints: list[Endpoint], state: _Attempt) -> Endpoint | None:
        """A healthy endpoint with the fewest outstanding requests, round robin among
        equals, preferring ones this request has not tried yet."""
        available = [e for e in endpoints if e.breaker.available()]
        if not available:
            return None
        untried = [e for e in available if e.index not in state.tried]
        pool = untried or available
        fewest = min(e.outstanding for e in pool)
        candidates = [e for e in pool if e.outstanding == fewest]
        role = endpoints[0].role
        turn = self._round_robin.get(role, 0)
        self._round_robin[role] = turn + 1
        for offset in range(len(candidates)):
            chosen = candidates[(turn + offset) % len(candidates)]
            if chosen.breaker.acquire():
                return chosen
        return None

    async def _attempt(
        self, endpoint: Endpoint, request: GenerationRequest, state: _Attempt
    ) -> AsyncGenerator[str, None]:
        """One try on one endpoint; failures worth retrying come out as ``_Retryable``."""
        instruments = self._instruments
        labels = {"endpoint": endpoint.name}
        started = self._clock()
        sent = state.text
        endpoint.outstanding += 1
        verdict: str | None = None
        repeat = _RepeatFilter(sent)
        try:
            await prepare_backend(endpoint.backend)
            iterator = endpoint.backend.stream(endpoint.request_for(request, sent)).__aiter__()
            received = False
            try:
                while True:
                    limit = state.deadline
                    if not received:
                        limit = min(limit, self._clock() + self.first_token_timeout_s)
                    remaining = limit - self._clock()
                    if remaining <= 0:
                        raise TimeoutError
                    try:
                        delta = await asyncio.wait_for(iterator.__anext__(), remaining)
                    except StopAsyncIteration:
                        break
                    received = True
                    delta = repeat.feed(delta)
                    if delta:
                        if instruments is not None:
                            instruments.tokens.add(1, labels)
                        yield delta
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
            verdict = "ok"
        except TimeoutError:
            verdict = "timeout"
            if self._clock() >= state.deadline:
                raise GenerationTimeoutError(
                    f"no complete reply within {self.timeout_s} s (last endpoint: {endpoint.name})"
                ) from None
            raise _Retryable(
                GenerationTimeoutError(
                    f"{endpoint.name} sent nothing within {self.first_token_timeout_s} s"
                )
            ) from None
        except BackendUnavailableError as exc:
            verdict = "unavailable"
            raise _Retryable(exc) from exc
        except ModelError as exc:
            # Another endpoint may have the model; this one will not, however often asked.
            verdict = "error"
            raise _Retryable(exc, same_endpoint=False) from exc
        except MongarsError:
            verdict = "error"
            raise
        except (GeneratorExit, asyncio.CancelledError):
            verdict = None
            raise
        except Exception as exc:
            verdict = "error"
            logger.exception("LLM endpoint %s failed", endpoint.name)
            raise _Retryable(BackendError(f"{endpoint.name} failed: {exc}")) from exc
        finally:
            endpoint.outstanding -= 1
            if verdict == "ok":
                endpoint.breaker.record_success()
                endpoint.served += 1
            elif verdict is None:
                endpoint.breaker.release()
            if instruments is not None and verdict is not None:
                instruments.requests.add(1, {**labels, "outcome": verdict})
                instruments.latency.record(self._clock() - started, labels)

    async def _after_failure(
        self, endpoint: Endpoint, failure: _Retryable, endpoints: list[Endpoint], state: _Attempt
    ) -> None:
        """Record the failure; wait before the next attempt when it goes to the same
        endpoint; give up when attempts or time run out."""
        error = failure.error
        others = [e for e in endpoints if e.index not in state.tried and e.breaker.available()]
        if not failure.same_endpoint:
            endpoint.failed += 1
            endpoint.last_error = str(error)
            if others and state.attempts <= self.retries:
                return
            raise error
        endpoint.breaker.record_failure()
        endpoint.failed += 1
        endpoint.last_error = str(error)
        if self._instruments is not None:
            kind = type(error).__name__
            self._instruments.failures.add(1, {"endpoint": endpoint.name, "kind": kind})
        logger.warning(
            "LLM endpoint %s failed (attempt %d): %s", endpoint.name, state.attempts, error
        )
        if state.attempts > self.retries:
            raise self._exhausted(error, endpoints) from error
        if others:
            return  # fail over at once
        retry_after = getattr(error, "retry_after", None)
        wait = self.backoff.delay(state.attempts, retry_after)
        if self._clock() + wait >= state.deadline:
            raise self._exhausted(error, endpoints) from error
        state.tried.clear()
        await asyncio.sleep(wait)

    def _exhausted(self, error: MongarsError, endpoints: list[Endpoint]) -> MongarsError:
        if isinstance(error, GenerationTimeoutError):
            return GenerationTimeoutError(f"no LLM endpoint answered in time: {error}")
        if isinstance(error, BackendUnavailableError):
            return BackendUnavailableError(
                f"no LLM endpoint could answer: {error}",
                retry_after=self._retry_after(endpoints) or getattr(error, "retry_after", None),
            )
        return error

    def _unavailable(self, endpoints: list[Endpoint], what: str) -> BackendUnavailableError:
        wait = self._retry_after(endpoints)
        names = ", ".join(e.name for e in endpoints)
        return BackendUnavailableError(
            f"every LLM endpoint for {what!r} is unavailable ({names}); "
            f"the first may be tried again in {wait:.1f} s",
            retry_after=wait,
        )

    @staticmethod
    def _retry_after(endpoints: list[Endpoint]) -> float:
        return min((e.breaker.retry_after() for e in endpoints), default=0.0)

    def _caching(self, request: GenerationRequest) -> bool:
        return self.cache is not None and self.cache_ttl_s > 0 and request.cacheable

    @staticmethod
    def _cache_key(request: GenerationRequest, endpoints: list[Endpoint]) -> str:
        body = {
            "request": request.model_dump(mode="json", exclude={"cacheable", "prefix"}),
            "endpoints": [(e.backend_name, e.model, e.params) for e in endpoints],
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class _Retryable(Exception):
    """An attempt failed in a way another attempt may not."""

    def __init__(self, error: MongarsError, *, same_endpoint: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.same_endpoint = same_endpoint


class _RepeatFilter:
    """Drops the part of a continuation that repeats text already sent.

    A backend asked to continue ``sent`` should produce only new text; one that
    starts over is caught here: output is held while it could still be a
    repetition of ``sent``, then released minus the repeated part.
    """

    def __init__(self, sent: str) -> None:
        self.sent = sent
        self.held = ""
        self.deciding = bool(sent)

    def feed(self, delta: str) -> str:
        if not self.deciding:
            return delta
        self.held += delta
        if len(self.held) < len(self.sent) and self.sent.startswith(self.held):
            return ""  # still possibly a repetition
        self.deciding = False
        held, self.held = self.held, ""
        return held[len(self.sent) :] if held.startswith(self.sent) else held
