"""Validation gates on real models (LogisticRegression, LightGBM) and the telco churn table."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from keel.automation.gates import parse_policy, run_gates, to_markdown
from keel.demo.data import TARGET, load_churn, split

# Latency is not under test here (a busy CI box); the latency gate has its own test.
QUIET = {"latency": {"budget_ms": 10_000, "max_batches": 10}, "equivalence": {"margin": 0.1}}


def _logistic(frame: pd.DataFrame, columns: list[str] | None = None) -> Any:
    features = frame.drop(columns=[TARGET])
    numeric = make_pipeline(SimpleImputer(), StandardScaler())
    encode = make_column_transformer(
        (numeric, make_column_selector(dtype_include="number")),
        (OneHotEncoder(handle_unknown="ignore"), make_column_selector(dtype_include="category")),
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=1000))
    return model.fit(features if columns is None else features[columns], frame[TARGET])


@pytest.fixture(scope="module")
def churn() -> dict[str, Any]:
    frame = load_churn().drop(columns=["customer_id"])
    train, _, holdout = split(frame, 7)
    # a data bug: labels shuffled within one payment method (one slice learns noise)
    corrupted = train.copy()
    rows = corrupted.payment_method == "Electronic check"
    shuffled = np.random.default_rng(0).permutation(corrupted.loc[rows, TARGET].to_numpy())
    corrupted.loc[rows, TARGET] = shuffled
    gbm = lgb.LGBMClassifier(n_estimators=100, learning_rate=0.05, verbose=-1)
    return {
        "train": train,
        "holdout": holdout,
        "full": _logistic(train),
        "small": _logistic(train, ["tenure", "monthly_charges", "contract"]),
        "corrupted": _logistic(corrupted),
        "lightgbm": gbm.fit(train.drop(columns=[TARGET]), train[TARGET]),
    }


def _auc(model: Any, holdout: pd.DataFrame) -> float:
    scores = model.predict_proba(holdout.drop(columns=[TARGET]))[:, 1]
    return float(roc_auc_score(holdout[TARGET], scores))


def test_gates_better_challenger_passes(churn: dict[str, Any]) -> None:
    policy = parse_policy(
        {
            **QUIET,
            "slices": {"columns": ["contract", "payment_method"]},
            "fairness": {"sensitive_columns": ["female"]},
        }
    )
    report = run_gates(
        churn["full"],
        churn["holdout"],
        TARGET,
        policy,
        champion=churn["small"],
        training=churn["train"],
        size_bytes=10_000,
    )
    assert report.passed, report.summary()
    assert {g.name for g in report.gates if g.status == "pass"} == {
        "margin", "floor", "overfit", "slices", "calibration", "fairness", "skew",
        "equivalence", "latency", "size", "stress",
    }  # fmt: skip
    assert len(report.slices) == 7 and all(r["verdict"] == "ok" for r in report.slices)


def test_gates_worse_challenger_fails_the_margin_with_its_numbers(churn: dict[str, Any]) -> None:
    report = run_gates(
        churn["small"], churn["holdout"], TARGET, parse_policy(QUIET), champion=churn["full"]
    )
    margin = report.gate("margin")
    assert margin.status == "fail" and not report.passed
    new, old = _auc(churn["small"], churn["holdout"]), _auc(churn["full"], churn["holdout"])
    assert margin.numbers["challenger_auc"] == pytest.approx(new)
    assert margin.numbers["champion_auc"] == pytest.approx(old)
    assert margin.threshold == pytest.approx(old + 0.02)
    assert f"{new:.4f}" in margin.reason and f"{old + 0.02:.4f}" in margin.reason
    assert "margin" in report.summary()


def test_gates_slice_regression_fails_naming_the_slice(churn: dict[str, Any]) -> None:
    # the margin is waived so that only the slice table decides
    policy = parse_policy(
        {**QUIET, "margin": {"min_improvement": -0.05}, "slices": {"columns": ["payment_method"]}}
    )
    report = run_gates(churn["corrupted"], churn["holdout"], TARGET, policy, champion=churn["full"])
    slices = report.gate("slices")
    assert slices.status == "fail"
    assert "payment_method=Electronic check" in slices.reason
    row = next(r for r in report.slices if r["value"] == "Electronic check")
    assert row["verdict"] == "regression" and row["delta"] < -0.02 and row["rows"] >= 100
    assert report.gate("margin").status == "pass"


def test_gates_unfair_model_fails_with_fairlearn_numbers(churn: dict[str, Any]) -> None:
    holdout = churn["holdout"]
    policy = parse_policy({**QUIET, "fairness": {"sensitive_columns": ["senior_citizen"]}})
    report = run_gates(churn["full"], holdout, TARGET, policy)
    fairness = report.gate("fairness")
    assert fairness.status == "fail" and "senior_citizen" in fairness.reason
    decisions = churn["full"].predict_proba(holdout.drop(columns=[TARGET]))[:, 1] >= 0.5
    group = holdout["senior_citizen"]
    dp = demographic_parity_difference(holdout[TARGET], decisions, sensitive_features=group)
    eo = equalized_odds_difference(holdout[TARGET], decisions, sensitive_features=group)
    numbers = fairness.numbers["columns"]["senior_citizen"]
    assert numbers["demographic_parity_difference"] == pytest.approx(dp)
    assert numbers["equalized_odds_difference"] == pytest.approx(eo)
    assert dp > 0.1


def test_gates_fairness_uses_the_cost_optimal_threshold(churn: dict[str, Any]) -> None:
    holdout = churn["holdout"]
    policy = parse_policy(
        {
            **QUIET,
            "fairness": {"sensitive_columns": ["female"]},
            "cost": {"cost_fp": 1, "cost_fn": 5},
        }
    )
    report = run_gates(churn["full"], holdout, TARGET, policy)
    assert report.cost is not None and report.decision_threshold == report.cost["threshold"]
    assert report.decision_threshold < 0.5  # a missed churner costs 5x a wasted offer
    decisions = churn["full"].predict_proba(holdout.drop(columns=[TARGET]))[:, 1]
    decisions = decisions >= report.decision_threshold
    dp = demographic_parity_difference(
        holdout[TARGET], decisions, sensitive_features=holdout["female"]
    )
    got = report.gate("fairness").numbers["columns"]["female"]["demographic_parity_difference"]
    assert got == pytest.approx(dp)
    assert "cost curve" in to_markdown(report)


@pytest.mark.parametrize("case", ["empty", "one class"])
def test_gates_fail_on_an_unusable_holdout(churn: dict[str, Any], case: str) -> None:
    holdout = churn["holdout"]
    holdout = holdout.iloc[:0] if case == "empty" else holdout[holdout[TARGET] == 0]
    policy = parse_policy(
        {
            **QUIET,
            "slices": {"columns": ["contract"]},
            "fairness": {"sensitive_columns": ["female"]},
        }
    )
    report = run_gates(
        churn["full"], holdout, TARGET, policy, champion=churn["small"], training=churn["train"]
    )
    assert not report.passed
    reason = "the holdout is empty" if case == "empty" else "one class only"
    for name in ("margin", "floor", "overfit", "slices", "calibration", "fairness", "equivalence"):
        gate = report.gate(name)
        assert gate.status == "fail", gate
        if name != "equivalence" or case == "empty":
            assert reason in gate.reason, gate


def test_gates_skew_names_the_feature_and_value(churn: dict[str, Any]) -> None:
    serving = churn["holdout"].drop(columns=[TARGET]).copy()
    serving["tenure"] = serving["tenure"] + 12  # a year added to every customer's tenure
    report = run_gates(
        churn["full"],
        churn["holdout"],
        TARGET,
        parse_policy(QUIET),
        training=churn["train"],
        serving=serving,
    )
    skew = report.gate("skew")
    assert skew.status == "fail"
    assert skew.numbers["over"] == ["tenure"]
    assert f"tenure: KS={skew.numbers['ks']['tenure']:.3f}" in skew.reason
    assert skew.numbers["ks"]["tenure"] > 0.1 and skew.numbers["ks"]["monthly_charges"] < 0.1


def test_gates_stress_rows_pass_lightgbm_and_fail_a_model_that_cannot_take_nan(
    churn: dict[str, Any],
) -> None:
    holdout = churn["holdout"].dropna()
    policy = parse_policy({**QUIET, "floor": {"min_auc": 0.5}})
    report = run_gates(churn["lightgbm"], holdout, TARGET, policy, training=churn["train"])
    assert report.gate("stress").status == "pass", report.gate("stress")
    numeric = ["tenure", "monthly_charges", "senior_citizen"]
    train = churn["train"].dropna()
    no_imputer = LogisticRegression(max_iter=500).fit(train[numeric], train[TARGET])
    frame = holdout[[*numeric, TARGET]]
    stress = run_gates(no_imputer, frame, TARGET, policy).gate("stress")
    assert stress.status == "fail"
    assert "missing values: raised ValueError" in stress.reason
    assert "tenure" in stress.reason


def test_gates_latency_budget(churn: dict[str, Any]) -> None:
    policy = parse_policy({"latency": {"budget_ms": 1e-6, "max_batches": 10, "batch_rows": 5}})
    gate = run_gates(churn["full"], churn["holdout"], TARGET, policy).gate("latency")
    assert gate.status == "fail" and gate.numbers["batches"] == 10
    assert gate.value is not None and gate.value > 1e-6 and "batch of 5 row(s)" in gate.reason


def test_gates_size_budget(churn: dict[str, Any]) -> None:
    policy = parse_policy({**QUIET, "size": {"max_bytes": 1000}})
    report = run_gates(churn["full"], churn["holdout"], TARGET, policy, size_bytes=1001)
    assert report.gate("size").status == "fail" and "1,001 bytes" in report.gate("size").reason


def test_gates_undeclared_inputs_skip_and_strict_fails_them(churn: dict[str, Any]) -> None:
    report = run_gates(churn["full"], churn["holdout"], TARGET, parse_policy(QUIET))
    assert report.gate("fairness").status == "skipped"
    assert "sensitive columns" in report.gate("fairness").reason
    assert report.gate("margin").reason == "no champion to compare with"
    strict = run_gates(
        churn["full"], churn["holdout"], TARGET, parse_policy({**QUIET, "strict": True})
    )
    assert not strict.passed and "fairness" in {g.name for g in strict.failed}


def test_gates_missing_declared_column_fails(churn: dict[str, Any]) -> None:
    policy = parse_policy({**QUIET, "fairness": {"sensitive_columns": ["gender"]}})
    gate = run_gates(churn["full"], churn["holdout"], TARGET, policy).gate("fairness")
    assert gate.status == "fail" and "['gender']" in gate.reason
