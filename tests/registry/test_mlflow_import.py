"""Imports of real MLflow model directories, made by ``tests/fixtures/mlflow/make_fixtures.py``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import skops.io
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from keel.errors import InvalidInput
from keel.registry.mlflow_import import import_mlflow_model
from keel.registry.packaging import MODEL_META_FILE, load_model_dir

from .test_flavors import Doubler

# The fixtures were pickled / skops-dumped by the scikit-learn that make_fixtures.py ran with;
# a newer scikit-learn warns on loading them, which is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.InconsistentVersionWarning")

FIXTURES = Path(__file__).parent.parent / "fixtures" / "mlflow"
FEATURES = [
    "mean radius",
    "mean texture",
    "mean perimeter",
    "mean area",
    "mean smoothness",
    "mean compactness",
]
# fixture directory -> (keel flavor, column of expected.csv with P(class 1), needs pickle)
CASES = {
    "lightgbm_booster": ("lightgbm", "lightgbm_booster_proba", False),
    "lightgbm_sklearn_skops": ("lightgbm", "lightgbm_sklearn_proba", False),
    "lightgbm_sklearn_pickle": ("lightgbm", "lightgbm_sklearn_proba", True),
    "sklearn_skops": ("sklearn", "sklearn_skops_proba", False),
    "sklearn_pickle": ("sklearn", "sklearn_pickle_proba", True),
}


def expected() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "expected.csv")


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def edit_mlmodel(directory: Path, **changes: Any) -> None:
    mlmodel = yaml.safe_load((directory / "MLmodel").read_text())
    mlmodel.update(changes)
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))


@pytest.mark.parametrize("name", list(CASES))
def test_import_predicts_what_mlflow_predicted(name: str, tmp_path: Path) -> None:
    flavor, proba_column, needs_pickle = CASES[name]
    frame = expected()

    meta = import_mlflow_model(FIXTURES / name, tmp_path / "keel", allow_pickle=needs_pickle)
    loaded = load_model_dir(tmp_path / "keel")

    assert meta["flavor"] == flavor and loaded.flavor == flavor
    assert (tmp_path / "keel" / MODEL_META_FILE).is_file()
    assert not list((tmp_path / "keel").glob("*.pkl"))  # re-stored without pickle
    # Equal to the last bits would pin one numpy/scikit-learn build's summation order.
    np.testing.assert_allclose(
        loaded.predict_proba(frame[FEATURES])[:, 1], frame[proba_column], rtol=1e-12, atol=0
    )
    label_column = proba_column.replace("_proba", "_label")
    if label_column in frame:
        np.testing.assert_array_equal(loaded.predict(frame[FEATURES]), frame[label_column])


def test_import_records_where_the_model_came_from(tmp_path: Path) -> None:
    meta = import_mlflow_model(FIXTURES / "lightgbm_booster", tmp_path)

    origin = meta["imported_from"]
    assert origin["format"] == "mlflow"
    assert origin["run_id"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert origin["flavors"] == ["lightgbm", "python_function"]
    assert origin["mlflow_version"]
    assert json.loads((tmp_path / MODEL_META_FILE).read_text())["imported_from"] == origin


def test_import_converts_signature_and_input_example(tmp_path: Path) -> None:
    meta = import_mlflow_model(FIXTURES / "sklearn_skops", tmp_path)

    assert meta["signature"] == {
        "inputs": [{"name": name, "type": "double", "nullable": False} for name in FEATURES],
        "outputs": [{"name": "prediction", "type": "long", "nullable": False}],
    }
    first_rows = expected()[FEATURES].head(3)
    assert meta["input_example"] == {"columns": FEATURES, "data": first_rows.to_numpy().tolist()}


@pytest.mark.parametrize("name", ["sklearn_pickle", "lightgbm_sklearn_pickle"])
def test_import_refuses_pickles_without_opt_in(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="arbitrary code") as err:
        import_mlflow_model(FIXTURES / name, tmp_path / "keel")

    assert err.value.field == "allow_pickle"
    assert "KEEL_ALLOW_PICKLE=true" in err.value.message
    assert not (tmp_path / "keel").exists()


def test_import_requires_an_mlmodel_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no MLmodel file") as err:
        import_mlflow_model(tmp_path, tmp_path / "keel")

    assert err.value.field == "path"


def test_import_rejects_an_unsupported_flavor(tmp_path: Path) -> None:
    source = copy_fixture("sklearn_skops", tmp_path)
    edit_mlmodel(
        source,
        flavors={"python_function": {"loader_module": "x"}, "tensorflow": {"saved_model_dir": "m"}},
    )

    with pytest.raises(InvalidInput, match="keel imports lightgbm, sklearn") as err:
        import_mlflow_model(source, tmp_path / "keel")

    assert err.value.field == "flavor"
    assert err.value.detail["found"] == ["python_function", "tensorflow"]


def test_import_ignores_the_artifacts_own_skops_trust_list(tmp_path: Path) -> None:
    source = copy_fixture("sklearn_skops", tmp_path)
    frame = expected()
    model = Pipeline(
        [("double", Doubler()), ("scale", StandardScaler()), ("lr", LogisticRegression())]
    )
    skops.io.dump(model.fit(frame[FEATURES], frame["target"]), source / "model.skops")
    mlmodel = yaml.safe_load((source / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["skops_trusted_types"] = [f"{Doubler.__module__}.Doubler"]
    (source / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with pytest.raises(InvalidInput, match="does not trust: .*Doubler"):
        import_mlflow_model(source, tmp_path / "keel")


def test_import_keeps_model_files_inside_the_directory(tmp_path: Path) -> None:
    source = copy_fixture("lightgbm_booster", tmp_path)
    mlmodel = yaml.safe_load((source / "MLmodel").read_text())
    mlmodel["flavors"]["lightgbm"]["data"] = "../lightgbm_booster/../../etc/passwd"
    (source / "MLmodel").write_text(yaml.safe_dump(mlmodel))

    with pytest.raises(InvalidInput, match="missing") as err:
        import_mlflow_model(source, tmp_path / "keel")

    assert err.value.field == "path"


SPLIT = {"columns": FEATURES, "data": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]]}


@pytest.mark.parametrize(
    "example",
    [
        SPLIT,
        {"dataframe_split": SPLIT},
        {"dataframe_records": [dict(zip(FEATURES, SPLIT["data"][0], strict=True))]},
        [dict(zip(FEATURES, SPLIT["data"][0], strict=True))],
    ],
    ids=["split", "dataframe_split", "dataframe_records", "records"],
)
def test_import_reads_each_mlflow_example_layout(example: Any, tmp_path: Path) -> None:
    source = copy_fixture("lightgbm_booster", tmp_path)
    (source / "input_example.json").write_text(json.dumps(example))

    meta = import_mlflow_model(source, tmp_path / "keel")

    assert meta["input_example"] == SPLIT


def test_import_converts_tensor_signatures(tmp_path: Path) -> None:
    source = copy_fixture("lightgbm_booster", tmp_path)
    tensor = {"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 6]}}
    edit_mlmodel(source, signature={"inputs": json.dumps([tensor]), "outputs": None})
    (source / "input_example.json").write_text(json.dumps({"inputs": SPLIT["data"]}))

    meta = import_mlflow_model(source, tmp_path / "keel")

    assert [c["name"] for c in meta["signature"]["inputs"]] == [f"f{k}" for k in range(6)]
    assert {c["type"] for c in meta["signature"]["inputs"]} == {"double"}
    assert meta["input_example"]["columns"] == [f"f{k}" for k in range(6)]


def test_import_infers_a_signature_keel_cannot_convert(tmp_path: Path) -> None:
    source = copy_fixture("lightgbm_booster", tmp_path)
    column = {"type": "array", "items": {"type": "double"}, "name": "x", "required": True}
    edit_mlmodel(source, signature={"inputs": json.dumps([column]), "outputs": None})

    meta = import_mlflow_model(source, tmp_path / "keel")

    # Inferred from the input example instead, and the reason recorded.
    assert [c["name"] for c in meta["signature"]["inputs"]] == FEATURES
    assert "array" in meta["imported_from"]["signature_note"]
