"""Request validation against a signature, without pandas: errors name the column and row."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.errors import BadRequest, InvalidInput
from keel.serving.validation import InputSpec

SIGNATURE = {
    "inputs": [
        {"name": "tenure", "type": "double", "nullable": False},
        {"name": "tickets", "type": "long", "nullable": False},
        {"name": "score", "type": "long", "nullable": True},
        {"name": "plan", "type": "category", "nullable": False},
        {"name": "active", "type": "boolean", "nullable": False},
        {"name": "note", "type": "string", "nullable": True},
        {"name": "since", "type": "datetime", "nullable": False},
    ]
}
ROW = {
    "tenure": 12,
    "tickets": 3.0,
    "score": None,
    "plan": "pro",
    "active": True,
    "note": "x",
    "since": "2024-01-31T10:00:00",
}


def spec(max_rows: int = 100) -> InputSpec:
    return InputSpec(SIGNATURE, max_rows=max_rows)


def test_rows_are_normalised_so_equal_inputs_share_a_key() -> None:
    shuffled = dict(reversed(list(ROW.items())), tenure=12.0, tickets=3)
    parsed = spec().parse(json.dumps({"instances": [ROW, shuffled]}).encode())
    assert parsed.rows[0] == (12.0, 3, None, "pro", True, "x", "2024-01-31T10:00:00")
    assert parsed.keys[0] == parsed.keys[1]
    assert parsed.features(0)["tickets"] == 3


def test_columns_and_data_give_the_same_rows_as_instances() -> None:
    names = list(ROW)
    split = {"columns": names, "data": [[ROW[n] for n in names]]}
    assert spec().parse(split).rows == spec().parse({"instances": [ROW]}).rows


def test_frame_has_the_signature_dtypes() -> None:
    parsed = spec().parse({"instances": [ROW, dict(ROW, score=7, note=None)]})
    frame = spec().frame(parsed.rows, parsed.columns)
    assert list(frame.columns) == list(ROW)
    assert frame["tenure"].dtype == np.float64 and frame["tickets"].dtype == np.int64
    assert str(frame["score"].dtype) == "Int64" and frame["score"].isna().tolist() == [True, False]
    assert isinstance(frame["plan"].dtype, pd.CategoricalDtype)
    assert frame["active"].dtype == bool
    assert pd.api.types.is_datetime64_any_dtype(frame["since"])


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"tenure": "12"}, "tenure", "expects double"),
        ({"tenure": True}, "tenure", "expects double"),
        ({"tickets": 2.5}, "tickets", "expects long"),
        ({"tickets": None}, "tickets", "missing value"),
        ({"tickets": float("nan")}, "tickets", "missing value"),
        ({"plan": None}, "plan", "missing value"),
        ({"plan": {"a": 1}}, "plan", "expects category"),
        ({"active": 1}, "active", "expects boolean"),
        ({"note": 5}, "note", "expects string"),
        ({"since": "yesterday-ish"}, "since", "expects datetime"),
        ({"extra": 1}, "extra", "unexpected column"),
    ],
)
def test_bad_values_name_the_column_and_row(
    change: dict[str, Any], field: str, reason: str
) -> None:
    bad = dict(ROW, **change)
    with pytest.raises(InvalidInput) as caught:
        spec().parse({"instances": [ROW, ROW, bad]})
    assert caught.value.field == field and caught.value.detail["row"] == 2
    assert reason in caught.value.message


def test_missing_column_is_named() -> None:
    row = {k: v for k, v in ROW.items() if k != "plan"}
    with pytest.raises(InvalidInput, match="missing column 'plan'") as caught:
        spec().parse({"instances": [row]})
    assert caught.value.field == "plan" and caught.value.detail["row"] == 0


def test_nan_is_a_missing_value_in_float_columns_only() -> None:
    parsed = spec().parse(
        b'{"instances": [' + json.dumps(ROW).replace("12", "NaN").encode() + b"]}"
    )
    assert parsed.rows[0][0] is None  # tenure: NaN allowed in a double column
    assert spec().parse({"instances": [dict(ROW, tenure="Infinity")]}).rows[0][0] == float("inf")


def test_limits_and_shapes() -> None:
    with pytest.raises(InvalidInput, match="limit of 1 per request"):
        spec(max_rows=1).parse({"instances": [ROW, ROW]})
    with pytest.raises(InvalidInput, match="no rows"):
        spec().parse({"columns": list(ROW), "data": []})
    with pytest.raises(InvalidInput) as caught:
        spec().parse({"instances": [ROW], "entity_keys": ["a", "b"]})
    assert caught.value.field == "entity_keys"
    with pytest.raises(BadRequest):
        spec().parse(b"{nope")


def test_without_a_signature_rows_pass_as_given() -> None:
    free = InputSpec(None)
    parsed = free.parse({"instances": [{"b": 1, "a": "x"}, {"a": "y", "b": 2}]})
    assert parsed.columns == ["b", "a"]
    assert free.parse({"instances": [{"a": "x", "b": 1}]}).keys[0] == parsed.keys[0]
    frame = free.frame(parsed.rows, parsed.columns)
    assert frame.to_dict("list") == {"b": [1, 2], "a": ["x", "y"]}
