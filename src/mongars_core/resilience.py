"""Circuit breaker and retry back-off: the router's two state machines.

Both take their clock (and the back-off its random source) as arguments, so
tests drive them deterministically (``tests/test_resilience.py`` explores them
with hypothesis).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, eq=False)
class Permit:
    """Leave from :meth:`CircuitBreaker.acquire` to send one request; hand it back
    with the request's verdict. ``probe`` says it is the half-open probe."""

    probe: bool


class CircuitBreaker:
    """Closed, open, half-open; a single probe request decides.

    * closed: requests pass; ``failure_threshold`` failures in a row open it.
    * open: requests are refused until ``reset_s`` has passed since it opened.
    * half-open: exactly one request (the probe) may pass; its success closes
      the breaker, its failure opens it again for another ``reset_s``.

    Each request let through holds a :class:`Permit` and ends with exactly one
    of :meth:`record_success`, :meth:`record_failure` or :meth:`release`; only
    the probe's own permit frees the probe's place, so a request let through
    while the breaker was closed, ending late, does not let a second probe in.
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
        self._probe: Permit | None = None

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
            state is BreakerState.HALF_OPEN and self._probe is None
        )

    def acquire(self) -> Permit | None:
        """Ask to send a request: a permit means go, ``None`` means refused."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(probe=False)
        if state is BreakerState.HALF_OPEN and self._probe is None:
            self._probe = Permit(probe=True)
            return self._probe
        return None

    def record_success(self, permit: Permit) -> None:
        self._failures = 0
        self._opened_at = None
        self._finish(permit)

    def record_failure(self, permit: Permit) -> None:
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            # A failed probe, or one failure too many: (re)open for reset_s.
            self._opened_at = self._clock()
        self._finish(permit)

    def release(self, permit: Permit) -> None:
        """The request ended with no verdict (the caller went away): free its place."""
        self._finish(permit)

    def _finish(self, permit: Permit) -> None:
        if permit is self._probe:
            self._probe = None

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
