"""R-CICD-13: resolving an incident adds a permanent check, and the next run evaluates it.

A real rollback (tests/decisions/conftest.py) is an open incident; resolving it needs a
monitor rule (added to the model's monitor, evaluated by its next run), a gate rule (in
every later gate run of the model: ``keel validate`` and the retraining's gates) or a
recorded ``no_check_reason``; the resolution is a new ``resolution`` record.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.decisions.conftest import FEATURES, NOW_MS, Incident, serve
from tests.deploy.conftest import POLICY
from typer.testing import CliRunner

from keel import Client
from keel.cli.main import app
from keel.decisions.incidents import is_incident
from keel.demo.data import TARGET
from keel.errors import Conflict, InvalidInput, NotFound
from keel.monitoring.models import MonitorSpec
from keel.services import Services

RULE = "null_share(total_charges) > 0.01"


def test_a_rollback_is_an_open_incident_listed_by_open(
    services: Services, incident: Incident
) -> None:
    rollback = incident.decision
    assert (rollback.incident, rollback.open, rollback.resolution) == (True, True, None)
    log = services.decisions
    open_ids = [d.id for d in log.query(open=True)]
    assert open_ids == [rollback.id]  # deployment_created and rollout records are not incidents
    closed = log.query(open=False)
    assert rollback.id not in [d.id for d in closed] and {d.kind for d in closed} >= {
        "deployment_created"
    }
    assert all(not d.open for d in closed)
    # the one definition: SQL's open filter agrees with the predicate on every record
    assert {d.id for d in log.query() if is_incident(d.kind, d.details)} == set(open_ids)


def test_diagnosis_alert_and_quarantine_are_incidents_a_gate_failure_is_not() -> None:
    assert is_incident("diagnosis", {"action": "alert", "verdict": "data-quality break"})
    assert not is_incident("diagnosis", {"action": "retrain"})
    assert is_incident("retraining", {"outcome": "quarantined"})
    assert is_incident("retraining", {"refused": True, "columns": ["tenure"]})
    assert not is_incident("retraining", {"refused": False})
    assert not is_incident("gate", {"passed": False})
    assert is_incident("alert", {}) and is_incident("incident", {})


def test_resolving_needs_a_check_and_a_bad_check_changes_nothing(
    services: Services, incident: Incident
) -> None:
    rid = incident.decision.id
    assert rid is not None
    services.monitors.create(MonitorSpec(name="churn-quality", model="churn", window="2h"))
    with Client(settings=services.settings) as client:
        bad: list[tuple[dict[str, object], str]] = [
            ({}, "check"),
            ({"note": "looked at it"}, "check"),
            ({"monitor": "churn-quality"}, "check"),
            ({"monitor": "churn-quality", "rule": "null_share(total_charges) >> 1"}, "check.rule"),
            ({"monitor": "churn-quality", "rule": "median(tenure) > 1"}, "check.rule"),
            ({"monitor": "churn-quality", "rule": "null_share(no_such) > 0.01"}, "check.rule"),
            ({"monitor": "nope", "rule": RULE}, "check.monitor"),
            ({"gate": {"floor": {"min_auc": 2}}}, "check.gate.floor.min_auc"),
            ({"gate": {"flor": {"min_auc": 0.9}}}, "check.gate.flor"),
            ({"gate": {"latency": {"enabled": False}}}, "check.gate.latency.enabled"),
            ({"gate": {"floor": {"min_auc": 0.9}}, "monitor": "churn-quality"}, "check"),
            ({"gate": {"floor": {"min_auc": 0.9}}, "no_check_reason": "both"}, "check"),
        ]
        for kwargs, field in bad:
            with pytest.raises(InvalidInput) as caught:
                client.resolve_decision(rid, **kwargs)  # type: ignore[arg-type]
            assert caught.value.field == field, (kwargs, caught.value.message)
        created = services.decisions.query(kind="deployment_created")[0]
        with pytest.raises(InvalidInput, match="not an incident") as caught:
            client.resolve_decision(created.id or 0, gate={"floor": {"min_auc": 0.9}})
        assert caught.value.field == "id"
        with pytest.raises(NotFound):
            client.resolve_decision(99_999, gate={"floor": {"min_auc": 0.9}})
    assert services.decisions.query(kind="resolution") == []
    assert services.monitors.get("churn-quality").rules == []
    assert services.decisions.get(rid).open


def test_a_monitor_rule_is_added_and_the_next_run_evaluates_it(
    services: Services, incident: Incident
) -> None:
    rid = incident.decision.id
    assert rid is not None
    monitors = services.monitors
    monitors.create(MonitorSpec(name="churn-quality", model="churn", window="2h"), actor="bo")
    share = serve(services, incident.model, incident.production.head(800), null_rows=24)
    assert share == pytest.approx(0.03)
    before = monitors.run("churn-quality", now=NOW_MS)
    assert "rules" not in before.results and not before.summary.get("rules_breached")
    with Client(settings=services.settings) as client:
        resolution = client.resolve_decision(rid, monitor="churn-quality", rule=RULE, note="ETL")
    assert (resolution.kind, resolution.model, resolution.resolves) == ("resolution", "churn", rid)
    assert resolution.related == {"incident": rid} and resolution.deployment == "churn-live"
    assert resolution.details["check"]["rule"]["feature"] == "total_charges"
    assert resolution.details["incident"]["kind"] == "rollback"
    assert resolution.actor and "monitor rule null_share(total_charges) > 0.01" in (
        resolution.summary
    )
    stored = monitors.get("churn-quality")
    assert [r.text for r in stored.rules] == [RULE] and stored.created_by == "bo"
    assert stored.rules[0].source == f"decision {rid}"
    after = monitors.run("churn-quality", now=NOW_MS)
    (rule,) = after.results["rules"]
    assert rule["value"] == pytest.approx(share) and rule["breached"] is True
    assert after.status == "alert" and after.summary["rules_breached"] == [RULE]
    # the incident is closed by the appended record, never edited
    incident_now = services.decisions.get(rid)
    assert (incident_now.open, incident_now.resolution) == (False, resolution.id)
    assert incident_now.summary == incident.decision.summary
    assert services.decisions.query(open=True) == []
    with Client(settings=services.settings) as client, pytest.raises(Conflict) as caught:
        client.resolve_decision(rid, monitor="churn-quality", rule=RULE)
    assert caught.value.status == 409 and caught.value.field == "id"
    assert len(monitors.get("churn-quality").rules) == 1
    assert len(services.decisions.query(kind="resolution")) == 1


def test_a_clean_window_passes_the_rule(services: Services, incident: Incident) -> None:
    services.monitors.create(MonitorSpec(name="churn-quality", model="churn", window="2h"))
    with Client(settings=services.settings) as client:
        client.resolve_decision(incident.decision.id or 0, monitor="churn-quality", rule=RULE)
    serve(services, incident.model, incident.production.head(400))
    (rule,) = services.monitors.run("churn-quality", now=NOW_MS).results["rules"]
    assert (rule["value"], rule["breached"]) == (0.0, False)


def _floor(report: object) -> tuple[str, float | None]:
    gate = next(g for g in report.gates if g.name == "floor")  # type: ignore[attr-defined]
    return gate.status, gate.threshold


def test_a_gate_rule_is_in_every_later_validation(
    services: Services, incident: Incident, tmp_path: Path
) -> None:
    holdout = incident.production[[*FEATURES, TARGET]].head(600)
    policy = {"latency": {"enabled": False}, "floor": {"min_auc": 0.5}}
    with Client(settings=services.settings) as client:
        report = client.validate_model("models:/churn/1", holdout, TARGET, policy=policy)
        assert _floor(report) == ("pass", 0.5)
        resolution = client.resolve_decision(
            incident.decision.id or 0, gate={"floor": {"min_auc": 0.99}}
        )
        assert resolution.details["check"] == {"type": "gate", "gate": {"floor": {"min_auc": 0.99}}}
        # the prevention wins over the policy it tightens: a CI file cannot loosen it
        report = client.validate_model("models:/churn/1", holdout, TARGET, policy=policy)
        assert _floor(report) == ("fail", 0.99) and not report.passed
    holdout.to_parquet(tmp_path / "holdout.parquet")
    env = {"KEEL_HOME": str(services.settings.home), "KEEL_DATABASE_URL": None}
    if services.settings.database_url:
        env["KEEL_DATABASE_URL"] = services.settings.database_url
    result = CliRunner().invoke(
        app,
        ["validate", "models:/churn/1", "--holdout", str(tmp_path / "holdout.parquet"),
         "--label", TARGET, "--json"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert '"floor"' in result.stdout and "0.99" in result.stdout


def test_no_check_reason_is_recorded(services: Services, incident: Incident) -> None:
    with Client(settings=services.settings) as client:
        record = client.resolve_decision(
            incident.decision.id or 0, no_check_reason="upstream vendor outage, contract ended"
        )
    assert record.details["no_check_reason"] == "upstream vendor outage, contract ended"
    assert "check" not in record.details
    assert not services.decisions.get(incident.decision.id or 0).open


def test_a_second_rollback_is_a_new_open_incident(services: Services, incident: Incident) -> None:
    with Client(settings=services.settings) as client:
        client.resolve_decision(incident.decision.id or 0, gate={"floor": {"min_auc": 0.7}})
    services.deployments.create({**POLICY, "name": "churn-again"}, actor="ana")
    services.deployments.rollback("churn-again", "error rate", "ana")
    (again,) = services.decisions.query(open=True)
    assert again.deployment == "churn-again" and again.id != incident.decision.id
