"""Chi-square test of homogeneity for categorical features."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import chi2_contingency

from keel.monitoring.stats._binning import category_counts
from keel.monitoring.stats._result import StatResult, pack

__all__ = ["chi2", "chi2_from_counts"]


def chi2_from_counts(
    ref_counts: NDArray[np.float64], cur_counts: NDArray[np.float64]
) -> tuple[float, float]:
    """Statistic and p-value from counts over the same levels (see :func:`chi2`)."""
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return float("nan"), float("nan")
    if ref_counts.size < 2:
        return 0.0, 1.0
    result = chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
    return float(result.statistic), float(result.pvalue)


def chi2(reference: object, current: object) -> StatResult:
    """Chi-square test that reference and current come from one categorical distribution.

    The contingency table has one row per sample and one column per level in
    the union of both samples. A category never seen in the reference is kept
    as its own column (it raises the statistic, as it should) rather than
    dropped or merged; the drift report also lists it by name. No continuity
    correction. Equals ``scipy.stats.chi2_contingency(table, correction=False)``.
    With a single level on both sides the samples cannot differ: statistic 0,
    p-value 1. 2-D inputs (rows × features) are tested per column.

    Examples
    --------
    >>> r = chi2(["a"] * 50 + ["b"] * 50, ["a"] * 90 + ["b"] * 10)
    >>> r.pvalue < 0.001
    True
    """
    ref_arr = np.asarray(reference, dtype=object)
    cur_arr = np.asarray(current, dtype=object)
    single = ref_arr.ndim == 1
    ref_cols = [ref_arr] if single else list(ref_arr.T)
    cur_cols = [cur_arr] if cur_arr.ndim == 1 else list(cur_arr.T)
    if len(ref_cols) != len(cur_cols):
        raise ValueError(f"reference has {len(ref_cols)} columns but current has {len(cur_cols)}")
    stats, pvalues = [], []
    for ref_col, cur_col in zip(ref_cols, cur_cols, strict=True):
        statistic, pvalue = chi2_from_counts(*category_counts(ref_col, cur_col)[1:])
        stats.append(statistic)
        pvalues.append(pvalue)
    return StatResult("chi2", pack(stats, single), pack(pvalues, single))
