"""R-CICD-10 automatic escalation: gates that pass with anomalous numbers (a gain over a
working champion too large to believe, a perfect holdout AUC, a huge train/holdout gap, a
tiny holdout) send the challenger to a human, also in a real retraining without
``require_approval``; a big gain over a collapsed champion does not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from tests.automation.test_retrain import churn, logged, run_job, spec, svc  # noqa: F401

from keel.automation.gates import parse_policy, run_gates
from keel.automation.gates.escalation import escalation_reasons
from keel.demo.data import TARGET, load_churn, split
from keel.services import Services

NUMERIC = ["tenure", "monthly_charges", "senior_citizen"]
QUIET = {
    "latency": {"enabled": False},
    "equivalence": {"enabled": False},
    "stress": {"enabled": False},
    "skew": {"enabled": False},
    "calibration": {"enabled": False},
}


class Columns:
    """A fitted classifier on some columns of the frame; ``invert`` flips its scores (a
    champion whose concept has turned)."""

    def __init__(self, model: Any, columns: list[str], invert: bool = False) -> None:
        self.model, self.columns, self.invert = model, columns, invert
        self.classes_ = model.classes_

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        proba = np.asarray(self.model.predict_proba(frame[self.columns]))
        return proba[:, ::-1] if self.invert else proba


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    frame = load_churn()[[*NUMERIC, TARGET]].dropna().reset_index(drop=True)
    # a leaked column: the label itself, lightly blurred (a join that read the future)
    noise = np.random.default_rng(3).normal(0, 0.1, len(frame))
    frame["leak"] = frame[TARGET].astype(float) + noise
    train, _, holdout = split(frame, 5)

    def fit(features: pd.DataFrame, label: pd.Series) -> LogisticRegression:
        return LogisticRegression(max_iter=1000).fit(features, label)

    return {
        "train": train,
        "holdout": holdout,
        "plain": Columns(fit(train[NUMERIC], train[TARGET]), NUMERIC),
        "leaky": Columns(fit(train[[*NUMERIC, "leak"]], train[TARGET]), [*NUMERIC, "leak"]),
        "inverted": Columns(fit(train[NUMERIC], train[TARGET]), NUMERIC, invert=True),
        "tree": Columns(
            DecisionTreeClassifier(random_state=0).fit(train[NUMERIC], train[TARGET]), NUMERIC
        ),
    }


def _report(data: dict[str, Any], new: str, old: str | None, **policy: Any) -> Any:
    return run_gates(
        data[new],
        policy.pop("holdout", data["holdout"]),
        TARGET,
        parse_policy({**QUIET, **policy}),
        champion=None if old is None else data[old],
        training=data["train"],
        size_bytes=10_000,
    )


def test_a_leaky_challenger_against_a_working_champion_is_escalated(data: dict[str, Any]) -> None:
    report = _report(data, "leaky", "plain", floor={"min_auc": 0.7})
    assert report.passed, report.summary()
    margin = report.gate("margin")
    assert margin.numbers["champion_auc"] > 0.7 and margin.numbers["delta"] > 0.15
    reasons = escalation_reasons(report)
    assert any("implausible gain" in r for r in reasons), reasons
    assert any("suspiciously perfect" in r for r in reasons), reasons
    assert f"{margin.numbers['delta']:+.4f}" in " ".join(reasons)
    off = _report(data, "leaky", "plain", floor={"min_auc": 0.7}, escalation={"enabled": False})
    assert off.passed and escalation_reasons(off) == []


def test_a_big_gain_over_a_collapsed_champion_is_expected_not_escalated(
    data: dict[str, Any],
) -> None:
    report = _report(data, "plain", "inverted", floor={"min_auc": 0.7})
    margin = report.gate("margin")
    assert report.passed and margin.numbers["delta"] > 0.3 and margin.numbers["champion_auc"] < 0.6
    assert escalation_reasons(report) == []


def test_a_tiny_holdout_and_a_huge_gap_are_escalated(data: dict[str, Any]) -> None:
    tiny = _report(data, "plain", None, floor={"min_auc": 0.6}, holdout=data["holdout"].head(40))
    assert tiny.passed and tiny.holdout_rows == 40
    assert escalation_reasons(tiny) == ["holdout has 40 rows (< 50): too few to trust the gates"]
    # an unpruned tree: train AUC ~1, holdout far lower; the overfit gate loosened to pass
    overfit = _report(data, "tree", None, floor={"min_auc": 0.5}, overfit={"max_gap": 0.9})
    gap = overfit.gate("overfit")
    assert overfit.passed and gap.value is not None and gap.value > 0.15
    assert any("train/holdout AUC gap" in r for r in escalation_reasons(overfit))


def test_an_escalated_retraining_waits_for_a_human_without_require_approval(
    logged: Services,  # noqa: F811
) -> None:
    gates = {**spec()["gates"], "escalation": {"min_holdout_rows": 100_000}}
    job = run_job(logged, {"model": "churn", "retrain": spec(gates=gates)})
    assert job.status == "succeeded", job.traceback
    result = job.result
    assert result["gates_passed"] is True and result["promoted"] is False
    assert result["approval"] == "pending" and "(< 100000)" in result["escalation"][0]
    version = logged.registry.get_version("churn", result["version"])
    assert version.tags["keel.approval.status"] == "pending"
    assert "challenger" not in logged.registry.get_model("churn").aliases
    [gate] = logged.decisions.query(model="churn", kind="gate")
    assert "escalated" in gate.summary and gate.details["escalation"] == result["escalation"]
    [waiting] = logged.decisions.query(model="churn", kind="promotion")
    assert waiting.details["status"] == "pending"
    assert waiting.details["escalation"] == result["escalation"]
    assert "escalated: holdout has" in waiting.summary
