"""The pyarrow Parquet reader for in-memory retrieval: DuckDB's rows at half its CPU.

``offline.view_rows`` lets DuckDB check a source, then hands plain Parquet
files whose columns need no cast to :func:`read_rows`, which reads them with
pyarrow and gives exactly the rows DuckDB would (same nulls dropped, same time
rounding); anything it cannot match it declines (None) and DuckDB reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from keel.features._frames import ARROW_TYPES
from keel.features.models import FeatureView, ValueType

__all__ = ["read_rows"]

#: DuckDB's type of a Parquet time column → the units pyarrow may read it with, for
#: ``_micros`` to give what ``time_expr`` gives (any timezone for the aware types).
_PARQUET_TIMES: dict[str, tuple[set[str], bool]] = {
    "TIMESTAMP_S": ({"s"}, False),
    "TIMESTAMP_MS": ({"ms"}, False),
    "TIMESTAMP": ({"s", "ms", "us"}, False),
    "TIMESTAMP_NS": ({"ns"}, False),
    "TIMESTAMP WITH TIME ZONE": ({"s", "ms", "us"}, True),
    "TIMESTAMPTZ_NS": ({"ns"}, True),
}
#: ``time_expr`` goes through int64 nanoseconds, which DuckDB refuses past its range
#: (and whose ends it reserves for infinities); times within this many nanoseconds
#: of 1970 convert on both paths alike.
_SAFE_NS = 2**63 - 2**40
_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 1000, "ns": 1}


def read_rows(
    paths: list[str], view: FeatureView, keys: dict[str, ValueType], time_type: str
) -> pa.Table | None:
    """The view's rows (ties kept) read by pyarrow from ``paths``, or None when DuckDB must.

    ``paths`` are the files DuckDB's glob lists, ``keys`` the typed join keys and
    ``time_type`` DuckDB's type for the time column; the caller has checked that
    DuckDB reads the key and feature columns without a cast. Only for the files
    ``_plain_parquet`` accepts: the rows are then exactly DuckDB's. Null keys
    and times are dropped as in DuckDB; times become epoch µs with DuckDB's
    rounding (``_micros``).
    """
    files = _plain_parquet(paths, view, keys, time_type)
    if files is None:
        return None
    time_field = view.source.timestamp_field
    wanted = list(dict.fromkeys([*keys, time_field, *(f.name for f in view.features)]))
    try:
        table = pa.concat_tables([f.read(columns=wanted) for f in files])
    except (OSError, pa.ArrowException):
        return None  # DuckDB read it; let DuckDB say what is wrong
    table = _drop_null(table, [time_field, *keys])
    micros = _micros(table.column(time_field))
    if micros is None:
        return None
    columns = [_as_declared(table.column(k), t) for k, t in keys.items()] + [micros]
    columns += [_as_declared(table.column(f.name), f.dtype) for f in view.features]
    return pa.Table.from_arrays(columns, names=[*keys, "__fts", *(f.name for f in view.features)])


def _plain_parquet(
    paths: list[str], view: FeatureView, keys: dict[str, ValueType], time_type: str
) -> list[pq.ParquetFile] | None:
    """The view's Parquet files, open, if pyarrow reads them as DuckDB does; else None.

    That is: one schema, key and feature columns of the declared types as they
    are (DuckDB casts nothing; strings may be large or dictionary-encoded), and
    the time column in a unit ``_PARQUET_TIMES`` pairs with DuckDB's type for
    it. String features are read dictionary-encoded as in the file: no hashing
    to encode them again for the lookups. Without pre-buffering,
    ``ParquetFile.read`` gives one chunk per column and costs less CPU than
    ``read_table`` on local files.
    """
    typed = {**keys, **{f.name: f.dtype for f in view.features}}
    time_field = view.source.timestamp_field
    units = _PARQUET_TIMES.get(time_type)
    if units is None:
        return None
    strings = [f.name for f in view.features if f.dtype is ValueType.STRING and f.name not in keys]
    try:
        files = [pq.ParquetFile(p, pre_buffer=False, read_dictionary=strings) for p in paths]
    except (OSError, pa.ArrowException):
        return None  # DuckDB read them; let DuckDB say what is wrong
    schema = files[0].schema_arrow
    if any(not f.schema_arrow.equals(schema) for f in files[1:]):
        return None
    return files if _arrow_types_fit(schema, typed, time_field, units) else None


def _arrow_types_fit(
    schema: pa.Schema, typed: dict[str, ValueType], time_field: str, units: tuple[set[str], bool]
) -> bool:
    """Whether ``schema`` holds ``typed`` columns as declared and the time as ``units``."""
    for column, dtype in typed.items():
        kind = _arrow_type(schema, column)
        if dtype is ValueType.STRING and kind is not None and pa.types.is_dictionary(kind):
            kind = kind.value_type
        if kind != ARROW_TYPES[dtype] and not (
            dtype is ValueType.STRING and kind == pa.large_string()
        ):
            return False  # e.g. narrower ints or floats: DuckDB casts them
    kind = _arrow_type(schema, time_field)
    if not isinstance(kind, pa.TimestampType):
        return False
    return kind.unit in units[0] and bool(kind.tz) == units[1]


def _as_declared(column: pa.ChunkedArray, dtype: ValueType) -> pa.ChunkedArray:
    """``column`` with Arrow ``string`` for a string column read as ``large_string``."""
    if dtype is not ValueType.STRING:
        return column
    if pa.types.is_dictionary(column.type):
        if column.type.value_type == pa.string():
            return column
        return column.cast(pa.dictionary(column.type.index_type, pa.string()))
    return column if column.type == pa.string() else column.cast(pa.string())


def _arrow_type(schema: pa.Schema, name: str) -> pa.DataType | None:
    """The type of the one column ``name`` in ``schema`` (None: absent or ambiguous)."""
    at = schema.get_all_field_indices(name)
    return schema.field(at[0]).type if len(at) == 1 else None


def _drop_null(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """``table`` without the rows where any of ``columns`` is null."""
    nullable = [c for c in columns if table.column(c).null_count]
    if not nullable:
        return table
    mask = pc.is_valid(table.column(nullable[0]))
    for column in nullable[1:]:
        mask = pc.and_(mask, pc.is_valid(table.column(column)))
    return table.filter(mask)


def _micros(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Epoch µs of a timestamp column (no nulls) as ``time_expr`` computes them, or None.

    ``time_expr`` divides nanoseconds by 1000 rounding toward zero (DuckDB's
    ``//``); from seconds or milliseconds the conversion is exact. None when a
    time lies near the edge of the nanosecond range, where DuckDB may refuse it:
    the caller then lets DuckDB read the rows (and raise).
    """
    unit = column.type.unit
    plain = column.cast(pa.timestamp(unit)).cast(pa.int64())
    if len(plain):
        low, high = (v.as_py() for v in pc.min_max(plain).values())
        if max(-low, high) > _SAFE_NS // _NS_PER_UNIT[unit]:
            return None
    if unit == "ns":
        return pc.divide(plain, 1000)  # integer division truncates toward zero
    return plain if unit == "us" else pc.multiply(plain, _NS_PER_UNIT[unit] // 1000)
