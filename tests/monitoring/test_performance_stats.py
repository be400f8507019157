"""The performance statistics (hardening #15.15, #15.18) against scipy/statsmodels references."""

from __future__ import annotations

import doctest
import importlib
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import proportions_ztest

from keel.errors import InvalidInput
from keel.monitoring.stats.drop import auc_se, drop_test, mean_se, proportion_se, rmse_se
from keel.monitoring.stats.expected import (
    EXACT_MAX_N,
    expected_accuracy_test,
    poisson_binomial_pmf,
)

probabilities = st.lists(st.floats(0, 1), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(probabilities)
def test_poisson_binomial_pmf_equals_scipy(q: list[float]) -> None:
    expected = sps.poisson_binom.pmf(np.arange(len(q) + 1), q)
    assert np.allclose(poisson_binomial_pmf(q), expected, atol=1e-12)


def test_expected_accuracy_pvalue_by_enumeration() -> None:
    q = np.array([0.9, 0.55, 0.7, 0.8, 0.95, 0.6, 0.75, 0.85])
    correct = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    # P(S <= 5) summed over all 2^8 outcomes.
    total = 0.0
    for outcome in itertools.product((0, 1), repeat=q.size):
        hits = np.array(outcome)
        if hits.sum() <= correct.sum():
            total += float(np.prod(np.where(hits == 1, q, 1 - q)))
    result = expected_accuracy_test(correct, q)
    assert result.pvalue == pytest.approx(total, abs=1e-12)
    assert (result.realised, result.expected) == (0.625, pytest.approx(q.mean()))


@pytest.mark.parametrize(("n", "k", "p"), [(30, 20, 0.8), (180, 130, 0.78), (1000, 760, 0.8)])
def test_equal_probabilities_are_binomial(n: int, k: int, p: float) -> None:
    correct = np.r_[np.ones(k), np.zeros(n - k)]
    result = expected_accuracy_test(correct, np.full(n, p))
    reference = sps.binomtest(k, n, p, alternative="less").pvalue
    assert result.method == "exact" and result.pvalue == pytest.approx(reference, rel=1e-9)


def test_normal_approximation_above_the_exact_limit_agrees() -> None:
    rng = np.random.default_rng(3)
    n = EXACT_MAX_N + 500
    q = rng.uniform(0.55, 0.99, n)
    correct = (rng.random(n) < q - 0.02).astype(int)
    approx = expected_accuracy_test(correct, q)
    exact = sps.poisson_binom.cdf(int(correct.sum()), q)
    assert approx.method == "normal" and approx.pvalue == pytest.approx(exact, abs=0.003)


def test_calibration_uncertainty_widens_the_test() -> None:
    rng = np.random.default_rng(4)
    q = rng.uniform(0.6, 0.95, 1_500)
    correct = (rng.random(q.size) < q - 0.03).astype(int)
    tight = expected_accuracy_test(correct, q)
    wide = expected_accuracy_test(correct, q, expected_se=0.01)
    assert tight.pvalue < wide.pvalue < 0.5
    # The convolution equals a normal with the summed variances at this size.
    sd = np.sqrt((q * (1 - q)).sum() + (q.size * 0.01) ** 2)
    normal = sps.norm.cdf((correct.sum() + 0.5 - q.sum()) / sd)
    assert wide.pvalue == pytest.approx(normal, abs=0.003)


@settings(max_examples=40, deadline=None)
@given(probabilities, st.data())
def test_pvalue_is_a_probability_and_falls_with_fewer_hits(q: list[float], data: object) -> None:
    hits = np.ones(len(q))
    previous = 1.0 + 1e-12
    for i in range(len(q) + 1):
        if i:
            hits[i - 1] = 0
        value = expected_accuracy_test(hits, q).pvalue
        assert 0.0 <= value <= previous
        previous = value + 1e-12


@pytest.mark.parametrize(
    ("correct", "expected", "kwargs", "field"),
    [
        ([], [], {}, "correct"),
        ([1, 0], [0.5], {}, "expected"),
        ([1, 2], [0.5, 0.5], {}, "correct"),
        ([1, 0], [0.5, 1.5], {}, "expected"),
        ([1, 0], [0.5, np.nan], {}, "expected"),
        ([1, 0], [0.5, 0.5], {"expected_se": -1.0}, "expected_se"),
    ],
)
def test_expected_accuracy_bad_input(
    correct: list[float], expected: list[float], kwargs: dict, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        expected_accuracy_test(correct, expected, **kwargs)
    assert info.value.field == field


def test_drop_test_equals_statsmodels_proportion_ztest() -> None:
    count, n, reference = 140, 200, 0.78
    value = count / n
    result = drop_test(value, proportion_se(value, n), reference, 0.0, allowed=0.05, alpha=0.01)
    z, pvalue = proportions_ztest(count, n, value=reference, alternative="smaller", prop_var=False)
    assert result.z == pytest.approx(-z, rel=1e-12)
    assert result.pvalue == pytest.approx(pvalue, rel=1e-9)
    assert result.drop == pytest.approx(0.08) and result.is_drop


def test_drop_test_directions_and_degenerate_noise() -> None:
    worse_error = drop_test(1.2, 0.01, 1.0, 0.01, allowed=0.05, alpha=0.01, higher_is_better=False)
    assert worse_error.drop == pytest.approx(0.2) and worse_error.is_drop
    better = drop_test(0.9, 0.01, 0.8, 0.01, allowed=0.05, alpha=0.01)
    assert better.drop == pytest.approx(-0.1) and not better.is_drop
    unknown = drop_test(0.5, float("nan"), 0.8, 0.01, allowed=0.05, alpha=0.01)
    assert not unknown.is_drop and unknown.as_dict()["z"] is None
    exact = drop_test(0.7, 0.0, 0.8, 0.0, allowed=0.05, alpha=0.01)
    assert exact.is_drop and exact.as_dict()["z"] is None
    with pytest.raises(InvalidInput, match="alpha"):
        drop_test(0.7, 0.1, 0.8, 0.1, allowed=0.05, alpha=0)


def test_mean_se_equals_scipy_sem() -> None:
    values = np.random.default_rng(5).exponential(size=300)
    assert mean_se(values) == pytest.approx(sps.sem(values), rel=1e-12)
    assert np.isnan(mean_se([1.0]))


def test_auc_and_rmse_standard_errors_match_their_sampling_spread() -> None:
    rng = np.random.default_rng(6)
    aucs, rmses = [], []
    for _ in range(1_500):
        pos, neg = rng.normal(1.0, 1.0, 80), rng.normal(0.0, 1.0, 120)
        aucs.append(roc_auc_score(np.r_[np.ones(80), np.zeros(120)], np.r_[pos, neg]))
        rmses.append(np.sqrt((rng.standard_t(5, 200) ** 2).mean()))
    auc = sps.norm.cdf(1 / np.sqrt(2))  # binormal AUC with unit separation
    assert auc_se(auc, 80, 120) == pytest.approx(np.std(aucs), rel=0.15)
    errors = rng.standard_t(5, 200)
    assert rmse_se(errors) == pytest.approx(np.std(rmses), rel=0.35)  # t5: heavy tails
    assert np.isnan(auc_se(0.8, 0, 10)) and np.isnan(proportion_se(0.5, 0))


@pytest.mark.parametrize("module", ["expected", "drop"])
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"keel.monitoring.stats.{module}")
    result = doctest.testmod(mod)
    assert result.attempted > 0 and result.failed == 0
