"""Performance thresholds over HTTP: accepted, stored, and refused naming the field (#15.15)."""

from __future__ import annotations

from typing import Any

import httpx

from keel.demo.data import TARGET
from keel.monitoring.models import MonitorSpec
from keel.services import Services

SPEC = {"name": "churn-perf", "model": "churn", "task": "classification", "label_column": TARGET}


BAD = [
    ({"performance_thresholds": {"f1": {"drop": 0.1}}}, "performance_thresholds"),
    ({"performance_thresholds": {"accuracy": {}}}, "performance_thresholds"),
    ({"performance_thresholds": {"accuracy": {"drop": -0.1}}}, "performance_thresholds"),
    ({"performance_thresholds": {"mae": {"relative_drop": 0.1}}}, "performance_thresholds"),
    ({"performance_alpha": 0.7}, "performance_alpha"),
    ({"out_of_range_error_share": 2}, "out_of_range_error_share"),
]


def test_bad_thresholds_are_refused_naming_the_field(
    services: Services, live_server: str, churn_model: Any
) -> None:
    with httpx.Client(base_url=live_server, timeout=60) as http:
        for extra, field in BAD:
            response = http.post("/v1/monitors", json={**SPEC, **extra})
            assert response.status_code == 422, (extra, response.text)
            assert field in response.text, (extra, response.text)
        assert http.get("/v1/monitors").json() == []  # nothing half-written


def test_thresholds_are_stored_and_defaults_apply(
    services: Services, live_server: str, churn_model: Any
) -> None:
    thresholds = {"accuracy": {"drop": 0.03}, "recall": {"relative_drop": 0.1}}
    with httpx.Client(base_url=live_server, timeout=60) as http:
        created = http.post("/v1/monitors", json={**SPEC, "performance_thresholds": thresholds})
        assert created.status_code == 201, created.text
        stored = http.get("/v1/monitors/churn-perf").json()
        assert stored["performance_thresholds"] == {
            "accuracy": {"drop": 0.03, "relative_drop": None},
            "recall": {"drop": None, "relative_drop": 0.1},
        }
        assert (stored["performance_alpha"], stored["out_of_range_error_share"]) == (0.01, 0.5)
    monitor = services.monitors.get("churn-perf")
    assert monitor.drop_thresholds["accuracy"].drop == 0.03
    services.monitors.create(MonitorSpec(**SPEC))  # replaced without thresholds
    assert set(services.monitors.get("churn-perf").drop_thresholds) == {"accuracy", "roc_auc"}
