"""Resolving incidents over REST, both SDK transports and the CLI: same records, same errors;
who may resolve (editor who owns the model; without a check, an owner or an admin only)."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.decisions.conftest import Incident, register_churn, roll_back
from tests.deploy.conftest import POLICY
from tests.security.conftest import AuthServer
from typer.testing import CliRunner

from keel import Client
from keel.auth.models import Role
from keel.cli.main import app
from keel.errors import Conflict, InvalidInput, KeelError
from keel.monitoring.models import MonitorSpec
from keel.services import Services

RULE = "null_share(total_charges) > 0.01"


def _second_incident(services: Services) -> int:
    services.deployments.create({**POLICY, "name": "churn-again"}, actor="ana")
    services.deployments.rollback("churn-again", "error rate", "ana")
    return services.decisions.query(deployment="churn-again", kind="rollback")[0].id or 0


def _error(call: object) -> KeelError:
    with pytest.raises(KeelError) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_both_transports_resolve_and_fail_alike(
    services: Services, incident: Incident, live_server: str
) -> None:
    services.monitors.create(MonitorSpec(name="churn-quality", model="churn", window="2h"))
    first, second = incident.decision.id or 0, _second_incident(services)
    local = Client(settings=services.settings)
    remote = Client(live_server)
    try:
        assert [d.id for d in local.decisions(open=True)] == [second, first]
        assert [d.id for d in remote.decisions(open=True)] == [second, first]
        assert local.decision(first) == remote.decision(first)
        for kwargs in (
            {},
            {"monitor": "churn-quality", "rule": "null_share(total_charges) >> 1"},
            {"monitor": "elsewhere", "rule": RULE},
            {"gate": {"floor": {"min_auc": 7}}},
        ):
            errors = [
                _error(lambda c=c, k=kwargs: c.resolve_decision(first, **k))  # type: ignore[arg-type]
                for c in (local, remote)
            ]
            assert isinstance(errors[0], InvalidInput) and type(errors[1]) is type(errors[0])
            assert (errors[0].field, errors[0].message) == (errors[1].field, errors[1].message)
        made = [
            local.resolve_decision(first, monitor="churn-quality", rule=RULE, note="ETL fix"),
            remote.resolve_decision(second, monitor="churn-quality", rule=RULE, note="ETL fix"),
        ]
        for record, incident_id in zip(made, (first, second), strict=True):
            assert (record.kind, record.resolves, record.related) == (
                "resolution", incident_id, {"incident": incident_id},
            )  # fmt: skip
            assert record.details["check"]["rule"]["source"] == f"decision {incident_id}"
            assert record.details["note"] == "ETL fix"
        assert made[0].summary.replace(str(first), "#") == made[1].summary.replace(str(second), "#")
        # the same rule twice is one rule on the monitor
        assert [r.text for r in services.monitors.get("churn-quality").rules] == [RULE]
        conflicts = [
            _error(lambda c=c: c.resolve_decision(first, gate={"floor": {}}))
            for c in (local, remote)
        ]  # type: ignore[misc]
        assert all(isinstance(e, Conflict) and e.field == "id" for e in conflicts)
        assert local.decisions(open=True) == remote.decisions(open=True) == []
        assert local.decision(first).resolution == made[0].id
    finally:
        local.close()
        remote.close()


def test_rest_answers_422_naming_check_404_and_409(
    services: Services, incident: Incident, live_server: str
) -> None:
    url = f"{live_server}/v1/decisions/{incident.decision.id}"
    answer = httpx.post(f"{url}/resolve", json={"note": "fixed it"})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "check"
    assert "prevention" in answer.json()["error"]["message"]
    answer = httpx.post(f"{url}/resolve", json={"check": {"gate": {}}})
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "check.gate"
    answer = httpx.post(f"{url}/resolve", json=["not", "a", "mapping"])
    assert answer.status_code == 422
    answer = httpx.post(f"{live_server}/v1/decisions/424242/resolve", json={"no_check_reason": "x"})
    assert answer.status_code == 404
    assert httpx.get(f"{live_server}/v1/decisions/424242").status_code == 404
    body = {"check": {"gate": {"calibration": {"max_brier": 0.2}}}}
    answer = httpx.post(f"{url}/resolve", json=body)
    assert answer.status_code == 201, answer.text
    record = answer.json()
    assert record["kind"] == "resolution" and record["resolves"] == incident.decision.id
    assert (record["open"], record["incident"]) == (False, False)
    assert httpx.post(f"{url}/resolve", json=body).status_code == 409
    shown = httpx.get(url).json()
    assert (shown["open"], shown["resolution"], shown["incident"]) == (False, record["id"], True)
    listed = httpx.get(f"{live_server}/v1/decisions", params={"open": "true"}).json()
    assert listed == []
    assert len(services.decisions.query(kind="resolution")) == 1


def _keel(services: Services, *args: str) -> object:
    env = {"KEEL_HOME": str(services.settings.home), "KEEL_SERVER_URL": None,
           "KEEL_DATABASE_URL": services.settings.database_url}  # fmt: skip
    return CliRunner().invoke(app, list(args), env=env)


def test_cli_lists_open_incidents_and_resolves_through_the_sdk(
    services: Services, incident: Incident
) -> None:
    services.monitors.create(MonitorSpec(name="churn-quality", model="churn", window="2h"))
    rid = str(incident.decision.id)
    listed = _keel(services, "decisions", "--open", "--json")
    assert listed.exit_code == 0, listed.output  # type: ignore[attr-defined]
    (record,) = json.loads(listed.stdout)  # type: ignore[attr-defined]
    assert (record["id"], record["open"], record["resolution"]) == (
        incident.decision.id,
        True,
        None,
    )
    table = _keel(services, "decisions", "--open")
    assert "rollback" in table.stdout and rid in table.stdout  # type: ignore[attr-defined]
    bad = _keel(services, "decisions", "resolve", rid)
    assert bad.exit_code == 2 and "check" in bad.output  # type: ignore[attr-defined]
    bad = _keel(services, "decisions", "resolve", rid, "--gate", "[1, 2]")
    assert bad.exit_code == 2 and "check.gate" in bad.output  # type: ignore[attr-defined]
    done = _keel(services, "decisions", "resolve", rid, "--monitor", "churn-quality",
                 "--rule", RULE, "--json")  # fmt: skip
    assert done.exit_code == 0, done.output  # type: ignore[attr-defined]
    assert json.loads(done.stdout)["resolves"] == incident.decision.id  # type: ignore[attr-defined]
    again = _keel(services, "decisions", "resolve", rid, "--gate", "{floor: {min_auc: 0.9}}")
    assert again.exit_code == 1 and "already resolved" in again.output  # type: ignore[attr-defined]
    assert json.loads(_keel(services, "decisions", "--open", "--json").stdout) == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("who", "check", "status"),
    [
        ("viewer", {"check": {"gate": {"floor": {"min_auc": 0.8}}}}, 403),
        ("editor", {"check": {"gate": {"floor": {"min_auc": 0.8}}}}, 403),  # not an owner
        ("grower", {"check": {"gate": {"floor": {"min_auc": 0.8}}}}, 201),
        ("grower", {"no_check_reason": "vendor outage"}, 201),
        ("admin", {"no_check_reason": "vendor outage"}, 201),
    ],
)
def test_only_owners_and_admins_resolve(
    auth_server: AuthServer,
    churn_frames: tuple[object, object],
    who: str,
    check: dict[str, object],
    status: int,
) -> None:
    services = auth_server.services
    register_churn(services, churn_frames[0], owner="team-growth")  # type: ignore[arg-type]
    services.auth.create_user("grower", Role.EDITOR, teams=["team-growth"])
    tokens = dict(auth_server.tokens, grower=services.auth.create_token("grower").token)
    rollback = roll_back(services)
    headers = {"authorization": f"Bearer {tokens[who]}"}
    url = f"{auth_server.url}/v1/decisions/{rollback.id}/resolve"
    answer = httpx.post(url, json=check, headers=headers)
    assert answer.status_code == status, answer.text
    assert len(services.decisions.query(kind="resolution")) == (status == 201)
    assert httpx.get(f"{auth_server.url}/v1/decisions", headers=headers).status_code == 200


def test_without_a_check_an_editor_of_an_unowned_model_is_refused(
    auth_server: AuthServer, churn_frames: tuple[object, object]
) -> None:
    services = auth_server.services
    register_churn(services, churn_frames[0])  # type: ignore[arg-type]
    rollback = roll_back(services)
    url = f"{auth_server.url}/v1/decisions/{rollback.id}/resolve"
    headers = auth_server.headers("editor")
    answer = httpx.post(url, json={"no_check_reason": "nothing to check"}, headers=headers)
    assert answer.status_code == 403 and answer.json()["error"]["field"] == "no_check_reason"
    gate = {"check": {"gate": {"floor": {"min_auc": 0.8}}}}
    assert httpx.post(url, json=gate, headers=headers).status_code == 201  # unowned: editors may
