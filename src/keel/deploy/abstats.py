"""A/B tests for two arms: z and Welch tests, difference intervals, CUPED, AUC error.

Pure functions of counts, summaries or arrays; no I/O. "Control" is the arm
being compared against (the primary) and every difference is
``treatment - control``. Checked against statsmodels and scipy in
``tests/deploy/test_abstats.py``. Sample sizes are in :mod:`keel.deploy.samplesize`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as sps

from keel.deploy.samplesize import check_level
from keel.errors import InvalidInput

__all__ = [
    "Comparison",
    "CupedResult",
    "Summary",
    "auc_std_error",
    "cuped",
    "diff_proportions_ci",
    "welch_ttest",
    "ztest_proportions",
]


@dataclass(frozen=True, slots=True)
class Comparison:
    """One two-arm test: the difference, its standard error, statistic, p-value and CI."""

    test: str
    control: float
    treatment: float
    difference: float
    std_error: float
    statistic: float
    pvalue: float
    ci_low: float
    ci_high: float
    alpha: float
    df: float | None = None  # Welch's degrees of freedom; None for z-tests


@dataclass(frozen=True, slots=True)
class Summary:
    """Mean, unbiased variance (ddof=1) and count of one arm's observations."""

    mean: float
    var: float
    n: int

    @classmethod
    def of(cls, values: ArrayLike) -> Summary:
        """Summary of the finite values in ``values``."""
        array = np.asarray(values, dtype=np.float64)
        array = array[np.isfinite(array)]
        if array.size < 2:
            raise InvalidInput("need at least 2 finite values", field="values", n=int(array.size))
        return cls(float(array.mean()), float(array.var(ddof=1)), int(array.size))


@dataclass(frozen=True, slots=True)
class CupedResult:
    """CUPED-adjusted comparison of two arms.

    ``theta`` = cov(Y, X) / var(X) over both arms pooled; each arm's
    ``Y - theta (X - mean(X))`` keeps its mean and loses
    ``variance_reduction`` (= 1 - var(adjusted) / var(Y), pooled) of its
    variance. ``comparison`` is the Welch test on the adjusted values.
    """

    theta: float
    control_mean: float
    treatment_mean: float
    variance_reduction: float
    comparison: Comparison


def _counts(successes: int, n: int, field: str) -> float:
    if n <= 0 or not 0 <= successes <= n:
        raise InvalidInput(
            "need 0 <= successes <= n and n > 0", field=field, n=n, successes=successes
        )
    return successes / n


def ztest_proportions(
    control: tuple[int, int], treatment: tuple[int, int], *, alpha: float = 0.05
) -> Comparison:
    """Two-sided two-proportion z-test with pooled variance; ``(successes, n)`` per arm.

    Same statistic and p-value as statsmodels ``proportions_ztest([x_t, x_c], [n_t, n_c])``;
    the CI is the unpooled Wald interval. Equal proportions of 0 or 1 give
    statistic 0 and p-value 1.
    """
    check_level(alpha)
    p_c = _counts(*control, field="control")
    p_t = _counts(*treatment, field="treatment")
    (x_c, n_c), (x_t, n_t) = control, treatment
    pooled = (x_c + x_t) / (n_c + n_t)
    se_null = math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    diff = p_t - p_c
    stat = diff / se_null if se_null > 0 else 0.0
    pvalue = float(2 * sps.norm.sf(abs(stat)))
    se = math.sqrt(p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t)
    z = float(sps.norm.isf(alpha / 2))
    return Comparison(
        "two_proportion_z", p_c, p_t, diff, se, stat, pvalue, diff - z * se, diff + z * se, alpha
    )


