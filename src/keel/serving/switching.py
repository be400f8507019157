"""Interpreter settings held while gateways run: the heap frozen out of the collector's
sight, the thread switch interval and the collector's first-generation threshold.

- **Frozen heap.** Everything alive when a gateway starts (libraries, loaded models)
  lives as long as the process: ``gc.freeze()`` takes it out of the collector's sight,
  so full collections under load stop walking it (p99 300+ ms → ~50 ms in
  ``benchmarks/bench_serving.py``). It costs one full collection at start (0.2 s with
  keel's libraries imported, more in a process holding more), so an embedding process
  that starts and stops gateways often may turn it off (``KEEL_SERVING_GC_FREEZE``).

- **Switch interval.** The prediction-log writer converts batches to Arrow in the
  serving interpreter; with Python's 5 ms switch interval a request arriving meanwhile
  waits up to 5 ms for the GIL at each wake-up. Gateways shorten it while they run
  (``KEEL_SERVING_SWITCH_INTERVAL_MS``).
- **Collector threshold.** Python collects its youngest generation every 700 net
  allocations of container objects; a request makes a few hundred (frames, futures,
  dicts, rows), so the collector ran every few requests, and every tenth of those
  collections the next generation, and now and then the whole unfrozen heap (the
  memos and the models loaded after start). Measured on ``bench_deploy_route.py``'s
  model path: 6-11 µs of a 105-130 µs request in collections, more with two versions
  served (more of the heap unfrozen); with 10,000, 1.4-2 µs. The objects a request makes
  die with it by reference counting; only cycles wait for a collection, a few more
  thousand allocations longer (``KEEL_SERVING_GC_THRESHOLD``).

Each is set by the first gateway to start and restored by the last to stop (see
``Gateway.start`` and ``close``).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable

__all__ = ["ProcessSetting", "gc_threshold", "heap_frozen", "switch_interval"]


class ProcessSetting:
    """A process-wide setting while gateways run: set by the first, restored by the last
    to stop (several gateways may share one process, as in the tests); of the values
    asked for, ``pick`` chooses the one that stands."""

    def __init__(
        self,
        read: Callable[[], float],
        write: Callable[[float], None],
        pick: Callable[[float, float], float],
    ) -> None:
        self.users = 0
        self._read, self._write, self._pick = read, write, pick
        self.before = read()
        self._lock = threading.Lock()

    def hold(self, value: float) -> None:
        """Run with ``value`` (or what ``pick`` prefers of it and the current one) until
        :meth:`release`."""
        with self._lock:
            if self.users == 0:
                self.before = self._read()
            self.users += 1
            self._write(self._pick(value, self._read()))

    def release(self) -> None:
        """One holder stopped; the last one restores the value found by the first."""
        with self._lock:
            self.users -= 1
            if self.users == 0:
                self._write(self.before)


def _set_first_threshold(value: float) -> None:
    gc.set_threshold(int(value), *gc.get_threshold()[1:])


def _freeze_heap(value: float) -> None:
    if value:
        gc.collect()  # garbage frozen would never be collected
        gc.freeze()
    else:
        gc.unfreeze()


#: Whether the heap is frozen (1) while gateways run; the last to stop unfreezes it.
heap_frozen = ProcessSetting(lambda: float(gc.get_freeze_count() > 0), _freeze_heap, max)
#: The process's switch interval (seconds) while gateways run: the shortest asked for.
switch_interval = ProcessSetting(sys.getswitchinterval, sys.setswitchinterval, min)
#: The collector's first-generation threshold while gateways run: the largest asked for.
gc_threshold = ProcessSetting(lambda: gc.get_threshold()[0], _set_first_threshold, max)
