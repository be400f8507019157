"""Model signatures: the named, typed columns a model takes, and example inputs as JSON.

A signature is plain JSON so it can live in ``keel_model.json`` and in the registry::

    {"inputs": [{"name": "age", "type": "long", "nullable": False}, ...], "outputs": None}

Column types are ``double``, ``float``, ``long``, ``integer``, ``boolean``, ``string``,
``datetime``, ``category`` and ``binary``. Other columns than ``double`` and ``float`` accept
missing values only when ``nullable`` is true. ``double`` and ``float`` columns accept NaN
(it is a float value) unless they say ``"accepts_nan": false``: :func:`probe_nan` sets it
when a model is logged with an example, by trying the model on NaN in each such column
(a scikit-learn ``LogisticRegression`` raises on NaN, LightGBM does not). Without the key
(older signatures, signatures given by hand) NaN is accepted and the model decides.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput

__all__ = [
    "COLUMN_TYPES",
    "check_signature",
    "example_from_json",
    "example_to_json",
    "infer_signature",
    "probe_nan",
    "to_frame",
    "validate_frame",
]

COLUMN_TYPES = frozenset(
    {"double", "float", "long", "integer", "boolean", "string", "datetime", "category", "binary"}
)
_FLOAT_TYPES = frozenset({"double", "float"})
_NUMPY_INT = {"long": "int64", "integer": "int32"}
_NULLABLE_INT = {"long": "Int64", "integer": "Int32"}


def to_frame(example: Any) -> pd.DataFrame:
    """Turn a DataFrame, a 2-D array (columns ``f0``, ``f1``, ...) or a list of dicts into a frame.

    Raises InvalidInput for anything else, and for an empty example.
    """
    if isinstance(example, pd.DataFrame):
        frame = example
    elif isinstance(example, np.ndarray):
        if example.ndim != 2:
            raise InvalidInput(
                f"an array example must be 2-D, got {example.ndim}-D",
                field="input_example",
            )
        frame = pd.DataFrame(example, columns=[f"f{i}" for i in range(example.shape[1])])
    elif isinstance(example, list) and all(isinstance(row, dict) for row in example):
        keys = list(dict.fromkeys(key for row in example for key in row))
        # pd.array per column: [1, None] becomes Int64 rather than a float column.
        frame = pd.DataFrame({k: pd.array([row.get(k) for row in example]) for k in keys})
    else:
        raise InvalidInput(
            "an example must be a pandas DataFrame, a 2-D numpy array or a list of dicts, "
            f"got {type(example).__name__}",
            field="input_example",
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidInput("the example has no rows or no columns", field="input_example")
    return frame


def infer_signature(example: Any, output: Any = None) -> dict[str, Any]:
    """Infer a signature from an input example and, optionally, example model outputs.

    ``output`` may be a 1-D array or Series (one column named ``prediction``) or anything
    :func:`to_frame` accepts.
    """
    frame = to_frame(example)
    outputs = None
    if output is not None:
        if isinstance(output, pd.Series | np.ndarray) and np.ndim(output) == 1:
            output = pd.DataFrame({"prediction": np.asarray(output)})
        outputs = _columns(to_frame(output))
    return {"inputs": _columns(frame), "outputs": outputs}


def _columns(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {
            "name": str(name),
            "type": _column_type(str(name), frame[name]),
            "nullable": bool(frame[name].isna().any()),
        }
        for name in frame.columns
    ]


def _column_type(name: str, column: pd.Series) -> str:
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_float_dtype(dtype):
        return "double" if dtype.itemsize >= 8 else "float"
    if pd.api.types.is_integer_dtype(dtype):
        small = dtype.itemsize <= 2 or (dtype.itemsize == 4 and dtype.kind == "i")
        return "integer" if small else "long"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.StringDtype):
        return "string"
    values = column.dropna()
    if len(values) and all(isinstance(v, str) for v in values):
        return "string"
    if len(values) and all(isinstance(v, bytes) for v in values):
        return "binary"
    if len(values) and all(isinstance(v, dt.datetime) for v in values):
        return "datetime"
    if len(values) and all(isinstance(v, bool | np.bool_) for v in values):
        return "boolean"
    raise InvalidInput(
        f"cannot infer a type for column {name!r} (dtype {dtype}); give a signature",
        field=name,
    )


def check_signature(signature: Any) -> dict[str, Any]:
    """Check that ``signature`` has the documented shape; return it normalised."""
    if not isinstance(signature, dict) or not isinstance(signature.get("inputs"), list):
        raise InvalidInput("a signature is a dict with an 'inputs' list", field="signature")
    outputs = signature.get("outputs")
    if outputs is not None and not isinstance(outputs, list):
        raise InvalidInput("signature 'outputs' must be a list or null", field="signature")
    return {"inputs": _check_columns(signature["inputs"]), "outputs": _check_columns(outputs)}


def _check_columns(columns: list[Any] | None) -> list[dict[str, Any]] | None:
    if columns is None:
        return None
    checked = []
    for col in columns:
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            raise InvalidInput(f"signature column {col!r} has no name", field="signature")
        if col.get("type") not in COLUMN_TYPES:
            raise InvalidInput(
                f"signature column {col['name']!r} has type {col.get('type')!r}; "
                f"expected one of {sorted(COLUMN_TYPES)}",
                field="signature",
            )
        column = {"name": col["name"], "type": col["type"], "nullable": bool(col.get("nullable"))}
        accepts_nan = col.get("accepts_nan")
        if accepts_nan is not None:
            if not isinstance(accepts_nan, bool) or col["type"] not in _FLOAT_TYPES:
                raise InvalidInput(
                    f"signature column {col['name']!r}: accepts_nan must be true or false, "
                    "on double and float columns only",
                    field="signature",
                )
            column["accepts_nan"] = accepts_nan
        checked.append(column)
    return checked


def probe_nan(
    signature: dict[str, Any], example: Any, predict: Callable[[Any], Any] | None
) -> dict[str, Any]:
    """``signature`` with ``accepts_nan`` on each ``double``/``float`` input, found by trying.

    ``predict`` (the model's own) runs on the example's first rows as they are, then with
    every float column NaN, then (when that raised) with one column NaN at a time. When
    the example itself does not predict, or there is no ``predict``, nothing is marked:
    the probe cannot tell. Costs at most two calls plus one per float column.
    """
    inputs = signature.get("inputs") or []
    floats = [c["name"] for c in inputs if c["type"] in _FLOAT_TYPES]
    if predict is None or not floats:
        return signature
    frame = to_frame(example).head(5).copy()

    def predicts(nan_columns: list[str]) -> bool:
        trial = frame.copy()
        for name in nan_columns:
            trial[name] = np.nan
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a probe's warnings are not the user's
                predict(trial)
        except Exception:  # whatever the model raises means "not with this input"
            return False
        return True

    if not predicts([]):
        return signature
    if predicts(floats):
        accepted = dict.fromkeys(floats, True)
    else:
        accepted = {name: predicts([name]) for name in floats}
    marked = [
        {**c, "accepts_nan": accepted[c["name"]]} if c["name"] in accepted else c for c in inputs
    ]
    return {**signature, "inputs": marked}


def example_to_json(example: Any, max_rows: int = 5) -> dict[str, Any]:
    """The first ``max_rows`` rows of an example as ``{"columns": [...], "data": [[...]]}``.

    Values are JSON-safe: missing values become None, numpy scalars Python numbers,
    datetimes ISO-8601 strings, bytes base64 strings and infinities ``"inf"`` / ``"-inf"``.
    """
    frame = to_frame(example).head(max_rows)
    data = [[_json_value(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return {"columns": [str(c) for c in frame.columns], "data": data}


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        # JSON has no infinity; the string form parses back when the signature says float.
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def example_from_json(data: Any, signature: dict[str, Any] | None = None) -> pd.DataFrame:
    """Rebuild a frame from :func:`example_to_json` output, with dtypes from ``signature``."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("columns"), list)
        or not isinstance(data.get("data"), list)
    ):
        raise InvalidInput(
            "an input example is a dict with 'columns' and 'data' lists", field="input_example"
        )
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    if signature is None:
        return frame
    types = {c["name"]: c["type"] for c in check_signature(signature)["inputs"]}
    return frame.assign(
        **{
            str(name): _restore(frame[name], types[str(name)])
            for name in frame.columns
            if str(name) in types
        }
    )


