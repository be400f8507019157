from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keel.errors import InvalidInput
from keel.registry.signature import (
    check_signature,
    example_from_json,
    example_to_json,
    infer_signature,
    validate_frame,
)


def every_type_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "price": [1.5, np.nan, 3.25, 4.0],
            "weight": np.array([1, 2, 3, 4], dtype=np.float32),
            "count": np.array([1, 2, 3, 4], dtype=np.int64),
            "small": np.array([1, 2, 3, 4], dtype=np.int32),
            "flag": [True, False, True, True],
            "city": ["Oslo", "Lima", "Pune", "Oslo"],
            "seen_at": pd.to_datetime(
                ["2024-01-01", "2024-02-01 10:30", "2024-03-01", None], format="ISO8601"
            ),
            "tier": pd.Categorical(["a", "b", "a", "c"]),
            "blob": [b"\x00\x01", b"xyz", b"", b"\xff"],
            "visits": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )


def test_infer_signature_maps_every_column_type() -> None:
    signature = infer_signature(every_type_frame())

    assert signature["outputs"] is None
    assert [(c["name"], c["type"], c["nullable"]) for c in signature["inputs"]] == [
        ("price", "double", True),
        ("weight", "float", False),
        ("count", "long", False),
        ("small", "integer", False),
        ("flag", "boolean", False),
        ("city", "string", False),
        ("seen_at", "datetime", True),
        ("tier", "category", False),
        ("blob", "binary", False),
        ("visits", "long", True),
    ]


def test_infer_signature_names_array_columns_f0_f1() -> None:
    signature = infer_signature(np.arange(6, dtype=np.float64).reshape(3, 2))

    assert signature["inputs"] == [
        {"name": "f0", "type": "double", "nullable": False},
        {"name": "f1", "type": "double", "nullable": False},
    ]


def test_infer_signature_reads_list_of_dicts() -> None:
    rows = [{"age": 31, "name": "ada"}, {"age": None, "name": "bob", "vip": True}]

    signature = infer_signature(rows)

    assert signature["inputs"] == [
        {"name": "age", "type": "long", "nullable": True},
        {"name": "name", "type": "string", "nullable": False},
        {"name": "vip", "type": "boolean", "nullable": True},
    ]


def test_infer_signature_describes_outputs() -> None:
    signature = infer_signature(np.ones((2, 1)), output=np.array([0, 1]))

    assert signature["outputs"] == [{"name": "prediction", "type": "long", "nullable": False}]


@pytest.mark.parametrize(
    "example",
    [np.arange(3), "a,b\n1,2", pd.DataFrame({"a": []}), [1, 2], pd.DataFrame({"a": [1, "x"]})],
    ids=["1-d array", "string", "no rows", "list of ints", "mixed object column"],
)
def test_infer_signature_rejects_unusable_examples(example: object) -> None:
    with pytest.raises(InvalidInput):
        infer_signature(example)


def test_example_to_json_is_json_safe() -> None:
    encoded = example_to_json(every_type_frame(), max_rows=3)

    assert len(encoded["data"]) == 3
    row = dict(zip(encoded["columns"], encoded["data"][1], strict=True))
    assert row["price"] is None
    assert row["seen_at"] == "2024-02-01T10:30:00"
    assert row["blob"] == "eHl6"
    assert row["visits"] is None
    assert type(row["count"]) is int and type(row["weight"]) is float
    json.dumps(encoded, allow_nan=False)


def test_example_json_round_trip_restores_values_and_types() -> None:
    frame = every_type_frame()
    signature = infer_signature(frame)

    restored = example_from_json(
        json.loads(json.dumps(example_to_json(frame, max_rows=10))), signature
    )

    assert infer_signature(restored) == signature
    pd.testing.assert_frame_equal(restored, frame, check_categorical=False)


def test_example_from_json_without_signature_keeps_json_types() -> None:
    frame = example_from_json({"columns": ["a", "b"], "data": [[1, "x"], [2, "y"]]})

    assert frame["a"].tolist() == [1, 2]
    assert frame["b"].tolist() == ["x", "y"]


