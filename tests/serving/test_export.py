"""Edge export: real models on real data, registered through the real registry, to ONNX."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from typer.testing import CliRunner, Result

from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn
from keel.errors import InvalidInput
from keel.registry.packaging import load_model_dir
from keel.serving.export import export_onnx

runner = CliRunner()


class Constant:
    """A python-function model (stores itself): no ONNX converter exists for it."""

    def predict(self, X: Any) -> Any:
        return np.zeros(len(X))

    def save(self, directory: Path) -> None:
        (directory / "constant.json").write_text("0")

    @classmethod
    def load(cls, directory: Path) -> Constant:
        return cls()


@dataclass
class Registry:
    home: Path
    client: Client
    churn: pd.DataFrame
    features: list[str]

    def model_dir(self, ref: str) -> tuple[Path, Any]:
        item = self.client.resolve(ref)
        return self.client.transport.model_dir(item), item


def _cancer() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X.set_axis([c.replace(" ", "_") for c in X.columns], axis=1), y


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    from lightgbm import LGBMClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    home = tmp_path_factory.mktemp("export") / "keel"
    client = Client(
        settings=Settings(home=home, trusted_model_classes=f"{Constant.__module__}:Constant")
    )
    churn = load_churn().iloc[:2500]
    features = [c for c in churn.columns if c not in (TARGET, "customer_id")]
    X, y = _cancer()
    with client.start_run("export", capture_env=False) as run:
        run.log_input(churn, name="churn-train", context="training")
        lgbm = LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1, n_jobs=1)
        lgbm.fit(churn[features], churn[TARGET])
        version = run.log_model(
            lgbm, "lgbm", registered_name="churn", input_example=churn[features].head(5)
        )
        client.set_alias("churn", "champion", version.version)  # type: ignore[union-attr]
    with client.start_run("export", capture_env=False) as run:
        mlp = make_pipeline(
            StandardScaler(), MLPClassifier((16,), solver="lbfgs", max_iter=1000, random_state=0)
        )
        run.log_model(mlp.fit(X, y), "mlp", registered_name="cancer-mlp", input_example=X.head(5))
        xgb = XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1).fit(X, y)
        run.log_model(xgb, "xgb", registered_name="cancer-xgb", input_example=X.head(5))
        run.log_model(Constant(), "const", registered_name="constant", input_example=X.head(5))
    yield Registry(home, client, churn, features)
    client.close()


def cli(home: Path, *args: str) -> Result:
    env = {"KEEL_HOME": str(home), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    return runner.invoke(app, list(args), env=env)


def _session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _feeds(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    feeds = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            feeds[name] = (
                column.astype(object)
                .where(column.notna(), "")
                .astype(str)
                .to_numpy(object)
                .reshape(-1, 1)
            )
        else:
            feeds[name] = column.to_numpy(np.float32).reshape(-1, 1)
    return feeds


def test_export_cli_writes_lightgbm_churn_with_signature_and_parity(
    registry: Registry, tmp_path: Path
) -> None:
    target = tmp_path / "churn.onnx"

    result = cli(
        registry.home, "models", "export", "churn@champion", "--format", "onnx", "-o", str(target)
    )

    assert result.exit_code == 0, result.output
    assert "parity on" in result.stdout and "latency" in result.stdout and "bytes" in result.stdout
    proto = onnx.load(str(target))
    props = {p.key: p.value for p in proto.metadata_props}
    version = registry.client.resolve("churn@champion")
    assert props["keel.model"] == "churn" and props["keel.version"] == str(version.version)
    assert json.loads(props["keel.signature"]) == version.signature
    assert json.loads(props["keel.parity"])["max_abs_diff"] <= 1e-4
    # Rows the parity check did not see, with a category LightGBM never met ("Cable").
    rows = load_churn().iloc[5000:5200][registry.features].reset_index(drop=True)
    rows["internet_service"] = rows["internet_service"].cat.add_categories("Cable")
    rows.loc[0, "internet_service"] = "Cable"
    labels, proba = _session(target).run(None, _feeds(rows))
    original = load_model_dir(registry.model_dir("churn@champion")[0])
    np.testing.assert_allclose(proba, original.predict_proba(rows), atol=1e-4)
    np.testing.assert_array_equal(labels, original.predict(rows))


def test_export_int8_quantizes_an_mlp_within_its_stated_tolerance(
    registry: Registry, tmp_path: Path
) -> None:
    directory, item = registry.model_dir("cancer-mlp")
    X, _ = _cancer()  # its training data: int8 error is measured where the model is used
    fp32 = export_onnx(
        directory,
        tmp_path / "fp32.onnx",
        model=item.name,
        version=item.version,
        data=X,
        measure_latency=False,
    )

    int8 = export_onnx(
        directory,
        tmp_path / "int8.onnx",
        model=item.name,
        version=item.version,
        quantize="int8",
        data=X,
        measure_latency=False,
    )

    assert fp32.precision == "fp32" and fp32.parity.max_abs_diff <= 1e-4
    assert int8.precision == "int8" and int8.quantization_note is None
    assert 1e-4 < int8.parity.max_abs_diff <= 0.1  # measured, and really quantized
    ops = {n.op_type for n in onnx.load(str(tmp_path / "int8.onnx")).graph.node}
    assert "MatMulInteger" in ops


def test_export_int8_says_plainly_it_does_not_apply_to_tree_ensembles(
    registry: Registry, tmp_path: Path
) -> None:
    target = tmp_path / "trees.onnx"

    result = cli(
        registry.home,
        "models",
        "export",
        "churn@champion",
        "--quantize",
        "int8",
        "-o",
        str(target),
        "--json",
    )

    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["precision"] == "fp32"
    assert "does not apply" in body["quantization_note"]
    assert body["parity"]["tolerance"] == 1e-4
    assert body["latency"]["onnx_1000_rows_ms"] > 0 and body["size_bytes"] > 0


def test_export_xgboost_matches_the_wrapper(registry: Registry, tmp_path: Path) -> None:
    directory, item = registry.model_dir("cancer-xgb")

    result = export_onnx(
        directory,
        tmp_path / "xgb.onnx",
        model=item.name,
        version=item.version,
        measure_latency=False,
    )

    X, _ = _cancer()
    labels, proba = _session(tmp_path / "xgb.onnx").run(None, _feeds(X))
    original = load_model_dir(directory)
    assert result.converter == "onnxmltools" and result.parity.passed
    np.testing.assert_allclose(proba, original.predict_proba(X), atol=1e-4)
    np.testing.assert_array_equal(labels, original.predict(X))


def test_export_parity_failure_exits_2_and_writes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    target = tmp_path / "strict.onnx"

    result = cli(
        registry.home, "models", "export", "churn@champion", "-o", str(target), "--tolerance", "0"
    )

    assert result.exit_code == 2, result.output
    assert "differs from the original model" in result.stderr and "parity" in result.stderr
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_export_unknown_model_exits_2_naming_it(registry: Registry, tmp_path: Path) -> None:
    result = cli(registry.home, "models", "export", "nosuch@champion", "-o", str(tmp_path / "x"))

    assert result.exit_code == 2, result.output
    assert "nosuch" in result.stderr and "Traceback" not in result.output


def test_export_unknown_format_exits_2(registry: Registry) -> None:
    result = cli(registry.home, "models", "export", "churn@champion", "--format", "tflite")

    assert result.exit_code == 2 and "(field: format)" in result.stderr


def test_export_refuses_a_flavor_without_converter(registry: Registry, tmp_path: Path) -> None:
    directory, item = registry.model_dir("constant")

    with pytest.raises(InvalidInput, match="flavor 'pyfunc' cannot be exported") as err:
        export_onnx(
            directory,
            tmp_path / "c.onnx",
            model=item.name,
            version=item.version,
            trusted_classes={f"{Constant.__module__}:Constant"},
        )

    assert err.value.field == "flavor" and not (tmp_path / "c.onnx").exists()


def test_export_rejects_bad_options(registry: Registry, tmp_path: Path) -> None:
    directory, item = registry.model_dir("cancer-xgb")
    with pytest.raises(InvalidInput) as quant:
        export_onnx(directory, tmp_path / "a.onnx", model="m", version=1, quantize="int4")
    with pytest.raises(InvalidInput) as tol:
        export_onnx(directory, tmp_path / "a.onnx", model="m", version=1, tolerance=-1.0)

    assert (quant.value.field, tol.value.field) == ("quantize", "tolerance")


def test_export_onnx_flavor_is_copied_with_metadata(registry: Registry, tmp_path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _cancer()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    proto = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
        options={"zipmap": False},
    )
    with registry.client.start_run("export", capture_env=False) as run:
        run.log_model(proto, "onnx", registered_name="cancer-onnx", input_example=X.head(5))
    directory, item = registry.model_dir("cancer-onnx")

    result = export_onnx(
        directory,
        tmp_path / "copy.onnx",
        model=item.name,
        version=item.version,
        measure_latency=False,
    )

    copied = onnx.load(str(tmp_path / "copy.onnx"))
    assert result.converter == "copy" and result.parity.max_abs_diff == 0.0
    assert {p.key for p in copied.metadata_props} >= {"keel.signature", "keel.model"}
    assert [n.op_type for n in copied.graph.node] == [n.op_type for n in proto.graph.node]


def test_export_lightgbm_with_text_labels_maps_the_class_index(
    registry: Registry, tmp_path: Path
) -> None:
    from lightgbm import LGBMClassifier

    from keel.registry.packaging import save_model_dir

    churn = registry.churn
    labels = churn[TARGET].map({0: "stays", 1: "leaves"})
    model = LGBMClassifier(n_estimators=10, verbose=-1, n_jobs=1)
    model.fit(churn[registry.features], labels)
    save_model_dir(model, tmp_path / "model", input_example=churn[registry.features].head(5))

    result = export_onnx(
        tmp_path / "model",
        tmp_path / "text.onnx",
        model="text",
        version=1,
        data=churn,
        measure_latency=False,
    )

    assert result.parity.passed and result.parity.label_mismatches == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "text.onnx")).metadata_props}
    assert json.loads(props["keel.classes"]) == ["leaves", "stays"]
