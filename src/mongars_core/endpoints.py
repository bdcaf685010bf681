"""What the LLM router knows of each endpoint, and what it reports about them.

An :class:`Endpoint` is a backend serving a role with one model and
parameters, with its circuit breaker and counters. :class:`EndpointStatus` is
its snapshot (``mongars backends``, the server's ``/api/v1/llm/health``);
:func:`check_health` asks a backend's own health check; :class:`RouterMetrics`
reports requests, failures, latency, tokens and breaker states on an
OpenTelemetry meter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from opentelemetry import metrics
from pydantic import BaseModel, ConfigDict, Field

from mongars_core.capabilities import HealthChecked, has_ability
from mongars_core.errors import MongarsError
from mongars_core.llm import LLMBackend
from mongars_core.resilience import BreakerState, CircuitBreaker
from mongars_core.types import GenerationRequest

logger = logging.getLogger(__name__)

_REQUEST_FIELDS = {"temperature", "top_p", "max_new_tokens", "stop"}


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
        """``request`` with this endpoint's model and parameters, continuing ``prefix``."""
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

    def status(self) -> EndpointStatus:
        """A snapshot of the breaker state and counters."""
        return EndpointStatus(
            name=self.name,
            role=self.role,
            backend=self.backend_name,
            model=self.model,
            state=self.breaker.state.value,
            outstanding=self.outstanding,
            served=self.served,
            failed=self.failed,
            consecutive_failures=self.breaker.failures,
            retry_after_s=round(self.breaker.retry_after(), 3),
            last_error=self.last_error,
        )


async def check_health(name: str, backend: LLMBackend, timeout_s: float) -> bool | None:
    """Backend ``name``'s own health check within ``timeout_s``; ``None`` when it has none.

    A check that raises, or takes too long, is ``False``: the health check is the
    backend's code, and whatever goes wrong in it means the backend cannot serve
    (an error that is not a network or monGARS one is logged: it is a bug).
    """
    if not has_ability(backend, HealthChecked):
        return None
    try:
        async with asyncio.timeout(timeout_s):
            return bool(await cast(HealthChecked, backend).health())
    except (MongarsError, TimeoutError, OSError):
        return False  # unreachable, failing or too slow: the answer, not a bug
    except Exception:
        logger.exception("the health check of LLM backend %s failed", name)
        return False


_BREAKER_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class RouterMetrics:
    """The router's instruments on one OpenTelemetry meter.

    ``endpoints`` lists the endpoints whose breaker states the gauge reports,
    each time the meter is read.
    """

    def __init__(self, meter: metrics.Meter, endpoints: Callable[[], Iterable[Endpoint]]) -> None:
        self._requests = meter.create_counter(
            "mongars_llm_requests", description="LLM requests by endpoint and outcome."
        )
        self._failures = meter.create_counter(
            "mongars_llm_failures", description="Failed LLM attempts by endpoint and kind."
        )
        self._latency = meter.create_histogram(
            "mongars_llm_request_duration", unit="s", description="LLM attempt latency."
        )
        self._tokens = meter.create_counter(
            "mongars_llm_tokens", description="Token deltas streamed per endpoint."
        )
        self._endpoints = endpoints
        meter.create_observable_gauge(
            "mongars_llm_breaker_state",
            callbacks=[self._observe_breakers],
            description="Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open.",
        )

    def token(self, endpoint: Endpoint) -> None:
        self._tokens.add(1, {"endpoint": endpoint.name})

    def attempt(self, endpoint: Endpoint, outcome: str, seconds: float) -> None:
        """One finished attempt: ``outcome`` is ok, timeout, unavailable or error."""
        self._requests.add(1, {"endpoint": endpoint.name, "outcome": outcome})
        self._latency.record(seconds, {"endpoint": endpoint.name})

    def failure(self, endpoint: Endpoint, error: Exception) -> None:
        """A failure counted against the endpoint's breaker."""
        self._failures.add(1, {"endpoint": endpoint.name, "kind": type(error).__name__})

    def _observe_breakers(self, _options: metrics.CallbackOptions) -> list[metrics.Observation]:
        return [
            metrics.Observation(_BREAKER_GAUGE[endpoint.breaker.state], {"endpoint": endpoint.name})
            for endpoint in self._endpoints()
        ]
