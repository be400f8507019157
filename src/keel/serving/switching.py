"""The interpreter's thread switch interval while gateways run.

The prediction-log writer converts batches to Arrow in the serving interpreter; with
Python's 5 ms switch interval a request arriving meanwhile waits up to 5 ms for the GIL
at each wake-up. Gateways shorten it while they run (``KEEL_SERVING_SWITCH_INTERVAL_MS``,
see ``Gateway.start``).
"""

from __future__ import annotations

import sys
import threading

__all__ = ["SwitchInterval", "switch_interval"]


class SwitchInterval:
    """The switch interval while gateways run: set by the first, restored by the last to
    stop (several gateways may share one process, as in the tests); the shortest asked
    for stands."""

    def __init__(self) -> None:
        self.users = 0
        self.before = sys.getswitchinterval()
        self._lock = threading.Lock()

    def hold(self, seconds: float) -> None:
        """Run with at most ``seconds`` until :meth:`release`."""
        with self._lock:
            if self.users == 0:
                self.before = sys.getswitchinterval()
            self.users += 1
            sys.setswitchinterval(min(seconds, sys.getswitchinterval()))

    def release(self) -> None:
        """One holder stopped; the last one restores the interval found by the first."""
        with self._lock:
            self.users -= 1
            if self.users == 0:
                sys.setswitchinterval(self.before)


#: The process's one switch-interval holder.
switch_interval = SwitchInterval()
