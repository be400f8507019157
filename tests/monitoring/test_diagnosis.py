"""Diagnosis names the cause that was injected, with SHAP attributions from the shap library."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from keel.demo.data import TARGET, load_churn, split
from keel.monitoring.diagnosis import diagnose


@pytest.fixture(scope="module")
def churn() -> dict:
    frame = load_churn().dropna()
    numeric = ["tenure", "monthly_charges", "total_charges"]
    data = pd.get_dummies(frame[[*numeric, "contract"]], columns=["contract"], dtype=float)
    features = list(data.columns)
    data[TARGET] = frame[TARGET].to_numpy()
    data["contract"] = frame["contract"].astype(str).to_numpy()
    train, reference, production = split(data, seed=4, fractions=(0.5, 0.25))
    model = LogisticRegression(max_iter=5_000).fit(train[features], train[TARGET])
    return {"model": model, "reference": reference, "production": production, "features": features}


def _run(churn: dict, window: pd.DataFrame, labels: object = None, **kwargs: object):  # type: ignore[no-untyped-def]
    return diagnose(
        churn["model"],
        churn["reference"],
        window,
        churn["features"],
        reference_labels=churn["reference"][TARGET],
        window_labels=window[TARGET] if labels is None else labels,
        **kwargs,  # type: ignore[arg-type]
    )


def test_covariate_shift_is_data_drift(churn: dict) -> None:
    production = churn["production"]
    weights = np.where(production["contract"] == "Month-to-month", 0.9, 0.1)
    rows = np.random.default_rng(0).choice(len(production), 1_500, p=weights / weights.sum())
    result = _run(churn, production.iloc[rows], slice_by=["contract"])
    assert result.verdict == "data drift", result.as_dict()
    # The confidence estimate errs by ~0.04 under this shift (calibration differs between
    # contract types); concept drift may score, but never above the drift that explains it.
    concept = result.scores["concept drift"]
    assert concept is not None and concept < result.scores["data drift"]  # type: ignore[operator]
    assert any("contract_Month-to-month" in e for e in result.evidence)
    assert {a.feature for a in result.attributions} == set(churn["features"])
    assert result.slices and result.slices[0].column == "contract"


def test_changed_relationship_is_concept_drift(churn: dict) -> None:
    window = churn["production"].copy()
    flip = np.random.default_rng(1).random(len(window)) < 0.3
    labels = np.where(flip, 1 - window[TARGET], window[TARGET])  # P(y|x) changed, x did not
    result = _run(churn, window, labels=labels)
    assert result.verdict == "concept drift", result.as_dict()
    assert result.scores["data drift"] == pytest.approx(0.0)
    assert any(e.startswith("concept drift: accuracy") for e in result.evidence)


def test_broken_column_is_a_data_quality_break(churn: dict) -> None:
    window = churn["production"].copy()
    window["tenure"] = window["tenure"].astype(object)
    window.loc[window.index[:300], "tenure"] = "n/a"
    result = diagnose(churn["model"], churn["reference"], window, ["tenure", "monthly_charges"])
    assert result.verdict == "data-quality break"
    assert result.scores["concept drift"] is None and result.notes


def test_stale_source_and_a_clean_window(churn: dict) -> None:
    window = churn["production"]
    stale = _run(churn, window, freshness={"customer_usage": (3 * 3600.0, 3600.0)})
    assert stale.verdict == "upstream staleness"
    assert stale.scores["upstream staleness"] == 1.0
    clean = _run(churn, window, freshness={"customer_usage": (600.0, 3600.0)})
    assert clean.verdict == "no clear cause", clean.as_dict()


def test_tree_models_get_tree_shap(churn: dict) -> None:
    train = churn["reference"]
    model = lgb.LGBMClassifier(n_estimators=30, verbose=-1).fit(
        train[churn["features"]], train[TARGET]
    )
    window = churn["production"].assign(tenure=churn["production"]["tenure"] + 30)
    result = diagnose(model, churn["reference"], window, churn["features"])
    by_name = {a.feature: a for a in result.attributions}
    assert by_name["tenure"].reference > 0
    assert result.attributions[0].feature == "tenure"  # the shifted feature moved the most
    assert result.verdict == "data drift"
