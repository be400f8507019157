"""Issue #17 acceptance, the three shifts: the closed loop replayed day by day on the telco
churn table, 300-400 predictions a day, labels arriving a day late through the feedback
API, the scheduler's tick each midnight (see tests/automation/replay.py)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
import tests.automation.retrain_train as user_code
from sklearn.linear_model import LogisticRegression
from tests.automation.replay import (
    FEATURES,
    GATES,
    TRAIN,
    Replay,
    auc,
    covariate,
    days_of,
    log_arms,
)
from typer.testing import CliRunner

from keel.cli.main import app
from keel.demo.data import TARGET

pytestmark = pytest.mark.slow

Rows = tuple[pd.DataFrame, pd.DataFrame]
#: A challenger's holdout AUC on the new concept may fall this far short of a model trained
#: directly on it (~380 rows after the change point vs 4,200 rows of the new concept).
NEW_CONCEPT_TOLERANCE = 0.03
#: The rollout a passing challenger starts: canary 50% then 100%, promoted on a
#: significantly better AUC; dwell and sample sizes for a day of traffic per step.
ROLLOUT: dict[str, Any] = {
    "strategy": "canary",
    "steps": [50, 100],
    "min_samples_per_step": 200,
    "min_dwell": "1h",
    "guardrails": {
        "error_rate": {"max_increase": 0.01, "min_samples": 30},
        "p99_latency": {"max_ratio": 2.0, "for": "0s", "min_samples": 30},
        "metric": {"name": "roc_auc", "min_improvement": 0.02, "relative": False},
    },
}


def loop_trigger(**retrain: Any) -> dict[str, Any]:
    """The seed-004 pair (AUC floor, drift on 3+ features) with labels required first."""
    return {
        "name": "churn-loop",
        "model": "churn",
        "window": "3d",
        "cooldown": "30d",
        "any": [
            {"metric": "roc_auc", "below": 0.7, "window": "3d", "min_labels": 100},
            {"metric": "feature_drift_psi", "threshold": 0.2, "min_features": 3, "window": "1d"},
        ],
        "prerequisites": {"labels": True, "min_labels": 500},
        "retrain": {
            "train": TRAIN,
            "label": "churn",
            "window": "5d",
            "gates": GATES,
            "executor": "inline",  # in the job's thread: the replay's seconds go to the loop
            **retrain,
        },
    }


def inverted(rows: pd.DataFrame) -> pd.DataFrame:
    """The new concept: upstream now sends months *left* on the contract cycle in place of
    tenure (73 − tenure), so churn rises with the value the model reads as loyalty."""
    return rows.assign(tenure=73 - rows["tenure"])


def test_no_shift_no_retraining(replay: Replay, replay_rows: Rows) -> None:
    replay.services.triggers.apply(loop_trigger())
    for rows in days_of(replay_rows[1], 300)[:7]:
        replay.serve(rows)
        replay.end_day()
    evaluations = replay.decisions("trigger_evaluation")
    assert len(evaluations) == 7  # one a day, through the scheduler's job, recorded unfired
    assert all(e.details["fired"] is False for e in evaluations)
    assert all(e.summary.endswith("not met (any of 2 conditions)") for e in evaluations)
    aucs = [e.details["conditions"][0]["value"] for e in evaluations[1:]]
    assert all(0.78 < a < 0.9 for a in aucs), aucs  # the numbers are recorded each day
    assert max(e.details["conditions"][1]["value"] for e in evaluations) == 0  # no drift
    assert {d.kind for d in replay.decisions()} == {"trigger_evaluation"}
    assert replay.services.jobs.list_jobs(kind="retrain.run") == []
    assert len(replay.services.jobs.list_jobs(kind="triggers.evaluate")) == 7
    assert [v.version for v in replay.services.registry.list_versions("churn")] == [1]


def test_covariate_shift_retrains_but_does_not_promote(replay: Replay, replay_rows: Rows) -> None:
    replay.services.triggers.apply(loop_trigger())
    for rows in days_of(replay_rows[1], 300)[:5]:
        replay.serve(covariate(rows))
        replay.end_day()
    story = [(d.kind, d.summary) for d in replay.decisions()]
    kinds = [k for k, _ in story]
    # drift from day 0, but no labels yet: held until 500 labelled rows (day 2), then one job
    assert (
        kinds
        == ["trigger_evaluation"] * 3
        + ["diagnosis", "retraining", "gate"]
        + ["trigger_evaluation"] * 2
    ), story
    assert all("prerequisites not satisfied" in s for _, s in story[:2])
    evaluation, diagnosis, retraining, gate = replay.decisions()[2:6]
    assert evaluation.details["fired"] and evaluation.details["action"] == "retrain"
    drift = evaluation.details["conditions"][1]
    assert drift["met"] and drift["value"] >= 3
    assert diagnosis.details["verdict"] == "data drift"
    assert diagnosis.details["data"]["mode"] == "fresh"
    assert retraining.related["trigger_decision_id"] == evaluation.id
    assert retraining.details["rows"] == 600  # the shifted days' labelled rows
    # validated and NOT promoted: the gate report names the margin and its numbers
    assert "failed: not promoted" in gate.summary and "margin" in gate.summary
    assert gate.details["passed"] is False
    margin = gate.details["gates"]["margin"]
    assert margin["status"] == "fail"
    assert {n for n, g in gate.details["gates"].items() if g["status"] == "fail"} == {"margin"}
    assert margin["value"] < margin["threshold"]  # challenger AUC < champion + 0.02
    assert "champion" in margin["reason"] and "+ absolute margin 0.02" in margin["reason"]
    model = replay.services.registry.get_model("churn")
    assert model.aliases == {"champion": 1}  # no challenger alias, no rollout
    assert replay.services.registry.get_version("churn", 2).tags["keel.validation.status"] == (
        "failed"
    )
    assert replay.services.deployments.list("churn") == []
    assert all("cooldown" in s for _, s in story[-2:])


def test_concept_shift_retrains_after_the_change_point_and_rolls_out(
    replay: Replay, replay_rows: Rows
) -> None:
    train, production = replay_rows
    services = replay.services
    services.triggers.apply(loop_trigger(rollout=ROLLOUT))
    days = days_of(production, 400)
    for day, rows in enumerate(days[:4]):  # the concept changes at the start of day 2
        replay.serve(rows if day < 2 else inverted(rows))
        replay.end_day()
    change_ms = replay.day_start - 2 * 86_400_000
    kinds = [d.kind for d in replay.decisions()]
    assert kinds == ["trigger_evaluation"] * 4 + [
        "diagnosis",
        "retraining",
        "gate",
        "deployment_created",  # the rollout template, started with the challenger alias
        "promotion",
    ]
    # day 2's labels arrive at the end of day 3: the AUC floor is crossed then, not before
    evaluations = replay.decisions("trigger_evaluation")
    assert [e.details["fired"] for e in evaluations] == [False, False, False, True]
    floor = evaluations[-1].details["conditions"][0]
    assert (
        floor["met"]
        and floor["value"] < 0.7
        and evaluations[2].details["conditions"][0]["value"] > 0.78
    )
    [diagnosis] = replay.decisions("diagnosis")
    assert diagnosis.details["scores"]["concept drift"] >= 0.3
    data = diagnosis.details["data"]
    assert data["mode"] == "after_change_point"
    assert change_ms <= data["since_ms"] < change_ms + 2 * 3_600_000  # within 2 h of the change
    [retraining] = replay.decisions("retraining")
    assert retraining.details["excluded_before_change_point_rows"] >= 800
    assert 350 <= retraining.details["rows"] <= 400  # only the new concept's labelled rows
    [gate] = replay.decisions("gate")
    assert gate.summary.startswith("v2 passed")
    [promotion] = replay.decisions("promotion")
    assert promotion.details["alias"] == "challenger" and promotion.deployment == "churn-v2"
    assert services.registry.get_model("churn").aliases == {"champion": 1, "challenger": 2}
    # the rollout: the controller's scheduled evaluation each midnight, on the arms' traffic
    pool = inverted(train).sample(frac=1.0, random_state=3)
    weights = []
    for rows in days_of(pool, 600)[:4]:
        deployment = services.deployments.get("churn-v2")
        if deployment.status != "active":
            break
        weights.append(deployment.weights["canary"])
        log_arms(replay, rows, "churn-v2", deployment.versions, deployment.weights)
        replay.end_day()
    final = services.deployments.get("churn-v2")
    assert final.status == "promoted", [d.summary for d in services.decisions.query(
        deployment="churn-v2")]  # fmt: skip
    assert weights == [50.0, 100.0] or weights == [50.0]
    assert services.registry.get_model("churn").aliases["champion"] == 2
    rollout = replay.decisions()[9:]
    assert "rollback" not in [d.kind for d in rollout]
    [shipped] = [d for d in rollout if d.kind == "promotion"]
    assert shipped.actor == "policy" and shipped.deployment == "churn-v2"
    assert "promoted to champion" in shipped.summary
    assert "significant improvement: roc_auc" in " ".join(shipped.details["reasons"])
    # the loop is quiet again: the same trigger, on the new champion, is not met
    after = replay.decisions("trigger_evaluation")[-1]
    assert after.at_ms > shipped.at_ms - 86_400_000 and after.details["met"] is False
    # close to a model trained directly on the new concept, on rows neither saw
    holdout = inverted(production.iloc[1600:])  # after the replay's four days
    direct = LogisticRegression(max_iter=2_000).fit(inverted(train)[FEATURES], train[TARGET])
    champion = services.monitors.load_model(services.registry.get_version("churn", 2))
    ours = auc(holdout[TARGET], champion.predict_proba(holdout[FEATURES])[:, 1])
    theirs = auc(holdout[TARGET], direct.predict_proba(holdout[FEATURES])[:, 1])
    old = services.monitors.load_model(services.registry.get_version("churn", 1))
    before = auc(holdout[TARGET], old.predict_proba(holdout[FEATURES])[:, 1])
    print(f"new concept holdout AUC: retrained {ours:.4f}, direct {theirs:.4f}, old {before:.4f}")
    assert before < 0.6 < ours
    assert abs(ours - theirs) <= NEW_CONCEPT_TOLERANCE
    assert user_code.SEEN  # the user's train function ran in this process (inline)
    # `keel decisions` tells the same story, oldest last
    env = {"KEEL_HOME": str(services.settings.home), "KEEL_DATABASE_URL": None}
    env["KEEL_SERVER_URL"] = None
    shown = CliRunner().invoke(app, ["decisions", "--model", "churn", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    records = json.loads(shown.output)
    assert {"time", "model", "kind", "summary"} <= set(records[0])
    story = [r["kind"] for r in reversed(records) if r["kind"] != "trigger_evaluation"]
    assert story[:5] == ["diagnosis", "retraining", "gate", "deployment_created", "promotion"]
    assert story[-1] == "promotion" and "rollback" not in story
