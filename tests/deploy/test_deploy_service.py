"""Deployments in the store (SQLite and PostgreSQL): bad input names the field, changes are
compare-and-set (one of two concurrent changes wins, the other is 409), nothing half-applied."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from tests.deploy.conftest import Models
from tests.deploy.test_controller import POLICY

from keel.errors import Conflict, InvalidInput, KeelError
from keel.services import Services


def _policy(**changes: Any) -> dict[str, Any]:
    return {**POLICY, **changes}


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        (
            _policy(arms=[{"version": 1, "role": "primary"}, {"version": 7, "role": "canary"}]),
            "arms[1].version",
        ),
        (
            _policy(arms=[{"version": 1, "role": "primary"}, {"alias": "nope", "role": "canary"}]),
            "arms[1].alias",
        ),
        (_policy(colour="blue"), "colour"),
        (
            _policy(
                strategy="ab",
                steps=None,
                min_samples_per_step=None,
                min_dwell=None,
                arms=[
                    {"version": 1, "role": "primary", "weight": 60},
                    {"version": 2, "role": "challenger", "weight": 30},
                ],
            ),
            "arms[1].weight",
        ),
        (
            _policy(arms=[{"version": 1, "role": "primary"}, {"version": 2, "role": "primary"}]),
            "arms[1].role",
        ),
        (_policy(guardrails={"metric": {"name": "vibes"}}), "guardrails.metric.name"),
        (_policy(model="nobody"), "model"),
    ],
)
def test_create_refuses_bad_policies_naming_the_field(
    services: Services,
    register_churn: Callable[[str, str], Models],
    policy: dict[str, Any],
    field: str,
) -> None:
    register_churn("good", "weak")
    policy = {k: v for k, v in policy.items() if v is not None}
    with pytest.raises(InvalidInput) as caught:
        services.deployments.create(policy)
    assert caught.value.field == field
    assert services.deployments.list() == []
    assert services.decisions.query(model="churn") == []


def test_the_issue_policy_is_accepted_as_written(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    created = services.deployments.create(POLICY, actor="ana")
    assert created.weights == {"primary": 95.0, "canary": 5.0}
    assert created.versions == {"primary": 1, "canary": 2}
    assert created.state["champion_before"] == 1
    again = services.deployments.get("churn-live")
    assert again.policy == created.policy and again.version == 1
    with pytest.raises(Conflict) as taken:
        services.deployments.create({**POLICY, "name": "other"})
    assert taken.value.field == "model"  # one unfinished rollout per model


def _race(service: Any, name: str) -> dict[str, object]:
    """Promote and roll back ``name`` at the same instant; each outcome or its error."""
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def act(action: str) -> None:
        barrier.wait()
        try:
            if action == "promote":
                outcomes[action] = service.promote(name, "ana")
            else:
                outcomes[action] = service.rollback(name, "bad", "bob")
        except KeelError as exc:
            outcomes[action] = exc

    threads = [threading.Thread(target=act, args=(a,)) for a in ("promote", "rollback")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def test_concurrent_promote_and_rollback_one_wins_the_other_409(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("weak", "good")
    service = services.deployments
    for round_ in range(3):
        name = f"race-{round_}"
        service.create({**POLICY, "name": name})
        outcomes = _race(service, name)
        errors = [o for o in outcomes.values() if isinstance(o, KeelError)]
        assert len(errors) == 1 and errors[0].status == 409, outcomes
        final = service.get(name)
        champion = services.registry.get_model("churn").aliases["champion"]
        kinds = [d.kind for d in service.decisions(name)]
        windows = [w for w in service.bad_windows("churn") if w.deployment == name]
        if final.status == "promoted":
            assert champion == 2 and "rollback" not in kinds and windows == []
            services.registry.set_alias("churn", "champion", 1)  # next round starts over
        else:
            assert final.status == "rolled_back" and champion == 1 and "promotion" not in kinds
            assert [w.arm for w in windows] == ["canary"]


def test_a_concurrent_alias_move_makes_promotion_409_and_restores_the_deployment(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("weak", "good")
    services.deployments.create(POLICY)
    services.registry.set_alias("churn", "champion", 2, actor="someone")  # moved meanwhile
    with pytest.raises(Conflict) as caught:
        services.deployments.promote("churn-live", "ana")
    assert caught.value.field == "alias"
    after = services.deployments.get("churn-live")
    assert after.status == "active" and after.weights == {"primary": 95.0, "canary": 5.0}
    assert services.registry.alias_history("churn", "champion")[-1].actor == "someone"


def test_a_version_a_deployment_serves_cannot_be_archived(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    services.deployments.create(POLICY)
    with pytest.raises(Conflict) as caught:
        services.registry.update_version("churn", 2, status="ARCHIVED")
    assert "churn-live" in caught.value.message
    with pytest.raises(Conflict):
        services.registry.update_model("churn", status="ARCHIVED")
    services.deployments.rollback("churn-live", "done with it")
    services.registry.update_version("churn", 2, status="ARCHIVED")  # finished: allowed


def test_pause_resume_and_finished_deployments_refuse_changes(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    service = services.deployments
    service.create(POLICY)
    assert service.pause("churn-live", "ana", "holiday").status == "paused"
    with pytest.raises(Conflict):  # a writer holding the state before the pause loses
        service.store.update_deployment("churn-live", 1, status="active", state={}, at_ms=0)
    assert service.evaluate("churn-live") is None  # the controller leaves it alone
    with pytest.raises(Conflict):
        service.pause("churn-live", "ana")
    assert service.resume("churn-live", "ana").status == "active"
    service.rollback("churn-live", "enough", "ana")
    for action in (service.promote, service.pause, service.rollback):
        with pytest.raises(Conflict):
            action("churn-live")
    kinds = [d.kind for d in service.decisions("churn-live")]
    assert kinds == ["rollback", "resume", "pause", "deployment_created"]


def test_decision_log_records_and_filters(services: Services) -> None:
    log = services.decisions
    first = log.record("trigger_evaluation", "churn", "drift fired", {"psi": 0.3}, "trigger")
    log.record("gate", "churn", "AUC gate passed", {"margin": 0.03}, "job-7")
    log.record("gate", "fraud", "gate failed", {}, "job-8", related={"job": "job-8"})
    assert first.id is not None
    assert [d.summary for d in log.query(model="churn")] == ["AUC gate passed", "drift fired"]
    assert [d.model for d in log.query(kind="gate")] == ["fraud", "churn"]
    assert log.query(since="1h", limit=1)[0].related == {"job": "job-8"}
    with pytest.raises(InvalidInput) as caught:
        log.query(since="yesterday-ish")
    assert caught.value.field == "since"
    with pytest.raises(InvalidInput):
        log.record("Not A Kind", "churn", "x")
