"""Wasserstein-1 distance normalised by the reference's spread."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from keel.monitoring.stats._ecdf import merged_cdfs
from keel.monitoring.stats._result import StatResult, column_pairs, pack

__all__ = ["MIN_SCALE", "wasserstein", "wasserstein_sorted"]

#: Floor of the normalising standard deviation, so a constant reference column
#: gives a finite distance (the same floor Evidently uses).
MIN_SCALE = 0.001


def wasserstein_sorted(
    sorted_ref: NDArray[np.float64], sorted_cur: NDArray[np.float64], *, normalise: bool = True
) -> float:
    """``W1(ref, cur) / max(std(ref), MIN_SCALE)`` for sorted, NaN-free samples.

    ``W1 = ∫ |F_ref(x) − F_cur(x)| dx``, computed as scipy's
    ``wasserstein_distance`` does; ``std`` is the population standard
    deviation (ddof=0). ``normalise=False`` returns plain W1.
    """
    if sorted_ref.size == 0 or sorted_cur.size == 0:
        return float("nan")
    points, ref_cdf, cur_cdf = merged_cdfs(sorted_ref, sorted_cur)
    distance = float(np.sum(np.abs(ref_cdf[:-1] - cur_cdf[:-1]) * np.diff(points)))
    if not normalise:
        return distance
    return distance / max(float(np.std(sorted_ref)), MIN_SCALE)


def wasserstein(reference: object, current: object, *, normalise: bool = True) -> StatResult:
    """Wasserstein-1 distance per column, divided by the reference's std.

    Normalising makes one threshold (e.g. 0.1 = a tenth of a standard
    deviation of mass moved) meaningful for features of any unit.

    Examples
    --------
    >>> import numpy as np
    >>> round(wasserstein([0.0, 1.0], [1.0, 2.0], normalise=False).statistic, 3)
    1.0
    """
    columns, single = column_pairs(reference, current)
    values = [wasserstein_sorted(np.sort(r), np.sort(c), normalise=normalise) for r, c in columns]
    return StatResult("wasserstein", pack(values, single))
