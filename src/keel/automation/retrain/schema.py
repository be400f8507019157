"""Data statistics per column and the schema inferred from a reference (R-CICD-07).

The schema is what the model's reference (its training data recorded at registration)
says about each feature: its kind (numeric or categorical, as the monitors' profiles
judge it), dtype, missing share, range and allowed categories. New training rows are
checked against it for schema violations before any training: a feature the reference
had that the rows lack, a feature the reference never had, a kind that changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from keel.monitoring.profile import ColumnProfile, ReferenceProfile
from keel.monitoring.stats._binning import is_categorical

__all__ = ["ColumnSchema", "Violation", "column_stats", "infer_schema", "schema_violations"]

#: Categories listed in a schema / top values in the statistics.
MAX_CATEGORIES = 100
TOP_VALUES = 5


@dataclass(frozen=True)
class ColumnSchema:
    """One feature as the reference shows it."""

    name: str
    kind: str  # "numeric" | "categorical"
    dtype: str
    missing_share: float
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        out: dict[str, Any] = {"kind": self.kind, "dtype": self.dtype}
        out["missing_share"] = round(self.missing_share, 6)
        if self.kind == "numeric":
            out.update(min=self.min, max=self.max)
        else:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class Violation:
    """A failed check: which one, the column, the numbers and a sentence saying what."""

    check: str
    column: str | None
    message: str
    value: float | None = None
    threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return {
            "check": self.check,
            "column": self.column,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
        }


def infer_schema(profile: ReferenceProfile, columns: Iterable[str]) -> dict[str, ColumnSchema]:
    """The schema of ``columns`` (those the reference has) from its profile."""
    return {c: _column_schema(c, profile.columns[c]) for c in columns if c in profile.columns}


def _column_schema(name: str, ref: ColumnProfile) -> ColumnSchema:
    if ref.kind == "numeric":
        values = ref.sorted_values
        assert values is not None
        low = float(values[0]) if values.size else None
        high = float(values[-1]) if values.size else None
        return ColumnSchema(name, "numeric", ref.dtype, ref.null_rate, low, high)
    assert ref.counts is not None
    levels = ref.counts[ref.counts > 0].sort_values(ascending=False).index[:MAX_CATEGORIES]
    return ColumnSchema(name, "categorical", ref.dtype, ref.null_rate, categories=_texts(levels))


def schema_violations(
    schema: dict[str, ColumnSchema], frame: pd.DataFrame, features: list[str]
) -> list[Violation]:
    """Features of the schema the rows lack (or hold no value of), features the reference
    never had, and features whose kind changed (numbers arriving as text, say)."""
    found: list[Violation] = []
    for name, column in schema.items():
        if name not in features or name not in frame.columns:
            found.append(
                Violation("missing_column", name, f"{name}: in the reference, not in the rows")
            )
        elif len(frame) and frame[name].isna().all():
            found.append(
                Violation(
                    "missing_column",
                    name,
                    f"{name}: no value in any row",
                    1.0,
                    column.missing_share,
                )
            )
        else:
            kind = "categorical" if is_categorical(frame[name]) else "numeric"
            if kind != column.kind:
                found.append(
                    Violation(
                        "type_change",
                        name,
                        f"{name}: {kind} ({frame[name].dtype}) where the reference is "
                        f"{column.kind} ({column.dtype})",
                    )
                )
    for name in features:
        if name not in schema:
            found.append(Violation("new_column", name, f"{name}: not in the reference"))
    return found


def column_stats(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per column: count (non-missing), missing share, distinct count; min/max/mean/std
    (sample std, ddof 1) of a numeric column, the top values of a categorical one."""
    return {str(c): _stats(frame[c]) for c in columns if c in frame.columns}


def _stats(series: pd.Series) -> dict[str, Any]:
    rows = len(series)
    present = series.dropna()
    out: dict[str, Any] = {
        "count": int(present.size),
        "missing_share": round(float(series.isna().mean()), 6) if rows else 0.0,
        "distinct": int(present.nunique()),
    }
    if is_categorical(series):
        top = present.astype(str).value_counts().head(TOP_VALUES)
        out["top"] = [{"value": str(k), "count": int(v)} for k, v in top.items()]
        return out
    values = present.to_numpy(dtype=np.float64)
    if values.size:
        out.update(
            min=float(values.min()),
            max=float(values.max()),
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        )
    return out


def _texts(values: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in values)