@pytest.mark.parametrize("payload", [None, {"columns": ["a"]}, {"data": [[1]]}, [[1, 2]]])
def test_example_from_json_rejects_other_shapes(payload: object) -> None:
    with pytest.raises(InvalidInput) as err:
        example_from_json(payload)

    assert err.value.field == "input_example"


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20))
def test_example_to_json_output_always_serialises(values: list[float]) -> None:
    encoded = example_to_json(pd.DataFrame({"x": values}), max_rows=20)

    json.dumps(encoded, allow_nan=False)
    restored = example_from_json(encoded, infer_signature(pd.DataFrame({"x": values})))
    for got, want in zip(restored["x"], values, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or got == want


SIGNATURE = {
    "inputs": [
        {"name": "age", "type": "long", "nullable": False},
        {"name": "income", "type": "double", "nullable": False},
        {"name": "city", "type": "string", "nullable": True},
    ],
    "outputs": None,
}


def test_validate_frame_orders_columns_and_widens_ints_to_float() -> None:
    frame = pd.DataFrame({"city": ["Oslo", None], "income": [100, 250], "age": [30, 41]})

    valid = validate_frame(frame, SIGNATURE)

    assert list(valid.columns) == ["age", "income", "city"]
    assert valid["income"].dtype == np.float64
    assert valid["income"].tolist() == [100.0, 250.0]


def test_validate_frame_names_the_missing_column() -> None:
    with pytest.raises(InvalidInput, match="missing column 'income'") as err:
        validate_frame(pd.DataFrame({"age": [1], "city": ["x"]}), SIGNATURE)

    assert err.value.field == "income"


def test_validate_frame_names_the_extra_column() -> None:
    frame = pd.DataFrame({"age": [1], "income": [2.0], "city": ["x"], "zip": ["0150"]})

    with pytest.raises(InvalidInput, match="unexpected column 'zip'") as err:
        validate_frame(frame, SIGNATURE)

    assert err.value.field == "zip"


def test_validate_frame_reports_the_first_mistyped_row() -> None:
    frame = pd.DataFrame(
        {"age": [1, 2, 3, 4, 5], "income": [1.0, 2.0, 3.0, "lots", "more"], "city": ["x"] * 5}
    )

    with pytest.raises(InvalidInput, match="row 3") as err:
        validate_frame(frame, SIGNATURE)

    assert err.value.field == "income"
    assert err.value.detail["row"] == 3
    assert err.value.detail["expected"] == "double"


def test_validate_frame_rejects_missing_value_in_non_nullable_column() -> None:
    frame = pd.DataFrame({"age": [1, None], "income": [1.0, 2.0], "city": ["x", "y"]})

    with pytest.raises(InvalidInput, match="not nullable") as err:
        validate_frame(frame, SIGNATURE)

    assert err.value.field == "age"
    assert err.value.detail["row"] == 1


def test_validate_frame_accepts_nan_in_float_columns() -> None:
    frame = pd.DataFrame({"age": [1], "income": [np.nan], "city": [None]})

    assert math.isnan(validate_frame(frame, SIGNATURE)["income"].iloc[0])


def test_validate_frame_parses_json_values() -> None:
    signature = {
        "inputs": [
            {"name": "when", "type": "datetime", "nullable": False},
            {"name": "n", "type": "integer", "nullable": False},
            {"name": "raw", "type": "binary", "nullable": False},
        ]
    }
    frame = pd.DataFrame({"when": ["2024-05-01T12:00:00"], "n": [7.0], "raw": ["eHl6"]})

    valid = validate_frame(frame, signature)

    assert valid["when"].iloc[0] == pd.Timestamp("2024-05-01 12:00")
    assert valid["n"].dtype == np.int32
    assert valid["raw"].iloc[0] == b"xyz"


def test_validate_frame_rejects_bool_for_long() -> None:
    frame = pd.DataFrame({"age": [True], "income": [1.0], "city": ["x"]})

    with pytest.raises(InvalidInput) as err:
        validate_frame(frame, SIGNATURE)

    assert err.value.field == "age"
    assert err.value.detail["row"] == 0


@pytest.mark.parametrize(
    "signature",
    [
        None,
        {"inputs": "age"},
        {"inputs": [{"name": "age", "type": "int64"}]},
        {"inputs": [{"type": "long"}]},
        {"inputs": [], "outputs": "y"},
    ],
)
def test_check_signature_rejects_malformed(signature: object) -> None:
    with pytest.raises(InvalidInput) as err:
        check_signature(signature)

    assert err.value.field == "signature"


def test_datetime_examples_keep_time_zones() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    frame = pd.DataFrame({"when": pd.to_datetime([when])})

    encoded = example_to_json(frame)
    restored = example_from_json(encoded, infer_signature(frame))

    assert encoded["data"] == [["2024-01-02T03:04:05+00:00"]]
    assert restored["when"].iloc[0] == pd.Timestamp(when)
