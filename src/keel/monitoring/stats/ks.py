"""Two-sample Kolmogorov-Smirnov test, vectorised over columns."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray
from scipy import stats as sps

from keel.monitoring.stats._ecdf import merged_cdfs
from keel.monitoring.stats._result import StatResult, column_pairs, pack

__all__ = ["EXACT_MAX_N", "ks", "ks_sorted"]

#: Up to this sample size scipy computes the exact null distribution; the same
#: switch as ``scipy.stats.ks_2samp(method="auto")``.
EXACT_MAX_N = 10_000


def ks_sorted(
    sorted_ref: NDArray[np.float64], sorted_cur: NDArray[np.float64]
) -> tuple[float, float]:
    """KS statistic and two-sided p-value for two sorted, NaN-free samples.

    ``D = max_x |F_ref(x) - F_cur(x)|``. For samples up to ``EXACT_MAX_N`` the
    p-value is scipy's exact one (computed by scipy itself); above it,
    Smirnov's asymptotic distribution ``kstwo.sf(D, round(n·m/(n+m)))`` as in
    scipy, evaluated here on a statistic computed without re-sorting.
    """
    n_ref, n_cur = sorted_ref.size, sorted_cur.size
    if n_ref == 0 or n_cur == 0:
        return float("nan"), float("nan")
    if max(n_ref, n_cur) <= EXACT_MAX_N:
        with warnings.catch_warnings():
            # scipy falls back to the asymptotic p-value when the exact one does
            # not converge, and says so; that fallback is the documented result.
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation", RuntimeWarning)
            result = sps.ks_2samp(sorted_ref, sorted_cur, method="auto")
        return float(result.statistic), float(result.pvalue)
    _, ref_cdf, cur_cdf = merged_cdfs(sorted_ref, sorted_cur)
    diffs = ref_cdf - cur_cdf
    d = float(max(diffs.max(), np.clip(-diffs.min(), 0, 1)))
    big, small = sorted([float(n_ref), float(n_cur)], reverse=True)
    effective_n = np.round(big * small / (big + small))
    pvalue = float(np.clip(sps.distributions.kstwo.sf(d, effective_n), 0, 1))
    return d, pvalue


def ks(reference: object, current: object) -> StatResult:
    """Two-sample KS test per column of ``reference`` vs ``current``.

    Inputs are 1-D (one feature) or 2-D (rows × features, same column order);
    NaNs are ignored. A column empty on either side gives NaN.

    Examples
    --------
    >>> import numpy as np
    >>> r = ks(np.arange(100.0), np.arange(50.0, 150.0))
    >>> round(r.statistic, 2)
    0.5
    """
    columns, single = column_pairs(reference, current)
    pairs = [ks_sorted(np.sort(r), np.sort(c)) for r, c in columns]
    return StatResult(
        "ks", pack([p[0] for p in pairs], single), pack([p[1] for p in pairs], single)
    )
