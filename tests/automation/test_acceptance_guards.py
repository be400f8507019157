"""Issue #17 acceptance, the loop's guards on a day-by-day replay of the telco churn table
(tests/automation/replay.py): a data-quality break alerts and never retrains (R-TRN-21); a
storm of the same drift on 10 consecutive evaluations gives exactly one retraining."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from tests.automation.replay import GATES, TRAIN, Replay, covariate, days_of

pytestmark = pytest.mark.slow

Rows = tuple[pd.DataFrame, pd.DataFrame]


def trigger(**changes: Any) -> dict[str, Any]:
    spec = {
        "name": "churn-guard",
        "model": "churn",
        "window": "3d",
        "cooldown": "30d",
        "any": [
            {"metric": "roc_auc", "below": 0.7, "window": "3d", "min_labels": 100},
            {"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 2, "window": "1d"},
        ],
        "retrain": {
            "train": TRAIN,
            "label": "churn",
            "window": "14d",
            "gates": GATES,
            "executor": "inline",
        },
    }
    return {**spec, **changes}


def test_quality_break_alerts_and_never_retrains(replay: Replay, replay_rows: Rows) -> None:
    services = replay.services
    services.triggers.apply(trigger())
    for day, rows in enumerate(days_of(replay_rows[1], 300)[:6]):
        if day >= 3:  # the billing join upstream breaks: both charges arrive as 0
            rows = rows.assign(monthly_charges=0.0, total_charges=0.0)
        replay.serve(rows)
        replay.end_day()
    evaluations = replay.decisions("trigger_evaluation")
    assert [e.details["met"] for e in evaluations] == [False] * 3 + [True] * 3
    assert not any(e.details["fired"] for e in evaluations)
    for evaluation in evaluations[3:]:
        assert evaluation.details["action"] == "alert"
        assert "data-quality break; no retraining on this data" in evaluation.summary
    alerts = replay.decisions("diagnosis")
    assert len(alerts) == 3  # one alert per evaluation that met, each saying why
    for alert, evaluation in zip(alerts, evaluations[3:], strict=True):
        assert alert.related["evaluation"] == evaluation.id
        assert alert.details["verdict"] == "data-quality break"
        assert alert.details["action"] == "alert"
        assert "alert, no retraining" in alert.summary
        assert "monthly_charges is outside the reference range" in alert.summary
        assert alert.details["scores"]["data-quality break"] >= 0.3
    assert services.jobs.list_jobs(kind="retrain.run") == []
    assert replay.decisions("retraining") == []
    assert [v.version for v in services.registry.list_versions("churn")] == [1]


def test_trigger_storm_gives_one_retraining(replay: Replay, replay_rows: Rows) -> None:
    services = replay.services
    # drift only; labels a day late are there for the retraining to use
    services.triggers.apply(trigger(any=trigger()["any"][1:]))
    production = replay_rows[1]
    for rows in days_of(production.iloc[:600], 300):
        replay.serve(rows)
        replay.end_day()
    for rows in days_of(production.iloc[600:2100], 150):  # the same shift, ten days running
        replay.serve(covariate(rows))
        replay.end_day()
    evaluations = replay.decisions("trigger_evaluation")[2:]
    assert len(evaluations) == 10 and all(e.details["met"] for e in evaluations)
    assert [e.details["fired"] for e in evaluations] == [True] + [False] * 9
    assert all("in cooldown until" in e.summary for e in evaluations[1:])
    [job] = services.jobs.list_jobs(kind="retrain.run")
    assert job.status == "succeeded" and job.args["decision_id"] == evaluations[0].id
    [retraining] = replay.decisions("retraining")
    assert retraining.related["trigger_decision_id"] == evaluations[0].id
    assert len(replay.decisions("gate")) == 1
    assert [v.version for v in services.registry.list_versions("churn")] == [2, 1]
    assert len(services.jobs.list_jobs(kind="triggers.evaluate")) == 12
