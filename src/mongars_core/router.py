"""The LLM router: model roles, endpoints, breakers, retries, failover.

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

Endpoints, their status and metrics are in :mod:`mongars_core.endpoints`; the
caches in :mod:`mongars_core.response_cache`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import cast

from opentelemetry import metrics

from mongars_core.capabilities import ConstrainsOutput, has_ability
from mongars_core.endpoints import Endpoint, EndpointStatus, RouterMetrics, check_health
from mongars_core.errors import (
    BackendError,
    BackendUnavailableError,
    GenerationTimeoutError,
    ModelError,
    MongarsError,
    UnknownBackendError,
    UnsupportedConstraintError,
)
from mongars_core.llm import LLMBackend, prepare_backend
from mongars_core.resilience import Backoff, CircuitBreaker, Permit
from mongars_core.response_cache import MemoryResponseCache, ResponseCache, cache_key
from mongars_core.settings import EndpointSpec, LLMSettings
from mongars_core.types import GenerationRequest, OutputConstraint

__all__ = ["Endpoint", "EndpointStatus", "LLMRouter"]

logger = logging.getLogger(__name__)


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
        self._metrics = RouterMetrics(metrics.get_meter("mongars_core"), self._all_endpoints)

    @classmethod
    def from_settings(
        cls,
        backends: Mapping[str, LLMBackend],
        settings: LLMSettings,
        *,
        cache: ResponseCache | None = None,
        roles: Mapping[str, Sequence[EndpointSpec]] | None = None,
    ) -> LLMRouter:
        """A router configured by ``settings``; ``roles`` replaces ``settings.roles``
        (:func:`mongars_core.assembly.build_router` merges in the roles file)."""
        return cls(
            backends,
            settings.backend,
            timeout_s=settings.timeout_s,
            first_token_timeout_s=settings.first_token_timeout_s,
            roles=settings.roles if roles is None else roles,
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
            endpoint.status()
            for key, endpoints in sorted(self._endpoints.items())
            if not key.startswith("backend:")
            for endpoint in endpoints
        ]

    async def health(self, timeout_s: float = 3.0) -> list[EndpointStatus]:
        """:meth:`status`, with each backend's own health check asked where it has one."""
        statuses = self.status()
        names = sorted({status.backend for status in statuses})
        checks = await asyncio.gather(
            *(check_health(name, self._backends[name], timeout_s) for name in names)
        )
        healthy = dict(zip(names, checks, strict=True))
        return [
            status.model_copy(update={"healthy": healthy[status.backend]}) for status in statuses
        ]

    def instrument(self, meter: metrics.Meter) -> None:
        """Report requests, failures, latency, tokens and breaker states on ``meter``."""
        self._metrics = RouterMetrics(meter, self._all_endpoints)

    def _all_endpoints(self) -> Iterator[Endpoint]:
        for endpoints in self._endpoints.values():
            yield from endpoints

    async def aclose(self) -> None:
        """Close the response cache (and the Redis connection it owns)."""
        if self.cache is not None:
            await self.cache.aclose()

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
        if request.constraint is not None:
            endpoints = self._constraining(endpoints, request.constraint, role or backend)
        key = cache_key(request, endpoints) if self._caching(request) else None
        if key is not None and self.cache is not None:
            cached = await self.cache.get(key)
            if cached is not None:
                yield cached
                return
        state = _Attempt(deadline=self._clock() + self.timeout_s)
        while True:
            chosen = self._choose(endpoints, state)
            if chosen is None:
                raise self._unavailable(endpoints, role or backend or "general")
            endpoint, permit = chosen
            state.attempts += 1
            state.tried.add(endpoint.index)
            if on_endpoint is not None:
                on_endpoint(endpoint)
            try:
                # aclosing: a caller that stops early stops the backend at once.
                async with aclosing(self._attempt(endpoint, permit, request, state)) as deltas:
                    async for delta in deltas:
                        state.sent.append(delta)
                        yield delta
            except _Retryable as failure:
                await self._after_failure(endpoint, failure, endpoints, state)
                continue
            break
        if key is not None and self.cache is not None:
            await self.cache.set(key, state.text, self.cache_ttl_s)

    @staticmethod
    def _constraining(
        endpoints: list[Endpoint], constraint: OutputConstraint, served: str | None
    ) -> list[Endpoint]:
        """The endpoints whose backend can keep to ``constraint``; an error when none can."""
        able = [
            e
            for e in endpoints
            if has_ability(e.backend, ConstrainsOutput)
            and cast(ConstrainsOutput, e.backend).can_constrain(constraint)
        ]
        if not able:
            kind = "a JSON schema" if constraint.json_schema is not None else "a grammar"
            names = ", ".join(e.backend_name for e in endpoints)
            raise UnsupportedConstraintError(
                f"no endpoint of {served or 'general'} can keep a reply to {kind} "
                f"({names}: not able to); use a backend with constrained output, such as llamacpp"
            )
        return able

    def _choose(self, endpoints: list[Endpoint], state: _Attempt) -> tuple[Endpoint, Permit] | None:
        """A healthy endpoint with the fewest outstanding requests, round robin among
        equals, preferring ones this request has not tried yet, and its breaker's permit."""
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
            permit = chosen.breaker.acquire()
            if permit is not None:
                return chosen, permit
        return None

    async def _attempt(
        self, endpoint: Endpoint, permit: Permit, request: GenerationRequest, state: _Attempt
    ) -> AsyncGenerator[str, None]:
        """One try on one endpoint, and its verdict on the endpoint's breaker.

        Success closes the breaker and a ``_Retryable`` failure on this endpoint
        counts against it. Anything else (a missing model, a bad request, the
        caller's deadline, the caller going away) says nothing of the endpoint's
        health: the breaker is only released, so a half-open one can be probed again.
        """
        started = self._clock()
        endpoint.outstanding += 1
        outcome: str | None = None
        judged = False
        try:
            async with aclosing(self._deltas(endpoint, request, state)) as deltas:
                async for delta in deltas:
                    self._metrics.token(endpoint)
                    yield delta
            outcome = "ok"
            endpoint.breaker.record_success(permit)
            endpoint.served += 1
            judged = True
        except _Retryable as failure:
            outcome = _outcome(failure.error)
            if failure.same_endpoint:
                endpoint.breaker.record_failure(permit)
                judged = True
            raise
        except MongarsError as error:
            outcome = _outcome(error)
            raise
        finally:
            endpoint.outstanding -= 1
            if not judged:
                endpoint.breaker.release(permit)
            if outcome is not None:
                self._metrics.attempt(endpoint, outcome, self._clock() - started)

    async def _deltas(
        self, endpoint: Endpoint, request: GenerationRequest, state: _Attempt
    ) -> AsyncGenerator[str, None]:
        """The endpoint's new text within the deadlines; failures worth retrying come
        out as ``_Retryable``, other monGARS errors as they are."""
        sent = state.text
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
                        yield delta
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
        except TimeoutError:
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
            raise _Retryable(exc) from exc
        except ModelError as exc:
            # Another endpoint may have the model; this one will not, however often asked.
            raise _Retryable(exc, same_endpoint=False) from exc
        except MongarsError:
            raise
        except Exception as exc:
            logger.exception("LLM endpoint %s failed", endpoint.name)
            raise _Retryable(BackendError(f"{endpoint.name} failed: {exc}")) from exc

    async def _after_failure(
        self, endpoint: Endpoint, failure: _Retryable, endpoints: list[Endpoint], state: _Attempt
    ) -> None:
        """Count the failure; wait before the next attempt when it goes to the same
        endpoint; give up when attempts or time run out."""
        error = failure.error
        endpoint.failed += 1
        endpoint.last_error = str(error)
        others = [e for e in endpoints if e.index not in state.tried and e.breaker.available()]
        if not failure.same_endpoint:
            if others and state.attempts <= self.retries:
                return
            raise error
        self._metrics.failure(endpoint, error)
        logger.warning(
            "LLM endpoint %s failed (attempt %d): %s", endpoint.name, state.attempts, error
        )
        if state.attempts > self.retries:
            raise self._exhausted(error, endpoints) from error
        if others:
            return  # fail over at once
        retry_after = error.retry_after if isinstance(error, BackendUnavailableError) else None
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
                retry_after=self._retry_after(endpoints) or error.retry_after,
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


def _outcome(error: MongarsError) -> str:
    """How an attempt that ended in ``error`` is counted in ``mongars_llm_requests``."""
    if isinstance(error, GenerationTimeoutError):
        return "timeout"
    if isinstance(error, BackendUnavailableError):
        return "unavailable"
    return "error"


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
