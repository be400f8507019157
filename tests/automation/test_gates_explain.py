"""R-CICD-05 gates on the telco churn table: importance concentration (mean |SHAP|, or
permutation importance when shap cannot explain) and SHAP direction vs declared domain
knowledge. Checked against the linear-SHAP closed form, LightGBM's own TreeSHAP, scipy."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from keel.automation.gates import parse_policy, run_gates, to_markdown
from keel.automation.gates.explain import shap
from keel.demo.data import TARGET, load_churn, split
from keel.errors import InvalidInput

NUMBERS = ["tenure", "monthly_charges"]
CATEGORIES = ["contract", "internet_service"]
COLUMNS = NUMBERS + CATEGORIES
# only the gates under test run: the others are switched off
OFF = {
    name: {"enabled": False}
    for name in ("latency", "stress", "size", "floor", "margin", "overfit", "calibration")
}
DOMAIN = {"tenure": "negative", "monthly_charges": "positive"}


@pytest.fixture(scope="module")
def churn() -> dict[str, Any]:
    frame = load_churn().drop(columns=["customer_id"])[COLUMNS + [TARGET]]
    train, _, holdout = split(frame, 7)
    encode = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), NUMBERS),
        (OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
    )
    logistic = make_pipeline(encode, LogisticRegression(max_iter=1000))
    gbm = lgb.LGBMClassifier(n_estimators=30, num_leaves=15, verbose=-1)
    return {
        "holdout": holdout.head(600).reset_index(drop=True),
        "logistic": logistic.fit(train[COLUMNS], train[TARGET]),
        "lightgbm": gbm.fit(train[COLUMNS], train[TARGET]),
    }


def _gates(model: Any, holdout: pd.DataFrame, **sections: Any) -> Any:
    report = run_gates(model, holdout, TARGET, parse_policy({**OFF, **sections}))
    return report


def _linear_shap(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """Closed form for a linear model with independent features: coef · (z − mean z), summed
    over each input's transformed columns (the one-hot indicators of a category)."""
    pre, last = model[:-1], model[-1]
    z = pre.transform(rows[COLUMNS])
    z = np.asarray(z.toarray() if hasattr(z, "toarray") else z, np.float64)
    phi = last.coef_[0] * (z - z.mean(axis=0))
    widths = [1, 1] + [len(c) for c in pre[0].named_transformers_["onehotencoder"].categories_]
    edges = np.cumsum([0, *widths])
    spans = zip(edges[:-1], edges[1:], strict=True)
    return np.column_stack([phi[:, a:b].sum(axis=1) for a, b in spans])


def test_importance_is_mean_abs_linear_shap_and_fails_naming_the_features(
    churn: dict[str, Any],
) -> None:
    holdout = churn["holdout"]
    report = _gates(churn["logistic"], holdout, importance={"top": 2, "max_share": 0.5,
                                                           "sample_rows": 1000})  # fmt: skip
    gate = report.gate("importance")
    expected = np.abs(_linear_shap(churn["logistic"], holdout)).mean(axis=0)
    shares = dict(zip(COLUMNS, expected / expected.sum(), strict=True))
    assert gate.numbers["shares"] == pytest.approx(shares, abs=1e-9)
    top2 = sorted(shares, key=lambda c: -shares[c])[:2]
    held = shares[top2[0]] + shares[top2[1]]
    assert gate.value == pytest.approx(held) and held > 0.5
    assert gate.status == "fail" and "LinearExplainer" in gate.numbers["method"]
    for name in top2:
        assert f"{name} {shares[name]:.1%}" in gate.reason
    assert "| importance | ❌ fail |" in to_markdown(report)
    relaxed = _gates(churn["logistic"], holdout, importance={"top": 2, "max_share": 0.9})
    assert relaxed.gate("importance").status == "pass"


def test_direction_on_logistic_matches_scipy_and_a_flipped_declaration_fails(
    churn: dict[str, Any],
) -> None:
    holdout = churn["holdout"]
    phi = _linear_shap(churn["logistic"], holdout)
    section = {"expected": DOMAIN, "sample_rows": 1000}
    passed = _gates(churn["logistic"], holdout, shap_direction=section).gate("shap_direction")
    assert passed.status == "pass", passed.reason
    for j, name in enumerate(NUMBERS):
        r = pearsonr(holdout[name], phi[:, j]).statistic
        assert passed.numbers["features"][name]["correlation"] == pytest.approx(r, abs=1e-9)
    flipped = {"tenure": "positive", "monthly_charges": "positive"}
    failed = _gates(churn["logistic"], holdout, shap_direction={"expected": flipped})
    gate = failed.gate("shap_direction")
    assert gate.status == "fail" and gate.value == 1.0
    assert "tenure r -" in gate.reason and "expected positive" in gate.reason
    assert "monthly_charges" not in gate.reason.split(":")[1].split("(")[0]
    assert not failed.passed and "shap_direction" in failed.summary()


