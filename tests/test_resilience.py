"""The circuit breaker and the back-off, explored with hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mongars_core.resilience import Backoff, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BreakerMachine(RuleBasedStateMachine):
    """Drive a breaker with any sequence of requests, outcomes and waits, and
    check it against a plain model of the specification."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.threshold = 3
        self.reset_s = 10.0
        self.breaker = CircuitBreaker(self.threshold, self.reset_s, clock=self.clock)
        # The model.
        self.failures = 0
        self.opened_at: float | None = None
        self.probe = False
        self.in_flight = 0

    def model_state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock.now - self.opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @rule(seconds=st.floats(min_value=0, max_value=25, allow_nan=False))
    def wait(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def request(self) -> None:
        state = self.model_state()
        expected = state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self.probe
        )
        assert self.breaker.acquire() == expected
        if expected:
            self.in_flight += 1
            if state is BreakerState.HALF_OPEN:
                self.probe = True

    @precondition(lambda self: self.in_flight > 0)
    @rule()
    def succeed(self) -> None:
        self.in_flight -= 1
        self.breaker.record_success()
        self.failures, self.opened_at, self.probe = 0, None, False

    @precondition(lambda self: self.in_flight > 0)
    @rule()
    def fail(self) -> None:
        self.in_flight -= 1
        self.breaker.record_failure()
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock.now
        self.probe = False

    @precondition(lambda self: self.in_flight > 0)
    @rule()
    def abandon(self) -> None:
        self.in_flight -= 1
        self.breaker.release()
        self.probe = False

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.breaker.state is self.model_state()
        assert self.breaker.failures == self.failures

    @invariant()
    def open_means_no_request_and_a_wait(self) -> None:
        if self.breaker.state is BreakerState.OPEN:
            assert not self.breaker.available()
            assert 0 < self.breaker.retry_after() <= self.reset_s
        else:
            assert self.breaker.retry_after() == 0


TestBreaker = BreakerMachine.TestCase
TestBreaker.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_a_single_probe_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_s=5, clock=clock)
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.acquire()
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.acquire(), "the probe"
    assert not breaker.acquire(), "only one probe at a time"
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN, "a failed probe opens it again"
    clock.now += 5
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.acquire() and breaker.acquire()


@given(
    attempt=st.integers(min_value=1, max_value=30),
    base=st.floats(min_value=0, max_value=5),
    cap=st.floats(min_value=0, max_value=60),
    roll=st.floats(min_value=0, max_value=1, exclude_max=True),
    retry_after=st.none() | st.floats(min_value=0, max_value=120),
)
def test_backoff_is_jittered_capped_and_honours_retry_after(
    attempt: int, base: float, cap: float, roll: float, retry_after: float | None
) -> None:
    backoff = Backoff(base, cap, rng=lambda: roll)
    wait = backoff.delay(attempt, retry_after)
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    assert wait >= 0
    if retry_after:
        assert wait >= retry_after
        assert wait <= max(ceiling, retry_after)
    else:
        assert wait <= ceiling
        assert wait == ceiling * roll


def test_backoff_grows_until_the_cap() -> None:
    backoff = Backoff(0.1, 1.0, rng=lambda: 0.999999)
    ceilings = [round(backoff.delay(n), 3) for n in range(1, 7)]
    assert ceilings == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
