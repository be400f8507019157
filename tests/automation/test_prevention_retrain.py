"""R-CICD-13 in retraining: a gate rule added by resolving an incident is in the next
retraining's gates, over the trigger spec's own policy (which cannot loosen it)."""

from __future__ import annotations

from tests.automation.test_retrain import churn, logged, run_job, spec, svc  # noqa: F401

from keel import Client
from keel.services import Services


def test_the_next_retraining_gates_include_the_resolved_incidents_gate_rule(
    logged: Services,  # noqa: F811
) -> None:
    first = run_job(logged, {"model": "churn", "trigger": "before", "retrain": spec()})
    assert first.status == "succeeded", first.traceback
    (gate,) = logged.decisions.query(model="churn", kind="gate")
    assert gate.details["gates"]["floor"]["threshold"] == 0.6  # the spec's QUIET_GATES
    assert gate.details["gates"]["floor"]["status"] == "pass"
    alert = logged.decisions.record(
        "diagnosis",
        "churn",
        "data-quality break → alert, no retraining",
        {"verdict": "data-quality break", "action": "alert"},
        actor="trigger",
    )
    with Client(settings=logged.settings) as client:
        client.resolve_decision(alert.id or 0, gate={"floor": {"min_auc": 0.99}})
    second = run_job(logged, {"model": "churn", "trigger": "after", "retrain": spec()})
    assert second.status == "succeeded", second.traceback
    assert second.result["gates_passed"] is False and second.result["promoted"] is False
    latest = logged.decisions.query(model="churn", kind="gate")[0]
    floor = latest.details["gates"]["floor"]
    assert (floor["status"], floor["threshold"]) == ("fail", 0.99)
    assert 0.6 < floor["value"] < 0.99  # the AUC that passed 0.6 now fails the tightened floor
    # the other gates of the spec are untouched
    assert latest.details["gates"]["latency"]["status"] == "skipped"
