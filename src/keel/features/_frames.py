"""Input frames → Arrow with the feature store's rules for times, keys and types.

Time rule (the one rule, see docs/features.md): every time is compared in UTC.
A timezone-aware value is converted to UTC; a naive value *is* UTC. One column
must not mix naive and aware values (``InvalidInput`` naming the column).
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from keel.errors import InvalidInput
from keel.features.models import ValueType

__all__ = ["ARROW_TYPES", "Frame", "cast_column", "times_us", "to_arrow"]

Frame: TypeAlias = pd.DataFrame | pa.Table

ARROW_TYPES: dict[ValueType, pa.DataType] = {
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT64: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BOOL: pa.bool_(),
}


def to_arrow(frame: Frame, what: str, time_columns: tuple[str, ...] = ()) -> pa.Table:
    """An Arrow table of ``frame`` (a pandas DataFrame or an Arrow table).

    ``time_columns`` of object dtype are checked for the naive/aware mixture
    that Arrow would otherwise silently convert.
    """
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pd.DataFrame):
        for column in time_columns:
            if column in frame.columns and frame[column].dtype == object:
                kinds = {
                    getattr(v, "tzinfo", None) is None
                    for v in frame[column]
                    if hasattr(v, "tzinfo")
                }
                if len(kinds) > 1:
                    raise _mixed_or_bad(column, "mixes tz-aware and naive values")
        try:
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise _mixed_or_bad(what, str(exc)) from exc
    raise InvalidInput(f"{what} must be a pandas DataFrame or a pyarrow Table", field=what)


def _mixed_or_bad(field: str, message: str) -> InvalidInput:
    if "tz" in message.lower() or "timezone" in message.lower():
        return InvalidInput(
            f"column {field!r} mixes timezone-aware and naive times; naive times are UTC, "
            "so convert them or make all values aware",
            field=field,
        )
    return InvalidInput(f"cannot read {field!r}: {message}", field=field)


def times_us(table: pa.Table, column: str, what: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    """UTC epoch microseconds (floored) of a time column (naive = UTC); rejects null times."""
    if column not in table.column_names:
        raise InvalidInput(
            f"{what} has no timestamp column {column!r} (columns: {', '.join(table.column_names)})",
            field=column,
        )
    values = table.column(column)
    if values.null_count:
        raise InvalidInput(
            f"{values.null_count} {what} rows have no timestamp in {column!r}", field=column
        )
    kind = values.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            parsed = pd.to_datetime(pd.Series(values.to_pylist()), format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise _mixed_or_bad(column, str(exc)) from exc
        values = pa.chunked_array([pa.Array.from_pandas(parsed)])
        kind = values.type
    if pa.types.is_date(kind):
        values = values.cast(pa.timestamp("s"))
        kind = values.type
    if not pa.types.is_timestamp(kind):
        raise InvalidInput(
            f"timestamp column {column!r} of {what} has type {kind}, not a timestamp",
            field=column,
        )
    # Arrow stores aware timestamps as UTC instants; naive ones are taken as UTC.
    plain = values.cast(pa.timestamp(kind.unit)) if kind.tz else values
    if kind.unit == "ns":
        nanos = np.asarray(plain.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        return np.floor_divide(nanos, 1000)
    micros = plain.cast(pa.timestamp("us")).cast(pa.int64())
    return np.asarray(micros.to_numpy(zero_copy_only=False), dtype=np.int64)


def cast_column(table: pa.Table, name: str, dtype: ValueType, what: str) -> pa.ChunkedArray:
    """``table[name]`` as the declared type; an impossible cast names the column."""
    if name not in table.column_names:
        raise InvalidInput(f"{what} has no column {name!r}", field=name)
    column = table.column(name)
    target = ARROW_TYPES[dtype]
    if column.type == target:
        return column
    is_text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if (dtype is ValueType.STRING) != is_text and not pa.types.is_dictionary(column.type):
        raise InvalidInput(
            f"column {name!r} of {what} has type {column.type}, expected {dtype}", field=name
        )
    if dtype is ValueType.INT64 and pa.types.is_floating(column.type):
        # floats only become ints when they are whole (1.0 → 1, never 1.5 → 1)
        finite = pc.drop_null(column)
        if len(finite) and not pc.all(pc.equal(pc.floor(finite), finite)).as_py():
            raise InvalidInput(
                f"column {name!r} of {what} has type {column.type}, expected {dtype}", field=name
            )
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InvalidInput(
            f"column {name!r} of {what} has type {column.type}, expected {dtype}", field=name
        ) from exc
