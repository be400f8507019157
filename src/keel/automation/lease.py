"""A running job's heartbeat: renew its lease, and notice its cancellation.

``keel jobs cancel`` (any process) only marks the job row ``cancelled``; the worker
running the attempt learns it here. The heartbeat reads the row's status every
:data:`CANCEL_POLL_S` (one indexed read of one row) and renews the lease every third of
it; once the row says ``cancelled`` it sets the attempt's cancel event, which the
executors watch (:func:`keel.executors.cancel_scope`): a process fit is killed, a Ray
task cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from keel.errors import NotFound

__all__ = ["CANCEL_POLL_S", "heartbeat"]

log = logging.getLogger("keel.jobs")

#: How often a running attempt looks for its cancellation (seconds).
CANCEL_POLL_S = 1.0


@contextmanager
def heartbeat(
    store: Any,
    job_id: str,
    worker: str,
    lease_ms: int,
    clock: Callable[[], int],
    cancel: threading.Event,
) -> Iterator[None]:
    """While the block runs: renew the lease every third of it, and set ``cancel`` once
    the job is cancelled. The heartbeat stops when the job is no longer ours."""
    stop = threading.Event()
    renew_every = lease_ms / 3000

    def beat() -> None:
        renewed = time.monotonic()
        while not stop.wait(min(renew_every, CANCEL_POLL_S)):
            try:
                status = store.get_job(job_id, with_logs=False).status
            except NotFound:  # deleted meanwhile: nothing left to renew
                return
            except Exception:  # a database blip: look again at the next beat
                log.exception("could not read the status of job %s", job_id)
                continue
            if status == "cancelled":
                cancel.set()
                return
            if time.monotonic() - renewed < renew_every:
                continue
            try:
                if not store.renew_lease(job_id, worker, clock() + lease_ms):
                    return  # no longer ours (re-delivered after the lease expired)
                renewed = time.monotonic()
            except Exception:  # a database blip: try again at the next beat
                log.exception("could not renew the lease of job %s", job_id)

    thread = threading.Thread(target=beat, name=f"keel-lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
