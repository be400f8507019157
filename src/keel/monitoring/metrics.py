"""Prometheus gauges of the latest monitor runs."""

from __future__ import annotations

from prometheus_client import Gauge

from keel.monitoring.models import MonitorRun

__all__ = ["record"]

STATUS = Gauge(
    "keel_monitor_alert", "1 when the monitor's latest run raised an alert, else 0", ["monitor"]
)
DRIFTED = Gauge("keel_monitor_drifted_features", "Features flagged in the latest run", ["monitor"])
STATISTIC = Gauge(
    "keel_monitor_feature_statistic",
    "Drift statistic of each feature in the latest run",
    ["monitor", "feature", "test"],
)
SECONDS = Gauge("keel_monitor_run_seconds", "Compute time of the latest run", ["monitor"])


def record(run: MonitorRun) -> None:
    """Export one run's numbers."""
    STATUS.labels(run.monitor).set(1.0 if run.status == "alert" else 0.0)
    DRIFTED.labels(run.monitor).set(len(run.summary.get("drifted", [])))
    SECONDS.labels(run.monitor).set(run.seconds)
    for item in run.results.get("drift", []):
        if item.get("statistic") is not None and item.get("test"):
            STATISTIC.labels(run.monitor, item["feature"], item["test"]).set(item["statistic"])
