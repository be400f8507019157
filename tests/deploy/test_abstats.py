"""A/B statistics against statsmodels and scipy, to 1e-9."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    power_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttest_ind

from keel.deploy import abstats, samplesize
from keel.deploy.abstats import (
    Summary,
    auc_std_error,
    cuped,
    diff_proportions_ci,
    welch_ttest,
    ztest_proportions,
)
from keel.deploy.samplesize import sample_size_means, sample_size_proportions
from keel.errors import InvalidInput

TOL = 1e-9


def test_sample_size_r_dep_12_absolute_and_relative_mde() -> None:
    # R-DEP-12: p = 0.05, sigma^2 = p(1-p); a 2-point lift vs a 2 % relative lift.
    absolute = sample_size_proportions(0.05, 0.02, mde_kind="absolute")
    relative = sample_size_proportions(0.05, 0.02, mde_kind="relative")
    assert absolute.method == "textbook" and round(absolute.exact) == 1864
    assert absolute.delta == 0.02 and relative.delta == pytest.approx(0.001)
    assert abs(relative.exact - 745_600) / 745_600 < 1e-3
    z = sps.norm.isf(0.025) + sps.norm.isf(0.2)
    assert absolute.exact == pytest.approx(2 * z**2 * 0.05 * 0.95 / 0.02**2, rel=TOL)


@pytest.mark.parametrize("ratio", [1.0, 5 / 95, 3.0])
@pytest.mark.parametrize(("baseline", "mde"), [(0.05, 0.02), (0.3, -0.05), (0.5, 0.01)])
def test_sample_size_pooled_unpooled_solves_statsmodels_power(
    baseline: float, mde: float, ratio: float
) -> None:
    size = sample_size_proportions(
        baseline, mde, mde_kind="absolute", ratio=ratio, method="pooled_unpooled"
    )
    # statsmodels' arm 1 (nobs1) is our control arm at the baseline.
    power = power_proportions_2indep(
        -abs(mde), baseline + abs(mde), size.exact, ratio=ratio, return_results=False
    )
    assert abs(power - 0.8) < TOL
    assert size.n == math.ceil(size.exact)


@pytest.mark.parametrize("ratio", [1.0, 5 / 95, 3.0])
def test_sample_size_arcsine_matches_normal_ind_power(ratio: float) -> None:
    size = sample_size_proportions(0.1, 0.03, mde_kind="absolute", ratio=ratio, method="arcsine")
    expected = NormalIndPower().solve_power(
        effect_size=proportion_effectsize(0.13, 0.1), alpha=0.05, power=0.8, ratio=ratio
    )
    assert size.exact == pytest.approx(expected, rel=TOL)


@pytest.mark.parametrize(("alpha", "power", "ratio"), [(0.05, 0.8, 1.0), (0.01, 0.9, 2.0)])
def test_sample_size_means_normal_matches_zt_ind_solve_power(
    alpha: float, power: float, ratio: float
) -> None:
    size = sample_size_means(
        4.0,
        0.05,
        mde_kind="relative",
        baseline=10.0,
        alpha=alpha,
        power=power,
        ratio=ratio,
        method="normal",
    )
    expected = zt_ind_solve_power(effect_size=0.5 / 4.0, alpha=alpha, power=power, ratio=ratio)
    assert size.exact == pytest.approx(expected, rel=TOL)
    textbook = sample_size_means(
        4.0, 0.5, mde_kind="absolute", alpha=alpha, power=power, ratio=ratio
    )
    # The textbook formula ignores the far tail's power, so it asks for (slightly) more.
    assert size.exact < textbook.exact < size.exact * 1.001


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mde_kind": "percent"}, "mde_kind"),
        ({"mde_kind": "absolute", "alpha": 1.5}, "alpha"),
        ({"mde_kind": "absolute", "power": 0}, "power"),
        ({"mde_kind": "absolute", "ratio": -1}, "ratio"),
    ],
)
def test_sample_size_bad_input_names_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as info:
        sample_size_proportions(0.05, 0.02, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_sample_size_relative_mean_without_baseline_is_rejected() -> None:
    with pytest.raises(InvalidInput) as info:
        sample_size_means(1.0, 0.1, mde_kind="relative")
    assert info.value.field == "baseline"


@pytest.mark.parametrize(
    ("control", "treatment"),
    [((50, 1000), (70, 1000)), ((3, 40), (9, 55)), ((500, 900), (480, 1100))],
)
def test_ztest_proportions_matches_statsmodels(
    control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    result = ztest_proportions(control, treatment)
    stat, pvalue = proportions_ztest([treatment[0], control[0]], [treatment[1], control[1]])
    assert result.statistic == pytest.approx(stat, rel=TOL, abs=TOL)
    assert result.pvalue == pytest.approx(pvalue, rel=TOL, abs=TOL)
    low, high = confint_proportions_2indep(
        treatment[0], treatment[1], control[0], control[1], method="wald"
    )
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=TOL, abs=TOL)


def test_ztest_proportions_degenerate_counts() -> None:
    result = ztest_proportions((0, 100), (0, 200))
    assert (result.statistic, result.pvalue) == (0.0, 1.0)
    with pytest.raises(InvalidInput) as info:
        ztest_proportions((5, 0), (1, 10))
    assert info.value.field == "control"


@pytest.mark.parametrize("method", ["newcomb", "wald", "agresti-caffo"])
@pytest.mark.parametrize(("control", "treatment"), [((50, 1000), (70, 1000)), ((0, 30), (4, 25))])
def test_diff_proportions_ci_matches_statsmodels(
    method: str, control: tuple[int, int], treatment: tuple[int, int]
) -> None:
    low, high = diff_proportions_ci(control, treatment, method=method, alpha=0.1)  # type: ignore[arg-type]
    expected = confint_proportions_2indep(
        treatment[0], treatment[1], control[0], control[1], method=method, alpha=0.1
    )
    assert (low, high) == pytest.approx(expected, rel=TOL, abs=TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_welch_ttest_matches_scipy_and_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    control, treatment = rng.normal(10, 2, 80), rng.normal(10.6, 5, 130)
    result = welch_ttest(Summary.of(control), Summary.of(treatment))
    expected = sps.ttest_ind(treatment, control, equal_var=False)
    assert result.statistic == pytest.approx(expected.statistic, rel=TOL)
    assert result.pvalue == pytest.approx(expected.pvalue, rel=TOL)
    stat, pvalue, df = ttest_ind(treatment, control, usevar="unequal")
    assert (result.statistic, result.pvalue, result.df) == pytest.approx(
        (stat, pvalue, df), rel=TOL
    )
    low, high = CompareMeans(DescrStatsW(treatment), DescrStatsW(control)).tconfint_diff(
        usevar="unequal"
    )
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=TOL)


def test_welch_ttest_constant_arms() -> None:
    same = welch_ttest(Summary(1.0, 0.0, 10), Summary(1.0, 0.0, 10))
    assert same.pvalue == 1.0
    apart = welch_ttest(Summary(1.0, 0.0, 10), Summary(2.0, 0.0, 10))
    assert apart.pvalue == 0.0 and apart.statistic == math.inf


def test_summary_of_too_few_values_is_rejected() -> None:
    with pytest.raises(InvalidInput):
        Summary.of([1.0, float("nan")])


def test_cuped_theta_is_the_ols_slope_and_reduces_variance() -> None:
    rng = np.random.default_rng(7)
    x_c, x_t = rng.normal(5, 2, 2000), rng.normal(5, 2, 2000)
    y_c = 2 + 0.8 * x_c + rng.normal(0, 1, 2000)
    y_t = 2.1 + 0.8 * x_t + rng.normal(0, 1, 2000)
    result = cuped(y_c, x_c, y_t, x_t)
    x, y = np.concatenate([x_c, x_t]), np.concatenate([y_c, y_t])
    slope = sps.linregress(x, y).slope
    assert result.theta == pytest.approx(slope, rel=TOL)
    assert result.variance_reduction == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2, rel=1e-6)
    plain = welch_ttest(Summary.of(y_c), Summary.of(y_t))
    assert result.comparison.std_error < 0.6 * plain.std_error  # sqrt(1 - 0.72)
    adjusted_t = y_t - result.theta * (x_t - x.mean())
    assert result.treatment_mean == pytest.approx(adjusted_t.mean(), rel=TOL)


def test_cuped_constant_covariate_leaves_outcome_alone() -> None:
    result = cuped([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [2.0, 3.0, 4.0], [1.0, 1.0, 1.0])
    assert result.theta == 0.0 and result.variance_reduction == 0.0
    with pytest.raises(InvalidInput) as info:
        cuped([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])
    assert info.value.field == "control_x"


def test_auc_std_error_hanley_mcneil_table_value() -> None:
    # Hanley & McNeil (1982) eq. 2 by hand: Q1 = 0.8/1.2, Q2 = 2*0.64/1.8, n = 100/100.
    q1, q2 = 0.8 / 1.2, 2 * 0.64 / 1.8
    by_hand = math.sqrt((0.8 * 0.2 + 99 * (q1 - 0.64) + 99 * (q2 - 0.64)) / 100**2)
    assert auc_std_error(0.8, 100, 100) == pytest.approx(by_hand, rel=1e-12)
    assert auc_std_error(0.8, 100, 100) == pytest.approx(0.0314, abs=1e-4)
    with pytest.raises(InvalidInput):
        auc_std_error(0.8, 0, 10)


@pytest.mark.parametrize("module", [abstats, samplesize], ids=lambda m: m.__name__)
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
