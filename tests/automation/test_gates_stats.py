"""The pure parts of the validation gates: cost threshold, TOST, degenerate holdouts, policy."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from statsmodels.stats.weightstats import ttost_paired

from keel.automation.gates import cost, distribution, parse_policy
from keel.automation.gates.checks import calibration_gate, floor_gate, margin_gate
from keel.automation.gates.cost import cost_at, optimal_threshold, threshold_from_rates
from keel.automation.gates.distribution import equivalence_gate, tost_paired
from keel.automation.gates.policy import (
    CalibrationPolicy,
    EquivalencePolicy,
    FloorPolicy,
    MarginPolicy,
    load_policy,
)
from keel.errors import InvalidInput


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("cost_fp", "cost_fn"), [(1.0, 5.0), (100.0, 500.0), (3.0, 1.0)])
def test_optimal_threshold_matches_a_brute_force_scan(
    seed: int, cost_fp: float, cost_fn: float
) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    scores = np.clip(0.3 * y + rng.normal(0.35, 0.2, 400), 0, 1).round(3)  # ties included
    found = optimal_threshold(y, scores, cost_fp, cost_fn)
    # brute force: every candidate threshold (each score, and above the maximum)
    candidates = np.concatenate([np.unique(scores), [scores.max() + 1e-9]])
    brute = min(cost_at(y, scores, t, cost_fp, cost_fn)[0] for t in candidates)
    assert found.cost == pytest.approx(brute, abs=1e-12)
    assert cost_at(y, scores, found.threshold, cost_fp, cost_fn)[0] == pytest.approx(brute)
    assert found.cost <= found.cost_at_half + 1e-12
    assert any(p["threshold"] == round(found.threshold, 4) for p in found.curve)


def test_cost_rule_reproduces_the_fraud_reference() -> None:
    # R-COST-08: Cost_FP $100, Cost_FN $500 and the seed's rate curves → T ≈ 0.34; equal → 0.5
    fp = lambda t: 1 / (1 + np.exp(8 * (t - 0.3)))  # noqa: E731
    fn = lambda t: 1 / (1 + np.exp(-8 * (t - 0.7)))  # noqa: E731
    assert threshold_from_rates(fp, fn, 100, 500) == pytest.approx(0.34, abs=0.005)
    assert threshold_from_rates(fp, fn, 100, 100) == pytest.approx(0.5, abs=0.001)


def test_gate_docstring_examples_run() -> None:
    for module in (cost, distribution):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("shift", [0.0, 0.01, 0.03])
def test_tost_paired_matches_statsmodels(shift: float) -> None:
    rng = np.random.default_rng(3)
    old = rng.uniform(0, 1, 300)
    new = np.clip(old + shift + rng.normal(0, 0.05, 300), 0, 1)
    ours = tost_paired(new, old, margin=0.02)
    pvalue, _, _ = ttost_paired(new, old, -0.02, 0.02)
    assert ours["pvalue"] == pytest.approx(pvalue, rel=1e-9)
    assert ours["equivalent"] == float(pvalue < 0.05)


def test_equivalence_gate_fails_a_shifted_challenger_with_its_numbers() -> None:
    rng = np.random.default_rng(4)
    old = rng.uniform(0.05, 0.6, 500)
    gate = equivalence_gate(old * 1.2, old, EquivalencePolicy(margin=0.05))
    assert gate.status == "fail"
    assert gate.numbers["mean_diff"] == pytest.approx(0.2 * old.mean())
    assert "not within" in gate.reason
    assert equivalence_gate(old + 0.001, old, EquivalencePolicy()).status == "pass"


@pytest.mark.parametrize(
    ("labels", "reason"),
    [([], "the holdout is empty"), ([1, 1, 1, 1], "one class only")],
)
def test_score_gates_fail_on_an_unusable_holdout(labels: list[int], reason: str) -> None:
    y = np.asarray(labels)
    scores = np.linspace(0.1, 0.9, y.size)
    for gate in (
        margin_gate(y, scores, scores, MarginPolicy()),
        floor_gate(y, scores, FloorPolicy()),
        calibration_gate(y, scores, scores, CalibrationPolicy()),
    ):
        assert gate.status == "fail" and reason in gate.reason, gate


def test_margin_gate_relative_kind() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    old = np.array([0.2, 0.6, 0.5, 0.7, 0.3, 0.4])  # AUC 7/9
    new = np.array([0.1, 0.3, 0.8, 0.7, 0.2, 0.6])  # AUC 1
    gate = margin_gate(y, new, old, MarginPolicy(min_improvement=0.25, kind="relative"))
    assert gate.threshold == pytest.approx(7 / 9 * 1.25)
    assert gate.status == "pass"
    assert margin_gate(y, new, old, MarginPolicy(min_improvement=0.3, kind="relative")).status == (
        "fail"
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"fairnes": {}}, "fairnes"),
        ({"fairness": {"max_dp": 0.1}}, "fairness.max_dp"),
        ({"margin": {"kind": "percent"}}, "margin.kind"),
        ({"floor": {"min_auc": 1.5}}, "floor.min_auc"),
        ({"cost": {"cost_fp": 1}}, "cost"),
    ],
)
def test_policy_refuses_bad_keys_naming_them(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(data)
    assert caught.value.field == field
    assert field in caught.value.message


def test_policy_file_yaml_and_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "gates.yaml"
    path.write_text("margin:\n  kind: relative\nfairness:\n  sensitive_columns: [gender]\n")
    policy = load_policy(path)
    assert policy.margin.kind == "relative" and policy.margin.min_improvement == 0.02
    assert policy.floor.min_auc == 0.80 and policy.skew.max_ks == 0.1
    path.write_text("margin: [unclosed\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_policy(path)
