"""Two arms' differences through keel's one set of A/B tests (:mod:`keel.deploy.abstats`).

Error rates are compared with the two-proportion z-test; a metric known as an estimate
with its standard error (:class:`~keel.deploy.verdict.MetricEstimate`: AUC with its
Hanley-McNeil error, a mean with its standard error of the mean) with Welch's test on the
summary it implies (variance = SE² x n, so the test's per-arm variance of the mean is
exactly SE²). Used by the holdout lift (:mod:`keel.deploy.holdout`) and canary debugging
(:mod:`keel.deploy.debugging`). Pure functions.
"""

from __future__ import annotations

from typing import Any

from keel.deploy.abstats import Comparison, Summary, welch_ttest, ztest_proportions
from keel.deploy.verdict import MetricEstimate

__all__ = ["LOWER_IS_BETTER", "compare_errors", "compare_metric", "holm", "to_dict"]

#: Metrics (of :data:`keel.deploy.armstats.METRICS`) where a smaller value is better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "mae", "mse"})


def compare_errors(
    control: tuple[int, int], treatment: tuple[int, int], *, alpha: float = 0.05
) -> Comparison | None:
    """Two-proportion z-test of ``(errors, n)`` per arm; None when an arm has no requests."""
    if control[1] <= 0 or treatment[1] <= 0:
        return None
    return ztest_proportions(control, treatment, alpha=alpha)


def compare_metric(
    control: MetricEstimate | None, treatment: MetricEstimate | None, *, alpha: float = 0.05
) -> Comparison | None:
    """Welch's test of two metric estimates (``treatment - control``); None when either is
    missing or rests on fewer than 2 observations."""
    if control is None or treatment is None or min(control.n, treatment.n) < 2:
        return None
    return welch_ttest(
        Summary(control.value, control.std_error**2 * control.n, control.n),
        Summary(treatment.value, treatment.std_error**2 * treatment.n, treatment.n),
        alpha=alpha,
    )


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels ``multipletests(method="holm")``):
    many slices × steps tested at once would otherwise raise false alarms.

    >>> holm([0.25, 0.5, 0.125])
    [0.5, 0.5, 0.375]
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    m = len(pvalues)
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def to_dict(comparison: Comparison | None) -> dict[str, Any] | None:
    """The comparison's numbers as JSON-able values (None stays None)."""
    if comparison is None:
        return None
    return {
        "test": comparison.test,
        "control": comparison.control,
        "treatment": comparison.treatment,
        "difference": comparison.difference,
        "std_error": comparison.std_error,
        "statistic": comparison.statistic,
        "pvalue": comparison.pvalue,
        "ci_low": comparison.ci_low,
        "ci_high": comparison.ci_high,
        "alpha": comparison.alpha,
        "df": comparison.df,
    }
