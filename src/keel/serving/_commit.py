"""Group commit for the prediction log: requests appended together are made durable together.

With ``KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0`` each answer waits until its rows are on
disk (#15.11). One fsync per request would cap serving at the disk's fsync rate, so the
log's writer thread drains everything appended while it was busy, writes it as one
segment per partition, and then tells every request of that drain at once: a
:class:`CommitGroup` is the set of requests of one drain. The busier the gateway, the
more requests share each write.
"""

from __future__ import annotations

import asyncio
import threading

__all__ = ["REFUSED", "CommitGroup"]


def _settle(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


class CommitGroup:
    """The requests of one writer drain; :meth:`finish` tells them whether it was written.

    Waiters on event loops share one future per loop (one thread-safe call per loop and
    drain, not one per request); threads wait on an event.
    """

    __slots__ = ("_event", "_futures", "_lock", "_ok")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._ok: bool | None = None
        self._futures: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []

    @property
    def ok(self) -> bool | None:
        """True once written, False if the write failed or was refused, None while pending."""
        return self._ok

    async def wait_async(self) -> bool:
        """Wait (without blocking the loop) until the group is finished; True if written."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._ok is not None:
                return self._ok
            future = next((f for owner, f in self._futures if owner is loop), None)
            if future is None:
                future = loop.create_future()
                self._futures.append((loop, future))
        # shield: a waiter that times out or is cancelled must not cancel the others' future
        return await asyncio.shield(future)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block this thread until the group is finished; False if not written by then."""
        self._event.wait(timeout_s)
        return self._ok is True

    def finish(self, ok: bool) -> None:
        """Record the outcome and wake every waiter (called once, by the writer thread)."""
        with self._lock:
            self._ok = ok
            futures, self._futures = self._futures, []
        self._event.set()
        for loop, future in futures:
            try:
                loop.call_soon_threadsafe(_settle, future, ok)
            except RuntimeError:  # that loop is closed: nobody is waiting on it any more
                pass


#: The group of an append the log refused (closed, full or invalid): finished, not written.
REFUSED = CommitGroup()
REFUSED.finish(False)
