"""The verdict matrix (R-DEP-16 with R-DEP-03/-08): one test per row, on real checks."""

from __future__ import annotations

import pytest

from keel.deploy.policy import Analysis, Guardrails, MetricGuard, SecondaryMetric
from keel.deploy.sequential import SequentialState
from keel.deploy.verdict import (
    ArmStats,
    MetricEstimate,
    Verdict,
    check_metric,
    check_safety,
    decide,
)

AUC = MetricGuard(name="roc_auc", min_improvement=0.02)
SEQ = Analysis()
MIN = 60_000


def _metric(primary: float, candidate: float, se: float = 0.003, rule: MetricGuard = AUC):
    check, _ = check_metric(
        rule,
        MetricEstimate(primary, se, 5000),
        MetricEstimate(candidate, se, 5000),
        SEQ,
        SequentialState(),
    )
    return check


def _secondary(primary: float, candidate: float):
    rule = SecondaryMetric(name="conversion", higher_is_better=True)
    return check_metric(
        rule, MetricEstimate(primary, 0.002, 9000), MetricEstimate(candidate, 0.002, 9000), SEQ
    )[0]


def _safety(
    cand_errors: int = 5,
    cand_p99: float = 20.0,
    since: dict[str, int] | None = None,
    now: int = 10 * MIN,
):
    primary = ArmStats("primary", n=1000, errors=5, p99_latency_ms=20.0)
    candidate = ArmStats("canary", n=1000, errors=cand_errors, p99_latency_ms=cand_p99)
    return check_safety(Guardrails(), primary, candidate, since_ms=since or {}, now_ms=now)


def test_row_significant_improvement_and_guardrails_pass_ships() -> None:
    verdict, reasons = decide(_safety(), _metric(0.80, 0.86), [], enough_samples=True)
    assert verdict is Verdict.SHIP and "significant improvement" in reasons[0]


def test_row_significant_improvement_but_secondary_fails_investigates() -> None:
    verdict, reasons = decide(
        _safety(), _metric(0.80, 0.86), [_secondary(0.30, 0.27)], enough_samples=True
    )
    assert verdict is Verdict.INVESTIGATE
    assert any("secondary metric regressed: conversion" in r for r in reasons)


def test_row_no_significant_change_keeps_collecting_then_keeps_current() -> None:
    undecided = _metric(0.80, 0.81, se=0.01)
    assert decide(_safety(), undecided, [], enough_samples=True)[0] is Verdict.KEEP_COLLECTING
    verdict, reasons = decide(_safety(), undecided, [], enough_samples=True, exhausted=True)
    assert verdict is Verdict.ROLL_BACK and "no significant improvement" in reasons[0]


def test_row_significant_degradation_rolls_back() -> None:
    verdict, reasons = decide(_safety(), _metric(0.80, 0.74), [], enough_samples=True)
    assert verdict is Verdict.ROLL_BACK and reasons[0].startswith("regression: roc_auc")


def test_r_dep_03_improvement_below_minimum_rolls_back() -> None:
    # +0.5 points, measured tightly: significantly better, but significantly below +2 points.
    check = _metric(0.800, 0.805, se=0.001)
    assert check.difference > 0 and not check.regression
    verdict, reasons = decide(_safety(), check, [], enough_samples=True)
    assert verdict is Verdict.ROLL_BACK and "below the minimum" in reasons[0]


def test_r_dep_08_safety_breach_rolls_back_even_when_metric_improves() -> None:
    breached = _safety(cand_p99=50.0, since={"p99_latency": 0}, now=5 * MIN)
    verdict, reasons = decide(breached, _metric(0.80, 0.86), [], enough_samples=True)
    assert verdict is Verdict.ROLL_BACK
    assert reasons == ["guardrail breached: p99_latency 2.5 > 2 for 300s"]


def test_secondary_regression_without_improvement_rolls_back() -> None:
    verdict, _ = decide(
        _safety(), _metric(0.80, 0.81, se=0.01), [_secondary(0.30, 0.27)], enough_samples=True
    )
    assert verdict is Verdict.ROLL_BACK


def test_no_metric_ships_on_guardrails_once_samples_are_in() -> None:
    assert decide(_safety(), None, [], enough_samples=False)[0] is Verdict.KEEP_COLLECTING
    assert decide(_safety(), None, [], enough_samples=True)[0] is Verdict.SHIP


def test_p99_guardrail_needs_its_duration() -> None:
    first = _safety(cand_p99=50.0, now=MIN)
    p99 = first[1]
    assert p99.breached_now and not p99.breached and p99.since_ms == MIN
    later = _safety(cand_p99=50.0, since={"p99_latency": p99.since_ms or 0}, now=6 * MIN)
    assert later[1].breached
    recovered = _safety(cand_p99=25.0, since={"p99_latency": MIN}, now=6 * MIN)
    assert not recovered[1].breached and recovered[1].since_ms is None


def test_error_rate_guardrail_is_immediate_and_waits_for_samples() -> None:
    checks = _safety(cand_errors=40)
    assert checks[0].breached and checks[0].observed == pytest.approx(0.035)
    primary = ArmStats("primary", n=1000, errors=0)
    few = check_safety(
        Guardrails(), primary, ArmStats("canary", n=10, errors=10), since_ms={}, now_ms=0
    )
    assert few[0].observed is None and not few[0].breached


def test_lower_is_better_metric_is_oriented() -> None:
    rule = MetricGuard(name="log_loss", min_improvement=0.01, higher_is_better=False)
    check = _metric(0.40, 0.35, rule=rule)
    assert check.difference == pytest.approx(0.05) and check.above_threshold


def test_relative_min_improvement_scales_by_the_primary() -> None:
    rule = MetricGuard(name="ctr", min_improvement=0.02, relative=True)
    check = _metric(0.05, 0.06, se=0.0005, rule=rule)
    assert check.threshold == pytest.approx(0.001) and check.above_threshold


def test_fixed_horizon_decides_only_at_the_planned_size() -> None:
    analysis = Analysis(method="fixed_horizon", planned_samples_per_arm=10_000)
    early, _ = check_metric(
        AUC, MetricEstimate(0.8, 0.003, 5000), MetricEstimate(0.7, 0.003, 5000), analysis
    )
    assert not early.ready
    assert decide(_safety(), early, [], enough_samples=True)[0] is Verdict.KEEP_COLLECTING
    flat, _ = check_metric(
        AUC, MetricEstimate(0.8, 0.01, 10_000), MetricEstimate(0.81, 0.01, 10_000), analysis
    )
    assert decide(_safety(), flat, [], enough_samples=True)[0] is Verdict.ROLL_BACK
