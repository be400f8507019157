"""The in-process sliding-window counter decides exactly as ``limits``' own strategy."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from keel.serving._window import SlidingWindowCounter

events = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=7.0), st.sampled_from(["a", "b", "c"])),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None)
@given(events=events, limit=st.integers(min_value=1, max_value=6))
def test_decisions_match_limits(events: list[tuple[float, str]], limit: int) -> None:
    """Same hits at the same (simulated) times: same allow/deny, hit by hit."""
    clock = [1_700_000_000.0]
    real_time = time.time
    time.time = lambda: clock[0]  # limits reads time.time(); its timer thread too
    try:
        reference = SlidingWindowCounterRateLimiter(MemoryStorage())
        item = parse(f"{limit}/5 seconds")
        ours = SlidingWindowCounter(limit, 5)
        for step, key in events:
            clock[0] += step
            assert ours.hit(key, now=clock[0]) == reference.hit(item, key), (clock[0], key)
    finally:
        time.time = real_time


def test_retry_after_is_when_the_next_hit_passes() -> None:
    counter = SlidingWindowCounter(3, 10)
    start = 1_000.0  # a window boundary
    assert all(counter.hit("k", now=start + i) for i in range(3))
    assert not counter.hit("k", now=start + 3)
    wait = counter.retry_after_s("k", now=start + 3)
    # 3 hits fill this window; the next window starts full and decays: allowed just after
    # previous × (1 - f) < 3, i.e. as soon as f > 0 in the next window
    assert wait == pytest.approx(7.0)
    assert not counter.hit("k", now=start + 3 + wait - 0.01)
    assert counter.hit("k", now=start + 3 + wait + 0.01)


def test_retry_after_within_the_window() -> None:
    counter = SlidingWindowCounter(4, 10)
    assert all(counter.hit("k", now=5.0 + i * 0.1) for i in range(4))  # window [0, 10)
    # window [10, 20): previous 4 weighs 4 × (1 - f); at 13 s (f = 0.3) that is 2.8
    assert counter.hit("k", now=13.0)  # 2.8 + 0 < 4
    assert counter.retry_after_s("k", now=13.0) == 0.0  # 2.8 + 1 < 4
    assert counter.hit("k", now=13.0)  # now 2.8 + 2 = 4.8: full until 4 (1 - f) < 2, f > 0.5
    assert counter.retry_after_s("k", now=13.0) == pytest.approx(2.0)
    assert not counter.hit("k", now=14.99)
    assert counter.hit("k", now=15.01)


def test_idle_keys_are_pruned_when_full() -> None:
    counter = SlidingWindowCounter(1, 1, max_keys=10)
    for i in range(10):
        counter.hit(f"k{i}", now=0.5)
    counter.hit("late", now=5.5)  # the ten others are two windows old: dropped
    assert set(counter._counts) == {"late"}


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindowCounter(0, 1)
    with pytest.raises(ValueError):
        SlidingWindowCounter(1, 0)
