"""The circuit breaker and the back-off, explored with hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mongars_core.resilience import Backoff, BreakerState, CircuitBreaker, Permit


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
        # Requests let through and not ended yet: their permits.
        self.in_flight: list[Permit] = []

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
        permit = self.breaker.acquire()
        assert (permit is not None) == expected
        if permit is not None:
            assert permit.probe == (state is BreakerState.HALF_OPEN)
            self.in_flight.append(permit)
            self.probe = self.probe or permit.probe

    def end(self, which: int) -> Permit:
        """End one of the requests in flight; only the probe frees the probe's place."""
        permit = self.in_flight.pop(which % len(self.in_flight))
        if permit.probe:
            self.probe = False
        return permit

    @precondition(lambda self: self.in_flight)
    @rule(which=st.integers(min_value=0))
    def succeed(self, which: int) -> None:
        self.breaker.record_success(self.end(which))
        self.failures, self.opened_at = 0, None

    @precondition(lambda self: self.in_flight)
    @rule(which=st.integers(min_value=0))
    def fail(self, which: int) -> None:
        self.breaker.record_failure(self.end(which))
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.threshold:
            self.opened_at = self.clock.now

    @precondition(lambda self: self.in_flight)
    @rule(which=st.integers(min_value=0))
    def abandon(self, which: int) -> None:
        self.breaker.release(self.end(which))

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
    first, second = breaker.acquire(), breaker.acquire()
    assert first is not None and second is not None
    breaker.record_failure(first)
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(second)
    assert breaker.state is BreakerState.OPEN and breaker.acquire() is None
    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    probe = breaker.acquire()
    assert probe is not None and probe.probe, "the probe"
    assert breaker.acquire() is None, "only one probe at a time"
    breaker.record_failure(probe)
    assert breaker.state is BreakerState.OPEN, "a failed probe opens it again"
    clock.now += 5
    probe = breaker.acquire()
    assert probe is not None
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.acquire() is not None and breaker.acquire() is not None


def test_only_the_probe_frees_the_probe_slot() -> None:
    """A request let through while the breaker was closed, ending while the
    half-open probe is in flight, must not let a second probe through."""
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_s=5, clock=clock)
    early, late = breaker.acquire(), breaker.acquire()
    assert early is not None and late is not None and not early.probe
    breaker.record_failure(early)
    clock.now += 5
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    breaker.release(late)
    assert breaker.acquire() is None, "the probe is still in flight"
    assert not breaker.available()
    breaker.record_failure(late)
    assert breaker.acquire() is None
    clock.now += 5
    assert breaker.acquire() is None, "reopened, but the probe has not finished"
    breaker.release(probe)
    assert breaker.acquire() is not None, "the probe ended: another may go"


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
