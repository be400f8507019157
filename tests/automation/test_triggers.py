"""Triggers on real data: each kind fires on its signal with its numbers, and not without."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tests.automation.triggerdata as data
from keel.config import Settings
from keel.demo.data import TARGET
from keel.services import Services, open_services

DRIFT = {
    "name": "churn-drift",
    "model": "churn",
    "any": [{"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 3, "window": "1d"}],
}


@pytest.fixture(scope="module")
def frames() -> tuple[Any, Any]:
    return data.churn_frames()


@pytest.fixture
def env(sqlite_settings: Settings, frames: tuple[Any, Any]) -> Iterator[tuple[Services, Any]]:
    """Services with churn v1 @champion and a week of unshifted, labelled traffic."""
    services = open_services(sqlite_settings)
    data.use_test_retrain_kind()
    data.CALLS.clear()
    train, production = frames
    model = data.register_churn(services, train)
    now = data.now_ms()
    rows = production.iloc[:1000]
    ids = data.serve(services, model, rows, now - 7 * data.DAY_MS, now - data.HOUR_MS, prefix="a")
    data.label(services, ids, rows[TARGET])
    yield services, model
    services.close()


def shift_last_day(services: Services, model: Any, frames: tuple[Any, Any], prefix: str) -> None:
    rows = data.shifted(frames[1].iloc[1000:1400])
    now = data.now_ms()
    data.serve(services, model, rows, now - 20 * data.HOUR_MS, now - 60_000, prefix=prefix)


def test_drift_trigger_not_fired_without_shift(env: tuple[Services, Any]) -> None:
    services, _ = env
    services.triggers.apply(DRIFT)
    result = services.triggers.evaluate("churn-drift", data.now_ms())
    assert not result.met and not result.fired
    outcome = result.conditions[0]
    assert outcome.value is not None and outcome.value < 3
    assert services.jobs.list_jobs(kind="retrain.run") == []


def test_drift_trigger_fires_on_three_drifted_features(
    env: tuple[Services, Any], frames: tuple[Any, Any]
) -> None:
    services, model = env
    services.triggers.apply(DRIFT)
    shift_last_day(services, model, frames, "s")
    result = services.triggers.evaluate("churn-drift", data.now_ms())
    assert result.fired, result.reason
    drifted = result.conditions[0].details["drifted"]
    assert {"tenure", "monthly_charges", "total_charges"} <= set(drifted)
    rows = {r["feature"]: r for r in result.conditions[0].details["features"]}
    assert rows["tenure"]["statistic"] >= 0.2
    (job,) = services.jobs.list_jobs(kind="retrain.run")
    assert job.args["model"] == "churn" and job.args["trigger"] == "churn-drift"
    assert job.args["decision_id"] == result.decision_id
    assert job.args["data"]["mode"] == "fresh"
