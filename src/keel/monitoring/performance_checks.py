"""A monitor run's performance checks: realised, estimated, reference level, concept drift.

- **realised** metrics from the window's labelled rows;
- for classifiers, the **estimate** from the window's scores alone, calibrated
  on the version's held-out rows (:mod:`keel.monitoring.estimation`);
- both against the **reference level**: the version's own metrics on those
  held-out rows (its validation data, else the reference), per configured
  metric and allowed drop, beyond sampling noise (:mod:`keel.monitoring.degradation`);
- **concept drift**: the labelled rows' realised accuracy against the
  accuracy their *own* calibrated scores expect — the same rows on both sides.

A quiet window (no predictions, no labels, labels of one class, labels or
outputs that are not numbers) is reported as such, never an error: a
scheduled run must survive it (hardening #15.16).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from keel.errors import InvalidInput
from keel.monitoring.degradation import (
    Level,
    check_drops,
    classification_levels,
    estimated_levels,
    levels_dict,
    regression_levels,
)
from keel.monitoring.diagnosis import model_input
from keel.monitoring.estimation import ConfidenceEstimator
from keel.monitoring.inputs import MonitorInputs, Reference
from keel.monitoring.models import Monitor
from keel.monitoring.performance import classification_metrics, regression_metrics
from keel.registry.models import ModelVersion

__all__ = ["Baseline", "PerformanceChecks", "output_values", "positive_scores"]

log = logging.getLogger("keel.monitoring")


@dataclass(frozen=True)
class Baseline:
    """What a version is held to: its metrics on held-out rows, and its calibrated scores."""

    source: str
    n: int
    levels: dict[str, Level]
    estimator: ConfidenceEstimator | None


class PerformanceChecks:
    """Performance of a window against the version's reference level (baselines cached)."""

    def __init__(self, inputs: MonitorInputs, load_model: Callable[[ModelVersion], Any]) -> None:
        self.inputs = inputs
        self.load_model = load_model
        self._baselines: dict[tuple[str, str, str, int, str], Baseline | None] = {}

    def check(
        self,
        monitor: Monitor,
        version: ModelVersion | None,
        reference: Reference,
        window: pd.DataFrame,
        labelled: pd.DataFrame,
        results: dict[str, Any],
    ) -> list[str]:
        """Fill ``results`` with the performance checks; returns what alerts (may be empty)."""
        notes: list[str] = []
        if len(labelled):
            delays = labelled["label_delay_s"].to_numpy(dtype=np.float64)
            results["label_delay_s"] = {
                "median": float(np.median(delays)),
                "p90": float(np.quantile(delays, 0.9)),
                "max": float(delays.max()),
            }
        base = self.baseline(monitor, version, reference)
        if base is not None:
            results["reference_performance"] = {
                "source": base.source,
                "n": base.n,
                **levels_dict(base.levels),
            }
        drops: list[dict[str, Any]] = []
        estimator = base.estimator if base else None
        scores = positive_scores(window)
        if estimator is not None and scores is not None and scores.size:
            estimate = estimator.estimate(scores)
            results["estimated"] = estimate
            if base is not None and len(window) >= monitor.min_samples:
                levels = estimated_levels(
                    estimate, estimator.calibrated(scores), scores >= estimator.threshold
                )
                drops += self._drops(monitor, levels, base, "estimated")
        truth, predicted, label_scores = _labelled_arrays(labelled, notes)
        if truth.size < monitor.min_samples:
            results["performance"] = {"verdict": "insufficient data", "n": truth.size}
        elif monitor.task == "regression":
            results["performance"] = regression_metrics(truth, predicted)
            if base is not None:
                drops += self._drops(monitor, regression_levels(truth, predicted), base, "realised")
        else:
            results["performance"] = classification_metrics(
                truth.astype(int), predicted.astype(int), label_scores
            )
            if base is not None:
                levels = classification_levels(truth, predicted, label_scores)
                drops += self._drops(monitor, levels, base, "realised")
            binary = np.isin(truth, (0.0, 1.0)).all()
            if estimator is not None and label_scores is not None and binary:
                concept = estimator.concept_drift(
                    truth, label_scores, alpha=monitor.performance_alpha
                )
                results["concept_drift"] = concept.as_dict()
        results["performance_drops"] = drops
        if notes:
            results["performance_notes"] = notes
        alerts = [f"{d['basis']} {d['metric']} dropped" for d in drops if d["alert"]]
        if results.get("concept_drift", {}).get("drift"):
            alerts.append("concept drift")
        results["performance_alerts"] = alerts
        return alerts

    def _drops(
        self, monitor: Monitor, levels: dict[str, Level], base: Baseline, basis: Any
    ) -> list[dict[str, Any]]:
        thresholds, alpha = monitor.drop_thresholds, monitor.performance_alpha
        return check_drops(levels, base.levels, thresholds, alpha=alpha, basis=basis)

    def baseline(
        self, monitor: Monitor, version: ModelVersion | None, reference: Reference
    ) -> Baseline | None:
        """The version's metrics and calibration on held-out rows (None when it cannot score)."""
        label = monitor.label_column
        if version is None or label is None or monitor.task is None:
            return None
        if label not in reference.frame.columns:
            raise InvalidInput(
                f"label_column: {label!r} is not in the reference", field="label_column"
            )
        key = (monitor.name, label, version.name, version.version, monitor.task)
        if key not in self._baselines:
            self._baselines[key] = self._fit(monitor, version, reference.frame, label)
        return self._baselines[key]

    def _fit(
        self, monitor: Monitor, version: ModelVersion, reference: pd.DataFrame, label: str
    ) -> Baseline | None:
        held_out = self.inputs.calibration_set(monitor, version, reference)
        source = "reference" if held_out is reference else "held-out data of the version's run"
        truth = pd.to_numeric(held_out[label], errors="coerce").to_numpy(dtype=np.float64)
        held_out = held_out[~np.isnan(truth)]
        truth = truth[~np.isnan(truth)]
        columns = [c["name"] for c in (version.signature or {}).get("inputs", [])]
        if not len(held_out) or not columns or any(c not in held_out.columns for c in columns):
            return None
        try:
            model = self.load_model(version)
            features = model_input(model, held_out, columns)
            predicted = pd.to_numeric(pd.Series(np.asarray(model.predict(features)).ravel()))
        except Exception as exc:  # the model's own failure must not fail the monitor
            log.warning("monitor %s: cannot score the held-out rows: %s", monitor.name, exc)
            return None
        if monitor.task == "regression":
            levels = regression_levels(truth, predicted.to_numpy(dtype=np.float64))
            return Baseline(source, len(held_out), levels, None)
        scores: NDArray[np.float64] | None = None
        estimator = None
        try:
            scores = np.asarray(model.predict_proba(features), dtype=np.float64)[:, -1]
            estimator = ConfidenceEstimator().fit(truth, scores)
        except Exception as exc:  # no predict_proba, or labels that are not binary 0/1
            log.warning("monitor %s: no calibrated scores: %s", monitor.name, exc)
        levels = classification_levels(truth, predicted.to_numpy(), scores)
        return Baseline(source, len(held_out), levels, estimator)


