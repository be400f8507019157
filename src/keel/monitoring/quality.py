"""Data-quality checks of a window against the reference profile.

Checks per feature: the column is present, its type still parses as the
reference's, the null rate did not rise by more than a tolerance, numeric
values stay inside the reference's range, and categorical values stay inside
the reference's levels; plus columns the reference never had. A few values
outside the reference range are how drift shows; most of a column outside it
(a unit change: charges ×100) is a broken feed, so above
``out_of_range_error_share`` (default half the rows) it is an error. Each finding
carries the measured rate, the threshold and a sentence a person can act on.

Why not pandera: pandera validates a frame against a schema and reports the
failing rows; a monitor needs *rates* compared with what the reference
showed (a column that was 2% null may stay 2% null), so the checks are a few
vectorised pandas operations over the profile instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from keel.errors import InvalidInput
from keel.monitoring.profile import ColumnProfile, ReferenceProfile, profile_as

if TYPE_CHECKING:
    from keel.monitoring.models import MonitorSpec

__all__ = ["QualityFinding", "QualityReport", "QualityThresholds", "check_quality"]

Check = Literal[
    "missing_column",
    "unexpected_column",
    "type_change",
    "null_rate",
    "out_of_range",
    "new_categories",
    "empty_window",
]
Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class QualityThresholds:
    """Tolerances; a rate above its threshold is a finding."""

    null_rate_increase: float = 0.05
    out_of_range_share: float = 0.01
    new_category_share: float = 0.01
    unparseable_share: float = 0.0
    out_of_range_error_share: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise InvalidInput(f"{name}: must be a share in [0, 1], got {value}", field=name)

    @classmethod
    def of(cls, spec: MonitorSpec) -> QualityThresholds:
        """The tolerances a monitor's spec sets (``unparseable_share`` keeps its default)."""
        return cls(
            null_rate_increase=spec.null_rate_increase,
            out_of_range_share=spec.out_of_range_share,
            new_category_share=spec.new_category_share,
            out_of_range_error_share=spec.out_of_range_error_share,
        )


@dataclass(frozen=True, slots=True)
class QualityFinding:
    """One data-quality problem with its numbers."""

    check: Check
    feature: str | None
    severity: Severity
    value: float | None
    threshold: float | None
    message: str
    examples: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        out = {k: getattr(self, k) for k in self.__slots__}
        out["examples"] = list(self.examples)
        return out


@dataclass
class QualityReport:
    """Findings (errors first) and the window's size."""

    rows: int
    findings: list[QualityFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return all(f.severity != "error" for f in self.findings)

    def for_feature(self, feature: str) -> list[QualityFinding]:
        """Findings of one feature."""
        return [f for f in self.findings if f.feature == feature]


def check_quality(
    reference: ReferenceProfile | pd.DataFrame,
    current: pd.DataFrame,
    thresholds: QualityThresholds | None = None,
) -> QualityReport:
    """Check ``current`` against the reference; never raises for bad data, only reports it."""
    limits = thresholds or QualityThresholds()
    profile = (
        reference
        if isinstance(reference, ReferenceProfile)
        else ReferenceProfile.from_frame(reference)
    )
    report = QualityReport(rows=len(current))
    if len(current) == 0:
        report.findings.append(
            QualityFinding("empty_window", None, "error", 0.0, None, "the window has no rows")
        )
        return report
    for name in current.columns:
        if str(name) not in profile.columns:
            message = f"{name} is not in the reference; the model never saw it"
            report.findings.append(
                QualityFinding("unexpected_column", str(name), "warning", None, None, message)
            )
    for name, ref in profile.columns.items():
        if name not in current.columns:
            message = f"{name} is missing from the window"
            report.findings.append(
                QualityFinding("missing_column", name, "error", None, None, message)
            )
            continue
        report.findings.extend(_column_findings(name, ref, current[name], limits))
    report.findings.sort(key=lambda f: (f.severity != "error", f.feature or ""))
    return report


def _column_findings(
    name: str, ref: ColumnProfile, series: pd.Series, limits: QualityThresholds
) -> list[QualityFinding]:
    cur = profile_as(series, ref.kind)
    rows = len(series)
    raw_nulls = int(series.isna().sum())
    findings = [
        _type_change(name, ref, series, (cur.n_missing - raw_nulls) / rows, limits),
        _null_rate(name, ref, raw_nulls / rows, limits),
    ]
    if ref.kind == "numeric":
        findings.append(_out_of_range(name, ref, cur, limits))
    else:
        findings.append(_new_categories(name, ref, cur, limits))
    return [f for f in findings if f is not None]


def _type_change(
    name: str, ref: ColumnProfile, series: pd.Series, share: float, limits: QualityThresholds
) -> QualityFinding | None:
    """Values that no longer parse as the reference's kind (e.g. "n/a" in a number column)."""
    if share <= limits.unparseable_share:
        return None
    parsed = pd.to_numeric(series, errors="coerce")
    bad = series[series.notna() & parsed.isna()]
    return QualityFinding(
        "type_change",
        name,
        "error",
        share,
        limits.unparseable_share,
        f"{share:.1%} of {name} is not {ref.kind} (reference dtype {ref.dtype}, "
        f"window dtype {series.dtype})",
        tuple(str(v) for v in bad.unique()[:5]),
    )


def _null_rate(
    name: str, ref: ColumnProfile, rate: float, limits: QualityThresholds
) -> QualityFinding | None:
    if rate - ref.null_rate <= limits.null_rate_increase:
        return None
    return QualityFinding(
        "null_rate",
        name,
        "error",
        rate,
        ref.null_rate + limits.null_rate_increase,
        f"{name} is {rate:.1%} null (reference {ref.null_rate:.1%})",
    )


def _out_of_range(
    name: str, ref: ColumnProfile, cur: ColumnProfile, limits: QualityThresholds
) -> QualityFinding | None:
    if not (cur.n and ref.n):
        return None
    assert ref.sorted_values is not None and cur.sorted_values is not None
    low, high = ref.sorted_values[0], ref.sorted_values[-1]
    values = cur.sorted_values
    below = int(np.searchsorted(values, low, "left"))
    above = int(values.size - np.searchsorted(values, high, "right"))
    share = (below + above) / cur.n
    if share <= limits.out_of_range_share:
        return None
    broken = share > limits.out_of_range_error_share
    message = (
        f"{share:.1%} of {name} is outside the reference range [{low:.6g}, {high:.6g}] "
        f"(window range [{values[0]:.6g}, {values[-1]:.6g}])"
    )
    if broken:
        # Most of a column out of range is not a population moving but a feed that changed
        # (a unit, a scale, a swapped column): hardening #15.20.
        message += f", more than {limits.out_of_range_error_share:.0%}: a unit or feed change?"
    return QualityFinding(
        "out_of_range",
        name,
        "error" if broken else "warning",
        share,
        limits.out_of_range_error_share if broken else limits.out_of_range_share,
        message,
    )


def _new_categories(
    name: str, ref: ColumnProfile, cur: ColumnProfile, limits: QualityThresholds
) -> QualityFinding | None:
    if not cur.n:
        return None
    assert ref.counts is not None and cur.counts is not None
    unseen = cur.counts[~cur.counts.index.isin(ref.counts.index)]
    share = float(unseen.sum()) / cur.n
    if share <= limits.new_category_share:
        return None
    top = unseen.sort_values(ascending=False).index[:5]
    return QualityFinding(
        "new_categories",
        name,
        "warning",
        share,
        limits.new_category_share,
        f"{share:.1%} of {name} has values the reference never had",
        tuple(str(v) for v in top),
    )
