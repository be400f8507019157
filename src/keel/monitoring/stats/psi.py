"""Population Stability Index."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from keel.monitoring.stats._binning import binned_counts, smooth
from keel.monitoring.stats._result import StatResult, pack

__all__ = ["DEFAULT_BINS", "psi", "psi_from_counts"]

#: Reference-quantile bins for numeric features (deciles).
DEFAULT_BINS = 10


def psi_from_counts(ref_counts: NDArray[np.float64], cur_counts: NDArray[np.float64]) -> float:
    """PSI of two count vectors over the same cells (see :func:`psi`)."""
    if ref_counts.sum() == 0 or cur_counts.sum() == 0:
        return float("nan")
    r, c = smooth(ref_counts), smooth(cur_counts)
    return float(np.sum((c - r) * np.log(c / r)))


def psi(reference: object, current: object, *, bins: int = DEFAULT_BINS) -> StatResult:
    r"""Population Stability Index per column.

    .. math:: \mathrm{PSI} = \sum_i (c_i - r_i)\,\ln(c_i / r_i)

    where :math:`r_i, c_i` are the reference and current proportions in cell
    :math:`i`. Numeric cells are ``bins`` bins at the reference's quantiles
    (outer bins open to ±inf); categorical cells are the union of levels, so a
    category never seen in the reference counts as its own cell. Empty cells
    get proportion ``EPSILON = 1e-4`` and each side is renormalised to sum to 1,
    which makes PSI exactly ``KL(c‖r) + KL(r‖c)``. Rule of thumb: < 0.1 stable,
    0.1–0.25 moderate shift, > 0.25 major shift.

    Examples
    --------
    >>> round(psi(["a", "a", "b", "b"], ["a", "b", "b", "b"]).statistic, 4)
    0.2747
    """
    pairs, single = binned_counts(reference, current, bins)
    return StatResult("psi", pack([psi_from_counts(r, c) for r, c in pairs], single))
