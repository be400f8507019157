"""A loaded model applies its version's signature as the gateway does (#15.23)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from keel import Client
from keel.errors import InvalidInput


def _training() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(0, 70, n).astype(float),
            "contract": pd.Categorical(rng.choice(["monthly", "yearly", "two-year"], n)),
            "plan": pd.Categorical(rng.choice(["basic", "plus"], n)),
        }
    )
    churned = (frame["tenure"] < 20) & (frame["contract"] == "monthly") | (frame["plan"] == "plus")
    return frame, churned.astype(int)


def _fit(flavor: str, frame: pd.DataFrame, target: pd.Series) -> object:
    if flavor == "lightgbm":
        return lgb.LGBMClassifier(n_estimators=20, min_child_samples=5, verbose=-1).fit(
            frame, target
        )
    encode = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore"), ["contract", "plan"])],
        remainder="passthrough",
    )
    return make_pipeline(encode, LogisticRegression(max_iter=1_000)).fit(frame, target)


@pytest.mark.parametrize("flavor", ["lightgbm", "sklearn"])
def test_loaded_model_takes_strings_for_category_columns(client: Client, flavor: str) -> None:
    frame, target = _training()
    native = _fit(flavor, frame, target)
    with client.start_run("loaded-signature") as run:
        version = run.log_model(native, registered_name=f"cat-{flavor}", input_example=frame[:5])
    assert version is not None and version.signature is not None
    loaded = client.load_model(f"models:/cat-{flavor}/{version.version}")
    assert loaded.flavor == flavor
    # What a user reads back from a CSV: plain strings, columns in another order, extras.
    raw = frame.astype({"contract": str, "plan": str})[["plan", "tenure", "contract"]]
    raw = raw.assign(note="ignored")
    expected = native.predict_proba(frame)  # type: ignore[attr-defined]
    np.testing.assert_allclose(loaded.predict_proba(raw), expected, rtol=1e-12)
    np.testing.assert_array_equal(loaded.predict(raw), native.predict(frame))  # type: ignore[attr-defined]
    # A few rows whose categories are a subset of the training ones map the same way.
    head = raw.iloc[[3, 1]]
    np.testing.assert_allclose(loaded.predict_proba(head), expected[[3, 1]], rtol=1e-12)
    with pytest.raises(InvalidInput) as caught:
        loaded.predict_proba(raw.drop(columns="plan"))
    assert caught.value.field == "plan"
    with pytest.raises(InvalidInput) as caught:
        loaded.predict_proba(raw.assign(tenure="long"))
    assert caught.value.field == "tenure"
