"""The durable prediction log: a background writer turning served predictions into Parquet.

Layout
------
One directory tree per log root (``Settings.prediction_log_dir``, default
``<artifact_root>/predictions``), partitioned Hive-style so a reader of one model version's
window opens only that version's files for those hours::

    model=<url-quoted name>/version=<v>/date=YYYY-MM-DD/hour=HH/part-<ms>-<pid>-<seq>.parquet

``date`` and ``hour`` are the UTC time of the prediction (``PredictionRecord.at_ms``).
DuckDB's ``read_parquet(..., hive_partitioning=true)`` URL-decodes the model name back.

Columns of a segment: ``ts`` (timestamp, ms, UTC), ``request_id``, ``deployment``, ``arm``,
``entity_key``, ``output``, ``probabilities`` (list of double), ``latency_ms``, ``cached``,
``fallback``, ``extra`` (JSON text), then one column ``f_<feature>`` per input feature.
Features are flat columns, not one struct or JSON column, because monitoring asks
per-feature questions ("KS of ``tenure`` over the last hour"): a flat column is its own
Parquet column chunk with its own min/max statistics, so DuckDB reads just that column
and the query needs no struct or JSON extraction. The ``f_`` prefix keeps feature names
from colliding with the fixed columns. Each model version has one feature schema, kept by
the writer: the types of the first values seen (or :meth:`PredictionLog.set_signature`),
widened (integer → double → text) if later values do not fit; readers use
``union_by_name`` so segments written before a widening still line up.

Writes and the loss window
--------------------------
:meth:`PredictionLog.append` puts the record on an in-memory buffer and returns: no I/O,
no lock, never an exception (a bad record is counted and dropped, like a full buffer).
The gateway uses :meth:`PredictionLog.append_served` instead: one
:class:`~keel.serving.records.ServedRequest` per request, whose rows the writer turns
into columns directly (a record and a features dict per row cost a cache hit about
as much as answering it).
A single writer thread (datasette's one write connection fed by a queue) wakes every
``flush_interval_s`` (sooner when ``max_batch`` records wait), converts the batch to
Arrow and writes one segment per partition: temporary file, fsync, rename, fsync of the
directory. A reader lists only ``*.parquet`` names, so it never sees a half file.

When the buffer holds ``max_queue`` records, further appends are dropped, never blocked:
each drop is counted in :attr:`PredictionLog.stats` and in the Prometheus counter
``keel_prediction_log_records_total{outcome="dropped_full"}``.

Each flush makes one segment per partition, so steady traffic makes many small files
(7,200 an hour at 0.5 s); a compactor thread (``compact_interval_s``, default 300 s
through the settings) merges them into one ``compact-`` file per pass, and the closed
hour into one file (:mod:`keel.serving.predquery`).

On ``kill -9`` the records not yet written are lost: those appended during the last
``flush_interval_s`` plus the time of the write in progress, i.e. about 0.5 s at the
default settings as long as the writer keeps up (tested with a real process in
``tests/serving/test_predlog.py``). A clean exit (:meth:`close`, also run ``atexit``)
loses nothing.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from prometheus_client import Counter

from keel.errors import InvalidInput
from keel.serving._segments import (
    BASE_SCHEMA,
    FEATURE_PREFIX,
    SIGNATURE_TYPES,
    iter_partitions,
    log_root,
    partition_dir,
    records_to_table,
    served_to_table,
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
_sequence = itertools.count()
_HOUR_MS = 3_600_000


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


def _one_group(batch: list[Any]) -> dict[tuple[Any, ...], list[Any]] | None:
    """``{key: batch}`` when every item is a gateway request of one model, version, hour
    and feature layout (the usual batch); None when the batch must be grouped item by item.

    The checks run in C (``map``, ``set``): a Python loop over the batch cost about a
    microsecond a request in the serving interpreter, as much as converting it.
    """
    if not batch or set(map(type, batch)) != {ServedRequest}:
        return None
    first = batch[0]
    if (
        type(first.model) is not str
        or type(first.version) is not int
        or len(set(map(attrgetter("model"), batch))) != 1
        or len(set(map(attrgetter("version"), batch))) != 1
        or len(set(map(id, map(attrgetter("columns"), batch)))) != 1  # one layout object
    ):
        return None
    times = list(map(attrgetter("at_ms"), batch))
    if set(map(type, times)) != {int}:
        return None
    hour = min(times) // _HOUR_MS
    if max(times) // _HOUR_MS != hour:
        return None
    return {(first.model, first.version, hour, tuple(first.columns)): batch}


def _rows(item: PredictionRecord | ServedRequest) -> int:
    """How many predictions a buffered item holds."""
    return len(item.outputs) if type(item) is ServedRequest else 1


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
        if not 0 < flush_interval_s <= 60:
            raise InvalidInput("flush_interval_s must be in (0, 60]", field="flush_interval_s")
        if max_batch < 1:
            raise InvalidInput("max_batch must be at least 1", field="max_batch")
        if max_queue < max_batch:
            raise InvalidInput("max_queue must be at least max_batch", field="max_queue")
        self.root = Path(root)
        self.flush_interval_s = flush_interval_s
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

    def _enqueue(self, item: PredictionRecord | ServedRequest, rows: int) -> None:
        if self._closed:
            self._count("dropped_closed", rows)
        elif len(self._buffer) + self._extra_rows + rows > self.max_queue:
            self._count("dropped_full", rows)
        else:
            if rows > 1:
                with self._lock:
                    self._extra_rows += rows - 1
            self._buffer.append(item)  # deque.append is atomic under the GIL
            if len(self._buffer) >= self.max_batch and not self._wake.is_set():
                self._wake.set()

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

    def _count(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._counts[outcome] += n
        RECORDS.labels(outcome).inc(n)

    # ---- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            closing = self._closed
            with self._lock:
                requests, self._flush_requests = self._flush_requests, []
            # Only what is buffered now: under overload the flush requests still complete.
            waiting = len(self._buffer)
            while waiting > 0:
                batch = self._take(min(waiting, self.max_batch))
                if not batch:
                    break
                waiting -= len(batch)
                try:
                    self._write_batch(batch)
                except Exception:  # the writer thread must outlive any one bad batch
                    lost = sum(_rows(item) for item in batch)
                    logger.exception("prediction log: batch of %d records lost", lost)
                    self._count("failed", lost)
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
                n = _rows(item)
                rows += n
                extra += n - 1
        except IndexError:
            pass
        if extra:
            with self._lock:
                self._extra_rows -= extra
        return batch

    def _write_batch(self, batch: list[PredictionRecord | ServedRequest]) -> None:
        # Group by (model, version, hour) with integer keys: building the directory path per
        # record (datetime, quoting) would cost more than converting the record. Whole
        # requests group further by their feature columns, each group its own segment.
        single = _one_group(batch)
        groups: dict[tuple[Any, ...], list[Any]] = single if single is not None else {}
        for item in batch if single is None else ():
            try:
                key: tuple[Any, ...] = (
                    str(item.model),
                    int(item.version),
                    int(item.at_ms) // _HOUR_MS,
                )
            except (TypeError, ValueError, OverflowError):
                self._count("invalid", _rows(item))
                continue
            if type(item) is ServedRequest:
                key += (tuple(item.columns),)
            groups.setdefault(key, []).append(item)
        for key, items in groups.items():
            model, version, hour = key[:3]
            if len(key) > 3:  # whole requests: their rows counted in C
                rows = sum(map(len, map(attrgetter("outputs"), items)))
            else:
                rows = len(items)
            try:
                folder = partition_dir(self.root, model, version, hour * _HOUR_MS)
            except (ValueError, OverflowError, OSError):
                self._count("invalid", rows)
                continue
            try:
                with self._lock:
                    schema = self._schemas.setdefault((model, version), {})
                to_table = served_to_table if len(key) > 3 else records_to_table
                table = to_table(model, version, items, schema)
                name = f"part-{items[0].at_ms}-{os.getpid()}-{next(_sequence):06d}.parquet"
                write_segment(table, folder, name, fsync=self.fsync)
            except Exception:
                # Disk full, permissions, a value Arrow cannot hold: the log must not kill
                # the writer thread; the loss is counted and logged.
                logger.exception("prediction log: could not write %d records", rows)
                self._count("failed", rows)
                continue
            self._count("written", rows)
            self._count("segments")
            SEGMENTS.inc()
            if self._compactor is not None:
                with self._lock:
                    self._touched.add(folder)

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
