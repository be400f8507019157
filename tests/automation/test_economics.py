"""Retraining economics (R-TRN-11 … R-TRN-18) against seed 001's numbers and scipy."""

from __future__ import annotations

import doctest
import math
from dataclasses import replace

import pytest
from scipy.integrate import quad
from scipy.optimize import minimize_scalar

from keel.automation import economics
from keel.automation.economics import (
    ASSUMPTIONS,
    EconomicsInputs,
    daily_cost,
    half_life_days,
    interval_report,
    optimal_interval_days,
    retrain_decision,
    retraining_cost,
    sensitivity,
    sqrt_law_interval_days,
    staleness_cost,
)
from keel.errors import InvalidInput

# Seed 001, "The Half-Life of a Model" / "Fraud Detection Retraining" (R-TRN-15).
FRAUD = EconomicsInputs(
    retrain_cost=5_000, queries_per_day=1_000_000, value_per_point=0.50, a0=0.95, decay_per_day=0.02
)


def test_fraud_reference_square_root_law_is_sqrt_10000_over_9500() -> None:
    assert sqrt_law_interval_days(FRAUD) == pytest.approx(math.sqrt(10_000 / 9_500), rel=1e-12)
    assert round(sqrt_law_interval_days(FRAUD), 2) == 1.03


def test_fraud_reference_exact_optimum_is_about_one_day() -> None:
    t_star = optimal_interval_days(FRAUD)
    assert t_star is not None and round(t_star, 2) == 1.03  # "retrain daily"
    # the exact optimum sits a little above the square-root law's small-λT value
    assert sqrt_law_interval_days(FRAUD) < t_star < 1.04


@pytest.mark.parametrize(
    "inputs",
    [
        FRAUD,
        replace(FRAUD, decay_per_day=0.3),  # λT* large: the square-root law is far off
        replace(FRAUD, retrain_cost=200_000),
        replace(FRAUD, queries_per_day=1_000, decay_per_day=0.001),
        EconomicsInputs(50, 10_000, 0.02, 0.8, 1e-4),
    ],
)
def test_optimal_interval_matches_scipy_minimize_scalar(inputs: EconomicsInputs) -> None:
    t_star = optimal_interval_days(inputs)
    assert t_star is not None
    found = minimize_scalar(
        lambda t: daily_cost(inputs, t),
        bounds=(t_star / 50, t_star * 50),
        method="bounded",
        options={"xatol": t_star * 1e-9},
    )
    assert t_star == pytest.approx(found.x, rel=1e-5)
    assert daily_cost(inputs, t_star) <= found.fun * (1 + 1e-12)
    # 1 − (1 + x)e^(−x) < x²/2 for x > 0, so the exact T* never undercuts the law
    assert t_star >= sqrt_law_interval_days(inputs)


def test_optimal_interval_small_decay_keeps_its_digits() -> None:
    # Regression: scipy's lambertw near its branch point (λT* ~ 1e-5) returned
    # T* off by orders of magnitude; for tiny λT* the exact T* → the square-root law.
    inputs = replace(FRAUD, retrain_cost=0.5, decay_per_day=1e-6)
    t_star = optimal_interval_days(inputs)
    assert t_star == pytest.approx(sqrt_law_interval_days(inputs), rel=1e-4)


def test_staleness_cost_equals_the_integral_of_lost_value() -> None:
    def lost(t: float) -> float:
        return 1e6 * 0.5 * 0.95 * -math.expm1(-0.02 * t)  # A0 − A(t), without cancellation

    # 1e-6 d: λT = 2e-8, where T − (1 − e^(−λT))/λ computed as written loses 8 digits
    for horizon in (1e-6, 1e-4, 0.5, 1.0, 30.0, 365.0):
        expected, _ = quad(lost, 0, horizon, epsabs=0, epsrel=1e-12)
        assert staleness_cost(FRAUD, horizon) == pytest.approx(expected, rel=1e-9, abs=0)
    assert staleness_cost(FRAUD, 0) == 0


def test_daily_cost_at_optimum_equals_marginal_staleness() -> None:
    # First-order condition: at T*, (C + S(T*))/T* = S'(T*) = Q·V·A0·(1 − e^(−λT*)).
    t_star = optimal_interval_days(FRAUD)
    assert t_star is not None
    marginal = FRAUD.loss_rate * -math.expm1(-FRAUD.decay_per_day * t_star)
    assert daily_cost(FRAUD, t_star) == pytest.approx(marginal, rel=1e-9)


@pytest.mark.parametrize(
    ("field", "direction"),
    [("retrain_cost", 2.0), ("queries_per_day", 0.5), ("decay_per_day", 0.5)],
)
def test_four_times_an_input_moves_t_star_by_two(field: str, direction: float) -> None:
    # R-TRN-16: 4× cost → 2× longer; 4× volume → 2× shorter; 4× decay → 2× shorter.
    scaled = replace(FRAUD, **{field: getattr(FRAUD, field) * 4})
    assert sqrt_law_interval_days(scaled) / sqrt_law_interval_days(FRAUD) == pytest.approx(
        direction, rel=1e-12
    )
    exact, base = optimal_interval_days(scaled), optimal_interval_days(FRAUD)
    assert exact is not None and base is not None
    assert exact / base == pytest.approx(direction, rel=0.02)


