"""The shadow counts are read from another thread (the replica report) while the event
loop adds to them: a read must never see the dict change size under it."""

from __future__ import annotations

import sys
import threading
from types import SimpleNamespace
from typing import Any

from keel.serving.shadow import ShadowQueue

# Enough new keys that an unlocked copy meets a resize (it did at 15,000 in 5 of 5 runs);
# the copies grow with the dict, so the test's time grows with the square of this.
N_KEYS = 15_000


def test_counts_read_from_another_thread_while_new_keys_arrive() -> None:
    queue = ShadowQueue(SimpleNamespace(deployments=None))  # type: ignore[arg-type]
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                queue.counts_of("d")
                queue.describe()
            except RuntimeError as exc:  # "dictionary changed size during iteration"
                errors.append(exc)
                return
            reads += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to expose the race
    readers = [threading.Thread(target=read) for _ in range(2)]
    try:
        for thread in readers:
            thread.start()
        # Every arm name is new: each count inserts a key, growing the dict being copied.
        for i in range(N_KEYS):
            queue._count("d", f"arm{i}", "answered")
    finally:
        stop.set()
        for thread in readers:
            thread.join()
        sys.setswitchinterval(interval)
    assert not errors, errors[0]
    assert reads > 0
    counts: dict[str, Any] = queue.counts_of("d")
    assert len(counts) == N_KEYS and set(counts.values()) == {1}
