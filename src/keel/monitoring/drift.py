"""Per-feature drift between a reference sample and a current window.

``ReferenceProfile.from_frame(df)`` (:mod:`keel.monitoring.profile`) does
the reference's share of the work once (sorted numeric columns, category
counts); ``detect_drift(profile, current)`` then only touches the window.
Test choice and thresholds follow :mod:`keel.monitoring.stats.choice`,
overridable per feature; p-value tests
are corrected for multiple testing across features (Benjamini-Hochberg by
default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from keel.errors import InvalidInput
from keel.monitoring.profile import ColumnProfile, ReferenceProfile, profile_as
from keel.monitoring.stats._binning import aligned_counts, numeric_counts, quantile_edges
from keel.monitoring.stats.chi2 import chi2_from_counts
from keel.monitoring.stats.choice import MIN_SAMPLES, FeatureKind, TestChoice, TestName, choose_test
from keel.monitoring.stats.correction import Correction, adjust_pvalues
from keel.monitoring.stats.divergence import js_from_counts, kl_from_counts
from keel.monitoring.stats.ks import ks_sorted
from keel.monitoring.stats.psi import DEFAULT_BINS, psi_from_counts
from keel.monitoring.stats.wasserstein import wasserstein_sorted

__all__ = ["DriftReport", "FeatureDrift", "FeatureOverride", "ReferenceProfile", "detect_drift"]

Verdict = Literal["drift", "no drift", "insufficient data", "missing column"]


@dataclass(frozen=True, slots=True)
class FeatureOverride:
    """Per-feature choice of test and/or threshold."""

    test: TestName | None = None
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    """The drift verdict of one feature with the numbers behind it."""

    feature: str
    kind: FeatureKind | None
    test: str | None
    statistic: float | None
    pvalue: float | None
    adjusted_pvalue: float | None
    threshold: float | None
    verdict: Verdict
    n_reference: int
    n_current: int
    new_categories: tuple[Any, ...] = ()

    @property
    def drifted(self) -> bool:
        """True when the verdict is "drift"."""
        return self.verdict == "drift"

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (NaN-free: missing numbers are None)."""
        out = {k: getattr(self, k) for k in self.__slots__}
        out["new_categories"] = [str(c) for c in self.new_categories]
        out["drifted"] = self.drifted
        return out


@dataclass
class DriftReport:
    """Per-feature results, worst first, and the cost of computing them."""

    features: list[FeatureDrift]
    correction: Correction
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        """Names of the features whose verdict is drift."""
        return [f.feature for f in self.features if f.drifted]

    def get(self, feature: str) -> FeatureDrift:
        """The result for one feature (KeyError if it was not checked)."""
        for item in self.features:
            if item.feature == feature:
                return item
        raise KeyError(feature)


def detect_drift(
    reference: ReferenceProfile | pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: Iterable[str] | None = None,
    overrides: Mapping[str, FeatureOverride] | None = None,
    correction: Correction = "bh",
    min_samples: int = MIN_SAMPLES,
    bins: int = DEFAULT_BINS,
) -> DriftReport:
    """Compare ``current`` with the reference, feature by feature.

    A feature missing from ``current`` gets verdict "missing column" (a
    data-quality finding, not an exception); fewer than ``min_samples``
    non-null values on either side gives "insufficient data", never a false
    alarm. P-values of KS/chi² are adjusted across features with
    ``correction`` before comparing with the threshold.
    """
    started = time.perf_counter()
    profile = (
        reference
        if isinstance(reference, ReferenceProfile)
        else ReferenceProfile.from_frame(reference)
    )
    names = list(features) if features is not None else list(profile.columns)
    unknown = [n for n in names if n not in profile.columns]
    if unknown:
        raise InvalidInput(
            f"features: not in the reference: {', '.join(unknown)}", field="features"
        )
    overrides = overrides or {}
    # numpy's sorts release the GIL, so features are checked on all cores.
    with ThreadPoolExecutor(max_workers=min(len(names), os.cpu_count() or 1) or 1) as pool:
        pending = list(
            pool.map(
                lambda name: _check(
                    name, profile.columns[name], current, overrides, min_samples, bins
                ),
                names,
            )
        )
    pvalues = np.array(
        [np.nan if c.pvalue is None else c.pvalue for c in pending], dtype=np.float64
    )
    adjusted = adjust_pvalues(pvalues, correction)
    results = [c.finish(float(adj)) for c, adj in zip(pending, adjusted, strict=True)]
    results.sort(key=_severity)
    return DriftReport(results, correction, time.perf_counter() - started)