def test_sensitivity_elasticities_are_plus_and_minus_one_half() -> None:
    rows = {row.parameter: row for row in sensitivity(FRAUD, change_pct=10)}
    assert set(rows) == {
        "retrain_cost",
        "queries_per_day",
        "value_per_point",
        "a0",
        "decay_per_day",
    }
    assert rows["retrain_cost"].elasticity == pytest.approx(0.5, abs=0.01)
    for name in ("queries_per_day", "value_per_point", "a0", "decay_per_day"):
        assert rows[name].elasticity == pytest.approx(-0.5, abs=0.01)
    assert rows["a0"].value_high == 1.0  # 0.95 × 1.1 capped: accuracy cannot exceed 1
    assert rows["retrain_cost"].t_star_low_days < optimal_interval_days(FRAUD)  # type: ignore[operator]


def test_half_life_is_ln2_over_lambda() -> None:
    assert half_life_days(0.02) == pytest.approx(34.657, abs=1e-3)
    assert half_life_days(math.log(2) / 3) == pytest.approx(3.0)  # the seed's 3-day example


@pytest.mark.parametrize(("manual_days", "automate"), [(7.0, True), (1.0, False), (None, None)])
def test_automate_flag_when_t_star_beats_manual_deploy(
    manual_days: float | None, automate: bool | None
) -> None:
    report = interval_report(FRAUD, manual_deploy_days=manual_days)
    assert report.automate is automate
    flagged = any("permanent technical debt" in note for note in report.assumptions)
    assert flagged is bool(automate)


def test_report_shows_the_seed_assumptions() -> None:
    report = interval_report(FRAUD)
    text = " ".join(report.assumptions).lower()
    for phrase in ("predictable drift", "concept drift", "linear value", "independent", "fixed"):
        assert phrase in text
    assert report.assumptions[: len(ASSUMPTIONS)] == ASSUMPTIONS
    assert report.half_life_days == pytest.approx(half_life_days(0.02))


def test_no_finite_optimum_when_retraining_never_pays() -> None:
    # C·λ ≥ Q·V·A0: cost per day falls forever towards Q·V·A0.
    inputs = EconomicsInputs(1e6, 100, 0.5, 0.9, 0.5)
    assert optimal_interval_days(inputs) is None
    report = interval_report(inputs, manual_deploy_days=7)
    assert report.t_star_days is None and report.daily_cost_at_t_star is None
    assert report.automate is False
    assert any("No finite optimum" in note for note in report.assumptions)


def test_large_decay_warns_the_square_root_law_is_off() -> None:
    report = interval_report(replace(FRAUD, decay_per_day=0.5, retrain_cost=100_000))
    assert any("square-root law is off" in note for note in report.assumptions)


def test_retraining_cost_sums_its_parts() -> None:
    assert retraining_cost(3_000, 500, 1_000, 500) == 5_000
    with pytest.raises(InvalidInput) as caught:
        retraining_cost(1_000, risk=-1)
    assert caught.value.field == "risk"


def test_retrain_decision_rule() -> None:
    # R-TRN-11: ΔAccuracy × ValuePerPoint > TrainingCost + DeploymentRisk
    yes = retrain_decision(0.03, 500_000, training_cost=5_000, deployment_risk=2_000)
    assert yes.benefit == pytest.approx(15_000) and yes.cost == 7_000 and yes.should_retrain
    assert not retrain_decision(0.01, 500_000, 5_000, 2_000).should_retrain


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("retrain_cost", 0),
        ("retrain_cost", -5_000),
        ("queries_per_day", math.nan),
        ("value_per_point", math.inf),
        ("decay_per_day", -0.02),
        ("decay_per_day", 0),
        ("a0", 0),
        ("a0", 1.01),
        ("a0", True),
    ],
)
def test_invalid_inputs_name_the_field(field: str, value: float) -> None:
    args = {
        "retrain_cost": 5_000.0,
        "queries_per_day": 1e6,
        "value_per_point": 0.5,
        "a0": 0.95,
        "decay_per_day": 0.02,
    }
    with pytest.raises(InvalidInput) as caught:
        EconomicsInputs(**{**args, field: value})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: interval_report(FRAUD, manual_deploy_days=0), "manual_deploy_days"),
        (lambda: interval_report(FRAUD, change_pct=100), "change_pct"),
        (lambda: staleness_cost(FRAUD, -1), "interval_days"),
        (lambda: daily_cost(FRAUD, 0), "interval_days"),
        (lambda: half_life_days(0), "decay_per_day"),
    ],
)
def test_invalid_arguments_name_the_field(call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()  # type: ignore[operator]
    assert caught.value.field == field


def test_economics_docstring_example_runs() -> None:
    result = doctest.testmod(economics)
    assert result.attempted > 0 and result.failed == 0