def test_lightgbm_uses_tree_shap_matching_lightgbm_pred_contrib(churn: dict[str, Any]) -> None:
    holdout = churn["holdout"]
    model = churn["lightgbm"]
    attribution = shap(model, holdout[COLUMNS], rows=1000)
    contrib = model.predict(holdout[COLUMNS], pred_contrib=True)[:, :-1]  # last: the bias
    assert attribution.method == "shap.TreeExplainer"
    np.testing.assert_allclose(attribution.values, contrib, atol=1e-9)
    report = _gates(model, holdout, shap_direction={"expected": DOMAIN},
                    importance={"top": 1, "max_share": 0.3})  # fmt: skip
    assert report.gate("shap_direction").status == "pass"
    wrong = _gates(model, holdout, shap_direction={"expected": {"tenure": "positive"}})
    assert "tenure" in wrong.gate("shap_direction").reason
    assert wrong.gate("shap_direction").status == "fail"
    importance = report.gate("importance")
    top = max(importance.numbers["shares"].items(), key=lambda kv: kv[1])
    assert importance.status == "fail" and f"{top[0]} {top[1]:.1%}" in importance.reason


class _Score:
    """A model shap has no explainer for: a hand-written logistic score."""

    classes = [0, 1]

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        logit = -0.06 * frame["tenure"].to_numpy() + 0.03 * frame["monthly_charges"].to_numpy()
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.column_stack([1 - p, p])


def test_fallback_permutation_importance_and_partial_dependence_say_so(
    churn: dict[str, Any],
) -> None:
    holdout = churn["holdout"]
    both = {"tenure": "positive", "monthly_charges": "positive"}
    report = _gates(_Score(), holdout, importance={"top": 1, "max_share": 0.99, "sample_rows": 200},
                    shap_direction={"expected": both, "sample_rows": 200})  # fmt: skip
    importance = report.gate("importance")
    assert importance.numbers["method"].startswith("permutation importance")
    assert "shap not used" in importance.numbers["note"]
    # contract and internet_service do not enter the score: no importance at all
    assert importance.numbers["shares"]["contract"] == 0.0
    assert importance.numbers["shares"]["internet_service"] == 0.0
    direction = report.gate("shap_direction")
    assert "partial-dependence slope" in direction.reason
    assert direction.status == "fail" and "tenure slope -" in direction.reason
    assert direction.numbers["features"]["monthly_charges"]["observed"] == "positive"
    only_shap = _gates(_Score(), holdout, importance={"method": "shap"})
    assert only_shap.gate("importance").reason.startswith("cannot compute: shap cannot")


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"importance": {"top": 0}}, "importance.top"),
        ({"importance": {"max_share": 0}}, "importance.max_share"),
        ({"importance": {"max_share": 1.2}}, "importance.max_share"),
        ({"shap_direction": {"expected": {"tenure": "down"}}}, "shap_direction.expected.tenure"),
        ({"shap_direction": {"expected": {}}}, "shap_direction.expected"),
    ],
)
def test_bad_policy_names_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_policy(section)
    assert raised.value.field == field and field in raised.value.message


@pytest.mark.parametrize(
    ("expected", "field"),
    [({"tenur": "negative"}, "shap_direction.expected.tenur"),
     ({"contract": "negative"}, "shap_direction.expected.contract")],
)  # fmt: skip
def test_unknown_or_categorical_feature_is_refused_before_any_gate(
    churn: dict[str, Any], expected: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        _gates(churn["logistic"], churn["holdout"], shap_direction={"expected": expected})
    assert raised.value.field == field


def test_opt_in_gates_are_absent_unless_declared(churn: dict[str, Any]) -> None:
    report = _gates(churn["logistic"], churn["holdout"])
    names = {g.name for g in report.gates}
    assert not names & {"importance", "shap_direction"}
    assert not any(n.startswith("runtime.") for n in names)


def test_one_class_or_empty_holdout_fails_never_passes(churn: dict[str, Any]) -> None:
    holdout = churn["holdout"]
    sections = {"importance": {}, "shap_direction": {"expected": DOMAIN}, "runtime": {}}
    # label-free runtime numbers (memory, warm-up) are measured on one class, like latency
    cases = (
        (holdout[holdout[TARGET] == 0], "one class", ("importance", "shap_direction")),
        (holdout.head(0), "empty", ("importance", "shap_direction", "runtime.memory",
                                    "runtime.warmup")),
    )  # fmt: skip
    for rows, why, names in cases:
        report = _gates(churn["logistic"], rows, **sections)
        for name in names:
            gate = report.gate(name)
            assert gate.status == "fail" and gate.reason.startswith("cannot compute"), name
        assert why in report.gate("importance").reason and not report.passed