def _wilson(p: float, n: int, z: float) -> tuple[float, float]:
    denom = 1 + z**2 / n
    center = (p + z**2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return center - half, center + half


def diff_proportions_ci(
    control: tuple[int, int],
    treatment: tuple[int, int],
    *,
    alpha: float = 0.05,
    method: Literal["newcomb", "wald", "agresti-caffo"] = "newcomb",
) -> tuple[float, float]:
    """Two-sided CI of ``p_t - p_c``; statsmodels ``confint_proportions_2indep`` methods.

    ``newcomb`` (Wilson hybrid, statsmodels' default) keeps good coverage near 0
    and 1, where error rates live.
    """
    check_level(alpha)
    p_c = _counts(*control, field="control")
    p_t = _counts(*treatment, field="treatment")
    (x_c, n_c), (x_t, n_t) = control, treatment
    z = float(sps.norm.isf(alpha / 2))
    if method == "newcomb":
        low_t, upp_t = _wilson(p_t, n_t, z)
        low_c, upp_c = _wilson(p_c, n_c, z)
        diff = p_t - p_c
        return (
            diff - math.sqrt((p_t - low_t) ** 2 + (upp_c - p_c) ** 2),
            diff + math.sqrt((p_c - low_c) ** 2 + (upp_t - p_t) ** 2),
        )
    if method in ("wald", "agresti-caffo"):
        add = 1 if method == "agresti-caffo" else 0
        pt_, pc_ = (x_t + add) / (n_t + 2 * add), (x_c + add) / (n_c + 2 * add)
        half = z * math.sqrt(pt_ * (1 - pt_) / (n_t + 2 * add) + pc_ * (1 - pc_) / (n_c + 2 * add))
        return pt_ - pc_ - half, pt_ - pc_ + half
    raise InvalidInput(f"unknown method {method!r}", field="method")


def welch_ttest(control: Summary, treatment: Summary, *, alpha: float = 0.05) -> Comparison:
    """Welch's unequal-variance t-test and CI of ``mean_t - mean_c`` from arm summaries.

    Equals scipy ``ttest_ind(t, c, equal_var=False)`` and statsmodels
    ``CompareMeans(...).tconfint_diff(usevar="unequal")``; summaries (not
    arrays) so a controller can aggregate a million rows in SQL first.
    """
    check_level(alpha)
    for name, arm in (("control", control), ("treatment", treatment)):
        if arm.n < 2 or not arm.var >= 0:
            raise InvalidInput("each arm needs n >= 2 and a variance", field=name, n=arm.n)
    v_c, v_t = control.var / control.n, treatment.var / treatment.n
    se = math.sqrt(v_c + v_t)
    diff = treatment.mean - control.mean
    if se == 0:
        pvalue = 1.0 if diff == 0 else 0.0
        stat = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        return Comparison(
            "welch_t",
            control.mean,
            treatment.mean,
            diff,
            0.0,
            stat,
            pvalue,
            diff,
            diff,
            alpha,
            float("nan"),
        )
    df = (v_c + v_t) ** 2 / (v_c**2 / (control.n - 1) + v_t**2 / (treatment.n - 1))
    stat = diff / se
    pvalue = float(2 * sps.t.sf(abs(stat), df))
    half = float(sps.t.isf(alpha / 2, df)) * se
    return Comparison(
        "welch_t",
        control.mean,
        treatment.mean,
        diff,
        se,
        stat,
        pvalue,
        diff - half,
        diff + half,
        alpha,
        float(df),
    )


def cuped(
    control_y: ArrayLike,
    control_x: ArrayLike,
    treatment_y: ArrayLike,
    treatment_x: ArrayLike,
    *,
    alpha: float = 0.05,
) -> CupedResult:
    """CUPED (Deng et al. 2013): adjust the outcome Y by a pre-experiment covariate X.

    θ is estimated on both arms pooled (so it does not depend on the
    treatment); the adjusted difference is unbiased because X predates
    assignment. A constant X gives θ = 0 (no adjustment).
    """
    arrays = []
    for field, values in (
        ("control_y", control_y),
        ("control_x", control_x),
        ("treatment_y", treatment_y),
        ("treatment_x", treatment_x),
    ):
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or array.size < 2 or not np.isfinite(array).all():
            raise InvalidInput("expected >= 2 finite values", field=field)
        arrays.append(array)
    yc, xc, yt, xt = arrays
    if yc.size != xc.size or yt.size != xt.size:
        raise InvalidInput("Y and X must have one value per unit", field="control_x")
    y, x = np.concatenate([yc, yt]), np.concatenate([xc, xt])
    var_x = float(x.var(ddof=1))
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    x_mean = float(x.mean())
    adj_c, adj_t = yc - theta * (xc - x_mean), yt - theta * (xt - x_mean)
    adjusted = np.concatenate([adj_c, adj_t])
    var_y = float(y.var(ddof=1))
    reduction = 1 - float(adjusted.var(ddof=1)) / var_y if var_y > 0 else 0.0
    comparison = welch_ttest(Summary.of(adj_c), Summary.of(adj_t), alpha=alpha)
    return CupedResult(theta, float(adj_c.mean()), float(adj_t.mean()), reduction, comparison)


def auc_std_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of a ROC AUC (Hanley & McNeil 1982), for comparing arms' AUCs.

    >>> round(auc_std_error(0.8, 100, 100), 6)
    0.031369
    """
    if not 0 <= auc <= 1:
        raise InvalidInput("auc must be in [0, 1]", field="auc", value=auc)
    if n_positive < 1 or n_negative < 1:
        raise InvalidInput("need at least one positive and one negative", field="n_positive")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (
        auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)
    ) / (n_positive * n_negative)
    return math.sqrt(max(var, 0.0))
