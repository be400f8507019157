from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
import skops.io
import xgboost
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from keel.errors import InvalidInput
from keel.registry.flavors import FLAVORS, LoadedModel, flavor_for, get_flavor
from keel.registry.flavors.sklearn import SKOPS_FILE


def cancer() -> tuple[pd.DataFrame, pd.Series]:
    return load_breast_cancer(return_X_y=True, as_frame=True)


def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    return load_diabetes(return_X_y=True, as_frame=True)


def round_trip(
    model: Any, directory: Path, *, allow_pickle: bool = False, trusted: tuple[str, ...] = ()
) -> LoadedModel:
    flavor = flavor_for(model)
    directory.mkdir(parents=True, exist_ok=True)
    meta = flavor.save(model, directory)
    json.dumps(meta, allow_nan=False)  # flavor metadata goes into keel_model.json
    return flavor.load(
        directory,
        json.loads(json.dumps(meta)),
        allow_pickle=allow_pickle,
        trusted_classes=trusted,
    )


def shuffled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.columns[::-1]]


def scaled_logistic_regression() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000))])


def test_sklearn_pipeline_round_trips_exactly(tmp_path: Path) -> None:
    X, y = cancer()
    pipeline = scaled_logistic_regression().fit(X, y)

    loaded = round_trip(pipeline, tmp_path)

    assert loaded.flavor == "sklearn" and (tmp_path / "model.skops").is_file()
    assert loaded.classes == [0, 1]
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), pipeline.predict_proba(X))
    np.testing.assert_array_equal(loaded.predict(shuffled(X)), pipeline.predict(X))
    np.testing.assert_array_equal(loaded.predict(X.to_numpy()), pipeline.predict(X))


def test_sklearn_column_transformer_round_trips(tmp_path: Path) -> None:
    X, y = cancer()
    X = X.assign(size=pd.cut(X["mean area"], 3, labels=["s", "m", "l"]).astype(str))
    model = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("size", OneHotEncoder(), ["size"]),
                        ("num", StandardScaler(), ["mean radius"]),
                    ]
                ),
            ),
            ("model", LogisticRegression()),
        ]
    ).fit(X, y)

    loaded = round_trip(model, tmp_path)

    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_sklearn_regressor_round_trips_and_has_no_probabilities(tmp_path: Path) -> None:
    X, y = diabetes()
    forest = RandomForestRegressor(n_estimators=5, max_depth=4, random_state=0).fit(X, y)

    loaded = round_trip(forest, tmp_path)

    assert loaded.classes is None
    np.testing.assert_array_equal(loaded.predict(X), forest.predict(X))
    with pytest.raises(InvalidInput, match="does not output probabilities"):
        loaded.predict_proba(X)


