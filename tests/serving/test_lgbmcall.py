"""The gateway's one-C-call LightGBM predictor gives what the loaded model's predict and
predict_proba give: labels, probabilities and regression values, on real churn models
(binary, multiclass, regressor, a bare booster), rows with missing values, one row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.tree import DecisionTreeClassifier

from keel.demo.data import TARGET, load_churn, split
from keel.registry.flavors.base import LoadedModel
from keel.registry.flavors.lightgbm import LightGBMFlavor
from keel.registry.flavors.sklearn import SklearnFlavor
from keel.serving._lgbmcall import BoosterCall
from keel.serving.pool import PoolEntry, takes_float_matrix
from keel.serving.validation import InputSpec


@pytest.fixture(scope="module")
def data() -> tuple[Any, Any, list[str]]:
    frame = load_churn()
    for column in frame.columns:
        if str(frame[column].dtype) == "category":
            frame[column] = frame[column].cat.codes.astype("float64")
    train, _valid, test = split(frame, 11)
    features = [c for c in train.columns if c not in (TARGET, "customer_id", "total_charges")]
    return train, test, features


def _loaded(model: Any, tmp_path: Path) -> LoadedModel:
    flavor = LightGBMFlavor()
    meta = flavor.save(model, tmp_path)
    return flavor.load(tmp_path, meta, allow_pickle=False)


def _matrix(test: Any, features: list[str]) -> np.ndarray:
    matrix = test[features].to_numpy(dtype=np.float64)[:400].copy()
    matrix[::7, 3] = np.nan  # missing values go down LightGBM's default branches
    matrix[::11, 0] = np.nan
    return np.ascontiguousarray(matrix)


def _same(loaded: LoadedModel, matrix: np.ndarray) -> None:
    call = BoosterCall.of(loaded)
    assert call is not None
    for rows in (matrix, matrix[:1], matrix[:5]):  # one row is C- and F-contiguous at once
        labels, proba = call(np.ascontiguousarray(rows), True)
        assert labels == loaded.predict(rows).tolist()
        if loaded.classes is None:
            assert proba is None
        else:
            assert np.array_equal(proba, loaded.predict_proba(rows))
        assert call(np.ascontiguousarray(rows), False) == (labels, None)


def test_binary_classifier(data: tuple[Any, Any, list[str]], tmp_path: Path) -> None:
    train, test, features = data
    model = LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1, random_state=3)
    model.fit(train[features], train[TARGET])
    _same(_loaded(model, tmp_path), _matrix(test, features))


def test_multiclass_classifier_with_string_labels(
    data: tuple[Any, Any, list[str]], tmp_path: Path
) -> None:
    train, test, features = data
    inputs = [f for f in features if f != "tenure"]
    tenure = np.select([train["tenure"] < 12, train["tenure"] < 48], ["new", "mid"], "loyal")
    model = LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1, random_state=4)
    model.fit(train[inputs], tenure)
    loaded = _loaded(model, tmp_path)
    assert loaded.classes == ["loyal", "mid", "new"]
    _same(loaded, _matrix(test, inputs))


def test_regressor(data: tuple[Any, Any, list[str]], tmp_path: Path) -> None:
    train, test, features = data
    inputs = [f for f in features if f != "monthly_charges"]
    model = LGBMRegressor(n_estimators=30, verbose=-1, random_state=5)
    model.fit(train[inputs], train["monthly_charges"])
    _same(_loaded(model, tmp_path), _matrix(test, inputs))


def test_bare_booster(data: tuple[Any, Any, list[str]], tmp_path: Path) -> None:
    train, test, features = data
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1},
        lgb.Dataset(train[features], train[TARGET]),
        num_boost_round=25,
    )
    loaded = _loaded(booster, tmp_path)
    assert loaded.classes == [0, 1]
    _same(loaded, _matrix(test, features))


def test_pool_entry_answers_as_the_model(data: tuple[Any, Any, list[str]], tmp_path: Path) -> None:
    train, test, features = data
    model = LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1, random_state=6)
    model.fit(train[features], train[TARGET])
    loaded = _loaded(model, tmp_path)
    spec = InputSpec({"inputs": [{"name": f, "type": "double"} for f in features]})
    assert takes_float_matrix(loaded, spec)
    rows: list[tuple[Any, ...]] = [tuple(r) for r in _matrix(test, features)[:50].tolist()]
    rows[0] = (None, *rows[0][1:])  # a null reaches the model as NaN
    fast = PoolEntry("m", 1, loaded, spec, 0, 0.0, matrix_ok=True)
    fast.booster_call = BoosterCall.of(loaded)
    slow = PoolEntry("m", 1, loaded, spec, 0, 0.0, matrix_ok=True)
    assert fast.booster_call is not None and slow.booster_call is None
    assert fast.run(rows, True) == slow.run(rows, True)
    assert fast.run(rows, False) == slow.run(rows, False)


def test_other_flavors_keep_their_own_predict(
    data: tuple[Any, Any, list[str]], tmp_path: Path
) -> None:
    train, _test, features = data
    model = DecisionTreeClassifier(max_depth=3).fit(train[features].fillna(0), train[TARGET])
    flavor = SklearnFlavor()
    meta = flavor.save(model, tmp_path)
    assert BoosterCall.of(flavor.load(tmp_path, meta, allow_pickle=False)) is None