@dataclass
class _Pending:
    """A feature's computed statistic awaiting the cross-feature p-value correction."""

    name: str
    ref: ColumnProfile
    n_current: int
    verdict: Verdict | None = None
    choice: TestChoice | None = None
    statistic: float | None = None
    pvalue: float | None = None
    new_categories: tuple[Any, ...] = ()

    def finish(self, adjusted: float) -> FeatureDrift:
        verdict = self.verdict
        if verdict is None:
            assert self.choice is not None and self.statistic is not None
            if self.choice.uses_pvalue:
                drifted = adjusted < self.choice.threshold
            else:
                drifted = self.statistic >= self.choice.threshold
            verdict = "drift" if drifted else "no drift"
        return FeatureDrift(
            feature=self.name,
            kind=self.ref.kind,
            test=self.choice.test if self.choice else None,
            statistic=_finite_or_none(self.statistic),
            pvalue=_finite_or_none(self.pvalue),
            adjusted_pvalue=_finite_or_none(adjusted) if self.pvalue is not None else None,
            threshold=self.choice.threshold if self.choice else None,
            verdict=verdict,
            n_reference=self.ref.n,
            n_current=self.n_current,
            new_categories=self.new_categories,
        )


def _check(
    name: str,
    ref: ColumnProfile,
    current: pd.DataFrame,
    overrides: Mapping[str, FeatureOverride],
    min_samples: int,
    bins: int,
) -> _Pending:
    if name not in current.columns:
        return _Pending(name, ref, 0, verdict="missing column")
    # Unsorted first: only KS and Wasserstein need the order, not the binned tests.
    cur = profile_as(current[name], ref.kind, sort=False)
    if ref.n < min_samples or cur.n < min_samples:
        return _Pending(name, ref, cur.n, verdict="insufficient data")
    override = overrides.get(name, FeatureOverride())
    choice = choose_test(ref.kind, ref.n, cur.n, test=override.test, threshold=override.threshold)
    if choice.test in ("ks", "wasserstein") and cur.sorted_values is not None:
        cur.sorted_values.sort()  # this profile's own copy of the values
    pending = _Pending(name, ref, cur.n, choice=choice)
    if ref.kind == "categorical":
        assert ref.counts is not None and cur.counts is not None
        pending.new_categories = tuple(k for k in cur.counts.index if k not in ref.counts.index)
    pending.statistic, pending.pvalue = _run(choice.test, ref, cur, bins)
    return pending


def _run(
    test: str, ref: ColumnProfile, cur: ColumnProfile, bins: int
) -> tuple[float, float | None]:
    if test == "ks":
        assert ref.sorted_values is not None and cur.sorted_values is not None
        return ks_sorted(ref.sorted_values, cur.sorted_values)
    if test == "wasserstein":
        assert ref.sorted_values is not None and cur.sorted_values is not None
        return wasserstein_sorted(ref.sorted_values, cur.sorted_values), None
    ref_counts, cur_counts = _cells(ref, cur, bins)
    if test == "chi2":
        return chi2_from_counts(ref_counts, cur_counts)
    if test == "psi":
        return psi_from_counts(ref_counts, cur_counts), None
    if test == "jensen_shannon":
        return js_from_counts(ref_counts, cur_counts), None
    return kl_from_counts(ref_counts, cur_counts), None


def _cells(
    ref: ColumnProfile, cur: ColumnProfile, bins: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if ref.kind == "numeric":
        assert ref.sorted_values is not None and cur.sorted_values is not None
        edges = quantile_edges(ref.sorted_values, bins)
        return numeric_counts(ref.sorted_values, edges), numeric_counts(cur.sorted_values, edges)
    assert ref.counts is not None and cur.counts is not None
    _, ref_counts, cur_counts = aligned_counts(ref.counts, cur.counts)
    return ref_counts, cur_counts


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


_ORDER = {"drift": 0, "missing column": 1, "insufficient data": 2, "no drift": 3}


def _severity(item: FeatureDrift) -> tuple[int, float]:
    """Drifted first; within a verdict the strongest evidence first."""
    if item.pvalue is not None and item.adjusted_pvalue is not None:
        strength = item.adjusted_pvalue
    else:
        strength = -(item.statistic or 0.0)
    return _ORDER[item.verdict], strength
