"""Batched audit writes: requests queue entries, one thread commits them in batches.

A request hands its entry to :meth:`AuditWriter.submit` (a queue put, a few
microseconds) and answers at once; one writer thread inserts everything queued
since its last commit in a single transaction. Waiting for that commit cost
each mutating call ~0.2 ms of cross-thread signalling plus the commit itself
(~0.6 ms on SQLite), a third of ``log_metric``'s latency, so the API does not
wait. The writer lingers 10 ms after the first entry of a batch so that
concurrent calls share a commit. The price: entries still queued when the
process is killed with ``kill -9`` are lost — the calls of the last ~10 ms plus
the commit in progress. Changes whose audit must never be lost (alias moves,
users, tokens) are written in the same transaction as the change instead
(:mod:`keel.store.sql.auth`). A clean shutdown commits everything queued.

When the database refuses the batch (:class:`~keel.errors.Unavailable`: its disk is
full, it is down or locked) the entries are kept, at most ``max_queue`` of them (the
oldest dropped beyond, counted in ``dropped``), and retried every ``retry_s`` seconds;
one warning line says so when the outage starts and one info line when the kept entries
are written. Any other error is a bug in an entry: that batch is logged and dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from keel.auth.models import AuditEntry
from keel.errors import Unavailable

__all__ = ["AuditWriter"]

log = logging.getLogger("keel.audit")

_STOP = object()


class AuditWriter:
    """Background writer of audit entries; ``append`` persists a batch in one transaction."""

    def __init__(
        self,
        append: Callable[[Sequence[AuditEntry]], None],
        *,
        max_batch: int = 500,
        max_queue: int = 100_000,
        linger_s: float = 0.01,
        retry_s: float = 1.0,
    ) -> None:
        self._append = append
        self._max_batch = max_batch
        self._max_queue = max_queue
        self._linger_s = linger_s
        self._retry_s = retry_s
        self.dropped = 0
        #: Entries the database refused (full disk, down), retried before new ones.
        self._kept: list[AuditEntry] = []
        self._failing_since: float | None = None
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, entry: AuditEntry) -> None:
        """Queue ``entry`` for the next batch (never blocks the caller)."""
        if self._thread is None:
            self._ensure_thread()
        if self._queue.qsize() >= self._max_queue:
            # the database is gone or far too slow: bound memory, count the loss
            self.dropped += 1
            log.error("audit queue full (%d); entry dropped: %s", self._max_queue, entry)
            return
        self._queue.put((entry, None))

    def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        if self._thread is not None:
            marker: Future[None] = Future()
            self._queue.put((None, marker))
            marker.result()

    def close(self) -> None:
        """Commit what is queued and stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=30)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="keel-audit-writer", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = self._next_batch()
            if _STOP in batch:
                stop = True
            items = [item for item in batch if isinstance(item, tuple)]
            entries = [entry for entry, _ in items if entry is not None]
            error = self._write(entries, final=stop)
            for _, future in items:
                if future is None:
                    continue
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

    def _next_batch(self) -> list[object]:
        """Up to ``max_batch`` queued items; while entries are kept, at most ``retry_s``
        of waiting so they are retried without new traffic."""
        try:
            first = self._queue.get(timeout=self._retry_s if self._kept else None)
        except queue.Empty:
            return []
        batch = [first]
        if self._linger_s and isinstance(first, tuple) and first[1] is None:
            # let concurrent requests join this batch: one commit instead of many
            time.sleep(self._linger_s)
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, entries: list[AuditEntry], *, final: bool) -> BaseException | None:
        """Commit the kept entries and ``entries``; on a database refusal keep them."""
        pending = self._kept + entries
        if not pending:
            return None
        try:
            self._append(pending)
        except Unavailable as exc:  # full disk, database down: the entries are fine, keep them
            self._keep(pending, exc, final)
            return exc
        except Exception as exc:  # an entry the store cannot take: retrying cannot help
            log.exception("audit write of %d entries failed; dropped", len(pending))
            self._kept = []
            self.dropped += len(pending)
            return exc
        if self._failing_since is not None:
            log.info(
                "audit: wrote %d kept entries; the database took writes again after %.0f s",
                len(pending),
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
        self._kept = []
        return None

    def _keep(self, pending: list[AuditEntry], exc: Unavailable, final: bool) -> None:
        excess = len(pending) - self._max_queue
        if excess > 0:
            self.dropped += excess
            pending = pending[excess:]  # the oldest go first: memory stays bounded
        self._kept = pending
        if final:
            log.error("audit: %d entries not written at shutdown: %s", len(pending), exc.message)
        elif self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "audit: the database refused %d entries (%s); keeping up to %d and "
                "retrying every %g s",
                len(pending),
                exc.message,
                self._max_queue,
                self._retry_s,
            )
