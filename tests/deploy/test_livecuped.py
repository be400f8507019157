"""R-DEP-14: CUPED in the controller's live comparison, over a real prediction log; θ checked
against statsmodels OLS, the adjusted comparison against scipy's Welch test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from tests.deploy.conftest import POLICY, Clock, Models, serve_step

from keel.deploy.abstats import cuped
from keel.deploy.armstats import ArmWindow, read_arm_stats
from keel.deploy.service import DeploymentService
from keel.services import Services
from keel.serving.predlog import PredictionLog
from keel.serving.records import PredictionRecord

START = 1_900_000_000_000
ARMS = ["primary", "canary"]


def _log(root: Path, arm: np.ndarray, x: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """One logged request per unit (input ``x``), and its label ``y`` a minute later."""
    ids = [f"u{i}" for i in range(x.size)]
    with PredictionLog(root, flush_interval_s=0.05, fsync=False) as log:
        for i in range(x.size):
            log.append(
                PredictionRecord(
                    request_id=ids[i],
                    at_ms=START + i * 100,
                    model="m",
                    version=1 if arm[i] == "primary" else 2,
                    features={"x": float(x[i])},
                    output=0.5,
                    probabilities=[0.5, 0.5],
                    latency_ms=5.0,
                    deployment="d",
                    arm=str(arm[i]),
                )
            )
        assert log.flush()
    return pd.DataFrame(
        {
            "request_id": ids,
            "label": [repr(float(v)) for v in y],
            "label_value": y,
            "received_ts": pd.to_datetime(
                START + np.arange(x.size) * 100 + 60_000, unit="ms", utc=True
            ),
        }
    )


def _units(n: int = 4_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    arm = np.where(rng.random(n) < 0.5, "primary", "canary")
    x = rng.normal(50, 10, n)  # pre-period spend
    y = 0.9 * x + np.where(arm == "canary", 1.0, 0.0) + rng.normal(0, 4, n)  # spend now
    return arm, x, y


def test_cuped_adjusts_each_arms_mean_by_the_pooled_theta(tmp_path: Path) -> None:
    arm, x, y = _units()
    labels = _log(tmp_path, arm, x, y)
    found = read_arm_stats(
        tmp_path,
        lambda: labels,
        "m",
        "d",
        ARMS,
        ArmWindow(START, START, START, START + 3_600_000),
        primary="primary",
        metrics=["label_mean"],
        cuped="x",
    )
    plain = read_arm_stats(
        tmp_path,
        lambda: labels,
        "m",
        "d",
        ARMS,
        ArmWindow(START, START, START, START + 3_600_000),
        primary="primary",
        metrics=["label_mean"],
    )
    summary = found["canary"].cuped
    assert summary["applied"] is True and summary["covariate"] == "x"
    # θ is the pooled OLS slope of Y on X (statsmodels), independent of the arm.
    slope = sm.OLS(y, sm.add_constant(x)).fit().params[1]
    assert summary["theta"] == pytest.approx(slope, abs=1e-9)
    p, c = arm == "primary", arm == "canary"
    reference = cuped(y[p], x[p], y[c], x[c])
    assert summary["variance_reduction"] == pytest.approx(reference.variance_reduction, abs=1e-12)
    assert summary["variance_reduction"] > 0.8  # Y is mostly X: corr² = 0.81/(0.81+0.16)
    adjusted = y - slope * (x - x.mean())
    for name, mask in (("primary", p), ("canary", c)):
        metric, before = found[name].metric, plain[name].metric
        assert metric is not None and before is not None
        assert metric.value == pytest.approx(adjusted[mask].mean(), abs=1e-9)
        assert metric.std_error == pytest.approx(stats.sem(adjusted[mask]), rel=1e-9)
        assert summary["unadjusted"][name] == pytest.approx(before.value, abs=1e-12)
        assert metric.std_error < 0.5 * before.std_error
    assert found["canary"].metric.value - found["primary"].metric.value == pytest.approx(
        reference.treatment_mean - reference.control_mean, abs=1e-9
    )
    # The comparison the verdict makes (difference over its standard error) is Welch's t
    # on the adjusted values; without CUPED the true +1.0 effect is far less clear.
    se = np.hypot(found["canary"].metric.std_error, found["primary"].metric.std_error)
    diff = found["canary"].metric.value - found["primary"].metric.value
    welch = stats.ttest_ind(adjusted[c], adjusted[p], equal_var=False)
    assert diff / se == pytest.approx(welch.statistic, rel=1e-9)
    raw = stats.ttest_ind(y[c], y[p], equal_var=False)
    assert welch.pvalue < 1e-6 < raw.pvalue


def test_cuped_is_not_applied_to_roc_auc_or_a_covariate_not_logged(tmp_path: Path) -> None:
    arm, x, y = _units(400)
    labels = _log(tmp_path, arm, x, (y > 50).astype(float))
    window = ArmWindow(START, START, START, START + 3_600_000)
    auc = read_arm_stats(
        tmp_path,
        lambda: labels,
        "m",
        "d",
        ARMS,
        window,
        primary="primary",
        metrics=["roc_auc"],
        cuped="x",
    )
    assert auc["canary"].cuped["applied"] is False and auc["canary"].metric is not None
    missing = read_arm_stats(
        tmp_path,
        lambda: labels,
        "m",
        "d",
        ARMS,
        window,
        primary="primary",
        metrics=["label_mean"],
        cuped="nope",
    )
    assert missing["canary"].cuped == {
        "covariate": "nope",
        "applied": False,
        "reason": "not in the log",
    }
    assert missing["canary"].metric is not None  # unadjusted, still compared


def test_decision_record_shows_cuped_variance_reduction(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    policy = {
        **POLICY,
        "guardrails": {
            **POLICY["guardrails"],
            "metric": {"name": "brier", "higher_is_better": False},
        },
        "analysis": {"cuped": {"covariate": "tenure"}},
    }
    service.create(policy, actor="ana")
    serve_step(services, models, churn_rows[1].sample(1200, random_state=3), clock)
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    summary = record.details["numbers"]["analysis"]["cuped"]
    assert summary["applied"] is True and summary["metric"] == "brier"
    assert 0 < summary["variance_reduction"] < 1
    candidate = record.details["numbers"]["candidate"]["metric"]
    assert candidate["value"] != pytest.approx(summary["unadjusted"]["canary"], abs=1e-12)
