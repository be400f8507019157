"""R-TRN-10 prerequisites before a met trigger fires: compute budget from earlier retrainings'
recorded durations, retraining-job capacity and free disk, the gates' holdout size; each
check's numbers on the evaluation, a failing one blocks with its reason."""

from __future__ import annotations

import shutil
from typing import Any, NamedTuple

import numpy as np
import pytest
import tests.automation.triggerdata as data
from tests.automation.conftest import drain

from keel.automation.retrain.spec import RetrainSpec
from keel.demo.data import TARGET
from keel.errors import InvalidInput
from keel.services import Services
from keel.tracking.models import RunStatus

Env = tuple[Services, Any]
TRAIN = "tests.automation.retrain_train:train"


def hand(**prerequisites: Any) -> dict[str, Any]:
    return {
        "name": "hand",
        "model": "churn",
        "cooldown": "0s",
        "any": [{"metric": "manual"}],
        "prerequisites": prerequisites,
        "retrain": {"train": TRAIN, "label": TARGET, "window": "30d"},
    }


def past_retrainings(services: Services, totals: list[float]) -> None:
    """Finished retraining runs with their recorded total durations, as the pipeline logs
    them (R-CICD-12's ``duration_s.total``), plus a failed one that must not count."""
    for seconds in totals:
        run = services.tracking.create_run("retrain-churn", tags={"keel.retrain.model": "churn"})
        services.tracking.log_batch(run.id, metrics=[{"key": "duration_s.total", "value": seconds}])
        services.tracking.finish_run(run.id, RunStatus.FINISHED)
    failed = services.tracking.create_run("retrain-churn", tags={"keel.retrain.model": "churn"})
    services.tracking.log_batch(failed.id, metrics=[{"key": "duration_s.total", "value": 1e6}])
    services.tracking.finish_run(failed.id, RunStatus.FAILED)


def test_compute_budget_from_recorded_durations(trigger_env: Env) -> None:
    services, _ = trigger_env
    totals = [120.0, 600.0, 240.0]
    past_retrainings(services, totals)
    minutes = float(np.median(totals)) / 60  # 4 minutes
    services.triggers.apply(hand(max_minutes=3))
    blocked = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    compute = blocked.prerequisites["compute"]
    assert not blocked.fired and "max_minutes 3" in blocked.reason
    assert compute["runs"] == 3 and compute["expected_minutes"] == pytest.approx(minutes)
    services.triggers.apply(hand(cost_per_hour=30, max_cost=1.5))
    blocked = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    assert blocked.prerequisites["compute"]["expected_cost"] == pytest.approx(minutes / 60 * 30)
    assert not blocked.fired and "max_cost 1.5" in blocked.reason
    services.triggers.apply(hand(cost_per_hour=30, max_cost=2.5, max_minutes=5))
    fired = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    assert fired.fired and fired.job_id


def test_compute_without_history_records_why_and_fires(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply(hand(max_minutes=1))
    result = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    assert result.fired
    assert result.prerequisites["compute"]["runs"] == 0
    assert "no earlier" in result.prerequisites["compute"]["note"]


def test_job_capacity_blocks_until_the_queue_drains(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.jobs.enqueue("retrain.run", {"model": "churn"}, key="someone-else")
    services.triggers.apply(hand(max_jobs=1))
    blocked = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    assert not blocked.fired and "max_jobs 1" in blocked.reason
    assert blocked.pending_fire is None  # only timing defers; a blocked fire is not owed
    assert blocked.prerequisites["capacity"]["retrain_jobs_active"] == 1
    assert drain(services.jobs) == 1
    fired = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    assert fired.fired and fired.prerequisites["capacity"]["retrain_jobs_active"] == 0


class Usage(NamedTuple):
    total: int
    used: int
    free: int


def test_free_disk_for_the_training_rows(trigger_env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    services, _ = trigger_env
    services.triggers.apply(hand())
    fine = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    capacity = fine.prerequisites["capacity"]
    # 1000 labelled rows in the 30-day window, the reference's 6 columns (+2) of 8 bytes, x2
    assert capacity["training_rows"] == 1000
    assert capacity["disk_needed_bytes"] == 1000 * (6 + 2) * 8 * 2
    free = shutil.disk_usage(services.settings.home).free  # others write to the disk too
    assert capacity["disk_free_bytes"] == pytest.approx(free, rel=0.01)
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: Usage(10**9, 10**9 - 5_000, 5_000))
    services.triggers.apply({**hand(), "name": "hand2"})
    blocked = services.triggers.evaluate("hand2", data.now_ms(), manual=True)
    assert not blocked.fired and "5,000 bytes free in KEEL_HOME" in blocked.reason


def test_validation_capacity_counts_the_gates_holdout(
    trigger_env: Env, churn_rows: tuple[Any, Any]
) -> None:
    services, _ = trigger_env
    labels = churn_rows[1].iloc[:1000][TARGET].to_numpy()  # served oldest first
    split = RetrainSpec.model_validate({"train": TRAIN, "label": TARGET}).split
    size = 1000 - round(1000 * split.train) - round(1000 * split.validation)
    services.triggers.apply(hand(min_holdout=size + 1))
    blocked = services.triggers.evaluate("hand", data.now_ms(), manual=True)
    numbers = blocked.prerequisites["validation"]
    assert numbers["holdout_rows"] == size == 150
    assert numbers["positives"] == int((labels[-size:] == 1).sum())
    assert numbers["negatives"] == int((labels[-size:] == 0).sum())
    assert not blocked.fired and f"need {size + 1}" in blocked.reason
    services.triggers.apply(hand(min_holdout=size))
    assert services.triggers.evaluate("hand", data.now_ms(), manual=True).fired


@pytest.mark.parametrize(
    ("prerequisites", "field"),
    [
        ({"max_cost": -5, "cost_per_hour": 1}, "prerequisites.max_cost"),
        ({"max_cost": 5}, "prerequisites.max_cost"),
        ({"max_minutes": 0}, "prerequisites.max_minutes"),
        ({"cost_per_hour": -1}, "prerequisites.cost_per_hour"),
        ({"max_jobs": 0}, "prerequisites.max_jobs"),
        ({"min_holdout": -3}, "prerequisites.min_holdout"),
    ],
)
def test_bad_budgets_name_the_field(
    trigger_env: Env, prerequisites: dict[str, Any], field: str
) -> None:
    services, _ = trigger_env
    with pytest.raises(InvalidInput) as caught:
        services.triggers.apply(hand(**prerequisites))
    assert caught.value.field == field
    assert services.triggers.list_triggers() == []
