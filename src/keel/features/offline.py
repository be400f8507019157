"""Offline store: feature-view sources read by DuckDB; point-in-time joins with ``ASOF JOIN``.

Point-in-time rule: an entity row at time *t* gets, per view, the source row
with the same join keys and the greatest event time ``<= t`` (a value stamped
exactly *t* is visible). When the view has a TTL and ``t - event_time > ttl``
the view's features are NULL. Tie rule: several source rows with the same
keys and event time resolve to the one with the greatest created timestamp
(when the source declares one), then the one that comes last in the source
(file order; for several files, file-name order). Times compare in UTC at
microsecond resolution.

Ties cost a hash aggregate over the source, so whether a Parquet source has
any is checked once per (files, sizes, modification times, inodes) and
remembered in the process; tie-free sources are joined directly. In-memory
retrieval (``_asof``) finds ties after its own sort instead, for free.

Reading for in-memory retrieval (``view_rows``): DuckDB checks every source
(missing files and columns, types, the time rule), then pyarrow reads the rows
of Parquet files that need no cast (``_parquet``: less than half the CPU of
DuckDB's scan); anything else (casts, dates, Hive folders, mixed schemas, times
near the nanosecond range's ends, the tie rule) DuckDB reads. CSV and SQL
sources are read into Arrow by ``_csvsql``.

Memory: DuckDB runs the join with ``memory_limit`` and a ``temp_directory``
it spills sorts to, and results leave it as Arrow record batches; for entity
sets larger than memory, ``FeatureStore.write_historical_features`` streams
Parquet → Parquet inside DuckDB (``COPY … TO``), never holding the rows in Python.
"""

from __future__ import annotations

import glob
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from keel.errors import InvalidInput
from keel.features._csvsql import read_arrow
from keel.features._parquet import read_rows
from keel.features.models import Entity, FeatureView, FileSource, ValueType

__all__ = [
    "DUCK_TYPES",
    "Selection",
    "connect",
    "file_signature",
    "forget_tie_checks",
    "historical_query",
    "register_source",
    "view_rows",
]

