"""Turning samples into comparable distributions (bins for numbers, levels for categories)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from keel.monitoring.stats._result import column_pairs

__all__ = [
    "EPSILON",
    "aligned_counts",
    "binned_counts",
    "category_counts",
    "is_categorical",
    "numeric_counts",
    "quantile_edges",
    "smooth",
]

#: Probability given to an empty bin before renormalising, so PSI and KL stay finite.
EPSILON = 1e-4


def is_categorical(values: object) -> bool:
    """Strings, booleans, objects and pandas categoricals are compared by level, not by bin."""
    dtype = getattr(values, "dtype", None)
    if dtype is None:
        dtype = np.asarray(values).dtype
    return not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)


def quantile_edges(sorted_ref: NDArray[np.float64], bins: int) -> NDArray[np.float64]:
    """Interior bin edges at the reference's quantiles (duplicates from ties removed).

    Bin ``i`` is ``(edge[i-1], edge[i]]`` with ``-inf`` and ``+inf`` as the
    outer edges, so every current value, even far outside the reference's
    range, falls in some bin.
    """
    if bins < 2:
        raise ValueError(f"bins: need at least 2, got {bins}")
    probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(np.quantile(sorted_ref, probs))


def numeric_counts(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    """Counts of ``values`` per bin defined by ``edges`` (see :func:`quantile_edges`)."""
    index = np.searchsorted(edges, values, side="left")
    return np.bincount(index, minlength=edges.size + 1).astype(np.float64)


def category_counts(
    reference: object, current: object
) -> tuple[list[object], NDArray[np.float64], NDArray[np.float64]]:
    """Levels (union of both samples, reference order first) and their counts on each side.

    Missing values (None/NaN) are dropped: they are a data-quality finding.
    """
    ref_counts = pd.Series(np.asarray(reference, dtype=object)).dropna().value_counts(sort=False)
    cur_counts = pd.Series(np.asarray(current, dtype=object)).dropna().value_counts(sort=False)
    return aligned_counts(ref_counts, cur_counts)


def aligned_counts(
    ref_counts: pd.Series, cur_counts: pd.Series
) -> tuple[list[object], NDArray[np.float64], NDArray[np.float64]]:
    """Two level → count series over the union of levels (reference order first, 0 if absent)."""
    levels = list(ref_counts.index) + [v for v in cur_counts.index if v not in ref_counts.index]
    ref = ref_counts.reindex(levels, fill_value=0).to_numpy(dtype=np.float64)
    cur = cur_counts.reindex(levels, fill_value=0).to_numpy(dtype=np.float64)
    return levels, ref, cur


def smooth(counts: NDArray[np.float64]) -> NDArray[np.float64]:
    """Proportions with empty cells raised to :data:`EPSILON`, renormalised to sum to 1."""
    total = counts.sum()
    if total == 0:
        return np.full(counts.shape, np.nan)
    proportions = np.maximum(counts / total, EPSILON)
    normalised: NDArray[np.float64] = proportions / proportions.sum()
    return normalised


def binned_counts(
    reference: object, current: object, bins: int
) -> tuple[list[tuple[NDArray[np.float64], NDArray[np.float64]]], bool]:
    """Per column, the reference and current counts over the same cells.

    Numeric columns use ``bins`` reference-quantile bins; categorical ones
    (1-D or 2-D object/string arrays) use the union of levels. Returns the
    count pairs and whether the input was one column.
    """
    if is_categorical(reference) or is_categorical(current):
        ref_arr = np.asarray(reference, dtype=object)
        cur_arr = np.asarray(current, dtype=object)
        if ref_arr.ndim == 1 and cur_arr.ndim == 1:
            _, ref, cur = category_counts(ref_arr, cur_arr)
            return [(ref, cur)], True
        if ref_arr.ndim != 2 or cur_arr.ndim != 2 or ref_arr.shape[1] != cur_arr.shape[1]:
            raise ValueError(f"reference has shape {ref_arr.shape} but current has {cur_arr.shape}")
        pairs = []
        for j in range(ref_arr.shape[1]):
            _, ref, cur = category_counts(ref_arr[:, j], cur_arr[:, j])
            pairs.append((ref, cur))
        return pairs, False
    columns, single = column_pairs(reference, current)
    pairs = []
    for ref_col, cur_col in columns:
        edges = quantile_edges(np.sort(ref_col), bins) if ref_col.size else np.empty(0)
        pairs.append((numeric_counts(ref_col, edges), numeric_counts(cur_col, edges)))
    return pairs, single