def _restore(column: pd.Series, kind: str) -> pd.Series:
    has_nulls = bool(column.isna().any())
    if kind == "double":
        return column.astype("float64")
    if kind == "float":
        return column.astype("float32")
    if kind in _NUMPY_INT:
        return column.astype(_NULLABLE_INT[kind] if has_nulls else _NUMPY_INT[kind])
    if kind == "boolean":
        return column.astype("boolean" if has_nulls else "bool")
    if kind == "datetime":
        return pd.to_datetime(column, format="ISO8601")
    if kind == "category":
        return column.astype("category")
    if kind == "binary":
        return column.map(base64.b64decode, na_action="ignore")
    return column


def validate_frame(frame: pd.DataFrame, signature: dict[str, Any]) -> pd.DataFrame:
    """Check ``frame`` against the signature's inputs; return it coerced, in signature order.

    Raises InvalidInput naming the missing or unexpected column (``field``), or the mistyped
    column and the position of its first bad row (``detail["row"]``, counting from 0).
    Integer columns are widened to float where the signature says ``double`` or ``float``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InvalidInput(f"expected a DataFrame, got {type(frame).__name__}", field="input")
    inputs = check_signature(signature)["inputs"]
    names = [c["name"] for c in inputs]
    columns = [str(c) for c in frame.columns]
    for name in names:
        if name not in columns:
            raise InvalidInput(f"missing column {name!r}", field=name, expected=names)
    for name in columns:
        if name not in names:
            raise InvalidInput(f"unexpected column {name!r}", field=name, expected=names)
    frame = frame.set_axis(columns, axis=1)
    return pd.DataFrame({c["name"]: _coerce(frame[c["name"]], c) for c in inputs})


def _coerce(column: pd.Series, spec: dict[str, Any]) -> pd.Series:
    name, kind = spec["name"], spec["type"]
    is_null = column.isna().to_numpy()
    if kind not in _FLOAT_TYPES and not spec["nullable"] and is_null.any():
        row = int(np.argmax(is_null))
        raise InvalidInput(
            f"column {name!r} has a missing value in row {row} but is not nullable",
            field=name,
            row=row,
            expected=kind,
        )
    if spec.get("accepts_nan") is False and is_null.any():
        row = int(np.argmax(is_null))
        raise InvalidInput(
            f"column {name!r} has NaN in row {row} but the model does not accept NaN there",
            field=name,
            row=row,
            expected=kind,
        )
    dtype = column.dtype
    if kind in ("double", "float"):
        target = "float64" if kind == "double" else "float32"
        if _is_number_dtype(dtype):
            return column.astype(target)
        return _check_values(column, spec, _is_number).astype(target)
    if kind in _NUMPY_INT:
        if pd.api.types.is_integer_dtype(dtype):
            return column
        checked = _check_values(column, spec, _is_integer)
        return checked.astype(_NULLABLE_INT[kind] if is_null.any() else _NUMPY_INT[kind])
    if kind == "boolean":
        if pd.api.types.is_bool_dtype(dtype):
            return column
        return _check_values(column, spec, lambda v: isinstance(v, bool | np.bool_))
    if kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return column
        return pd.to_datetime(_check_values(column, spec, _is_datetime), format="ISO8601")
    if kind == "category":
        return column if isinstance(dtype, pd.CategoricalDtype) else column.astype("category")
    if kind == "binary":
        checked = _check_values(column, spec, _is_binary)
        return checked.map(lambda v: v if isinstance(v, bytes) else base64.b64decode(v))
    return _check_values(column, spec, lambda v: isinstance(v, str))


def _check_values(column: pd.Series, spec: dict[str, Any], ok: Callable[[Any], bool]) -> pd.Series:
    for row, value in enumerate(column.to_numpy(dtype=object)):
        if _json_value(value) is not None and not ok(value):
            raise InvalidInput(
                f"column {spec['name']!r} expects {spec['type']}, "
                f"got {value!r} ({type(value).__name__}) in row {row}",
                field=spec["name"],
                row=row,
                expected=spec["type"],
            )
    return column


def _is_number_dtype(dtype: Any) -> bool:
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _is_integer(value: Any) -> bool:
    if isinstance(value, float | np.floating):
        return float(value).is_integer()
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _is_datetime(value: Any) -> bool:
    if isinstance(value, dt.datetime | np.datetime64):
        return True
    if not isinstance(value, str):
        return False
    try:
        pd.Timestamp(value)
    except ValueError:
        return False
    return True


def _is_binary(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        return False
    return True
