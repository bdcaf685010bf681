"""Circuit breaker and retry back-off: the router's two state machines.

Both take their clock (and the back-off its random source) as arguments, so
tests drive them deterministically (``tests/test_resilience.py`` explores them
with hypothesis).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed, open, half-open; a single probe request decides.

    * closed: requests pass; ``failure_threshold`` failures in a row open it.
    * open: requests are refused until ``reset_s`` has passed since it opened.
    * half-open: exactly one request (the probe) may pass; its success closes
      the breaker, its failure opens it again for another ``reset_s``.
    """

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_s > 0")
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def failures(self) -> int:
        """Failures in a row so far."""
        return self._failures

    def available(self) -> bool:
        """Whether :meth:`acquire` would let a request through now."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self._probe_in_flight
        )

    def acquire(self) -> bool:
        """Ask to send a request; ``True`` means go (half-open: you are the probe)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            # A failed probe, or one failure too many: (re)open for reset_s.
            self._opened_at = self._clock()
        self._probe_in_flight = False

    def release(self) -> None:
        """The request ended with no verdict (the caller went away): free the probe."""
        self._probe_in_flight = False

    def retry_after(self) -> float:
        """Seconds until the breaker lets a request through (0 when it does now)."""
        if self._opened_at is None:
            return 0.0
        waited = self._clock() - self._opened_at
        return min(self.reset_s, max(0.0, self.reset_s - waited))


class Backoff:
    """Exponential back-off with full jitter, honouring ``Retry-After``.

    Attempt ``n`` (1 for the first retry) waits a uniform random time in
    ``[0, min(max_s, base_s * 2**(n-1))]``, and never less than what the
    backend asked for with ``Retry-After``; the caller's deadline decides
    whether that wait is worth it.
    """

    def __init__(
        self,
        base_s: float = 0.2,
        max_s: float = 2.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if base_s < 0 or max_s < 0:
            raise ValueError("back-off times must be >= 0")
        self.base_s = base_s
        self.max_s = max_s
        self._rng = rng

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        ceiling: float = min(self.max_s, self.base_s * 2.0 ** max(0, attempt - 1))
        wait = ceiling * self._rng()
        if retry_after is not None and retry_after > 0:
            wait = max(wait, retry_after)
        return wait
