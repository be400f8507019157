"""Fitting λ to a performance history (R-TRN-12)."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from keel.automation import decay
from keel.automation.decay import fit_decay
from keel.errors import InvalidInput


def _history(lam: float, noise: float, seed: int, days: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(days, dtype=float)
    return t, 0.95 * np.exp(-lam * t) + rng.normal(0, noise, t.size)


def test_fit_decay_recovers_lambda_a0_and_half_life_exactly_without_noise() -> None:
    t = np.array([0.0, 3, 7, 14, 30])
    fit = fit_decay(t, 0.9 * np.exp(-0.05 * t))
    assert fit.decay_per_day == pytest.approx(0.05, rel=1e-9)
    assert fit.a0 == pytest.approx(0.9, rel=1e-9)
    assert fit.half_life_days == pytest.approx(math.log(2) / 0.05, rel=1e-9)
    assert fit.rmse == pytest.approx(0, abs=1e-12)


def test_fit_decay_standard_error_matches_the_spread_over_repeats() -> None:
    # The reported se(λ) should be the sampling spread of λ̂: refit 200 noisy
    # histories of the same model and compare.
    fits = [fit_decay(*_history(0.02, 0.01, seed)) for seed in range(200)]
    estimates = np.array([f.decay_per_day for f in fits])
    reported = np.array([f.decay_se for f in fits], dtype=float)
    assert estimates.mean() == pytest.approx(0.02, rel=0.02)
    assert reported.mean() == pytest.approx(estimates.std(ddof=1), rel=0.15)
    inside = [f.decay_ci95[0] <= 0.02 <= f.decay_ci95[1] for f in fits if f.decay_ci95]
    assert 0.88 <= np.mean(inside) <= 0.99


def test_fit_decay_half_life_standard_error_by_delta_method() -> None:
    fit = fit_decay(*_history(0.02, 0.01, seed=1))
    assert fit.decay_se is not None and fit.half_life_se_days is not None
    expected = math.log(2) * fit.decay_se / fit.decay_per_day**2
    assert fit.half_life_se_days == pytest.approx(expected, rel=1e-12)


def test_fit_decay_improving_model_has_no_half_life() -> None:
    fit = fit_decay([0, 10, 20, 30], [0.80, 0.82, 0.85, 0.86])
    assert fit.decay_per_day < 0
    assert fit.half_life_days is None and fit.half_life_se_days is None
    assert any("no half-life" in note for note in fit.assumptions)


@pytest.mark.parametrize(
    ("days", "performance", "field"),
    [
        ([0, 1], [0.9, 0.8], "performance"),  # too few points
        ([0, 1, 2], [0.9, 0.8], "performance"),  # lengths differ
        ([0, 1, 2], [0.9, 1.2, 0.8], "performance"),
        ([0, 1, 2], [0.9, 0.0, 0.8], "performance"),
        ([0, 1, 2], [0.9, float("nan"), 0.8], "performance"),
        ([0, -1, 2], [0.9, 0.85, 0.8], "days"),
        ([5, 5, 5], [0.9, 0.85, 0.8], "days"),
        (["a", "b", "c"], [0.9, 0.85, 0.8], "days"),
        ([[0, 1, 2]], [[0.9, 0.85, 0.8]], "days"),
    ],
)
def test_fit_decay_invalid_history_names_the_field(
    days: list[object], performance: list[object], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        fit_decay(days, performance)
    assert caught.value.field == field


def test_decay_docstring_example_runs() -> None:
    result = doctest.testmod(decay)
    assert result.attempted > 0 and result.failed == 0
