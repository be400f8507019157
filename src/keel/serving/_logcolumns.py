"""Prediction-log columns: Python values → Arrow arrays in each column's known type.

A column keeps the type it first had in a partition (``schema``) and widens when a
value does not fit (int → float → text); values Arrow cannot hold become JSON text.
Used by :mod:`keel.serving._segments` to build a segment's table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _floats(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        return pa.array([_float(v) for v in values], pa.float64())


def _text(values: Sequence[Any]) -> pa.Array:
    if set(map(type, values)) <= _TEXT_AS_IS:  # strings and nulls convert as they are
        return pa.array(values, pa.string())
    return pa.array([None if v is None else str(v) for v in values], pa.string())


_TEXT_AS_IS = frozenset({str, type(None)})


def _probabilities(values: Sequence[Any]) -> pa.Array:
    try:
        return pa.array(values, pa.list_(pa.float64()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    cleaned: list[list[float] | None] = []
    for row in values:
        try:
            cleaned.append(None if row is None else [float(p) for p in row])
        except (TypeError, ValueError):
            cleaned.append(None)
    return pa.array(cleaned, pa.list_(pa.float64()))


def _json_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _widen(known: pa.DataType, seen: pa.DataType) -> pa.DataType:
    if pa.types.is_null(known):
        return seen
    if pa.types.is_null(seen) or known == seen:
        return known
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if all(any(check(t) for check in numeric) for t in (known, seen)):
        both_int = pa.types.is_integer(known) and pa.types.is_integer(seen)
        return pa.int64() if both_int else pa.float64()
    return pa.string()


class _Lazy:
    """A list of column values built on first use (most columns never need the Python list)."""

    def __init__(self, build: Callable[[], list[Any]]) -> None:
        self._build = build
        self._values: list[Any] | None = None

    def __call__(self) -> list[Any]:
        if self._values is None:
            self._values = self._build()
        return self._values


def _typed(
    schema: dict[str, pa.DataType], name: str, values: _Lazy, inferred: pa.Array | None = None
) -> pa.Array:
    """An Arrow column of ``values()`` in the column's known type, widening it when needed.

    ``inferred``: the values as Arrow already inferred them, if known.
    """
    known = schema.get(name)
    if inferred is None:
        try:
            inferred = pa.array(values())
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            inferred = None  # mixed kinds (1 and "a"): only text holds them
    if inferred is not None and known is not None:
        if inferred.type == known or pa.types.is_null(inferred.type):
            return inferred.cast(known)
        try:
            # safe: 2.5 never becomes 2 in an integer column; the column widens instead
            return inferred.cast(known, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    if inferred is None:
        target = pa.string()
    elif known is None:
        target = inferred.type
    else:
        target = _widen(known, inferred.type)
    if pa.types.is_string(target):
        array = pa.array([_json_text(v) for v in values()], pa.string())
    else:
        array = inferred.cast(target) if inferred is not None else pa.array(values(), target)
    if not pa.types.is_null(target):
        schema[name] = target
    return array
