"""Drift per segment: each frequent value of a slice column checked on its own."""

from __future__ import annotations

from typing import Any

import pandas as pd

from keel.errors import InvalidInput
from keel.monitoring.drift import FeatureOverride, detect_drift
from keel.monitoring.inputs import Reference
from keel.monitoring.models import Monitor
from keel.monitoring.profile import ReferenceProfile

__all__ = ["MAX_SEGMENTS", "segment_drift"]

#: Most frequent values of a slice column that are checked as segments.
MAX_SEGMENTS = 20


def segment_drift(
    monitor: Monitor,
    reference: Reference,
    window: pd.DataFrame,
    features: list[str],
    overrides: dict[str, FeatureOverride],
) -> list[dict[str, Any]]:
    """Drift per segment (value of each slice column), worst first.

    Each segment is compared with the *same segment* of the reference when the
    reference has the column, else with the whole reference. Segments with
    fewer than ``min_samples`` rows are skipped (listed with verdict
    "insufficient data") so a handful of rows never tops the ranking.
    """
    out: list[dict[str, Any]] = []
    for column in monitor.slices:
        if column not in window.columns:
            raise InvalidInput(f"slices: {column!r} is not a column of the window", field="slices")
        counts = window[column].astype(str).value_counts()
        for value in counts.index[:MAX_SEGMENTS]:
            part = window[window[column].astype(str) == value]
            item: dict[str, Any] = {"column": column, "value": value, "n": len(part)}
            if len(part) < monitor.min_samples:
                out.append({**item, "verdict": "insufficient data", "drifted": []})
                continue
            base: ReferenceProfile | pd.DataFrame = reference.profile
            if column in reference.frame.columns:
                same = reference.frame[reference.frame[column].astype(str) == value]
                if len(same) >= monitor.min_samples:
                    base = same
            report = detect_drift(
                base,
                part,
                features=[f for f in features if f != column],
                overrides={k: v for k, v in overrides.items() if k != column},
                correction=monitor.correction,
                min_samples=monitor.min_samples,
            )
            worst = report.features[0] if report.features else None
            out.append(
                {
                    **item,
                    "verdict": "drift" if report.drifted else "no drift",
                    "drifted": report.drifted,
                    "worst_feature": worst.feature if worst else None,
                    "worst_statistic": worst.statistic if worst else None,
                }
            )
    return sorted(out, key=lambda r: (-len(r["drifted"]), -(r.get("worst_statistic") or 0)))
