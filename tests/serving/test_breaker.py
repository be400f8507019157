"""The circuit breaker on a fake clock: thresholds, minimum calls, window, half-open probe."""

from __future__ import annotations

from keel.serving.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **kw: float) -> CircuitBreaker:
    options = {"error_rate": 0.05, "window_s": 60.0, "min_requests": 20, "reset_s": 30.0}
    options.update(kw)
    return CircuitBreaker(clock=clock, **options)  # type: ignore[arg-type]


def test_opens_at_five_percent_errors_once_the_minimum_is_reached() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(19):
        b.record(True)
    assert b.state is BreakerState.CLOSED
    b.record(False)  # 1 of 20 = 5 %
    assert b.state is BreakerState.OPEN and not b.allow()
    assert b.retry_after_s() == 30


def test_stays_closed_below_the_rate_or_the_minimum() -> None:
    clock = Clock()
    below = breaker(clock)
    for _ in range(39):
        below.record(True)
    below.record(False)  # 1 of 40 = 2.5 %
    assert below.state is BreakerState.CLOSED
    few = breaker(clock)
    for _ in range(3):
        few.record(False)  # 100 % but only 3 calls
    assert few.state is BreakerState.CLOSED and few.counts() == (3, 3)


def test_old_calls_leave_the_rolling_window() -> None:
    clock = Clock()
    b = breaker(clock, min_requests=4, error_rate=0.5)
    b.record(False)
    b.record(False)
    clock.now += 61  # both failures are now outside the window
    b.record(True)
    b.record(True)
    b.record(False)
    b.record(True)
    assert b.counts() == (4, 1) and b.state is BreakerState.CLOSED


def test_half_open_lets_one_probe_through_and_closes_on_success() -> None:
    clock = Clock()
    b = breaker(clock, min_requests=1, error_rate=0.5)
    b.record(False)
    assert not b.allow()
    clock.now += 30
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow()  # a single probe at a time
    b.record(True)
    assert b.state is BreakerState.CLOSED and b.counts() == (0, 0) and b.allow()


def test_failed_probe_opens_again_for_another_reset_period() -> None:
    clock = Clock()
    b = breaker(clock, min_requests=1, error_rate=0.5)
    b.record(False)
    clock.now += 31
    assert b.allow()
    b.record(False)
    assert b.state is BreakerState.OPEN and b.retry_after_s() == 30
    clock.now += 29.5
    assert not b.allow()


def test_a_probe_that_ends_without_a_verdict_frees_the_slot() -> None:
    clock = Clock()
    b = breaker(clock, min_requests=1, error_rate=0.5)
    b.record(False)
    clock.now += 30
    assert b.allow() and not b.allow()
    b.release()  # e.g. the probe's input was invalid
    assert b.state is BreakerState.HALF_OPEN and b.allow()