def _labelled_arrays(
    labelled: pd.DataFrame, notes: list[str]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64] | None]:
    """Labels, outputs and positive scores of the labelled rows that can be scored."""
    empty = np.empty(0, dtype=np.float64)
    if not len(labelled):
        return empty, empty, None
    truth = labelled["label_value"].to_numpy(dtype=np.float64, na_value=np.nan)
    predicted = pd.to_numeric(labelled["output"], errors="coerce").to_numpy(dtype=np.float64)
    usable = ~(np.isnan(truth) | np.isnan(predicted))
    if not usable.all():
        notes.append(
            f"{int((~usable).sum())} of {len(labelled)} labelled rows have a label or an "
            "output that is not a number; performance is measured without them"
        )
    scores = positive_scores(labelled)
    return truth[usable], predicted[usable], None if scores is None else scores[usable]


def output_values(series: pd.Series) -> pd.Series:
    """Logged outputs are JSON text or numbers; numbers where they parse."""
    numeric = pd.to_numeric(series, errors="coerce")
    return numeric if numeric.notna().any() else series.astype(str)


def positive_scores(frame: pd.DataFrame) -> NDArray[np.float64] | None:
    """The positive-class probability of each row (None when any row has none)."""
    if "probabilities" not in frame.columns:
        return None
    values = [p[-1] if p is not None and len(p) else np.nan for p in frame["probabilities"]]
    scores = np.asarray(values, dtype=np.float64)
    return None if np.isnan(scores).any() else scores
