from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from keel.errors import InvalidInput
from keel.registry.flavors import LoadedModel, flavor_for, get_flavor


def fitted() -> tuple[Pipeline, pd.DataFrame]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])
    return model.fit(X, y), X


def to_onnx(model: Pipeline, n_features: int, *, zipmap: bool = False) -> onnx.ModelProto:
    return convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        options={id(model): {"zipmap": zipmap}},
    )


def run(proto: onnx.ModelProto, X: pd.DataFrame) -> list[Any]:
    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, {"input": X.to_numpy(dtype=np.float32)}))


def round_trip(model: Any, directory: Path) -> LoadedModel:
    flavor = flavor_for(model)
    directory.mkdir(exist_ok=True)
    meta = flavor.save(model, directory)
    return flavor.load(directory, meta, allow_pickle=False)


def test_onnx_classifier_round_trips(tmp_path: Path) -> None:
    model, X = fitted()
    proto = to_onnx(model, X.shape[1])
    labels, proba = run(proto, X)

    loaded = round_trip(proto, tmp_path)

    assert loaded.flavor == "onnx" and (tmp_path / "model.onnx").is_file()
    assert loaded.classes == [0, 1]
    np.testing.assert_array_equal(loaded.predict(X), labels)
    np.testing.assert_array_equal(loaded.predict(X.to_numpy()), labels)
    np.testing.assert_array_equal(loaded.predict_proba(X), proba)
    # float32 inference agrees with scikit-learn's float64 to well within 1e-6 here.
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_onnx_accepts_bytes_and_paths(tmp_path: Path) -> None:
    model, X = fitted()
    proto = to_onnx(model, X.shape[1])
    path = tmp_path / "given.onnx"
    onnx.save(proto, str(path))

    from_bytes = round_trip(proto.SerializeToString(), tmp_path / "bytes")
    from_path = round_trip(path, tmp_path / "path")

    np.testing.assert_array_equal(from_bytes.predict(X), from_path.predict(X))


def test_onnx_zipmap_probabilities_become_an_array(tmp_path: Path) -> None:
    model, X = fitted()
    proto = to_onnx(model, X.shape[1], zipmap=True)

    proba = round_trip(proto, tmp_path).predict_proba(X)

    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-6)


def adder() -> onnx.ModelProto:
    """A graph with one input per column: out = a - b."""
    graph = helper.make_graph(
        [helper.make_node("Sub", ["a", "b"], ["out"])],
        "subtract",
        [
            helper.make_tensor_value_info("a", TensorProto.DOUBLE, [None, 1]),
            helper.make_tensor_value_info("b", TensorProto.DOUBLE, [None, 1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.DOUBLE, [None, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_feeds_one_input_per_column_by_name(tmp_path: Path) -> None:
    loaded = round_trip(adder(), tmp_path)
    frame = pd.DataFrame({"b": [1.0, 2.0], "a": [10.0, 30.0]})

    np.testing.assert_array_equal(loaded.predict(frame), [9.0, 28.0])
    np.testing.assert_array_equal(loaded.predict(np.array([[10.0, 1.0]])), [9.0])
    with pytest.raises(InvalidInput, match="does not output probabilities"):
        loaded.predict_proba(frame)
    with pytest.raises(InvalidInput) as err:
        loaded.predict(frame.rename(columns={"a": "c"}))
    assert err.value.field == "a"
    with pytest.raises(InvalidInput, match="rejected the input"):
        loaded.predict(pd.DataFrame({"a": ["ten"], "b": ["one"]}))


@pytest.mark.parametrize("model", [b"not a protobuf at all", "missing.onnx"])
def test_onnx_save_rejects_unreadable_models(tmp_path: Path, model: Any) -> None:
    with pytest.raises(InvalidInput, match="ONNX"):
        get_flavor("onnx").save(model, tmp_path)


def test_onnx_load_rejects_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x00garbage")

    with pytest.raises(InvalidInput, match="onnxruntime cannot load"):
        get_flavor("onnx").load(tmp_path, {}, allow_pickle=False)
