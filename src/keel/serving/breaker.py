"""Circuit breaker per model version: open at an error share over a rolling window.

States: **closed** (calls pass; outcomes counted in ``buckets`` time slices covering
``window_s``), **open** (calls refused for ``reset_s``; the gateway answers with the
configured fallback), **half-open** (one probe call at a time passes: success closes the
breaker and clears the window, failure opens it again for another ``reset_s``).

The breaker opens when the window holds at least ``min_requests`` calls and at least
``error_rate`` of them failed. The minimum keeps one early failure (1 of 1 = 100 %) from
opening it: with the defaults (5 %, 20 calls, 60 s) it takes at least one failure among
20 calls within a minute, and at 1,000 calls a minute, 50 failures.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts successes and failures of one model version and decides whether to call it."""

    def __init__(
        self,
        *,
        error_rate: float = 0.05,
        window_s: float = 60.0,
        min_requests: int = 20,
        reset_s: float = 30.0,
        buckets: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.error_rate = error_rate
        self.min_requests = min_requests
        self.reset_s = reset_s
        self._slice_s = window_s / buckets
        self._calls = [0] * buckets
        self._errors = [0] * buckets
        self._slots = [-1] * buckets  # which time slice each bucket currently counts
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose reset time passed reads as half-open)."""
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return self._state

    def retry_after_s(self) -> int:
        """Whole seconds until an open breaker lets a probe through (0 when not open)."""
        if self._state is not BreakerState.OPEN:
            return 0
        return max(1, math.ceil(self.reset_s - (self._clock() - self._opened_at)))

    def allow(self) -> bool:
        """Whether to call the model now; in half-open state only one probe at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probing:
            return False
        self._state, self._probing = BreakerState.HALF_OPEN, True
        return True

    def record(self, ok: bool) -> None:
        """Count one call's outcome; may open or close the breaker."""
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            if ok:
                self._state = BreakerState.CLOSED
                self._calls = [0] * len(self._calls)
                self._errors = [0] * len(self._errors)
            else:
                self._open()
            return
        slot = int(self._clock() // self._slice_s)
        index = slot % len(self._calls)
        if self._slots[index] != slot:
            self._slots[index], self._calls[index], self._errors[index] = slot, 0, 0
        self._calls[index] += 1
        if not ok:
            self._errors[index] += 1
            calls, errors = self.counts()
            if calls >= self.min_requests and errors >= self.error_rate * calls:
                self._open()

    def release(self) -> None:
        """End a call that neither succeeded nor failed (e.g. bad input): frees the probe."""
        self._probing = False

    def counts(self) -> tuple[int, int]:
        """Calls and failures within the rolling window."""
        oldest = int(self._clock() // self._slice_s) - len(self._calls) + 1
        live = [i for i, slot in enumerate(self._slots) if slot >= oldest]
        return sum(self._calls[i] for i in live), sum(self._errors[i] for i in live)

    def _open(self) -> None:
        self._state, self._opened_at = BreakerState.OPEN, self._clock()
