from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from keel.errors import InvalidInput
from keel.registry.packaging import (
    MODEL_META_FILE,
    load_model_dir,
    read_model_meta,
    save_model_dir,
)
from keel.registry.signature import infer_signature

from .test_flavors import Threshold


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


def pipeline() -> Pipeline:
    X, y = cancer()
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
    return model.fit(X, y)


def test_save_model_dir_writes_keel_model_json(tmp_path: Path) -> None:
    X, _ = cancer()
    before_ms = int(time.time() * 1000)

    meta = save_model_dir(pipeline(), tmp_path / "model", input_example=X.head(20))

    on_disk = json.loads((tmp_path / "model" / MODEL_META_FILE).read_text())
    assert on_disk == meta
    assert meta["format_version"] == 1
    assert meta["flavor"] == "sklearn"
    assert meta["flavor_meta"]["classes"] == [0, 1]
    # a LogisticRegression raises on NaN: the probe marks every (float) column so
    inferred = infer_signature(X)["inputs"]
    assert meta["signature"]["inputs"] == [{**c, "accepts_nan": False} for c in inferred]
    assert meta["input_example"]["columns"] == list(X.columns)
    assert len(meta["input_example"]["data"]) == 5
    assert meta["python"] == platform.python_version()
    assert before_ms <= meta["created_at_ms"] <= int(time.time() * 1000)


def test_load_model_dir_attaches_signature_and_metadata(tmp_path: Path) -> None:
    X, _ = cancer()
    model = pipeline()
    meta = save_model_dir(model, tmp_path, input_example=X)

    loaded = load_model_dir(tmp_path)

    assert loaded.signature == meta["signature"]
    assert loaded.metadata == meta
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_save_model_dir_prefers_the_given_signature(tmp_path: Path) -> None:
    signature = {"inputs": [{"name": "x", "type": "double"}], "outputs": None}

    meta = save_model_dir(Threshold(0.5), tmp_path, signature=signature, input_example=[{"x": 1}])

    assert meta["signature"]["inputs"] == [{"name": "x", "type": "double", "nullable": False}]
    assert meta["input_example"] == {"columns": ["x"], "data": [[1]]}


def test_save_model_dir_without_example_has_no_signature(tmp_path: Path) -> None:
    meta = save_model_dir(pipeline(), tmp_path)

    assert meta["signature"] is None and meta["input_example"] is None


def test_save_model_dir_rejects_a_malformed_signature(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        save_model_dir(pipeline(), tmp_path, signature={"inputs": [{"name": "x", "type": "int"}]})

    assert err.value.field == "signature"
    assert not any(tmp_path.iterdir())


def test_save_model_dir_rejects_unknown_flavor(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown flavor") as err:
        save_model_dir(pipeline(), tmp_path, flavor="tensorflow")

    assert err.value.field == "flavor"


def test_save_model_dir_rejects_a_flavor_that_cannot_save_the_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="flavor 'lightgbm' cannot save a Pipeline"):
        save_model_dir(pipeline(), tmp_path, flavor="lightgbm")


def test_save_model_dir_can_force_the_pyfunc_flavor(tmp_path: Path) -> None:
    X, _ = cancer()
    model = pipeline()

    meta = save_model_dir(model, tmp_path, flavor="pyfunc")

    assert meta["flavor_meta"]["serialization"] == "pickle"
    loaded = load_model_dir(tmp_path, allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_save_model_dir_cleans_up_when_the_flavor_fails(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not fitted"):
        save_model_dir(LogisticRegression(), tmp_path)

    assert not any(tmp_path.iterdir())


def test_sklearn_pipeline_around_lightgbm_uses_skops(tmp_path: Path) -> None:
    X, y = cancer()
    model = Pipeline(
        [("scale", StandardScaler()), ("gbm", lightgbm.LGBMClassifier(n_estimators=5, verbose=-1))]
    ).fit(X, y)

    assert save_model_dir(model, tmp_path)["flavor"] == "sklearn"
    np.testing.assert_array_equal(load_model_dir(tmp_path).predict_proba(X), model.predict_proba(X))


def test_save_model_dir_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(InvalidInput, match="not an empty directory") as err:
        save_model_dir(pipeline(), tmp_path)

    assert err.value.field == "path"


def test_save_model_dir_keeps_extra_metadata_but_not_over_standard_keys(tmp_path: Path) -> None:
    meta = save_model_dir(pipeline(), tmp_path / "a", metadata={"imported_from": {"format": "x"}})

    assert read_model_meta(tmp_path / "a")["imported_from"] == {"format": "x"}
    assert meta["imported_from"] == {"format": "x"}
    with pytest.raises(InvalidInput, match="flavor"):
        save_model_dir(pipeline(), tmp_path / "b", metadata={"flavor": "onnx"})


def test_read_model_meta_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=MODEL_META_FILE) as err:
        read_model_meta(tmp_path)

    assert err.value.field == "path"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "does not name a flavor"),
        ('{"flavor": "sklearn", "format_version": 99, "flavor_meta": {}}', "format_version 99"),
        ('{"flavor": "sklearn", "format_version": 1}', "no flavor_meta"),
    ],
)
def test_read_model_meta_rejects_invalid_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / MODEL_META_FILE).write_text(content)

    with pytest.raises(InvalidInput, match=message) as err:
        read_model_meta(tmp_path)

    assert MODEL_META_FILE in err.value.message


def test_load_model_dir_rejects_unknown_flavor(tmp_path: Path) -> None:
    save_model_dir(pipeline(), tmp_path)
    meta = json.loads((tmp_path / MODEL_META_FILE).read_text())
    (tmp_path / MODEL_META_FILE).write_text(json.dumps({**meta, "flavor": "caffe"}))

    with pytest.raises(InvalidInput, match="unknown flavor 'caffe'") as err:
        load_model_dir(tmp_path)

    assert err.value.field == "flavor"


def test_load_model_dir_refuses_pickle_without_opt_in(tmp_path: Path) -> None:
    save_model_dir(Threshold(0.5), tmp_path)

    with pytest.raises(InvalidInput, match="KEEL_ALLOW_PICKLE"):
        load_model_dir(tmp_path)

    assert load_model_dir(tmp_path, allow_pickle=True).predict(np.array([[1.0]])).tolist() == [True]


def test_load_model_dir_reports_a_missing_model_file(tmp_path: Path) -> None:
    save_model_dir(pipeline(), tmp_path)
    (tmp_path / "model.skops").unlink()

    with pytest.raises(InvalidInput, match="model.skops is missing"):
        load_model_dir(tmp_path)


def test_onnx_model_takes_column_order_from_signature(tmp_path: Path) -> None:
    X, _ = cancer()
    model = pipeline()
    proto = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        options={id(model): {"zipmap": False}},
    )
    save_model_dir(proto, tmp_path, input_example=X.head())

    loaded = load_model_dir(tmp_path)

    assert loaded.feature_names == list(X.columns)
    np.testing.assert_array_equal(loaded.predict(X[X.columns[::-1]]), model.predict(X))


def test_lightgbm_model_dir_round_trips(tmp_path: Path) -> None:
    X, y = cancer()
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)

    save_model_dir(model, tmp_path, input_example=X.head(3))
    loaded = load_model_dir(tmp_path)

    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_META_FILE, "model.txt"]
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
