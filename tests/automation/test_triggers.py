"""Triggers on real data: each kind fires on its signal with its numbers, and not without."""

from __future__ import annotations

from typing import Any

import pytest
import tests.automation.triggerdata as data

from keel.demo.data import TARGET
from keel.services import Services

Env = tuple[Services, Any]
DRIFT = {
    "name": "churn-drift",
    "model": "churn",
    "any": [{"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 3, "window": "1d"}],
}


def shift_last_day(
    services: Services, model: Any, churn_rows: tuple[Any, Any], prefix: str
) -> None:
    rows = data.shifted(churn_rows[1].iloc[1000:1400])
    now = data.now_ms()
    data.serve(services, model, rows, now - 20 * data.HOUR_MS, now - 60_000, prefix=prefix)


def retrain_jobs(services: Services) -> list[Any]:
    return services.jobs.list_jobs(kind="retrain.run")


def test_drift_trigger_not_fired_without_shift(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(DRIFT)
    result = services.triggers.evaluate("churn-drift", data.now_ms())
    assert not result.met and not result.fired
    outcome = result.conditions[0]
    assert outcome.value is not None and outcome.value < 3
    assert retrain_jobs(services) == []


def test_drift_trigger_fires_on_three_drifted_features(trigger_env: Env, churn_rows: Any) -> None:
    services, model = trigger_env
    services.triggers.apply(DRIFT)
    shift_last_day(services, model, churn_rows, "s")
    result = services.triggers.evaluate("churn-drift", data.now_ms())
    assert result.fired, result.reason
    drifted = result.conditions[0].details["drifted"]
    assert {"tenure", "monthly_charges", "total_charges"} <= set(drifted)
    rows = {r["feature"]: r for r in result.conditions[0].details["features"]}
    assert rows["tenure"]["statistic"] >= 0.2
    (job,) = retrain_jobs(services)
    assert job.args["model"] == "churn" and job.args["trigger"] == "churn-drift"
    assert job.args["decision_id"] == result.decision_id
    assert job.args["data"]["mode"] == "fresh"


def test_drift_over_a_window_without_predictions_is_not_met(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(DRIFT)
    # A day two months back: no logged file covers it, so no feature column was read.
    result = services.triggers.evaluate("churn-drift", data.now_ms() - 60 * data.DAY_MS)
    outcome = result.conditions[0]
    assert not result.met and outcome.n == 0 and outcome.value == 0
    rows = outcome.details["features"]
    assert {"tenure", "monthly_charges"} <= {r["feature"] for r in rows}
    assert {r["verdict"] for r in rows} == {"missing column"}


@pytest.mark.parametrize(("floor", "fired"), [(0.95, True), (0.5, False)])
def test_performance_floor_from_labels(trigger_env: Env, floor: float, fired: bool) -> None:
    services, _ = trigger_env
    services.triggers.apply(
        {"name": "auc", "model": "churn", "any": [{"metric": "auc", "below": floor}]}
    )
    result = services.triggers.evaluate("auc", data.now_ms())
    (outcome,) = result.conditions
    assert 0.7 < outcome.value < 0.95 and outcome.n >= 990  # the real AUC over the week
    assert outcome.threshold == floor
    assert result.fired is fired
    assert len(retrain_jobs(services)) == int(fired)


def test_accuracy_drop_on_new_labels_retrains_after_the_change_point(
    trigger_env: Env, churn_rows: Any
) -> None:
    services, model = trigger_env
    rows = churn_rows[1].iloc[1000:1500]
    now = data.now_ms()
    ids = data.serve(services, model, rows, now - 20 * data.HOUR_MS, now - 60_000, prefix="c")
    data.label(services, ids, data.flipped(rows[TARGET], 0.5))  # P(y|x) changed, X did not
    services.triggers.apply(
        {
            "name": "acc",
            "model": "churn",
            "window": "1d",
            "triggers": [{"metric": "accuracy", "threshold": 0.05, "baseline": "6d"}],
        }
    )
    result = services.triggers.evaluate("acc", data.now_ms())
    (outcome,) = result.conditions
    assert outcome.value >= 0.05 and outcome.details["current"] < outcome.details["baseline"]
    assert result.fired, result.reason
    assert result.diagnosis["verdict"] == "concept drift"
    (job,) = retrain_jobs(services)
    assert job.args["data"]["mode"] == "after_change_point"
    assert job.args["data"]["since_ms"] >= now - 21 * data.HOUR_MS


@pytest.mark.parametrize(("threshold", "fired"), [(500, True), (5000, False)])
def test_volume_counts_labels_since_the_last_training(
    trigger_env: Env, threshold: int, fired: bool
) -> None:
    services, _ = trigger_env
    services.triggers.apply(
        {"name": "vol", "model": "churn", "any": [{"metric": "new_labels", "threshold": threshold}]}
    )
    result = services.triggers.evaluate("vol", data.now_ms())
    assert result.conditions[0].value == 1000
    assert result.fired is fired


def test_prediction_shift_of_the_outputs(trigger_env: Env, churn_rows: Any) -> None:
    services, model = trigger_env
    spec = {
        "name": "shift",
        "model": "churn",
        "any": [{"metric": "prediction_distribution_shift", "threshold": 0.1, "window": "1d"}],
    }
    services.triggers.apply(spec)
    calm = services.triggers.evaluate("shift", data.now_ms())
    production = churn_rows[1].iloc[1000:]
    newcomers = production[production["tenure"] < 6].iloc[:400]  # a new population arrives
    now = data.now_ms()
    data.serve(services, model, newcomers, now - 20 * data.HOUR_MS, now - 60_000, prefix="p")
    moved = services.triggers.evaluate("shift", data.now_ms())
    assert calm.conditions[0].value < 0.1 and not calm.met
    assert moved.conditions[0].value >= 0.1 and moved.met


def test_schedule_fires_once_its_cron_came_round(trigger_env: Env) -> None:
    services, _ = trigger_env
    trigger = services.triggers.apply(
        {"name": "monthly", "model": "churn", "any": [{"metric": "schedule", "cron": "@monthly"}]}
    )
    soon = services.triggers.evaluate("monthly", trigger.created_at_ms + 60_000)
    later = services.triggers.evaluate("monthly", trigger.created_at_ms + 32 * data.DAY_MS)
    assert not soon.met and later.fired


def test_manual_fires_only_when_asked(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply({"name": "hand", "model": "churn", "any": [{"metric": "manual"}]})
    assert not services.triggers.evaluate("hand").met
    assert services.triggers.evaluate("hand", manual=True, actor="alice").fired


def test_every_evaluation_is_recorded_with_its_numbers(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(
        {"name": "auc", "model": "churn", "any": [{"metric": "auc", "below": 0.5}]}
    )
    for _ in range(3):
        services.triggers.evaluate("auc", data.now_ms())
    records = services.decisions.query(model="churn", kind="trigger_evaluation")
    assert len(records) == 3
    condition = records[0].details["conditions"][0]
    assert condition["metric"] == "roc_auc" and condition["threshold"] == 0.5
    assert condition["value"] > 0.5 and records[0].details["fired"] is False
    assert records[0].related == {"trigger": "auc"}
