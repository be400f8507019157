"""Multiple-testing correction, so 50 features do not flag by chance."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.stats import false_discovery_control

from keel.monitoring.vocabulary import Correction

__all__ = ["Correction", "adjust_pvalues"]


def adjust_pvalues(pvalues: object, method: Correction = "bh") -> NDArray[np.float64]:
    """Adjusted p-values; compare them with the unadjusted significance level.

    ``bonferroni`` multiplies by the number of tests (controls the chance of
    any false alarm); ``bh`` is Benjamini-Hochberg (controls the expected
    share of false alarms among the flagged features; scipy's
    ``false_discovery_control``). NaN p-values (tests that could not run) stay
    NaN and do not count as tests.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04], "bonferroni").tolist()
    [0.02, 0.08]
    """
    values = np.asarray(pvalues, dtype=np.float64).copy()
    if method not in ("none", "bonferroni", "bh"):
        raise ValueError(f"correction: unknown method {method!r} (none, bonferroni, bh)")
    valid = ~np.isnan(values)
    if method == "none" or not valid.any():
        return values
    if method == "bonferroni":
        values[valid] = np.minimum(values[valid] * valid.sum(), 1.0)
    else:
        values[valid] = false_discovery_control(values[valid], method="bh")
    return values