DUCK_TYPES = {
    ValueType.INT64: "BIGINT",
    ValueType.FLOAT64: "DOUBLE",
    ValueType.STRING: "VARCHAR",
    ValueType.BOOL: "BOOLEAN",
}
_INTS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "HUGEINT"}
_COMPATIBLE = {
    ValueType.INT64: _INTS,
    ValueType.FLOAT64: _INTS | {"FLOAT", "DOUBLE", "REAL"},
    ValueType.STRING: {"VARCHAR"},
    ValueType.BOOL: {"BOOLEAN"},
}
_OLDEST = -(2**62)  # created time of rows without one: older than any real time
_NAIVE_TIMES = {"TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "DATE"}
_AWARE_TIMES = {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS"}


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(text: str) -> str:
    """A quoted SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


#: One in-memory DuckDB database per (memory limit, spill folder, threads): opening one
#: costs 15-50 ms, a cursor on it (a connection of its own) well under one.
_DATABASES: dict[tuple[str, str, int | None], Any] = {}
_DATABASES_LOCK = threading.Lock()


def connect(memory_limit: str, temp_dir: Path, threads: int | None = None) -> Any:
    """A DuckDB connection that spills to ``temp_dir`` above ``memory_limit``.

    Connections share one in-memory database per configuration, but temp views
    and registered tables belong to the connection: closing it drops them.
    """
    import duckdb  # imported here: opening services should not pay for it

    temp_dir.mkdir(parents=True, exist_ok=True)
    key = (memory_limit, str(temp_dir), threads or None)
    with _DATABASES_LOCK:
        database = _DATABASES.get(key)
        if database is None:
            config: dict[str, Any] = {"memory_limit": memory_limit, "temp_directory": str(temp_dir)}
            if threads:
                config["threads"] = threads
            if len(_DATABASES) >= 8:
                # Dropped, not closed: cursors still open keep their database alive.
                _DATABASES.pop(next(iter(_DATABASES)))
            database = _DATABASES[key] = duckdb.connect(":memory:", config=config)
        return database.cursor()


def _compatible(dtype: ValueType, duck_type: str) -> bool:
    base = re.sub(r"\(.*\)$", "", duck_type)
    return base in _COMPATIBLE[dtype] or (dtype is ValueType.FLOAT64 and base == "DECIMAL")


def time_expr(column: str, duck_type: str, what: str) -> str:
    """SQL for UTC epoch microseconds of a time column (naive = UTC)."""
    if duck_type in _AWARE_TIMES:
        return f"(epoch_ns({q(column)}) // 1000)"
    if duck_type in _NAIVE_TIMES:
        return f"(epoch_ns(CAST({q(column)} AS TIMESTAMP_NS)) // 1000)"
    raise InvalidInput(
        f"timestamp column {column!r} of {what} has type {duck_type}, not a timestamp "
        "(one column must not mix timezone-aware and naive values)",
        field=column,
    )


def _describe(con: Any, relation: str) -> dict[str, str]:
    rows = con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def register_source(
    con: Any,
    view: FeatureView,
    entities: dict[str, Entity],
    alias: str,
    ties: Literal["check", "resolve", "keep"] = "check",
) -> dict[str, str]:
    """Create temp view ``alias``: the view's rows, typed, one per (keys, event time).

    Columns: the join keys, ``__fts`` (event time, epoch µs) and the features.
    ``ties``: ``"check"`` applies the tie rule when the source has ties,
    ``"resolve"`` always applies it, ``"keep"`` never does (the caller detects
    ties itself, cheaper after its own sort, and asks again with ``"resolve"``).
    Raises ``InvalidInput`` naming the column when the source lacks one or
    its type no longer matches the definition. Returns the source's column
    types as DuckDB reads them.
    """
    source = view.source
    what = f"the source of feature view {view.name!r}"
    raw = f"{alias}__raw"
    if isinstance(source, FileSource) and source.format == "parquet":
        if not glob.glob(source.path):
            raise InvalidInput(
                f"{what} is missing: no file matches {source.path}",
                field=f"{view.name}.source.path",
            )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {q(raw)} AS SELECT * FROM read_parquet("
            f"{lit(source.path)}, file_row_number=true, filename=true)"
        )
        order = "struct_pack(a := filename, b := file_row_number)"
    else:
        if isinstance(source, FileSource) and not glob.glob(source.path):
            raise InvalidInput(
                f"{what} is missing: no file matches {source.path}",
                field=f"{view.name}.source.path",
            )
        con.register(raw, read_arrow(view))
        order = "__ord"
    columns = _describe(con, q(raw))

    def need(column: str, dtype: ValueType | None) -> None:
        if column not in columns:
            raise InvalidInput(
                f"{what} has no column {column!r} (it has: {', '.join(sorted(columns))})",
                field=f"{view.name}.{column}",
            )
        if dtype is not None and not _compatible(dtype, columns[column]):
            raise InvalidInput(
                f"column {column!r} of {what} is {columns[column]}, the definition says {dtype}",
                field=f"{view.name}.{column}",
            )

    keys = join_keys(view, entities)
    for key, dtype in keys.items():
        need(key, dtype)
    need(source.timestamp_field, None)
    for feature in view.features:
        need(feature.name, feature.dtype)
    if "__fts" in columns:
        fts = "__fts"
    else:
        fts = time_expr(source.timestamp_field, columns[source.timestamp_field], what)
    cts = "CAST(NULL AS BIGINT)"
    if source.created_timestamp_field:
        need(source.created_timestamp_field, None)
        cts = (
            "__cts"
            if "__cts" in columns
            else time_expr(
                source.created_timestamp_field, columns[source.created_timestamp_field], what
            )
        )
    key_list = ", ".join(q(k) for k in keys)
    typed = ", ".join(
        f"{q(f.name)} := CAST({q(f.name)} AS {DUCK_TYPES[f.dtype]})" for f in view.features
    )
    unpack = ", ".join(f"s.{q(f.name)} AS {q(f.name)}" for f in view.features)
    not_null = " AND ".join(f"{q(k)} IS NOT NULL" for k in keys)
    rows = f"""SELECT {key_list}, {fts} AS __fts, {cts} AS __cts, {order} AS __o,
                      {", ".join(q(f.name) for f in view.features)}
               FROM {q(raw)} WHERE {q(source.timestamp_field)} IS NOT NULL AND {not_null}"""
    resolve = ties == "resolve" or (ties == "check" and _has_ties(con, view, rows, key_list))
    if not resolve:
        casts = ", ".join(
            f"CAST({q(f.name)} AS {DUCK_TYPES[f.dtype]}) AS {q(f.name)}" for f in view.features
        )
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {q(alias)} AS "
            f"SELECT {key_list}, __fts, {casts} FROM ({rows})"
        )
        return columns
    # Tie rule: per (keys, event time) keep the greatest (created time, source order).
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW {q(alias)} AS
        SELECT {key_list}, __fts, {unpack} FROM (
            SELECT {key_list}, __fts,
                   arg_max(struct_pack({typed}),
                           struct_pack(c := coalesce(__cts, {_OLDEST}), o := __o)) AS s
            FROM ({rows})
            GROUP BY {key_list}, __fts)"""
    )
    return columns


#: Parquet sources known to have no two rows with the same keys and event time, by
#: (view, files with size and mtime): the check costs a hash aggregate over the source.
_TIE_FREE: dict[tuple[Any, ...], bool] = {}


#: A file modified less than this long ago may still change within the same mtime tick.
RACY_S = 2.0


def file_signature(pattern: str) -> tuple[tuple[str, int, int, int], ...] | None:
    """(name, size, mtime, inode) of each file matching ``pattern``, or None if not cacheable.

    None when no file matches or one was modified within ``RACY_S``: two writes
    in the same mtime tick with the same size would look alike (git's "racy
    clean" problem), so such files are read afresh until they settle.
    """
    files = []
    settled = time.time_ns() - int(RACY_S * 1e9)
    for name in sorted(glob.glob(pattern)):
        try:
            stat = Path(name).stat()
        except OSError:
            return None
        if stat.st_mtime_ns > settled or stat.st_ctime_ns > settled:
            return None
        files.append((name, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(files) or None


def _has_ties(con: Any, view: FeatureView, rows: str, key_list: str) -> bool:
    source = view.source
    signature: tuple[Any, ...] | None = None
    if isinstance(source, FileSource) and source.format == "parquet":
        files = file_signature(source.path)
        if files is not None:
            signature = (view.name, key_list, source.timestamp_field, files)
        if signature in _TIE_FREE:
            return not _TIE_FREE[signature]
    ties = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM ({rows}) GROUP BY {key_list}, __fts HAVING count(*) > 1)"
    ).fetchone()
    found = bool(ties and ties[0])
    if signature is not None:
        if len(_TIE_FREE) > 1024:
            _TIE_FREE.clear()
        _TIE_FREE[signature] = not found
    return found


def view_rows(
    con: Any, view: FeatureView, entities: dict[str, Entity], *, resolve_ties: bool
) -> pa.Table:
    """The view's rows as Arrow: typed join keys, ``__fts``, features.

    Features have their declared types, strings possibly dictionary-encoded.
    Without ``resolve_ties`` rows sharing keys and event time all come back.
    DuckDB checks the source (``register_source``: missing files and columns,
    types); Parquet files whose columns need no cast are then read by pyarrow
    (``_parquet_rows``), which hands over the same rows at about half the CPU.
    """
    described = register_source(
        con, view, entities, "__view", "resolve" if resolve_ties else "keep"
    )
    if not resolve_ties:
        direct = _parquet_rows(con, view, entities, described)
        if direct is not None:
            return direct
    keys = ", ".join(
        f"CAST({q(k)} AS {DUCK_TYPES[t]}) AS {q(k)}" for k, t in join_keys(view, entities).items()
    )
    features = ", ".join(q(f.name) for f in view.features)
    # One large batch: the columns then reach numpy without concatenating chunks.
    query = f"SELECT {keys}, __fts, {features} FROM __view"
    return con.sql(query).to_arrow_table(batch_size=1 << 24)


def _parquet_files(con: Any, view: FeatureView) -> list[str] | None:
    """The Parquet files DuckDB reads for the view (its own glob), or None if not plain files."""
    source = view.source
    if not isinstance(source, FileSource) or source.format != "parquet":
        return None
    listed = con.execute(f"SELECT file FROM glob({lit(source.path)})").fetchall()
    files = sorted(str(r[0]) for r in listed)
    # key=value folders: DuckDB adds Hive partition columns the files themselves lack.
    if not files or any("=" in part for f in files for part in Path(f).parent.parts):
        return None
    return files


def _parquet_rows(
    con: Any, view: FeatureView, entities: dict[str, Entity], described: dict[str, str]
) -> pa.Table | None:
    """``view_rows`` (ties kept) read by pyarrow (``_parquet``), or None when DuckDB must."""
    paths = _parquet_files(con, view)
    if paths is None:
        return None
    keys = join_keys(view, entities)
    typed = {**keys, **{f.name: f.dtype for f in view.features}}
    if any(described[c] != DUCK_TYPES[t] for c, t in typed.items()):
        return None  # DuckDB casts these columns
    return read_rows(paths, view, keys, described[view.source.timestamp_field])


def join_keys(view: FeatureView, entities: dict[str, Entity]) -> dict[str, ValueType]:
    """Join key → type for a view, in entity order."""
    keys: dict[str, ValueType] = {}
    for name in view.entities:
        entity = entities[name]
        for key in entity.join_keys:
            keys[key] = entity.value_type
    return keys


@dataclass(frozen=True)
class Selection:
    """Features wanted from one view, with their output column names."""

    view: FeatureView
    features: tuple[str, ...]
    columns: tuple[str, ...]


def historical_query(
    selections: Sequence[Selection],
    entities: dict[str, Entity],
    head: str = "e.__row",
    tail: str = "",
) -> str:
    """``SELECT <head>, <features>`` over temp views ``__entity`` and ``__v0``, ``__v1``, …

    Rows come back in no particular order unless ``tail`` orders them; ``__row``
    says where each belongs.
    """
    outputs: list[str] = []
    joins: list[str] = []
    for i, selection in enumerate(selections):
        alias = f"__v{i}"
        view = selection.view
        keys = join_keys(view, entities)
        on = " AND ".join(f"e.{q(k)} = {alias}.{q(k)}" for k in keys)
        joins.append(f"ASOF LEFT JOIN {q(alias)} ON {on} AND e.__ts >= {alias}.__fts")
        ttl_us = view.ttl * 1_000_000
        for feature, column in zip(selection.features, selection.columns, strict=True):
            value = f"{alias}.{q(feature)}"
            if ttl_us:
                value = f"CASE WHEN e.__ts - {alias}.__fts <= {ttl_us} THEN {value} END"
            outputs.append(f"{value} AS {q(column)}")
    # No ORDER BY: sorting a million wide rows in DuckDB costs more than putting them
    # back in entity order with one O(n) take on the Arrow side (see _retrieval).
    return f"SELECT {head}, {', '.join(outputs)} FROM __entity e {' '.join(joins)} {tail}"


def forget_tie_checks() -> None:
    """Forget which sources were found tie-free (they are checked again when next read)."""
    _TIE_FREE.clear()
