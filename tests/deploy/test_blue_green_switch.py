"""The hand switch of a blue-green deployment (``switch_after`` none = switch by hand): a
person moves all live traffic to green the way the controller's switch does (same state,
a ``rollout_step`` record "switching to green" by that person); verify then runs and the
controller promotes after it or switches back on a breach. Refused (409 naming the state)
unless the deployment is an active blue-green still before its switch. Service on SQLite
and PostgreSQL, REST on a live server (the next predict is green's), both SDK transports,
the CLI, and a switch racing a rollback (one wins, the other 409, nothing half-applied)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.conftest import serve_in_thread
from tests.deploy.conftest import FEATURES, POLICY, Clock, Models, log_traffic
from tests.security.conftest import register_versions
from typer.testing import CliRunner

from keel.api import create_app
from keel.cli.main import app as cli
from keel.client import Client
from keel.config import Settings
from keel.deploy.policy import parse_policy
from keel.deploy.rollout import Action, evaluate
from keel.deploy.service import DeploymentService
from keel.deploy.state import rollout_from_json
from keel.deploy.verdict import ArmStats
from keel.errors import Conflict, NotFound
from keel.services import Services, open_services

MIN = 60_000
#: No ``switch_after``: nothing but a person switches.
BLUE_GREEN: dict[str, Any] = {
    "name": "churn-bg",
    "model": "churn",
    "strategy": "blue_green",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "challenger"}],
    "blue_green": {"verify": "5m"},
    "guardrails": {"error_rate": {"max_increase": 0.01, "min_samples": 30}},
}
BLUE = {"primary": 100.0, "challenger": 0.0}
GREEN = {"primary": 0.0, "challenger": 100.0}


def _refused(service: DeploymentService, name: str, wording: str) -> None:
    """A switch of ``name`` is a 409 whose message has ``wording``, and changes nothing."""
    before = service.get(name)
    records = len(service.decisions(name))
    with pytest.raises(Conflict) as caught:
        service.switch(name, actor="bo", reason="now")
    assert wording in caught.value.message and name in caught.value.message
    after = service.get(name)
    assert (after.version, after.status, after.weights) == (
        before.version,
        before.status,
        before.weights,
    )
    assert len(service.decisions(name)) == records


def test_without_switch_after_only_a_person_switches_like_the_controller_would(
    register_churn: Callable[[str, str], Models], clocked: tuple[DeploymentService, Clock]
) -> None:
    service, clock = clocked
    register_churn("good", "good")
    created = service.create(BLUE_GREEN, actor="ana")
    clock.now += 7 * 24 * 60 * MIN  # a week of ticks: blue keeps everything
    assert service.evaluate("churn-bg") is not None
    assert service.get("churn-bg").weights == BLUE
    clock.now += MIN
    ticked = rollout_from_json(service.get("churn-bg").state["rollouts"]["challenger"])
    switched = service.switch("churn-bg", actor="bo", reason="release window")
    assert (switched.status, switched.weights) == ("active", GREEN)
    assert switched.version == created.version + 2  # the tick, then the switch
    state = rollout_from_json(switched.state["rollouts"]["challenger"])
    # the controller's own switch from the same state at the same time: the same rollout
    policy = parse_policy({**BLUE_GREEN, "blue_green": {"switch_after": "0s", "verify": "5m"}})
    auto = evaluate(policy, ticked, clock.now, ArmStats("primary", 0), ArmStats("g", 0))
    assert auto.action is Action.ADVANCE and auto.reasons[-1] == "switching to green"
    assert state == auto.state
    record = service.decisions("churn-bg", limit=1)[0]
    assert (record.kind, record.actor) == ("rollout_step", "bo")
    assert "switching to green" in record.summary and "release window" in record.summary
    assert record.details["weights"] == GREEN and record.details["weights_before"] == BLUE
    assert (record.details["arm"], record.details["reason"]) == ("challenger", "release window")
    _refused(service, "churn-bg", "already switched")


def test_a_switch_is_refused_naming_the_state(
    register_churn: Callable[[str, str], Models], clocked: tuple[DeploymentService, Clock]
) -> None:
    service, clock = clocked
    register_churn("good", "good")
    with pytest.raises(NotFound):
        service.switch("nobody", actor="bo")
    service.create(POLICY, actor="ana")  # a canary
    _refused(service, "churn-live", "not blue_green (it is canary)")
    service.rollback("churn-live", "done with it", "ana")
    service.create(BLUE_GREEN, actor="ana")
    service.rollback("churn-bg", "again", "ana")
    _refused(service, "churn-bg", "rolled_back")
    service.create({**BLUE_GREEN, "name": "churn-bg2"}, actor="ana")
    service.pause("churn-bg2", actor="ana", reason="lunch")
    _refused(service, "churn-bg2", "paused")
    service.resume("churn-bg2", actor="ana")
    clock.now += MIN
    assert service.switch("churn-bg2", actor="bo").weights == GREEN
    service.promote("churn-bg2", actor="ana")
    _refused(service, "churn-bg2", "promoted")


def test_a_person_may_switch_before_switch_after(
    register_churn: Callable[[str, str], Models], clocked: tuple[DeploymentService, Clock]
) -> None:
    service, clock = clocked
    register_churn("good", "good")
    service.create({**BLUE_GREEN, "blue_green": {"switch_after": "1h", "verify": "5m"}}, "ana")
    clock.now += MIN
    switched = service.switch("churn-bg", actor="bo")
    assert switched.weights == GREEN
    record = service.decisions("churn-bg", limit=1)[0]
    assert record.summary == "challenger: switching to green by bo (0% -> 100%)"
    assert record.details["reason"] is None
    clock.now += 6 * MIN  # verified (the switch was 6 minutes ago, not the hour's end)
    done = service.evaluate("churn-bg")
    assert done is not None and done.status == "promoted"
    assert [d.kind for d in service.decisions("churn-bg")] == [
        "promotion",
        "evaluation",
        "rollout_step",
        "deployment_created",
    ]


def _serve(
    services: Services,
    models: Models,
    rows: pd.DataFrame,
    weights: dict[str, float],
    start_ms: int,
    failing: dict[str, float] | None = None,
) -> None:
    log_traffic(
        services,
        models,
        rows,
        deployment="churn-bg",
        arms={"primary": 1, "challenger": 2},
        shares=weights,
        start_ms=start_ms,
        end_ms=start_ms + MIN,
        failing=failing,
    )


@pytest.mark.parametrize("breach", [True, False], ids=["breach", "clean"])
def test_after_a_hand_switch_verify_switches_back_on_a_breach_or_promotes(
    breach: bool,
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    service, clock = clocked
    models = register_churn("good", "good")
    rows = churn_rows[1]
    service.create(BLUE_GREEN, actor="ana")
    _serve(services, models, rows[:200], BLUE, clock.now + 1)  # blue's pre-switch numbers
    clock.now += 2 * MIN
    service.switch("churn-bg", actor="bo", reason="by hand")
    failing = {"challenger": 0.3} if breach else None
    _serve(services, models, rows[200:400], GREEN, clock.now + 1, failing)
    clock.now += 2 * MIN  # inside verify (5m): only a breach ends it now
    ticked = service.evaluate("churn-bg")
    assert ticked is not None
    if breach:
        assert (ticked.status, ticked.weights) == ("rolled_back", BLUE)
        rollback = service.decisions("churn-bg", limit=2)[0]
        assert (rollback.kind, rollback.actor) == ("rollback", "policy")
        assert rollback.details["phase"] == "switched" and "error_rate" in rollback.summary
        windows = service.bad_windows("churn", 2)
        assert [(w.arm, w.deployment) for w in windows] == [("challenger", "churn-bg")]
        return
    assert (ticked.status, ticked.weights) == ("active", GREEN)
    clock.now += 4 * MIN  # verify over
    done = service.evaluate("churn-bg")
    assert done is not None and done.status == "promoted"
    assert services.registry.get_model("churn").aliases["champion"] == 2


def _race(
    service: DeploymentService, name: str, first: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A switch and a rollback of ``name`` from two threads (``first`` started first), each
    held after its first read until the other has read too: both see the same version
    before either writes. Each one's outcome: the deployment it returned, or its Conflict."""
    store = service.store
    read = store.get_deployment
    both_read = threading.Barrier(2, timeout=30)
    waited = threading.local()

    def read_together(wanted: str) -> Any:
        found = read(wanted)
        if not getattr(waited, "done", False):
            waited.done = True
            both_read.wait()
        return found

    outcomes: dict[str, Any] = {}

    def run(kind: str) -> None:
        try:
            if kind == "switch":
                outcomes[kind] = service.switch(name, actor="bo")
            else:
                outcomes[kind] = service.rollback(name, "bad", "cy")
        except Conflict as exc:
            outcomes[kind] = exc

    monkeypatch.setattr(store, "get_deployment", read_together)
    try:
        order = [first, "rollback" if first == "switch" else "switch"]
        threads = [threading.Thread(target=run, args=(kind,)) for kind in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        monkeypatch.setattr(store, "get_deployment", read)
    return outcomes


def test_a_switch_racing_a_rollback_one_wins_the_other_409(
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, clock = clocked
    register_churn("good", "good")
    for round_, first in enumerate(("switch", "rollback")):
        name = f"churn-bg{round_}"
        created = service.create({**BLUE_GREEN, "name": name}, actor="ana")
        clock.now += MIN
        outcomes = _race(service, name, first, monkeypatch)
        lost = [k for k, v in outcomes.items() if isinstance(v, Conflict)]
        assert len(outcomes) == 2 and len(lost) == 1, outcomes
        assert "changed concurrently" in outcomes[lost[0]].message
        after = service.get(name)
        assert after.version == created.version + 1
        kinds = [d.kind for d in service.decisions(name)]
        if lost == ["rollback"]:  # the switch won
            assert (after.status, after.weights) == ("active", GREEN)
            assert kinds == ["rollout_step", "deployment_created"]
            assert [w for w in service.bad_windows("churn", 2) if w.deployment == name] == []
            service.rollback(name, "next round", "ana")
        else:
            assert (after.status, after.weights) == ("rolled_back", BLUE)
            assert kinds == ["rollback", "deployment_created"]


def test_rest_switch_then_the_next_predict_is_greens(
    live_server: str,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    register_churn("good", "weak")
    created = httpx.post(f"{live_server}/v1/deployments", json=BLUE_GREEN)
    assert created.status_code == 201, created.text
    url = f"{live_server}/v1/deployments/churn-bg"
    row = {f: float(v) for f, v in churn_rows[1][FEATURES].iloc[0].items()}
    with httpx.Client(timeout=30) as http:
        for i in range(5):
            body = {"instances": [row], "routing_key": f"u{i}"}
            answer = http.post(f"{url}/predict", json=body).json()
            assert (answer["arm"], answer["version"]) == ("primary", 1)
        bad = http.post(f"{url}/switch", json={"reason": "x", "colour": "green"})
        assert bad.status_code == 422 and "colour" in bad.json()["error"]["message"]
        long = http.post(f"{url}/switch", json={"reason": "x" * 2001})
        assert long.status_code == 422 and long.json()["error"]["field"] == "reason"
        switched = http.post(f"{url}/switch", json={"reason": "release window"})
        assert switched.status_code == 200, switched.text
        assert switched.json()["state"]["weights"] == GREEN
        for i in range(5):
            body = {"instances": [row], "routing_key": f"u{i}"}
            answer = http.post(f"{url}/predict", json=body).json()
            assert (answer["arm"], answer["version"]) == ("challenger", 2)
        again = http.post(f"{url}/switch")
        assert again.status_code == 409 and "already switched" in again.json()["error"]["message"]
        assert http.post(f"{live_server}/v1/deployments/nope/switch").status_code == 404
        record = http.get(f"{url}/decisions", params={"limit": 1}).json()[0]
    assert record["kind"] == "rollout_step" and "switching to green" in record["summary"]
    assert record["actor"] == "unknown"  # no auth: the REST actor, as for the other actions


def test_sdk_on_both_transports(
    client: Client, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "good")
    client.create_deployment(POLICY)
    with pytest.raises(Conflict) as caught:
        client.switch_deployment("churn-live")
    assert "not blue_green" in caught.value.message
    client.rollback_deployment("churn-live")
    client.create_deployment(BLUE_GREEN)
    switched = client.switch_deployment("churn-bg", reason="release window")
    assert (switched.status, switched.weights) == ("active", GREEN)
    assert client.get_deployment("churn-bg").version == switched.version
    with pytest.raises(Conflict) as caught:
        client.switch_deployment("churn-bg")
    assert "already switched" in caught.value.message
    with pytest.raises(NotFound):
        client.switch_deployment("nobody")
    record = client.deployment_decisions("churn-bg", limit=1)[0]
    assert record.kind == "rollout_step" and record.summary.endswith("release window")


def test_cli_switch(
    services: Services,
    register_churn: Callable[[str, str], Models],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_churn("good", "good")
    services.deployments.create(BLUE_GREEN, actor="ana")
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    runner = CliRunner()
    shown = runner.invoke(cli, ["deploy", "switch", "--help"])
    assert shown.exit_code == 0 and "keel deploy switch churn-bg" in shown.output
    result = runner.invoke(cli, ["deploy", "switch", "churn-bg", "--reason", "go", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["state"]["weights"] == GREEN
    again = runner.invoke(cli, ["deploy", "switch", "churn-bg"])
    assert again.exit_code == 1 and "already switched" in again.output
    missing = runner.invoke(cli, ["deploy", "switch", "nobody"])
    assert missing.exit_code == 1
    record = services.deployments.decisions("churn-bg", limit=1)[0]
    assert (record.kind, record.details["reason"]) == ("rollout_step", "go")


def test_deployer_and_owner_switch_and_are_the_records_actor(settings: Settings) -> None:
    from keel.auth.models import AuditQuery, Role

    services = open_services(settings.model_copy(update={"auth": "on"}))
    try:
        tokens = {"admin": services.auth.create_admin("admin").token}
        for who, role, team in (
            ("viewer", Role.VIEWER, "team-a"),
            ("dee", Role.DEPLOYER, "team-a"),
            ("stranger", Role.DEPLOYER, "elsewhere"),
        ):
            services.auth.create_user(who, role, teams=[team])
            tokens[who] = services.auth.create_token(who).token
        register_versions(services.settings, "owned", 2, owner="team-a")
        services.deployments.create({**BLUE_GREEN, "name": "owned-bg", "model": "owned"}, "dee")
        with serve_in_thread(create_app(services=services)) as url:

            def switch(who: str) -> httpx.Response:
                auth = {"authorization": f"Bearer {tokens[who]}"}
                return httpx.post(f"{url}/v1/deployments/owned-bg/switch", headers=auth)

            assert switch("viewer").status_code == 403
            assert switch("stranger").status_code == 403  # a deployer, not an owner
            assert switch("dee").status_code == 200
        record = services.deployments.decisions("owned-bg", limit=1)[0]
        assert (record.kind, record.actor) == ("rollout_step", "dee")
        audit = services.auth.audit(AuditQuery(action="deployment.switch"))
        # newest first; the refusals are audited too
        assert [(e.actor, e.status) for e in audit] == [
            ("dee", 200),
            ("stranger", 403),
            ("viewer", 403),
        ]
    finally:
        services.close()
