"""Jensen-Shannon distance and Kullback-Leibler divergence of binned distributions."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import distance
from scipy.stats import entropy

from keel.monitoring.stats._binning import binned_counts, smooth
from keel.monitoring.stats._result import StatResult, pack
from keel.monitoring.stats.psi import DEFAULT_BINS

__all__ = ["jensen_shannon", "js_from_counts", "kl_divergence", "kl_from_counts"]


def js_from_counts(ref_counts: NDArray[np.float64], cur_counts: NDArray[np.float64]) -> float:
    """Jensen-Shannon distance of two count vectors over the same cells."""
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return float("nan")
    return float(
        distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum(), base=2)
    )


def kl_from_counts(ref_counts: NDArray[np.float64], cur_counts: NDArray[np.float64]) -> float:
    """``KL(current ‖ reference)`` of two count vectors over the same cells, smoothed."""
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return float("nan")
    return float(entropy(smooth(cur_counts), smooth(ref_counts)))


def jensen_shannon(reference: object, current: object, *, bins: int = DEFAULT_BINS) -> StatResult:
    """Jensen-Shannon *distance* (base 2, so it lies in [0, 1]) per column.

    Cells as in :func:`keel.monitoring.stats.psi`; no smoothing is needed
    because JS is finite when a cell is empty on one side. Equals
    ``scipy.spatial.distance.jensenshannon(r, c, base=2)`` on the proportions.

    Examples
    --------
    >>> jensen_shannon(["a", "a"], ["b", "b"]).statistic
    1.0
    """
    pairs, single = binned_counts(reference, current, bins)
    values = [js_from_counts(ref, cur) for ref, cur in pairs]
    return StatResult("jensen_shannon", pack(values, single))


def kl_divergence(reference: object, current: object, *, bins: int = DEFAULT_BINS) -> StatResult:
    """``KL(current ‖ reference)`` in nats per column, over smoothed cells.

    Empty cells get ``EPSILON`` before renormalising (as for PSI); without it
    KL is infinite whenever the current window reaches a cell the reference
    never did. Equals ``scipy.stats.entropy(c, r)`` on the smoothed proportions.

    Examples
    --------
    >>> kl_divergence(["a", "b"], ["a", "b"]).statistic
    0.0
    """
    pairs, single = binned_counts(reference, current, bins)
    values = [kl_from_counts(ref, cur) for ref, cur in pairs]
    return StatResult("kl_divergence", pack(values, single))
