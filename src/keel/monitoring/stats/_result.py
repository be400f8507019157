"""The result every statistic returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["StatResult", "as_columns", "column_pairs", "pack"]


@dataclass(frozen=True, slots=True)
class StatResult:
    """A statistic and, for hypothesis tests, its p-value.

    ``statistic`` and ``pvalue`` are floats when the inputs were one column and
    arrays (one entry per column) when they were 2-D; ``pvalue`` is None for
    distances that have none (PSI, Wasserstein, Jensen-Shannon, KL).
    """

    test: str
    statistic: float | NDArray[np.float64]
    pvalue: float | NDArray[np.float64] | None = None


def as_columns(values: object, name: str) -> tuple[list[NDArray[np.float64]], bool]:
    """Split a 1-D or 2-D numeric array into NaN-free float columns.

    Returns the columns and whether the input was 1-D (so results are scalars).
    NaNs are dropped per column: missing values are a data-quality finding,
    not evidence of drift.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got {array.ndim}-D")
    single = array.ndim == 1
    matrix = array[:, None] if single else array
    columns = [col[~np.isnan(col)] for col in matrix.T]
    return columns, single


def pack(values: list[float], single: bool) -> float | NDArray[np.float64]:
    """A scalar for one column, else an array."""
    return float(values[0]) if single else np.asarray(values, dtype=np.float64)


def column_pairs(
    reference: object, current: object
) -> tuple[list[tuple[NDArray[np.float64], NDArray[np.float64]]], bool]:
    """Pair the columns of ``reference`` and ``current`` (same width required)."""
    ref_cols, single = as_columns(reference, "reference")
    cur_cols, cur_single = as_columns(current, "current")
    if len(ref_cols) != len(cur_cols) or single != cur_single:
        raise ValueError(f"reference has {len(ref_cols)} columns but current has {len(cur_cols)}")
    return list(zip(ref_cols, cur_cols, strict=True)), single
