"""Deployments and decisions over a real server (REST), the SDK on both transports, the CLI,
and the authorization rows (deployer role, ownership of the model)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from tests.conftest import serve_in_thread
from tests.deploy.conftest import Models
from tests.deploy.test_controller import POLICY
from tests.security.conftest import AuthServer, register_versions
from typer.testing import CliRunner

from keel.api import create_app
from keel.cli.main import app as cli
from keel.client import Client
from keel.config import Settings
from keel.errors import Conflict, InvalidInput
from keel.services import Services, open_services


def test_rest_create_read_act_and_decisions(
    live_server: str, services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("weak", "good")
    bad = {**POLICY, "arms": [{"version": 1, "role": "primary"}, {"version": 9, "role": "canary"}]}
    response = httpx.post(f"{live_server}/v1/deployments", json=bad)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "arms[1].version"
    response = httpx.post(f"{live_server}/v1/deployments", json={**POLICY, "extra_key": 1})
    assert response.status_code == 422 and "extra_key" in response.json()["error"]["message"]
    created = httpx.post(f"{live_server}/v1/deployments", json=POLICY)
    assert created.status_code == 201, created.text
    assert created.json()["state"]["weights"] == {"primary": 95.0, "canary": 5.0}
    assert httpx.post(f"{live_server}/v1/deployments", json=POLICY).status_code == 409
    listed = httpx.get(f"{live_server}/v1/deployments", params={"model": "churn"}).json()
    assert [d["name"] for d in listed] == ["churn-live"]
    url = f"{live_server}/v1/deployments/churn-live"
    assert httpx.post(f"{url}/pause", json={"reason": "lunch"}).json()["status"] == "paused"
    assert httpx.post(f"{url}/resume").json()["status"] == "active"
    promoted = httpx.post(f"{url}/promote", json={"reason": "looks good"})
    assert promoted.status_code == 200 and promoted.json()["status"] == "promoted"
    again = httpx.post(f"{url}/rollback", json={"reason": "too late"})
    assert again.status_code == 409
    assert httpx.get(f"{live_server}/v1/deployments/nope").status_code == 404
    decisions = httpx.get(f"{url}/decisions").json()
    assert [d["kind"] for d in decisions] == ["promotion", "resume", "pause", "deployment_created"]
    log = httpx.get(f"{live_server}/v1/decisions", params={"model": "churn", "kind": "promotion"})
    assert [d["deployment"] for d in log.json()] == ["churn-live"]
    assert httpx.get(f"{live_server}/v1/decisions", params={"since": "soon"}).status_code == 422


def test_sdk_on_both_transports(
    client: Client, register_churn: Callable[[str, str], Models]
) -> None:
    register_churn("good", "weak")
    with pytest.raises(InvalidInput) as caught:
        client.create_deployment({**POLICY, "steps": [5, 50, 25, 100]})
    assert caught.value.field == "steps[2]"
    created = client.create_deployment(yaml.safe_dump(POLICY))
    assert client.get_deployment("churn-live").version == created.version
    assert [d.name for d in client.list_deployments()] == ["churn-live"]
    assert client.pause_deployment("churn-live", reason="x").status == "paused"
    assert client.resume_deployment("churn-live").status == "active"
    rolled = client.rollback_deployment("churn-live", reason="complaints")
    assert rolled.status == "rolled_back" and rolled.weights["canary"] == 0.0
    with pytest.raises(Conflict):
        client.promote_deployment("churn-live")
    kinds = [d.kind for d in client.deployment_decisions("churn-live")]
    assert kinds[0] == "rollback" and kinds[-1] == "deployment_created"
    # one check of an action's reason and arm on both transports, before anything is done
    for act in (
        lambda: client.pause_deployment("churn-live", reason="r" * 2001),
        lambda: client.promote_deployment("churn-live", arm="a" * 129),
    ):
        with pytest.raises(InvalidInput) as refused:
            act()
        assert refused.value.field in ("reason", "arm")
        assert refused.value.message.startswith(refused.value.field)
    assert client.deployment_decisions("churn-live")[0].kind == "rollback"
    found = client.decisions(model="churn", kind="rollback", since="1d")
    assert found[0].summary.endswith("complaints")


def test_cli_create_show_list_act_and_decisions(
    services: Services,
    register_churn: Callable[[str, str], Models],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_churn("good", "weak")
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**POLICY, "colour": "blue"}))
    result = runner.invoke(cli, ["deploy", "create", "-f", str(bad)])
    assert result.exit_code == 2 and "colour" in result.output
    good = tmp_path / "policy.yaml"
    good.write_text(yaml.safe_dump(POLICY))
    assert runner.invoke(cli, ["deploy", "create", "-f", str(good)]).exit_code == 0
    shown = json.loads(runner.invoke(cli, ["deploy", "show", "churn-live", "--json"]).output)
    assert shown["state"]["weights"]["canary"] == 5.0
    assert "churn-live" in runner.invoke(cli, ["deploy", "list"]).output
    result = runner.invoke(cli, ["deploy", "rollback", "churn-live", "--reason", "slow"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["deploy", "rollback", "churn-live"]).exit_code == 1  # 409
    out = runner.invoke(cli, ["decisions", "--model", "churn", "--since", "7d", "--json"])
    records = json.loads(out.output)
    assert {"time", "model", "kind", "summary"} <= set(records[0])
    assert records[0]["kind"] == "rollback"
    listed = runner.invoke(cli, ["deploy", "decisions", "churn-live", "--json"]).output
    assert [r["kind"] for r in json.loads(listed)] == ["rollback", "deployment_created"]


@pytest.fixture
def auth_live(settings: Settings) -> Iterator[AuthServer]:
    from keel.auth.models import Role

    auth_services = open_services(settings.model_copy(update={"auth": "on"}))
    tokens = {"admin": auth_services.auth.create_admin("admin").token}
    for role in (Role.VIEWER, Role.EDITOR, Role.DEPLOYER):
        auth_services.auth.create_user(role.value, role, teams=[f"team-{role.value}"])
        tokens[role.value] = auth_services.auth.create_token(role.value).token
    auth_services.auth.create_user("stranger", Role.DEPLOYER, teams=["elsewhere"])
    tokens["stranger"] = auth_services.auth.create_token("stranger").token
    yield AuthServer("", auth_services, tokens)
    auth_services.close()


def test_deployer_role_and_ownership_of_the_model(auth_live: AuthServer) -> None:
    services = auth_live.services
    register_versions(services.settings, "owned", 2, owner="team-deployer")
    policy = {**POLICY, "name": "owned-live", "model": "owned", "guardrails": {}}
    with serve_in_thread(create_app(services=services)) as url:

        def post(path: str, who: str, body: object = None) -> int:
            response = httpx.post(f"{url}{path}", json=body or {}, headers=auth_live.headers(who))
            return response.status_code

        assert post("/v1/deployments", "editor", policy) == 403
        assert post("/v1/deployments", "stranger", policy) == 403  # not an owner
        assert post("/v1/deployments", "deployer", policy) == 201
        assert post("/v1/deployments/owned-live/pause", "viewer") == 403
        assert post("/v1/deployments/owned-live/pause", "stranger") == 403
        assert post("/v1/deployments/owned-live/pause", "deployer") == 200
        assert post("/v1/deployments/owned-live/resume", "admin") == 200
        read = httpx.get(f"{url}/v1/deployments/owned-live", headers=auth_live.headers("viewer"))
        assert read.status_code == 200
