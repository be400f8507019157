"""Is realised accuracy below what calibrated scores expect on the same rows?

Under a calibrated model (no concept drift), row ``i`` is classified correctly
with probability ``q_i`` (its calibrated probability of the predicted class),
independently of the other rows, so the number of correct rows ``S`` follows a
Poisson-binomial distribution with mean ``Σ q_i`` and variance
``Σ q_i (1 − q_i)``. The test accounts for the number of labels: 30 labels
need a much larger gap than 3,000 before it fires (hardening #15.18).

The ``q_i`` come from a calibration fitted on a finite held-out set, so their
mean is itself uncertain: ``expected_se`` (the standard error of the expected
accuracy, e.g. ``sqrt(a (1 − a) / n_calibration)``) shifts the whole expected
count by ``n · δ`` with ``δ ~ N(0, expected_se²)``. The one-sided p-value is
``P(S + n·δ ≤ s_observed)``: the exact Poisson-binomial distribution
convolved with that normal up to ``EXACT_MAX_N`` rows, a normal approximation
with continuity correction and the summed variances above (where the two
agree to a few parts in a thousand).

The distribution comes from the textbook recursion (add one row at a time:
``P_new(k) = P(k)(1 − q) + P(k − 1) q``), O(n²) but all terms positive, so
exact to rounding; scipy's ``poisson_binom.pmf`` gives the same numbers
(tests/monitoring/test_performance_stats.py) but evaluates each count
separately, ~1,000× slower for the whole distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from keel.errors import InvalidInput

__all__ = ["EXACT_MAX_N", "ExpectedAccuracyTest", "expected_accuracy_test", "poisson_binomial_pmf"]

#: Up to this many rows the Poisson-binomial distribution is computed exactly (~20 ms).
EXACT_MAX_N = 2_000


@dataclass(frozen=True, slots=True)
class ExpectedAccuracyTest:
    """Realised vs expected accuracy of the same rows, and how surprising the gap is."""

    n: int
    realised: float
    expected: float
    pvalue: float
    method: Literal["exact", "normal"]

    @property
    def gap(self) -> float:
        """Expected minus realised accuracy (positive: fewer correct than expected)."""
        return self.expected - self.realised

    def is_below(self, alpha: float) -> bool:
        """True when realised accuracy is significantly below the expectation at ``alpha``."""
        return self.pvalue < alpha


def expected_accuracy_test(
    correct: ArrayLike, expected: ArrayLike, *, expected_se: float = 0.0
) -> ExpectedAccuracyTest:
    """One-sided test of ``H0: P(row i correct) = expected[i]`` against "fewer correct".

    ``correct`` holds 0/1 (or booleans) per row, ``expected`` each row's
    probability of being correct in [0, 1], ``expected_se`` the uncertainty of
    their mean (0: known exactly). Raises :class:`InvalidInput` for empty,
    misaligned or out-of-range input.

    Examples
    --------
    >>> r = expected_accuracy_test([1, 1, 0, 1], [0.9, 0.8, 0.7, 0.9])
    >>> r.realised, round(r.expected, 3), round(r.pvalue, 4)
    (0.75, 0.825, 0.5464)
    """
    hits = np.asarray(correct, dtype=np.float64)
    q = np.asarray(expected, dtype=np.float64)
    if hits.ndim != 1 or hits.size == 0:
        raise InvalidInput("correct: need a non-empty 1-D array of 0/1", field="correct")
    if q.shape != hits.shape:
        raise InvalidInput(
            f"expected: {q.size} probabilities for {hits.size} rows", field="expected"
        )
    if not np.isin(hits, (0.0, 1.0)).all():
        raise InvalidInput("correct: values must be 0 or 1", field="correct")
    if np.isnan(q).any() or (q < 0).any() or (q > 1).any():
        raise InvalidInput("expected: probabilities must lie in [0, 1]", field="expected")
    if not (np.isfinite(expected_se) and expected_se >= 0):
        raise InvalidInput("expected_se: must be a number ≥ 0", field="expected_se")
    successes = int(hits.sum())
    shift_sd = q.size * expected_se  # of the expected count
    method: Literal["exact", "normal"] = "exact"
    if q.size <= EXACT_MAX_N:
        pmf = poisson_binomial_pmf(q)
        if shift_sd == 0:
            pvalue = float(pmf[: successes + 1].sum())
        else:
            counts = np.arange(q.size + 1)
            pvalue = float(pmf @ sps.norm.cdf((successes + 0.5 - counts) / shift_sd))
    else:
        variance = float((q * (1 - q)).sum()) + shift_sd**2
        mean = float(q.sum())
        if variance == 0:
            pvalue = 1.0 if successes >= mean else 0.0
        else:
            pvalue = float(sps.norm.cdf((successes + 0.5 - mean) / np.sqrt(variance)))
        method = "normal"
    return ExpectedAccuracyTest(
        n=int(q.size),
        realised=successes / q.size,
        expected=float(q.mean()),
        pvalue=float(np.clip(pvalue, 0.0, 1.0)),
        method=method,
    )


def poisson_binomial_pmf(probabilities: ArrayLike) -> NDArray[np.float64]:
    """``P(S = k)`` for ``k = 0 … n``, ``S`` a sum of independent Bernoulli(``p_i``).

    Examples
    --------
    >>> poisson_binomial_pmf([0.5, 0.5]).tolist()
    [0.25, 0.5, 0.25]
    """
    q = np.asarray(probabilities, dtype=np.float64).ravel()
    pmf = np.zeros(q.size + 1)
    pmf[0] = 1.0
    for i, qi in enumerate(q):
        # The right-hand side is evaluated before the assignment: a simultaneous update.
        pmf[1 : i + 2] = pmf[1 : i + 2] * (1 - qi) + pmf[: i + 1] * qi
        pmf[0] *= 1 - qi
    return pmf
