"""The durable prediction log: a background writer turning served predictions into Parquet.

Layout (``docs/serving.md`` "Layout and schema" has the columns): Hive-style partitions
under ``Settings.prediction_log_dir``, so a reader of one version's window opens only
that version's files for those hours::

    model=<url-quoted name>/version=<v>/date=YYYY-MM-DD/hour=HH/part-<ms>-<pid>-<seq>.parquet

Features are flat ``f_<feature>`` columns, not one struct or JSON column: monitoring asks
per-feature questions ("KS of ``tenure`` over the last hour"), and a flat column is its
own column chunk with its own statistics. Each model version has one feature schema, kept
by the writer (the first values' types, or :meth:`PredictionLog.set_signature`), widened
(integer → double → text) when later values do not fit; readers use ``union_by_name``.

Writes
------
:meth:`PredictionLog.append` (one record) and :meth:`PredictionLog.append_served` (one
gateway request, :class:`~keel.serving.records.ServedRequest`) put the item on an
in-memory buffer and return: no I/O, no lock, never an exception (a bad item is counted
and dropped, like one beyond ``max_queue``; ``keel_prediction_log_records_total``). A
single writer thread (datasette's one write connection fed by a queue) drains the buffer
and writes one segment per partition: temporary file, fsync, rename, fsync of the
directory, so a reader never sees a half file. A compactor thread
(``compact_interval_s``) merges the many small segments (:mod:`keel.serving.predquery`).

Two durability modes (#15.11):

- ``flush_interval_s`` > 0 (default 0.5 s): the writer wakes that often (sooner when
  ``max_batch`` items wait). On ``kill -9`` the predictions appended during the last
  interval, plus the write in progress, are lost (tested with a real server in
  ``tests/serving/test_predlog_durability.py``).
- ``flush_interval_s`` = 0, group commit: the writer wakes on every append, and
  :meth:`PredictionLog.append_durable` returns the :class:`~keel.serving._commit.CommitGroup`
  of the item: the gateway answers only once that group is on disk. Requests appended
  while a write is in progress share the next one (one fsync for many requests).

A clean exit (:meth:`PredictionLog.close`, also run ``atexit``) loses nothing.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from prometheus_client import Counter

from keel.errors import InvalidInput
from keel.serving._batches import HOUR_MS, group_batch, group_rows, rows_of, write_group
from keel.serving._commit import REFUSED, CommitGroup
from keel.serving._segments import (
    BASE_SCHEMA,
    FEATURE_PREFIX,
    SIGNATURE_TYPES,
    iter_partitions,
    log_root,
    partition_dir,
    write_segment,
)
from keel.serving.records import PredictionRecord, ServedRequest

if TYPE_CHECKING:
    from keel.config import Settings

__all__ = [
    "BASE_SCHEMA",
    "FEATURE_PREFIX",
    "PredictionLog",
    "PredictionLogStats",
    "iter_partitions",
    "log_root",
    "partition_dir",
    "write_segment",
]

logger = logging.getLogger(__name__)

RECORDS = Counter(
    "keel_prediction_log_records_total",
    "Prediction-log records by outcome (written, dropped_full, dropped_closed, invalid, failed)",
    ["outcome"],
)
SEGMENTS = Counter("keel_prediction_log_segments_total", "Prediction-log segment files written")


@dataclass(frozen=True, slots=True)
class PredictionLogStats:
    """Counts since the log was opened (``pending`` = records waiting for the writer)."""

    written: int
    segments: int
    dropped_full: int
    dropped_closed: int
    invalid: int
    failed: int
    pending: int


class PredictionLog:
    """Append-only, batched, durable log of served predictions (see the module docstring).

    ``root`` is the log directory itself (the one holding ``model=…`` directories);
    :meth:`from_settings` picks it from :class:`~keel.config.Settings`.
    ``compact_interval_s`` > 0 starts a second thread that merges, that often, the small
    segments this log wrote (see :func:`keel.serving.predquery.compact`); it is off by
    default here and on (300 s) through :meth:`from_settings`.
    """

    def __init__(
        self,
        root: Path,
        *,
        flush_interval_s: float = 0.5,
        max_batch: int = 10_000,
        max_queue: int = 100_000,
        fsync: bool = True,
        compact_interval_s: float = 0.0,
    ) -> None:
        if compact_interval_s < 0:
            raise InvalidInput("compact_interval_s must be >= 0", field="compact_interval_s")
        if not 0 <= flush_interval_s <= 60:
            raise InvalidInput("flush_interval_s must be in [0, 60]", field="flush_interval_s")
        if max_batch < 1:
            raise InvalidInput("max_batch must be at least 1", field="max_batch")
        if max_queue < max_batch:
            raise InvalidInput("max_queue must be at least max_batch", field="max_queue")
        self.root = Path(root)
        self.flush_interval_s = flush_interval_s
        #: 0 s: each answer waits for its rows to be durable (:meth:`append_durable`).
        self.group_commit = flush_interval_s == 0
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.fsync = fsync
        self._buffer: deque[PredictionRecord | ServedRequest] = deque()
        # Rows beyond one per buffered item (multi-row requests), so that ``max_queue``
        # bounds rows: changed under ``_lock``, read without it.
        self._extra_rows = 0
        self._wake = threading.Event()
        self._flush_requests: list[threading.Event] = []
        self._lock = threading.Lock()  # counters and flush requests, never taken by append
        # Buffering a durable append and reading its group is one step, and so is the
        # writer's drain with its group swap: a group holds exactly the items it writes.
        self._group_lock = threading.Lock()
        self._group = CommitGroup()
        self._closed = False
        self._counts = dict.fromkeys(
            ("written", "segments", "dropped_full", "dropped_closed", "invalid", "failed"), 0
        )
        self._schemas: dict[tuple[str, int], dict[str, pa.DataType]] = {}
        self._touched: set[Path] = set()  # partitions written since the last compaction
        self.compact_interval_s = compact_interval_s
        self._stop_compactor = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keel-prediction-log", daemon=True)
        self._thread.start()
        self._compactor: threading.Thread | None = None
        if compact_interval_s > 0:
            self._compactor = threading.Thread(
                target=self._compact_loop, name="keel-prediction-log-compactor", daemon=True
            )
            self._compactor.start()
        atexit.register(self.close)

    @classmethod
    def from_settings(cls, settings: Settings) -> PredictionLog:
        """A log at :func:`log_root` with the ``prediction_log_*`` settings."""
        return cls(
            log_root(settings),
            flush_interval_s=settings.prediction_log_flush_interval_s,
            max_batch=settings.prediction_log_max_batch,
            max_queue=settings.prediction_log_max_queue,
            fsync=settings.prediction_log_fsync,
            compact_interval_s=settings.prediction_log_compact_interval_s,
        )

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- caller side: must stay cheap and never raise ------------------------------------
    def append(self, record: PredictionRecord) -> None:
        """Queue one record for the writer; drops (and counts) instead of blocking or raising."""
        try:
            if type(record) is not PredictionRecord:
                self._count("invalid")
            else:
                self._enqueue(record, 1)
        except Exception:  # never into the response path
            logger.exception("prediction log append failed")

    def append_served(self, served: ServedRequest) -> None:
        """Queue one request's rows at once (the gateway's way in; see :class:`ServedRequest`).

        Like :meth:`append`, it never blocks or raises; ``max_queue`` counts the rows.
        """
        try:
            if type(served) is not ServedRequest:
                self._count("invalid")
            else:
                self._enqueue(served, len(served.outputs))
        except Exception:  # never into the response path
            logger.exception("prediction log append failed")

    def append_durable(self, served: ServedRequest) -> CommitGroup:
        """Queue one request's rows; the returned group finishes once they are on disk.

        For :attr:`group_commit` logs: the caller waits on the group
        (:meth:`CommitGroup.wait_async`) before answering. A refused request (log closed,
        buffer full, not a :class:`ServedRequest`) gets a group finished unwritten; like
        :meth:`append`, it never blocks or raises.
        """
        try:
            if type(served) is not ServedRequest:
                self._count("invalid")
                return REFUSED
            with self._group_lock:
                if not self._enqueue(served, len(served.outputs)):
                    return REFUSED
                return self._group
        except Exception:  # never into the response path
            logger.exception("prediction log append failed")
            return REFUSED

    def _enqueue(self, item: PredictionRecord | ServedRequest, rows: int) -> bool:
        """Buffer ``item`` (True), or count it dropped (False)."""
        if self._closed:
            self._count("dropped_closed", rows)
            return False
        if len(self._buffer) + self._extra_rows + rows > self.max_queue:
            self._count("dropped_full", rows)
            return False
        if rows > 1:
            with self._lock:
                self._extra_rows += rows - 1
        self._buffer.append(item)  # deque.append is atomic under the GIL
        if (self.group_commit or len(self._buffer) >= self.max_batch) and not self._wake.is_set():
            self._wake.set()
        return True

    def set_signature(self, model: str, version: int, signature: Mapping[str, Any]) -> None:
        """Fix the feature column types of ``model`` v``version`` from its model signature."""
        columns = signature.get("inputs") or []
        types = {
            str(c["name"]): SIGNATURE_TYPES[c["type"]]
            for c in columns
            if isinstance(c, dict) and c.get("type") in SIGNATURE_TYPES
        }
        with self._lock:
            self._schemas[(model, int(version))] = types

    @property
    def stats(self) -> PredictionLogStats:
        """Written, dropped and pending record counts."""
        with self._lock:
            return PredictionLogStats(**self._counts, pending=len(self._buffer) + self._extra_rows)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything appended before this call; False if that took over ``timeout_s``."""
        if not self._thread.is_alive():
            return not self._buffer
        done = threading.Event()
        with self._lock:
            self._flush_requests.append(done)
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop accepting records, write what is buffered, stop the writer. Idempotent."""
        atexit.unregister(self.close)
        self._closed = True
        self._stop_compactor.set()
        if self._compactor is not None and threading.current_thread() is not self._compactor:
            self._compactor.join(timeout_s)
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        if not self._thread.is_alive() and self._buffer:
            # Appended in the instant between the closed check and the writer's last drain.
            self._count("dropped_closed", len(self._buffer) + self._extra_rows)
            self._buffer.clear()
            self._extra_rows = 0
        if not self._thread.is_alive():
            self._group.finish(False)  # its waiters answer 503 instead of waiting

    def _count(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._counts[outcome] += n
        RECORDS.labels(outcome).inc(n)

    # ---- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s or None)  # 0: group commit, woken per append
            self._wake.clear()
            closing = self._closed
            with self._lock:
                requests, self._flush_requests = self._flush_requests, []
            # Only what is buffered now: under overload the flush requests still complete.
            # Taken with the group swap, so the group holds exactly the items written next.
            with self._group_lock:
                waiting = len(self._buffer)
                group, self._group = self._group, CommitGroup()
            written = True
            while waiting > 0:
                batch = self._take(min(waiting, self.max_batch))
                if not batch:
                    break
                waiting -= len(batch)
                try:
                    written = self._write_batch(batch) and written
                except Exception:  # the writer thread must outlive any one bad batch
                    lost = sum(rows_of(item) for item in batch)
                    logger.exception("prediction log: batch of %d records lost", lost)
                    self._count("failed", lost)
                    written = False
            group.finish(written)
            for request in requests:
                request.set()
            if closing and not self._buffer:
                return

    def _take(self, limit: int) -> list[PredictionRecord | ServedRequest]:
        """Up to ``limit`` rows' worth of buffered items (at least one item)."""
        batch: list[PredictionRecord | ServedRequest] = []
        pop = self._buffer.popleft
        rows = extra = 0
        try:
            while rows < limit:
                item = pop()
                batch.append(item)
                n = rows_of(item)
                rows += n
                extra += n - 1
        except IndexError:
            pass
        if extra:
            with self._lock:
                self._extra_rows -= extra
        return batch

    def _write_batch(self, batch: list[PredictionRecord | ServedRequest]) -> bool:
        """Write one segment per partition of ``batch``; True if every row was written."""
        groups, invalid = group_batch(batch)
        if invalid:
            self._count("invalid", invalid)
        complete = not invalid
        for key, items in groups.items():
            rows = group_rows(key, items)
            try:
                folder = partition_dir(self.root, key[0], key[1], key[2] * HOUR_MS)
            except (ValueError, OverflowError, OSError):
                self._count("invalid", rows)
                complete = False
                continue
            try:
                with self._lock:
                    schema = self._schemas.setdefault(key[:2], {})
                write_group(key, items, schema, folder, fsync=self.fsync)
            except Exception:
                # Disk full, permissions, a value Arrow cannot hold: the log must not kill
                # the writer thread; the loss is counted and logged.
                logger.exception("prediction log: could not write %d records", rows)
                self._count("failed", rows)
                complete = False
                continue
            self._count("written", rows)
            self._count("segments")
            SEGMENTS.inc()
            if self._compactor is not None:
                with self._lock:
                    self._touched.add(folder)
        return complete

    def _compact_loop(self) -> None:
        """Every ``compact_interval_s``, merge the small segments of the hours written to."""
        from keel.serving.predquery import compact

        while not self._stop_compactor.wait(self.compact_interval_s):
            with self._lock:
                touched, self._touched = sorted(self._touched), set()
            try:
                compact(self.root, include_open=True, partitions=touched, fsync=self.fsync)
            except Exception:  # maintenance must never take the log down
                logger.exception("prediction log: compaction failed")
                with self._lock:
                    self._touched.update(touched)  # try again next time
