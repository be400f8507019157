"""Monitors: define them, run one over its window now, read stored results.

A run reads the window's logged predictions (``keel.serving.predictions``),
compares the features with the reference (drift and data quality), the
model's outputs on the window with its outputs on the reference (prediction
drift), and — when labels arrived — measures performance; for classifiers it
also estimates performance from the scores alone (before labels). The result
is stored (``monitor_runs``) with the numbers, thresholds, verdicts, sample
sizes and the seconds it took, and exported as Prometheus gauges.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel._models import now_ms
from keel.errors import InvalidInput
from keel.monitoring import metrics
from keel.monitoring.diagnosis import Diagnosis, diagnose, model_input
from keel.monitoring.drift import FeatureOverride, detect_drift
from keel.monitoring.feedback import FeedbackStore
from keel.monitoring.inputs import (
    MonitorInputs,
    Reference,
    WindowTime,
    slice_columns,
    strip_prefix,
    window_ms,
)
from keel.monitoring.models import Monitor, MonitorRun, MonitorSpec, SavedMonitor
from keel.monitoring.performance_checks import PerformanceChecks
from keel.monitoring.performance_checks import output_values as _output_values
from keel.monitoring.profile import ReferenceProfile
from keel.monitoring.quality import QualityThresholds, check_quality
from keel.monitoring.replace import save_monitor
from keel.monitoring.rules import evaluate_rules
from keel.monitoring.segments import segment_drift
from keel.registry.models import ModelVersion
from keel.registry.service import RegistryService
from keel.store.sql.monitoring import MonitorSql
from keel.tracking.datasets import DatasetService
from keel.tracking.service import TrackingService

__all__ = ["MonitorService"]

log = logging.getLogger("keel.monitoring")

ModelLoader = Callable[[ModelVersion], Any]
#: views → their freshness records (``FeatureStore.freshness``); objects with ``view``,
#: ``age_s``, ``sla_s`` and ``is_stale``.
FreshnessSource = Callable[[list[str]], list[Any]]


class MonitorService:
    """Monitor definitions, runs and results."""

    def __init__(
        self,
        store: MonitorSql,
        registry: RegistryService,
        tracking: TrackingService,
        datasets: DatasetService,
        feedback: FeedbackStore,
        predictions_root: Path,
        load_model: ModelLoader,
        freshness: FreshnessSource | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.inputs = MonitorInputs(registry, tracking, datasets, predictions_root)
        self.feedback = feedback
        self.load_model = load_model
        self.freshness_source = freshness
        self.performance = PerformanceChecks(self.inputs, load_model)

    # -- definitions -----------------------------------------------------------------------
    def create(
        self, spec: MonitorSpec, *, actor: str | None = None, drop_resolution_rules: bool = False
    ) -> SavedMonitor:
        """Create or replace a monitor; the model, a named reference, the feature views and
        the columns must exist. A replaced one keeps its creator, creation time and the
        rules incident resolutions added (unless ``drop_resolution_rules``; see
        :mod:`keel.monitoring.replace`); the result says which of those it kept or dropped."""
        return save_monitor(self, spec, actor=actor, drop=drop_resolution_rules)

    def update(self, name: str, change: Callable[[MonitorSpec], MonitorSpec]) -> Monitor:
        """Store ``change(current spec)`` of monitor ``name``, checked as :meth:`create` checks,
        under the monitor's row lock: concurrent changes (two rules added at once) apply one
        after the other. What ``change`` or the check raises leaves the monitor unchanged."""

        def apply(current: Monitor) -> Monitor:
            spec = change(MonitorSpec(**current.model_dump(include=set(MonitorSpec.model_fields))))
            self.check(spec)  # under the lock: the spec checked is the one saved
            kept = current.model_dump(include={"created_by", "created_at_ms"})
            return Monitor(**spec.model_dump(), **kept, updated_at_ms=now_ms())

        return self.store.update_monitor(name, apply)

    def check(self, spec: MonitorSpec) -> None:
        """What :meth:`create` refuses (InvalidInput naming the field, NotFound), unsaved."""
        self.registry.get_model(spec.model)
        if spec.reference is not None:
            self.inputs.dataset_ref(spec.reference)
        if spec.feature_views:
            self._freshness(spec.feature_views)  # unknown views fail here, not at run time
        self.inputs.check_columns(spec)  # unknown columns too (#15.22)

    def get(self, name: str) -> Monitor:
        """A monitor; raises :class:`NotFound`."""
        return self.store.get_monitor(name)

    def list_monitors(self) -> list[Monitor]:
        """Every monitor."""
        return self.store.list_monitors()

    def delete(self, name: str) -> None:
        """Delete a monitor and its runs."""
        self.store.delete_monitor(name)

    def runs(self, name: str, limit: int = 50) -> list[MonitorRun]:
        """Latest runs, newest first."""
        if not 1 <= limit <= 1_000:
            raise InvalidInput("limit must be between 1 and 1000", field="limit")
        return self.store.list_runs(name, limit)

    def get_run(self, name: str, run_id: str) -> MonitorRun:
        """One stored run; NotFound names ``name`` when the monitor itself is unknown."""
        self.get(name)
        return self.store.get_run(name, run_id)

    def samples(self, run: MonitorRun) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The reference and the window a stored run compared (for plots in its report)."""
        monitor = self.get(run.monitor)
        version = (
            self.registry.get_version(run.model, run.version) if run.version is not None else None
        )
        reference = self.inputs.reference(monitor, version)
        window = self.inputs.window(monitor, version, run.window_start_ms, run.window_end_ms)
        return reference.frame, window

    def diagnose(
        self,
        name: str,
        run_id: str,
        *,
        freshness: dict[str, tuple[float, float]] | None = None,
        slice_by: list[str] | None = None,
    ) -> Diagnosis:
        """Which of data drift, concept drift, a data-quality break or a stale source best
        explains a stored run's window (see :mod:`keel.monitoring.diagnosis`)."""
        run = self.get_run(name, run_id)
        monitor = self.get(name)
        if run.version is None:
            raise InvalidInput("diagnosis needs a run of one model version", field="run_id")
        version = self.registry.get_version(run.model, run.version)
        reference, window = self.samples(run)
        features = list(run.results.get("features", []))
        if len(window) < monitor.min_samples:
            raise InvalidInput(
                f"run {run_id} has {len(window)} predictions; nothing to diagnose",
                field="run_id",
            )
        model = self.load_model(version)
        # The run's own window is diagnosed for drift and quality; its labelled rows (often
        # an older part of it) only give the concept-drift evidence (hardening #15.17).
        calibration = labelled = None
        if monitor.label_column and monitor.label_column in reference.columns:
            held_out = self.inputs.calibration_set(monitor, version, reference)
            calibration = (held_out, held_out[monitor.label_column])
            rows = self.feedback.labelled(
                run.model, run.version, run.window_start_ms, run.window_end_ms
            )
            if len(rows):
                rows = strip_prefix(rows[rows["label_value"].notna()])
            if len(rows) >= monitor.min_samples:
                labelled = (rows, rows["label_value"].to_numpy())
        if freshness is None and monitor.feature_views:
            freshness = {
                r.view: (float(r.age_s), float(r.sla_s))
                for r in self._freshness(monitor.feature_views)
                if r.age_s is not None and r.sla_s
            }
        return diagnose(
            model,
            reference,
            window,
            features,
            calibration=calibration,
            labelled=labelled,
            quality=QualityThresholds.of(monitor),
            correction=monitor.correction,
            alpha=monitor.performance_alpha,
            freshness=freshness,
            slice_by=slice_columns(slice_by or [], window),
        )

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        name: str,
        *,
        now: int | None = None,
        window_end: WindowTime = None,
        as_of: WindowTime = None,
    ) -> MonitorRun:
        """Evaluate the monitor over ``[window_end − window, window_end)`` and store the result.

        ``window_end`` (datetime, epoch ms, ISO-8601 or an age like ``7d``) defaults to now;
        a past one evaluates a past window (backfill, replay, a late investigation).
        ``as_of`` limits labels to those received by then (default: every label received).
        """
        monitor = self.get(name)
        started = time.perf_counter()
        started_ms = now if now is not None else now_ms()
        end_ms = window_ms(window_end, "window_end", started_ms)
        labels_ms = None if as_of is None else window_ms(as_of, "as_of", started_ms)
        start_ms = end_ms - monitor.window_s * 1000
        version = self.inputs.version(monitor)
        reference = self.inputs.reference(monitor, version)
        window = self.inputs.window(monitor, version, start_ms, end_ms)
        features = self.inputs.features(monitor, reference.frame, window)
        results: dict[str, Any] = {"features": features}
        summary: dict[str, Any] = {}
        status = "ok"
        if len(window) < monitor.min_samples:
            status = "insufficient data"
            summary["reason"] = (
                f"{len(window)} predictions in the window, fewer than {monitor.min_samples}"
            )
        else:
            status = self._checks(monitor, version, reference, window, features, results, summary)
        if monitor.feature_views:
            stale = self._freshness_check(monitor, results)
            summary["stale_sources"] = stale
            if stale and status != "insufficient data":
                status = "alert"
        labelled = self._performance(
            monitor, version, reference, window, start_ms, end_ms, results, as_of_ms=labels_ms
        )
        if results.get("performance_alerts"):
            summary["performance"] = results["performance_alerts"]
            status = "alert"
        run = MonitorRun(
            id=uuid.uuid4().hex,
            monitor=monitor.name,
            model=monitor.model,
            version=version.version if version else None,
            status=status,  # type: ignore[arg-type]
            started_at_ms=started_ms,
            window_start_ms=start_ms,
            window_end_ms=end_ms,
            seconds=time.perf_counter() - started,
            n_reference=len(reference.frame),
            n_current=len(window),
            n_labelled=labelled,
            summary=summary,
            results=results,
        )
        metrics.record(run)
        return self.store.add_run(run)

    def _checks(
        self,
        monitor: Monitor,
        version: ModelVersion | None,
        reference: Reference,
        window: pd.DataFrame,
        features: list[str],
        results: dict[str, Any],
        summary: dict[str, Any],
    ) -> str:
        overrides = {
            k: FeatureOverride(test=v.test, threshold=v.threshold)
            for k, v in monitor.overrides.items()
        }
        unknown = sorted(set(overrides) - set(features))
        if unknown:
            raise InvalidInput(
                f"overrides: not monitored features: {', '.join(unknown)}", field="overrides"
            )
        drift = detect_drift(
            reference.profile,
            window,
            features=features,
            overrides=overrides,
            correction=monitor.correction,
            min_samples=monitor.min_samples,
        )
        quality = check_quality(
            ReferenceProfile(
                {f: reference.profile.columns[f] for f in features}, reference.profile.rows
            ),
            window[[f for f in features if f in window.columns]],
            QualityThresholds.of(monitor),
        )
        results["drift"] = [f.as_dict() for f in drift.features]
        results["quality"] = [f.as_dict() for f in quality.findings]
        summary["drifted"] = drift.drifted
        summary["quality_errors"] = [
            f"{f.check}:{f.feature}" for f in quality.findings if f.severity == "error"
        ]
        if monitor.slices:
            results["slices"] = segment_drift(monitor, reference, window, features, overrides)
        output_drift = self._output_drift(monitor, version, reference, window)
        if output_drift is not None:
            results["prediction_drift"] = output_drift
            summary["prediction_drift"] = output_drift["drifted"]
        if monitor.rules:
            results["rules"] = evaluate_rules(monitor.rules, window)
            summary["rules_breached"] = [r["rule"] for r in results["rules"] if r["breached"]]
        alert = bool(drift.drifted or summary["quality_errors"] or summary.get("prediction_drift"))
        alert = alert or bool(summary.get("rules_breached"))
        return "alert" if alert else "ok"

    def _freshness(self, views: list[str]) -> list[Any]:
        if self.freshness_source is None:
            raise InvalidInput(
                "feature_views: no feature store is configured for this monitor service",
                field="feature_views",
            )
        return self.freshness_source(views)

    def _freshness_check(self, monitor: Monitor, results: dict[str, Any]) -> list[str]:
        """Freshness of the views feeding the model; returns the stale ones."""
        records = self._freshness(monitor.feature_views)
        results["freshness"] = [
            {"view": r.view, "age_s": r.age_s, "sla_s": r.sla_s, "is_stale": r.is_stale}
            for r in records
        ]
        return [r.view for r in records if r.is_stale]

    def _output_drift(
        self,
        monitor: Monitor,
        version: ModelVersion | None,
        reference: Reference,
        window: pd.DataFrame,
    ) -> dict[str, Any] | None:
        """Model outputs on the window vs its outputs on the reference (same version)."""
        if version is None or "output" not in window.columns:
            return None
        ref_outputs = self._reference_outputs(monitor, version, reference)
        if ref_outputs is None:
            return None
        current = pd.DataFrame({"output": _output_values(window["output"])})
        report = detect_drift(
            ref_outputs, current, correction="none", min_samples=monitor.min_samples
        )
        item = report.features[0].as_dict()
        return item

    def _reference_outputs(
        self, monitor: Monitor, version: ModelVersion, reference: Reference
    ) -> pd.DataFrame | None:
        if version.version in reference.outputs:
            return reference.outputs[version.version]
        columns = [c["name"] for c in (version.signature or {}).get("inputs", [])]
        if not columns or any(c not in reference.frame.columns for c in columns):
            return None
        try:
            model = self.load_model(version)
            predicted = model.predict(model_input(model, reference.frame, columns))
        except Exception as exc:  # the model's own failure must not fail the monitor
            log.warning("monitor %s: cannot score the reference: %s", monitor.name, exc)
            return None
        frame = pd.DataFrame({"output": _output_values(pd.Series(np.asarray(predicted).ravel()))})
        reference.outputs[version.version] = frame
        return frame

    def _performance(
        self,
        monitor: Monitor,
        version: ModelVersion | None,
        reference: Reference,
        window: pd.DataFrame,
        start_ms: int,
        end_ms: int,
        results: dict[str, Any],
        *,
        as_of_ms: int | None = None,
    ) -> int:
        """Realised metrics from labels (received by ``as_of_ms``) and, for classifiers, the
        estimate from scores."""
        if monitor.task is None:
            return 0
        labelled = self.feedback.labelled(
            monitor.model, version.version if version else None, start_ms, end_ms, as_of=as_of_ms
        )
        self.performance.check(monitor, version, reference, window, labelled, results)
        return len(labelled)
