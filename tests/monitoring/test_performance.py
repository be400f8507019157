"""Performance from labels (checked against sklearn/hand formulas) and estimated without them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from keel.demo.data import TARGET, load_churn, split
from keel.errors import InvalidInput
from keel.monitoring.estimation import ConfidenceEstimator
from keel.monitoring.performance import (
    calibration_error,
    classification_metrics,
    regression_metrics,
    slice_metrics,
)


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    score = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    pred = (score >= 0.5).astype(int)
    got = classification_metrics(y, pred, score)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, score))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, score))
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, score))


def test_calibration_error_by_hand() -> None:
    # bin [0.2, 0.3): two rows scored 0.2, one positive -> |0.5 - 0.2| * 2/4
    # bin [0.9, 1.0]: two rows scored 1.0, both positive -> 0
    assert calibration_error([0, 1, 1, 1], [0.2, 0.2, 1.0, 1.0]) == pytest.approx(0.15)


def test_single_class_window_has_no_auc_and_labels_must_align() -> None:
    got = classification_metrics([1, 1, 1], [1, 0, 1], [0.9, 0.2, 0.8])
    assert got["roc_auc"] is None and got["recall"] == pytest.approx(2 / 3)
    with pytest.raises(InvalidInput, match="y_pred: 2 values for 3 labels"):
        classification_metrics([1, 0, 1], [1, 0])
    with pytest.raises(InvalidInput, match="y_score: probabilities must lie in"):
        classification_metrics([1, 0], [1, 0], [1.5, 0.1])
    with pytest.raises(InvalidInput, match="no rows"):
        classification_metrics([], [])


def test_regression_metrics() -> None:
    got = regression_metrics([1.0, 2.0, 0.0, 4.0], [1.5, 2.0, 1.0, 2.0])
    assert got["mae"] == pytest.approx((0.5 + 0 + 1 + 2) / 4)
    assert got["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 1 + 4) / 4))
    assert got["mape"] == pytest.approx((0.5 + 0 + 0.5) / 3)  # the zero row is skipped
    assert regression_metrics([0.0], [1.0])["mape"] is None


@pytest.fixture(scope="module")
def churn_model() -> tuple[LogisticRegression, pd.DataFrame, pd.DataFrame, list[str]]:
    """A logistic model on three numeric churn features."""
    frame = load_churn()
    features = ["tenure", "monthly_charges", "total_charges"]
    frame = frame.dropna(subset=features)
    train, reference, production = split(frame, seed=3, fractions=(0.5, 0.25))
    model = LogisticRegression(max_iter=1_000).fit(train[features], train[TARGET])
    return model, reference, production, features


def test_slices_rank_the_worst_segment_first(churn_model: tuple) -> None:
    model, _, production, features = churn_model
    scored = production.assign(
        pred=model.predict(production[features]),
        score=model.predict_proba(production[features])[:, 1],
    )

    def accuracy(part: pd.DataFrame) -> dict[str, float | None]:
        return classification_metrics(part[TARGET], part["pred"], part["score"])

    results = slice_metrics(
        scored,
        by=["contract"],
        metric="accuracy",
        compute=accuracy,
        predicates={"new customers": lambda f: f["tenure"] < 6},
    )
    gaps = [r.gap for r in results if r.gap is not None]
    assert gaps == sorted(gaps, reverse=True)
    by_hand = {
        value: skm.accuracy_score(part[TARGET], part["pred"])
        for value, part in scored.groupby("contract", observed=True)
    }
    for r in results:
        if r.column == "contract":
            assert r.score == pytest.approx(by_hand[r.value])
    assert {r.value for r in results} >= {"new customers", "Month-to-month"}
    with pytest.raises(InvalidInput, match="by: no such column: region"):
        slice_metrics(scored, by=["region"], metric="accuracy", compute=accuracy)


def test_small_segments_sort_last_with_no_score(churn_model: tuple) -> None:
    model, _, production, features = churn_model
    scored = production.assign(pred=model.predict(production[features]))
    scored["tiny"] = np.where(np.arange(len(scored)) < 5, "rare", "common")
    results = slice_metrics(
        scored,
        by=["tiny"],
        metric="accuracy",
        compute=lambda p: classification_metrics(p[TARGET], p["pred"]),
    )
    assert results[-1].value == "rare" and results[-1].score is None and results[-1].n == 5


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_cbpe_estimate_tracks_realised_performance_under_covariate_shift(seed: int) -> None:
    frame = load_churn().dropna()
    numeric = ["tenure", "monthly_charges", "total_charges"]
    categorical = ["contract", "internet_service", "payment_method", "online_security"]
    data = pd.get_dummies(frame[numeric + categorical], columns=categorical, dtype=float)
    features = list(data.columns)
    data[TARGET] = frame[TARGET]
    data["segment"] = frame["contract"].astype(str)
    train, reference, production = split(data, seed=seed, fractions=(0.5, 0.25))
    model = LogisticRegression(max_iter=5_000).fit(train[features], train[TARGET])
    estimator = ConfidenceEstimator().fit(
        reference[TARGET], model.predict_proba(reference[features])[:, 1]
    )
    rng = np.random.default_rng(seed)
    estimates = {}
    # Covariate shift without concept drift: windows resampled so that 80% of
    # customers have one contract type (P(x) changes, P(y | x) does not).
    for contract in ("Month-to-month", "Two year"):
        weights = np.where(production["segment"] == contract, 0.8, 0.2)
        rows = rng.choice(len(production), 1_500, p=weights / weights.sum())
        window = production.iloc[rows]
        score = model.predict_proba(window[features])[:, 1]
        realised = classification_metrics(window[TARGET], (score >= 0.5).astype(int), score)
        estimated = estimator.estimate(score)
        for metric in ("accuracy", "roc_auc"):
            assert estimated[metric] == pytest.approx(realised[metric], abs=0.04), (
                contract,
                metric,
            )
        estimates[contract] = estimated["accuracy"]
    # The estimate follows the shift: long contracts are easier to call.
    assert estimates["Two year"] > estimates["Month-to-month"] + 0.05


def test_cbpe_on_perfectly_calibrated_scores() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(2, 5, 40_000)
    y = (rng.random(p.size) < p).astype(int)
    estimator = ConfidenceEstimator().fit(y[:20_000], p[:20_000])
    estimated = estimator.estimate(p[20_000:])
    realised = classification_metrics(y[20_000:], (p[20_000:] >= 0.5).astype(int), p[20_000:])
    for metric in ("accuracy", "precision", "recall", "f1", "roc_auc"):
        assert estimated[metric] == pytest.approx(realised[metric], abs=0.02), metric


def test_cbpe_bad_input() -> None:
    with pytest.raises(InvalidInput, match="call fit"):
        ConfidenceEstimator().estimate([0.5])
    with pytest.raises(InvalidInput, match="both classes"):
        ConfidenceEstimator().fit([1, 1], [0.2, 0.9])
    with pytest.raises(InvalidInput, match="y_true: 2 labels for 3 scores"):
        ConfidenceEstimator().fit([0, 1], [0.2, 0.9, 0.4])
    fitted = ConfidenceEstimator().fit([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.7])
    with pytest.raises(InvalidInput, match="non-empty"):
        fitted.estimate([])
    with pytest.raises(InvalidInput, match="in \\[0, 1\\]"):
        fitted.estimate([np.nan])
