"""Retraining with an Optuna search (each trial a child run), resumed after a worker death,
and the promotion that follows: alias, rollout, approval, rejection, override."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import tests.automation.retrain_train as user_code
import tests.automation.test_retrain as base

from keel.automation.retrain import approve, reject, run_retrain
from keel.errors import InvalidInput
from keel.services import Services

# the fixtures of the retraining tests, shared
svc, churn, logged = base.svc, base.churn, base.logged
run_job, spec = base.run_job, base.spec


SEARCH = {"n_trials": 3, "space": {"C": {"type": "float", "low": 0.01, "high": 10, "log": True}}}


def children(services: Services, run_id: str) -> list[Any]:
    run = services.tracking.get_run(run_id)
    page = services.tracking.search_runs([run.experiment_id], None, None, 100)
    return [r for r in page.items if r.parent_run_id == run_id]


def test_optuna_search_logs_each_trial_as_a_child_run(logged: Services) -> None:
    job = run_job(logged, {"model": "churn", "retrain": spec(search=SEARCH)})
    assert job.status == "succeeded", job.traceback
    trials = children(logged, job.result["run_id"])
    assert len(trials) == 3
    assert all("C" in t.params and "validation.auc" in t.metrics for t in trials)
    best = max(trials, key=lambda t: t.metrics["validation.auc"])
    parent = logged.tracking.get_run(job.result["run_id"])
    assert parent.params["best.C"] == best.params["C"]


def test_a_killed_search_resumes_without_redoing_finished_trials(logged: Services) -> None:
    args = {"model": "churn", "retrain": spec(train="tests.automation.retrain_train:dies",
            search=SEARCH)}  # fmt: skip
    user_code.DIE_ON_CALL.update(n=3, calls=0)  # dies in the third trial
    with pytest.raises(user_code.Killed):
        run_retrain(logged, args)
    [run] = logged.tracking.search_runs(["retrain-churn"], "tags.`keel.retrain.stage` = 'data'",
                                        None, 10).items  # fmt: skip
    assert run.status.value == "RUNNING" and len(children(logged, run.id)) == 2
    result = run_retrain(logged, args)  # the re-delivered job
    assert result["run_id"] == run.id
    # two trials done before, one after, one final fit: four finished calls, one death
    assert user_code.DIE_ON_CALL["calls"] == 5
    assert len(children(logged, run.id)) == 3
    assert [v.version for v in logged.registry.list_versions("churn")] == [2, 1]
    again = run_retrain(logged, args)  # once more: done, nothing redone
    assert again == result and user_code.DIE_ON_CALL["calls"] == 5


def test_a_passing_challenger_takes_the_alias_and_starts_the_rollout(logged: Services) -> None:
    rollout = {"strategy": "canary", "steps": [10, 100]}
    job = run_job(logged, {"model": "churn", "retrain": spec(rollout=rollout)})
    assert job.status == "succeeded", job.traceback
    assert job.result["gates_passed"] and job.result["promoted"]
    assert logged.registry.get_model("churn").aliases == {"champion": 1, "challenger": 2}
    deployment = logged.deployments.get(job.result["deployment"])
    assert deployment.state["versions"] == {"primary": 1, "canary": 2}
    [promotion] = logged.decisions.query(model="churn", kind="promotion")
    assert "rollout" in promotion.summary


def test_a_failing_challenger_stays_registered_with_its_report(logged: Services) -> None:
    gates = {**spec()["gates"], "floor": {"min_auc": 0.99}}
    job = run_job(logged, {"model": "churn", "retrain": spec(gates=gates)})
    assert job.status == "succeeded", job.traceback
    assert not job.result["gates_passed"] and not job.result["promoted"]
    version = logged.registry.get_version("churn", 2)
    assert version.tags["keel.validation.status"] == "failed"
    assert "floor" in version.tags["keel.validation.failed_gates"]
    assert logged.registry.get_model("churn").aliases == {"champion": 1}
    [gate] = logged.decisions.query(model="churn", kind="gate")
    assert "not promoted" in gate.summary and gate.details["gates"]["floor"]["status"] == "fail"


def test_approval_holds_the_version_until_a_human_releases_it(logged: Services) -> None:
    job = run_job(logged, {"model": "churn", "retrain": spec(require_approval=True)})
    assert job.result["approval"] == "pending"
    assert logged.registry.get_model("churn").aliases == {"champion": 1}
    assert logged.registry.get_version("churn", 2).tags["keel.approval.status"] == "pending"
    with pytest.raises(InvalidInput, match="reason"):
        approve(logged, "churn", 2, actor="ana", reason=" ")
    approve(logged, "churn", 2, actor="ana", reason="looks good", stage="production")
    assert logged.registry.get_model("churn").aliases["champion"] == 2
    kinds = [(d.kind, d.actor) for d in logged.decisions.query(model="churn")]
    assert ("promotion", "ana") in kinds and ("override", "ana") not in kinds


def test_reject_and_override_are_recorded(logged: Services) -> None:
    job = run_job(logged, {"model": "churn", "retrain": spec()})
    assert job.result["promoted"]
    reject(logged, "churn", 2, actor="bo", reason="bad slice on manual review")
    assert "challenger" not in logged.registry.get_model("churn").aliases
    [override] = logged.decisions.query(model="churn", kind="override")
    assert override.actor == "bo" and "rejected v2" in override.summary
    approve(logged, "churn", 2, actor="cy", reason="reviewed again")
    overrides = logged.decisions.query(model="churn", kind="override")
    assert len(overrides) == 2 and logged.registry.get_model("churn").aliases["challenger"] == 2


def test_a_bad_rollout_template_is_refused_at_enqueue(svc: Services) -> None:
    with pytest.raises(InvalidInput) as caught:
        svc.jobs.enqueue(
            "retrain.run", {"model": "churn", "retrain": spec(rollout={"strategy": "canery"})}
        )
    assert caught.value.field == "args.retrain.rollout" and "canery" in caught.value.message


def test_the_process_executor_trains_in_another_process(
    logged: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a user package on sys.path (the spawned process inherits it); `tests.` is not
    # importable there, a site-packages `tests` shadows this repository's
    shutil.copy(user_code.__file__, tmp_path / "churn_user_train.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    train = "churn_user_train:train"
    job = run_job(logged, {"model": "churn", "retrain": spec(train=train, executor="process")})
    assert job.status == "succeeded", job.traceback
    assert user_code.SEEN == []  # train ran in the spawned process, not here
    assert logged.tracking.get_run(job.result["run_id"]).metrics["holdout.auc"] > 0.7


def test_a_second_rollout_while_one_runs_keeps_the_alias_and_says_why(logged: Services) -> None:
    rollout = {"strategy": "canary", "steps": [10, 100]}
    first = run_job(logged, {"model": "churn", "decision_id": 1, "retrain": spec(rollout=rollout)})
    second = run_job(logged, {"model": "churn", "decision_id": 2, "retrain": spec(rollout=rollout)})
    assert first.result["deployment"] and second.status == "succeeded", second.traceback
    assert second.result["deployment"] is None
    assert logged.registry.get_model("churn").aliases["challenger"] == 3
    latest = logged.decisions.query(model="churn", kind="promotion")[0]
    assert "rollout not started" in latest.summary
