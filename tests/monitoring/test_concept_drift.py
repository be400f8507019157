"""The concept-drift rule's false-alarm rate on healthy windows and its power (hardening #15.18).

A logistic churn model is trained on the telco table and calibrated on held-out
rows; healthy windows are real production rows with their real labels (same
population, no drift) or with labels drawn from the calibrated probabilities
(healthy by construction). The old rule (a fixed 0.05 gap) alarmed on ~25% of
healthy 30-label windows; the test must stay near its nominal level.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from keel.demo.data import TARGET, load_churn, split
from keel.monitoring.estimation import ConfidenceEstimator

FEATURES = ["tenure", "monthly_charges", "total_charges"]
WINDOWS = 800
ALPHA = 0.05  # the rule's level in these measurements (monitors default to 0.01)


@pytest.fixture(scope="module")
def calibrated() -> dict:
    frame = load_churn().dropna(subset=FEATURES)
    train, valid, production = split(frame, seed=1, fractions=(0.5, 0.2))
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    estimator = ConfidenceEstimator().fit(valid[TARGET], model.predict_proba(valid[FEATURES])[:, 1])
    scores = model.predict_proba(production[FEATURES])[:, 1]
    return {
        "estimator": estimator,
        "scores": scores,
        "labels": production[TARGET].to_numpy(),
        "calibrated": estimator.calibrated(scores),
    }


def _alarm_rate(calibrated: dict, n: int, *, simulated: bool, seed: int) -> float:
    rng = np.random.default_rng(seed)
    estimator, scores = calibrated["estimator"], calibrated["scores"]
    alarms = 0
    for _ in range(WINDOWS):
        rows = rng.choice(scores.size, n, replace=False)
        if simulated:
            labels = (rng.random(n) < calibrated["calibrated"][rows]).astype(int)
        else:
            labels = calibrated["labels"][rows]
        alarms += estimator.concept_drift(labels, scores[rows], alpha=ALPHA).is_drift
    return alarms / WINDOWS


@pytest.mark.parametrize("n", [30, 180])
@pytest.mark.parametrize("simulated", [False, True], ids=["real-labels", "simulated-labels"])
def test_false_alarm_rate_on_healthy_windows_is_near_alpha(
    calibrated: dict, n: int, simulated: bool
) -> None:
    rate = _alarm_rate(calibrated, n, simulated=simulated, seed=n)
    # Binomial noise of 800 windows at 5%: sd 0.008. Discreteness at 30 labels and the
    # calibration's uncertainty (part of the test, absent from simulated labels) make the
    # test a little conservative, never liberal. Measured: 0.039/0.028 (30), 0.038/0.023 (180).
    assert ALPHA / 4 <= rate <= ALPHA + 0.025, rate


def test_real_drop_is_detected_and_the_gap_is_on_the_same_rows(calibrated: dict) -> None:
    rng = np.random.default_rng(11)
    estimator, scores, labels = calibrated["estimator"], calibrated["scores"], calibrated["labels"]
    detected = 0
    for _ in range(200):
        rows = rng.choice(scores.size, 180, replace=False)
        flipped = labels[rows].copy()
        flip = rng.random(180) < 0.25  # P(y | x) changed: accuracy falls by ~0.145
        flipped[flip] = 1 - flipped[flip]
        check = estimator.concept_drift(flipped, scores[rows], alpha=0.01)
        detected += check.is_drift
        expected = estimator.expected_correct(scores[rows]).mean()
        assert check.test.expected == pytest.approx(expected)
    assert detected / 200 >= 0.9