class Doubler(TransformerMixin, BaseEstimator):
    """A transformer outside every trusted module."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        return self

    def transform(self, X: Any) -> Any:
        return X * 2


def test_sklearn_load_refuses_untrusted_types(tmp_path: Path) -> None:
    X, y = cancer()
    model = Pipeline(
        [("double", Doubler()), ("scale", StandardScaler()), ("lr", LogisticRegression())]
    )
    flavor = get_flavor("sklearn")
    with pytest.raises(InvalidInput, match="does not trust: .*Doubler"):
        flavor.save(model.fit(X, y), tmp_path)  # refused when logged already
    skops.io.dump(model, tmp_path / SKOPS_FILE)  # a file written some other way

    with pytest.raises(InvalidInput, match="does not trust: .*Doubler") as err:
        flavor.load(tmp_path, {"file": SKOPS_FILE}, allow_pickle=True)

    assert err.value.detail["untrusted_types"] == [f"{__name__}.Doubler"]


def test_sklearn_load_refuses_eval_in_trusted_module(tmp_path: Path) -> None:
    X, y = cancer()
    model = Pipeline([("code", FunctionTransformer(np.log1p)), ("model", LogisticRegression())])
    model.fit(X, y)
    # An attacker's file would point the transformer at eval to run request data as code.
    model.named_steps["code"].func = eval
    skops.io.dump(model, tmp_path / SKOPS_FILE)

    with pytest.raises(InvalidInput, match="builtins.eval"):
        get_flavor("sklearn").load(tmp_path, {"file": SKOPS_FILE}, allow_pickle=False)


def test_sklearn_save_refuses_unfitted_model(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not fitted"):
        get_flavor("sklearn").save(LogisticRegression(), tmp_path)


def test_lightgbm_classifier_round_trips_natively(tmp_path: Path) -> None:
    X, y = cancer()
    model = lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(X, y)

    loaded = round_trip(model, tmp_path)

    assert loaded.flavor == "lightgbm" and (tmp_path / "model.txt").is_file()
    assert loaded.classes == [0, 1]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # The booster renamed "mean radius" to "mean_radius"; frames still line up by name.
    np.testing.assert_array_equal(loaded.predict(shuffled(X)), model.predict(X))


def test_lightgbm_keeps_pandas_categories(tmp_path: Path) -> None:
    X, y = cancer()
    X = X.assign(size=pd.cut(X["mean area"], 3, labels=["s", "m", "l"]))
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(X, y)

    loaded = round_trip(model, tmp_path)

    np.testing.assert_array_equal(loaded.predict_proba(shuffled(X)), model.predict_proba(X))


def test_lightgbm_multiclass_keeps_string_labels(tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    labels = iris.target.map(dict(enumerate(iris.target_names)))
    model = lightgbm.LGBMClassifier(n_estimators=10, verbose=-1).fit(iris.data, labels)

    loaded = round_trip(model, tmp_path)

    assert loaded.classes == ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(loaded.predict(iris.data), model.predict(iris.data))
    np.testing.assert_array_equal(loaded.predict_proba(iris.data), model.predict_proba(iris.data))


def test_lightgbm_regressor_round_trips(tmp_path: Path) -> None:
    X, y = diabetes()
    model = lightgbm.LGBMRegressor(n_estimators=10, verbose=-1).fit(X, y)

    loaded = round_trip(model, tmp_path)

    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    with pytest.raises(InvalidInput):
        loaded.predict_proba(X)


def test_lightgbm_booster_predicts_labels_and_probabilities(tmp_path: Path) -> None:
    X, y = cancer()
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1}
    booster = lightgbm.train(params, lightgbm.Dataset(X, label=y), num_boost_round=10)

    loaded = round_trip(booster, tmp_path)

    np.testing.assert_array_equal(loaded.predict_proba(X)[:, 1], booster.predict(X))
    np.testing.assert_array_equal(loaded.predict(X), (booster.predict(X) > 0.5).astype(int))


def test_xgboost_classifier_round_trips_natively(tmp_path: Path) -> None:
    X, y = cancer()
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)

    loaded = round_trip(model, tmp_path)

    assert loaded.flavor == "xgboost" and (tmp_path / "model.json").is_file()
    assert loaded.classes == [0, 1]
    np.testing.assert_array_equal(loaded.predict(shuffled(X)), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_xgboost_regressor_and_booster_round_trip(tmp_path: Path) -> None:
    X, y = diabetes()
    regressor = xgboost.XGBRegressor(n_estimators=10).fit(X, y)
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3},
        xgboost.DMatrix(*load_iris(return_X_y=True)),
    )

    loaded_regressor = round_trip(regressor, tmp_path / "regressor")
    loaded_booster = round_trip(booster, tmp_path / "booster")

    np.testing.assert_array_equal(loaded_regressor.predict(X), regressor.predict(X))
    iris_X = load_iris().data
    proba = booster.inplace_predict(iris_X)
    np.testing.assert_array_equal(loaded_booster.predict_proba(iris_X), proba)
    np.testing.assert_array_equal(loaded_booster.predict(iris_X), proba.argmax(axis=1))


def test_loaded_model_names_missing_columns(tmp_path: Path) -> None:
    X, y = cancer()
    loaded = round_trip(scaled_logistic_regression().fit(X, y), tmp_path)

    with pytest.raises(InvalidInput, match="lacks column") as err:
        loaded.predict(X.drop(columns=["mean area"]))

    assert err.value.field == "mean area"
    with pytest.raises(InvalidInput):
        loaded.predict(X.to_numpy()[0])
    with pytest.raises(InvalidInput):
        loaded.predict(X.to_dict("records"))  # type: ignore[arg-type]


def test_flavor_for_prefers_native_boosters_over_sklearn() -> None:
    X, y = cancer()
    lgbm = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, y)
    xgbm = xgboost.XGBClassifier(n_estimators=2).fit(X, y)

    assert list(FLAVORS) == ["lightgbm", "xgboost", "onnx", "sklearn", "pyfunc"]
    assert flavor_for(lgbm).name == "lightgbm"
    assert flavor_for(xgbm).name == "xgboost"
    assert flavor_for(scaled_logistic_regression()).name == "sklearn"
    assert flavor_for(Doubled()).name == "pyfunc"


def test_flavor_for_rejects_objects_without_predict() -> None:
    with pytest.raises(InvalidInput, match="no flavor"):
        flavor_for(object())


def test_get_flavor_rejects_unknown_name() -> None:
    with pytest.raises(InvalidInput, match="unknown flavor 'keras'") as err:
        get_flavor("keras")

    assert err.value.field == "flavor"


class Doubled:
    """A python-function model that stores itself without pickle."""

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def predict(self, X: Any) -> Any:
        return np.asarray(X, dtype=float).sum(axis=1) * self.factor

    def save(self, directory: Path) -> None:
        (directory / "factor.json").write_text(json.dumps(self.factor))

    @classmethod
    def load(cls, directory: Path) -> Doubled:
        return cls(json.loads((directory / "factor.json").read_text()))


class Threshold:
    """A python-function model with no save/load of its own: it gets pickled."""

    classes_ = [False, True]

    def __init__(self, cut: float) -> None:
        self.cut = cut

    def predict(self, X: Any) -> Any:
        return np.asarray(X)[:, 0] > self.cut

    def predict_proba(self, X: Any) -> Any:
        above = self.predict(X).astype(float)
        return np.column_stack([1 - above, above])


def test_pyfunc_with_own_save_and_load_needs_no_pickle(tmp_path: Path) -> None:
    loaded = round_trip(Doubled(3.0), tmp_path, trusted=(f"{Doubled.__module__}:Doubled",))

    assert loaded.flavor == "pyfunc" and not (tmp_path / "model.pkl").exists()
    np.testing.assert_array_equal(loaded.predict(np.ones((2, 2))), [6.0, 6.0])
    with pytest.raises(InvalidInput, match="does not output probabilities"):
        loaded.predict_proba(np.ones((2, 2)))


def test_pyfunc_pickle_needs_opt_in(tmp_path: Path) -> None:
    flavor = get_flavor("pyfunc")
    meta = flavor.save(Threshold(0.5), tmp_path)

    assert meta["serialization"] == "pickle"
    assert meta["class"] == f"{__name__}:Threshold"
    with pytest.raises(InvalidInput, match="KEEL_ALLOW_PICKLE=true") as err:
        flavor.load(tmp_path, meta, allow_pickle=False)
    assert "arbitrary code" in err.value.message

    loaded = flavor.load(tmp_path, meta, allow_pickle=True)
    assert loaded.classes == [False, True]
    np.testing.assert_array_equal(loaded.predict(np.array([[0.2], [0.9]])), [False, True])
    np.testing.assert_array_equal(loaded.predict_proba(np.array([[0.9]])), [[0.0, 1.0]])


def test_pyfunc_refuses_classes_another_process_cannot_import(tmp_path: Path) -> None:
    class Local:
        def predict(self, X: Any) -> Any:
            return X

    with pytest.raises(InvalidInput, match="cannot be imported"):
        get_flavor("pyfunc").save(Local(), tmp_path)


def test_pyfunc_load_names_class_that_no_longer_imports(tmp_path: Path) -> None:
    meta = {"class": "keel_no_such_module:Model", "serialization": "custom"}

    with pytest.raises(InvalidInput, match="cannot import model class") as err:
        get_flavor("pyfunc").load(
            tmp_path, meta, allow_pickle=False, trusted_classes={"keel_no_such_module:Model"}
        )

    assert err.value.field == "class"
