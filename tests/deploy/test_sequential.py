"""The peeking guards: mSPRT stays valid under continuous monitoring; fixed horizon waits."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats as sps

from keel.deploy import sequential
from keel.deploy.sequential import SequentialState, fixed_horizon, msprt, msprt_update
from keel.errors import InvalidInput

ALPHA = 0.05


def _msprt_log_lr(delta: np.ndarray, var: np.ndarray, tau: float) -> np.ndarray:
    # The same formula as msprt(), vectorised over streams x looks for the simulation.
    total = var + tau**2
    return 0.5 * np.log(var / total) + tau**2 * delta**2 / (2 * var * total)


def test_msprt_matches_vectorised_formula_and_paired_form() -> None:
    # Johari et al.'s paired form with n pairs and V = 2 sigma^2 is the s^2 = V / n case.
    n, sigma, tau, diff = 400, 1.5, 0.3, 0.2
    v = 2 * sigma**2
    paired = math.sqrt(v / (v + n * tau**2)) * math.exp(
        n**2 * tau**2 * diff**2 / (2 * v * (v + n * tau**2))
    )
    look = msprt(diff, v / n, tau=tau)
    assert look.pvalue == pytest.approx(1 / paired, rel=1e-12)
    # The interval is exactly where 1/Lambda(theta0) = alpha.
    edge = msprt(diff, v / n, tau=tau, theta0=look.high)
    assert edge.pvalue == pytest.approx(ALPHA, rel=1e-9)


def test_msprt_always_valid_under_continuous_peeking_while_naive_z_is_not() -> None:
    # 2,000 A/A streams, 500 pairs each, a look after every 5 pairs (100 looks).
    rng = np.random.default_rng(16)
    sims, pairs, every, tau = 2000, 500, 5, 0.1
    diffs = rng.normal(0, 1, (sims, pairs)) - rng.normal(0, 1, (sims, pairs))
    n = np.arange(every, pairs + 1, every, dtype=np.float64)
    delta = np.cumsum(diffs, axis=1)[:, every - 1 :: every] / n
    var = 2.0 / n  # known unit variance per arm
    msprt_rejects = (_msprt_log_lr(delta, var, tau) >= math.log(1 / ALPHA)).any(axis=1).mean()
    naive_rejects = (np.abs(delta) / np.sqrt(var) > sps.norm.isf(ALPHA / 2)).any(axis=1).mean()
    mc = 3 * math.sqrt(ALPHA * (1 - ALPHA) / sims)  # three Monte-Carlo standard errors
    assert msprt_rejects <= ALPHA + mc
    assert naive_rejects > 3 * ALPHA  # ~0.3 with 100 looks


def test_msprt_bernoulli_with_plugged_in_variance_stays_valid() -> None:
    # The controller's case: conversion-style arms, variance estimated at each look.
    rng = np.random.default_rng(3)
    sims, n_max, every, p, tau = 2000, 3000, 30, 0.1, 0.02
    c = np.cumsum(rng.random((sims, n_max)) < p, axis=1)[:, every - 1 :: every]
    t = np.cumsum(rng.random((sims, n_max)) < p, axis=1)[:, every - 1 :: every]
    n = np.arange(every, n_max + 1, every, dtype=np.float64)
    p_c, p_t = c / n, t / n
    var = np.maximum((p_c * (1 - p_c) + p_t * (1 - p_t)) / n, 1e-12)
    keep = n >= 300  # the guardrail minimum: no look before 300 per arm
    rejects = (_msprt_log_lr(p_t - p_c, var, tau)[:, keep] >= math.log(1 / ALPHA)).any(axis=1)
    assert rejects.mean() <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / sims)


def test_msprt_update_keeps_running_minimum_and_intersection() -> None:
    state = SequentialState()
    state, first = msprt_update(state, msprt(0.05, 1e-4, tau=0.02))
    state, second = msprt_update(state, msprt(0.0, 2e-4, tau=0.02))
    assert second.pvalue == first.pvalue < 0.05
    assert second.low == first.low and second.high <= first.high
    assert state.looks == 2


def test_msprt_detects_a_real_effect() -> None:
    assert msprt(0.03, (0.005) ** 2, tau=0.02).pvalue < 1e-3


def test_fixed_horizon_waits_for_planned_samples() -> None:
    early = fixed_horizon(0.5, 0.01, n_per_arm=(999, 2000), planned_per_arm=1000)
    assert not early.ready and early.pvalue == 1.0 and early.low == -math.inf
    done = fixed_horizon(0.5, 0.01, n_per_arm=(1000, 2000), planned_per_arm=1000)
    assert done.ready and done.low == pytest.approx(0.5 - sps.norm.isf(0.025) * 0.1, rel=1e-12)
    assert done.pvalue == pytest.approx(2 * sps.norm.sf(5.0), rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"variance": 0.0}, "variance"), ({"alpha": 0.0}, "alpha"), ({"tau": 0.0}, "tau")],
)
def test_msprt_bad_input(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {"estimate": 0.1, "variance": 1e-3, "tau": 0.1} | kwargs
    with pytest.raises(InvalidInput) as info:
        msprt(**args)
    assert info.value.field == field


def test_sequential_doctests() -> None:
    result = doctest.testmod(sequential)
    assert result.attempted > 0 and result.failed == 0
