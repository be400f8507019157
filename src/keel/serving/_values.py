"""Value checks of predict requests: one function per signature column type, and columns.

Each check takes a JSON value and returns it normalised (``1`` and ``1.0`` in a ``double``
column are the same value; NaN is ``None``), or raises :class:`Bad`. Split from
:mod:`keel.serving.validation`, which applies them to request bodies.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CHECKS", "MISSING_OK", "Bad", "check_value", "column_array"]

_FLOAT_WORDS = {"inf": math.inf, "-inf": -math.inf, "infinity": math.inf, "-infinity": -math.inf}
_FLOAT_WORDS["nan"] = math.nan


class Bad(Exception):  # noqa: N818 - a signal, not an error shown to anyone
    """A value does not fit its column; carries the reason for the InvalidInput."""


def _number(value: Any) -> float | None:
    if value is None:
        return None
    kind = type(value)
    if kind is float:
        return None if value != value else value
    if kind is int:
        return float(value)
    if isinstance(value, str) and value.lower() in _FLOAT_WORDS:
        number = _FLOAT_WORDS[value.lower()]
        return None if number != number else number
    raise Bad


def _integer(value: Any) -> int | None:
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return int(value)
    if kind is float:
        if value != value:
            return None
        if value.is_integer():
            return int(value)
    raise Bad


def _boolean(value: Any) -> bool | None:
    if value is None or type(value) is bool:
        return value
    raise Bad


def _string(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    raise Bad


def _category(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool):
        return value
    if type(value) is float:
        return None if value != value else value
    raise Bad


def _datetime(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            dt.datetime.fromisoformat(value)
            return value
        except ValueError:
            pass
        try:
            pd.Timestamp(value)
            return value
        except ValueError:
            pass
    raise Bad


def _binary(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            base64.b64decode(value, validate=True)
            return value
        except (binascii.Error, ValueError):
            pass
    raise Bad


CHECKS: dict[str, Callable[[Any], Any]] = {
    "double": _number,
    "float": _number,
    "long": _integer,
    "integer": _integer,
    "boolean": _boolean,
    "string": _string,
    "category": _category,
    "datetime": _datetime,
    "binary": _binary,
}
MISSING_OK = frozenset({"double", "float"})  # a float column takes NaN (signature rule)


def check_value(kind: str, value: Any) -> bool:
    """Whether ``value`` fits a signature column of type ``kind`` (missing values do)."""
    try:
        CHECKS[kind](value)
    except Bad:
        return False
    return True


def column_array(kind: str, values: Sequence[Any]) -> Any:
    has_null = any(v is None for v in values)
    if kind == "double":
        return np.array(values, dtype=np.float64)
    if kind == "float":
        return np.array(values, dtype=np.float32)
    if kind in ("long", "integer"):
        if has_null:
            return pd.array(values, dtype="Int64" if kind == "long" else "Int32")
        return np.array(values, dtype=np.int64 if kind == "long" else np.int32)
    if kind == "boolean":
        return pd.array(values, dtype="boolean") if has_null else np.array(values, dtype=bool)
    if kind == "category":
        return pd.Categorical(values)
    if kind == "datetime":
        return pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601")
    if kind == "binary":
        return np.array([None if v is None else base64.b64decode(v) for v in values], object)
    return np.array(values, dtype=object)
