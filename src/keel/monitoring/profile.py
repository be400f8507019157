"""A reference sample reduced to what drift and data-quality checks need, computed once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from keel.monitoring.stats._binning import is_categorical
from keel.monitoring.stats.choice import FeatureKind

__all__ = ["ColumnProfile", "ReferenceProfile", "profile_as", "profile_column"]


@dataclass(frozen=True)
class ColumnProfile:
    """One column: sorted non-null values (numeric; unsorted when profiled with
    ``sort=False``) or level counts (categorical)."""

    kind: FeatureKind
    dtype: str
    sorted_values: NDArray[np.float64] | None = None
    counts: pd.Series | None = None
    n_missing: int = 0

    @property
    def n(self) -> int:
        """Non-null values."""
        if self.sorted_values is not None:
            return int(self.sorted_values.size)
        assert self.counts is not None
        return int(self.counts.sum())

    @property
    def null_rate(self) -> float:
        """Share of rows that were null (0 for an empty column)."""
        total = self.n + self.n_missing
        return self.n_missing / total if total else 0.0


@dataclass(frozen=True)
class ReferenceProfile:
    """Every column of a reference sample, profiled."""

    columns: dict[str, ColumnProfile]
    rows: int

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> ReferenceProfile:
        """Profile every column of ``frame`` (numeric → sorted values; else level counts)."""
        return cls({str(name): profile_column(frame[name]) for name in frame.columns}, len(frame))


def profile_column(series: pd.Series, *, sort: bool = True) -> ColumnProfile:
    """Profile one column by its own type. ``sort=False`` leaves numeric values in their
    own order (for statistics over bin counts, which need no order: sorting a million
    values costs more than the statistic)."""
    dtype = str(series.dtype)
    if is_categorical(series):
        counts = series.value_counts(dropna=True, sort=False)
        return ColumnProfile(
            "categorical", dtype, counts=counts, n_missing=int(series.isna().sum())
        )
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = values[~np.isnan(values)]
    if sort:
        finite.sort()
    return ColumnProfile(
        "numeric", dtype, sorted_values=finite, n_missing=int(values.size - finite.size)
    )


def profile_as(series: pd.Series, kind: FeatureKind, *, sort: bool = True) -> ColumnProfile:
    """Profile a current column as the reference's kind.

    Numbers arriving as strings (a type change upstream) are parsed; values
    that do not parse become missing, which the data-quality checks report.
    """
    if kind == "numeric" and is_categorical(series):
        series = pd.to_numeric(series, errors="coerce")
    elif kind == "categorical" and not is_categorical(series):
        series = series.astype(object)
    return profile_column(series, sort=sort)
