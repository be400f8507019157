"""Reading and compacting the prediction log (layout: :mod:`keel.serving.predlog`).

Queries prune partitions before DuckDB sees a file: only the ``model=``/``version=``
directories asked for, and only the ``date=``/``hour=`` directories that overlap the
window, are listed. DuckDB then reads those files with ``hive_partitioning=true`` (the
model and version columns come from the directory names) and ``union_by_name=true``.
The listing lives in :mod:`keel.serving._logfiles`; :func:`query_log` lets another module
join the window's files in its own query.

Compaction merges the segments of a closed hour (its end more than ``grace_s`` ago) into
one file ``compact-….parquet``, written atomically. Its footer lists the files it
replaces (``keel.compacted_from``); readers skip those names, so a crash between the
rename and the deletion of the inputs never double-counts a prediction, and the next
compaction deletes the leftovers. A file lock serialises compactions of one hour. In an
hour still being written (``include_open``, the log's own compactor thread) only the small
``part-`` segments are merged, so earlier merged files are not rewritten as the hour grows.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from keel._durations import parse_time  # re-exported: callers import it from here
from keel.config import Settings
from keel.errors import InvalidInput
from keel.serving._logfiles import (
    COMPACTED_FROM,
    HOUR,
    CorruptSegmentWarning,
    hour_partitions,
    hour_start,
    live_files,
    readable,
    segment_files,
)
from keel.serving._segments import BASE_SCHEMA, log_root, write_segment

__all__ = [
    "COMPACTED_FROM",
    "CompactionReport",
    "CorruptSegmentWarning",
    "LogQuery",
    "compact",
    "parse_time",
    "predictions",
    "query_log",
    "segment_files",
]

_HIVE_TYPES = "{'model': VARCHAR, 'version': BIGINT, 'date': DATE, 'hour': INTEGER}"


def predictions(
    model: str | None = None,
    version: int | None = None,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    *,
    settings: Settings | None = None,
    columns: Sequence[str] | None = None,
    limit: int | None = None,
    root: Path | None = None,
    deployment: str | None = None,
    arm: str | None = None,
    newest: bool = False,
    ordered: bool = True,
) -> pa.Table:
    """Logged predictions in ``[start, end)`` as an Arrow table, oldest first.

    Columns: ``model``, ``version``, ``ts`` (UTC), the fixed columns of
    :data:`keel.serving.predlog.BASE_SCHEMA`, ``output`` and one ``f_<feature>`` column
    per feature; ``columns`` selects a subset (the partition pruning and Parquet column
    pruning make a one-feature query over one version cheap). ``.to_pandas()`` gives a
    DataFrame. Times: see :func:`parse_time`. Files that are not complete Parquet files
    are skipped with a :class:`CorruptSegmentWarning`. ``deployment`` and ``arm`` keep the
    rows served through that deployment / arm; with ``newest`` the ``limit`` keeps the
    newest rows of the window (still returned oldest first). ``ordered=False`` returns the
    rows in log order instead (hour by hour, each file as written: deterministic, nearly
    sorted, and without sorting a million rows, for statistics that ignore the order).
    """
    if limit is not None and limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    order = "ORDER BY ts" if ordered else ""
    if newest and limit:
        order = "ORDER BY ts DESC"
    suffix = f" LIMIT {int(limit)}" if limit else ""
    # The log's subquery holds only the columns asked for: ordering by time, or picking
    # the newest rows, needs ts, so it is read too and dropped again below.
    extra_ts = bool(columns) and "ts" not in (columns or ()) and bool(order)
    read = [*(columns or ()), "ts"] if extra_ts else columns

    def run(con: duckdb.DuckDBPyConnection, source: str, params: dict[str, Any]) -> pa.Table:
        found: pa.Table = con.sql(
            f"SELECT * FROM {source} {order}{suffix}", params=params
        ).to_arrow_table()
        return found

    found = query_log(
        run,
        model,
        version,
        start,
        end,
        settings=settings,
        root=root,
        columns=read,
        deployment=deployment,
        arm=arm,
    )
    if found is None:
        return _empty(columns)
    if newest and limit:
        # typed indices: an empty Python list is of type null, which take() has no kernel for
        found = found.take(pa.array(range(found.num_rows - 1, -1, -1), type=pa.int64()))
    if extra_ts:
        found = found.drop_columns(["ts"])
    return _ordered(found)


#: ``run(con, source, params)`` of :func:`query_log`.
LogQuery = Callable[[duckdb.DuckDBPyConnection, str, dict[str, Any]], pa.Table]


def query_log(
    run: LogQuery,
    model: str | None = None,
    version: int | None = None,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    *,
    settings: Settings | None = None,
    root: Path | None = None,
    columns: Sequence[str] | None = None,
    deployment: str | None = None,
    arm: str | None = None,
) -> pa.Table | None:
    """``run(con, source, params)`` over the predictions logged in ``[start, end)``, in one
    DuckDB query of the caller's: how a reader joins the log with other data (the feedback's
    labels) without first materialising :func:`predictions` and reading it a second time.

    ``source`` is a parenthesised SQL subquery of the window's rows (``model``, ``version``
    and the logged columns, or ``columns`` of them); ``params`` are its parameters, which
    ``run`` passes to DuckDB with its own (names other than ``files``, ``start``, ``end``,
    ``deployment`` and ``arm``). None when no complete file covers the window. When a file
    vanishes meanwhile (compaction) or is corrupt inside, ``run`` is called again, on a new
    connection, over the files listed anew; an unknown column is an InvalidInput naming
    ``columns``.
    """
    start_at, end_at = parse_time(start, "start"), parse_time(end, "end")
    if start_at and end_at and start_at >= end_at:
        raise InvalidInput("start must be before end", field="start")
    base = root if root is not None else log_root(settings or Settings())
    files = segment_files(base, model, version, start_at, end_at)
    if not files:
        return None
    if columns:
        select = ", ".join(_quoted(c) for c in dict.fromkeys(("model", "version", *columns)))
    else:
        select = "model, version, * EXCLUDE (model, version, date, hour)"
    where, params = ["TRUE"], dict[str, Any]()
    if start_at is not None:
        where.append("ts >= $start")
        params["start"] = start_at
    if end_at is not None:
        where.append("ts < $end")
        params["end"] = end_at
    for name, value in (("deployment", deployment), ("arm", arm)):
        if value is not None:
            where.append(f"{name} = ${name}")
            params[name] = value
    source = (
        f"(SELECT {select} FROM read_parquet($files, hive_partitioning = true, "
        f"union_by_name = true, hive_types = {_HIVE_TYPES}) WHERE {' AND '.join(where)})"
    )
    for attempt in range(3):
        try:
            with duckdb.connect() as con:
                return run(con, source, {**params, "files": [str(f) for f in files]})
        except duckdb.BinderException as exc:
            raise InvalidInput(
                f"unknown column in {list(columns or [])}: {exc}", field="columns"
            ) from exc
        except duckdb.Error as exc:
            # A file vanished (compaction finished) or is corrupt inside: list again.
            if attempt == 2:
                raise InvalidInput(f"cannot read the prediction log: {exc}", field="root") from exc
            files = readable(segment_files(base, model, version, start_at, end_at))
            if not files:
                return None
    raise AssertionError("unreachable")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ordered(table: pa.Table) -> pa.Table:
    first = [c for c in ("model", "version", "ts") if c in table.column_names]
    rest = [c for c in table.column_names if c not in first and c not in ("date", "hour")]
    table = table.select(first + rest)
    if "ts" in table.column_names:
        # DuckDB hands back microseconds in "Etc/UTC"; give back the stored ms / UTC type.
        index = table.column_names.index("ts")
        ts_type = BASE_SCHEMA.field("ts").type
        table = table.set_column(index, "ts", table.column("ts").cast(ts_type))
    return table


def _empty(columns: Sequence[str] | None) -> pa.Table:
    """An empty window: every requested column is present, so callers can select them
    (a feature or ``output`` column has no known type without a file: it is ``null``)."""
    schema = pa.schema([("model", pa.string()), ("version", pa.int64()), *BASE_SCHEMA])
    if columns:
        known = {f.name: f for f in schema}
        wanted = dict.fromkeys(("model", "version", *columns))
        schema = pa.schema([known.get(name, pa.field(name, pa.null())) for name in wanted])
    return schema.empty_table()


@dataclass
class CompactionReport:
    """What one :func:`compact` call did."""

    partitions: int = 0
    files_in: int = 0
    files_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    skipped_busy: int = 0
    quarantined: list[str] = field(default_factory=list)
    compacted: list[str] = field(default_factory=list)


def compact(
    root: Path,
    *,
    model: str | None = None,
    version: int | None = None,
    grace_s: float = 300.0,
    now: dt.datetime | None = None,
    fsync: bool = True,
    include_open: bool = False,
    partitions: Sequence[Path] | None = None,
) -> CompactionReport:
    """Merge each closed hour partition with more than one segment into one file.

    An hour is closed when it ended more than ``grace_s`` seconds before ``now``.
    ``include_open`` also merges the small segments already written in open hours into
    one more ``compact-`` file (safe: a segment is immutable once visible, later ones stay
    beside the merged file), so a periodic run keeps the current hour's file count low.
    ``partitions``: only these hour directories (the log's own compactor passes the ones
    it wrote to). Files that are not readable
    Parquet are renamed ``*.corrupt`` (kept, never read again) and listed in the report.
    """
    if grace_s < 0:
        raise InvalidInput("grace_s must be >= 0", field="grace_s")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=grace_s)
    report = CompactionReport()
    until = None if include_open else cutoff - HOUR
    chosen = partitions
    if chosen is None:
        chosen = hour_partitions(root, model, version, None, until)
    for partition in chosen:
        if not partition.is_dir():
            continue
        begins = hour_start(partition)
        if begins is None:
            continue
        closed = begins + HOUR <= cutoff
        if not (closed or include_open):
            continue
        lock_path = partition / ".compact.lock"
        with lock_path.open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                report.skipped_busy += 1
                continue
            _compact_partition(partition, begins, report, fsync=fsync, closed=closed)
    return report


def _compact_partition(
    partition: Path,
    begins: dt.datetime,
    report: CompactionReport,
    *,
    fsync: bool,
    closed: bool,
) -> None:
    live = live_files(partition)
    every = {p.name for p in partition.glob("*.parquet")}
    leftovers = every - {p.name for p in live}
    if closed:
        for stale in partition.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # a writer killed mid-write; the hour is closed
    else:
        # An open hour: merge only the small segments, never rewrite earlier merged files
        # again and again as the hour grows; the closed-hour pass makes the final file.
        live = [p for p in live if p.name.startswith("part-")]
    if len(live) <= 1:
        _remove(partition, leftovers)
        return
    tables, inputs = [], []
    for path in live:
        try:
            tables.append(pq.read_table(path))
        except (OSError, pa.ArrowException):
            path.rename(path.with_name(path.name + ".corrupt"))
            report.quarantined.append(str(path))
            continue
        inputs.append(path)
    if len(inputs) <= 1:
        _remove(partition, leftovers)
        return
    report.bytes_in += sum(p.stat().st_size for p in inputs)
    merged = pa.concat_tables(
        [t.replace_schema_metadata(None) for t in tables], promote_options="permissive"
    ).sort_by("ts")
    first_meta = tables[0].schema.metadata or {}
    names = sorted(p.name for p in inputs)
    metadata = {
        **{k: v for k, v in first_meta.items() if k != COMPACTED_FROM},
        COMPACTED_FROM: json.dumps(names).encode(),
    }
    name = f"compact-{begins:%Y%m%dT%H}-{int(time.time() * 1000)}-{uuid.uuid4().hex[:8]}.parquet"
    written = write_segment(merged.replace_schema_metadata(metadata), partition, name, fsync=fsync)
    _remove(partition, leftovers | set(names))
    report.partitions += 1
    report.files_in += len(inputs)
    report.files_out += 1
    report.rows += merged.num_rows
    report.bytes_out += written.stat().st_size
    report.compacted.append(str(partition))


def _remove(partition: Path, names: set[str]) -> None:
    for name in names:
        (partition / name).unlink(missing_ok=True)
    if names:
        fd = os.open(partition, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
