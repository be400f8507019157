"""Column selectors in skops files: ``make_column_selector`` by dtype loads (``keel demo``'s
own scikit-learn baseline holds two, and keel refused to load it); one with a regular
expression is refused, since a crafted pattern could take exponential time on every
request's column names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from keel.demo.churn import _baseline
from keel.errors import InvalidInput
from keel.registry.flavors.skops_trust import load_skops
from keel.registry.packaging import load_model_dir, save_model_dir


def _frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, 300).astype(float),
            "charges": rng.normal(60, 20, 300),
            "contract": pd.Categorical(rng.choice(["Month-to-month", "One year"], 300)),
        }
    )
    y = ((X["tenure"] < 20) & (X["contract"] == "Month-to-month")).astype(int).to_numpy()
    return X, y


def test_the_demos_baseline_selecting_columns_by_dtype_loads_and_predicts(tmp_path: Path) -> None:
    X, y = _frame()
    model = _baseline().fit(X, y)
    save_model_dir(model, tmp_path / "m")

    loaded = load_model_dir(tmp_path / "m")

    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_a_selector_with_a_pattern_is_refused_naming_it(tmp_path: Path) -> None:
    X, y = _frame()
    columns = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), make_column_selector(pattern="^(?:c+)+$")),
        (StandardScaler(), make_column_selector(dtype_include="number")),
    )
    model = make_pipeline(columns, LogisticRegression()).fit(X, y)
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)

    with pytest.raises(InvalidInput, match="regular expression") as refused:
        load_skops(path)
    assert refused.value.field == "model" and "^(?:c+)+$" in refused.value.message


@pytest.mark.parametrize("dtype", [["number", 3], {"number": 1}])
def test_a_selector_naming_dtypes_other_than_by_name_is_refused(
    tmp_path: Path, dtype: object
) -> None:
    X, y = _frame()
    selector = make_column_selector(dtype_include="number")
    model = make_pipeline(
        make_column_transformer((StandardScaler(), selector)), LogisticRegression()
    ).fit(X, y)
    selector.dtype_include = dtype  # as a crafted file could hold it
    path = tmp_path / "model.skops"
    skops.io.dump(model, path)

    with pytest.raises(InvalidInput, match="dtype_include") as refused:
        load_skops(path)
    assert refused.value.field == "model"


def _double(values: np.ndarray) -> np.ndarray:
    return values * 2


def test_a_model_keel_would_not_load_is_refused_when_logged(tmp_path: Path) -> None:
    """Before, it was registered, and refused only when a gateway loaded it."""
    X, y = _frame()
    numeric = X[["tenure", "charges"]]
    custom = make_pipeline(FunctionTransformer(_double), LogisticRegression()).fit(numeric, y)
    with pytest.raises(InvalidInput, match="does not trust") as refused:
        save_model_dir(custom, tmp_path / "custom")
    assert refused.value.field == "model"
    assert any("_double" in name for name in refused.value.detail["untrusted_types"])

    columns = make_column_transformer(
        (StandardScaler(), make_column_selector(pattern="^(?:t+)+")),
    )
    patterned = make_pipeline(columns, LogisticRegression()).fit(numeric, y)
    with pytest.raises(InvalidInput, match="regular expression"):
        save_model_dir(patterned, tmp_path / "patterned")
