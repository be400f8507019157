"""Holdout lift, canary debugging and drills through their interfaces: REST over a real
server, the SDK on both transports (same numbers), and the CLI (tables, JSON, exit codes)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.conftest import serve_in_thread
from tests.deploy.conftest import FEATURES, Models, log_traffic
from tests.deploy.test_controller import POLICY
from tests.deploy.test_deploy_api import auth_live  # noqa: F401  (a fixture)
from tests.deploy.test_holdout_debugging import HOLDOUT
from tests.security.conftest import AuthServer, register_versions
from typer.testing import CliRunner

from keel._models import now_ms
from keel.api import create_app
from keel.cli.main import app as cli
from keel.client import Client
from keel.errors import InvalidInput, NotFound
from keel.services import Services

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def holdout(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
) -> int:
    """churn-holdout (v2 good primary, v1 weak holdout, paused) with 600 labelled rows
    logged on the real clock since its creation."""
    models = register_churn("weak", "good")
    created = services.deployments.create(HOLDOUT, actor="ana")
    services.deployments.pause("churn-holdout", actor="ana", reason="persistent holdout")
    time.sleep(0.7)
    rows = churn_rows[1].iloc[:600]
    log_traffic(
        services, models, rows, deployment="churn-holdout", arms=created.versions,
        shares={"primary": 70, "holdout": 30}, start_ms=created.created_at_ms + 1,
        end_ms=now_ms() - 1,
    )  # fmt: skip
    return len(rows)


@pytest.fixture
def sdks(services: Services, live_server: str, tmp_path: Path) -> Iterator[list[Client]]:
    embedded = Client(settings=services.settings)
    remote = Client(
        live_server, settings=services.settings.model_copy(update={"home": tmp_path / "remote"})
    )
    yield [embedded, remote]
    embedded.close()
    remote.close()


def _steady(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the window's end (now, at each call)."""
    out = {k: v for k, v in report.items() if k not in ("to_ms", "steps")}
    out["steps"] = [{k: v for k, v in s.items() if k != "to_ms"} for s in report.get("steps", [])]
    return out


def test_holdout_and_debug_same_numbers_over_rest_and_both_transports(
    live_server: str, holdout: int, sdks: list[Client]
) -> None:
    base = f"{live_server}/v1/deployments/churn-holdout"
    rest = httpx.get(f"{base}/holdout", params={"metric": "roc_auc"}, timeout=60)
    assert rest.status_code == 200, rest.text
    lift = rest.json()
    assert lift["champion"]["n"] + lift["holdout"]["n"] == holdout
    assert lift["significant"] and lift["lift"]["difference"] > 0
    debug = httpx.get(f"{base}/debug", params={"arm": "holdout", "slices": ["tenure"]}, timeout=60)
    assert debug.status_code == 200, debug.text
    assert debug.json()["candidate"] == "holdout" and debug.json()["rows"]
    for sdk in sdks:
        assert _steady(sdk.holdout_lift("churn-holdout", metric="roc_auc")) == _steady(lift)
        found = sdk.debug_deployment("churn-holdout", arm="holdout", slices=["tenure"])
        assert _steady(found) == _steady(debug.json())
        with pytest.raises(InvalidInput) as caught:
            sdk.holdout_lift("churn-holdout", metric="f9")
        assert caught.value.field == "metric"
        with pytest.raises(InvalidInput) as caught:
            sdk.debug_deployment("churn-holdout", arm="nope")
        assert caught.value.field == "arm"
        with pytest.raises(InvalidInput) as caught:
            sdk.drill_deployment("churn-holdout", probe_rows=0)
        assert caught.value.field == "probe_rows"
        with pytest.raises(NotFound):
            sdk.holdout_lift("nope")
    for path, params, field in (
        ("holdout", {"alpha": 2}, "alpha"),
        ("holdout", {"holdout_arm": "x"}, "holdout_arm"),
        ("debug", {"metric": "f9"}, "metric"),
        ("debug", {"alpha": 0}, "alpha"),
    ):
        refused = httpx.get(f"{base}/{path}", params=params)
        assert refused.status_code == 422, refused.text
        assert field in refused.json()["error"]["field"]


def test_embedded_drill_uses_the_in_process_gateway(
    services: Services, holdout: int, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    services.deployments.resume("churn-holdout", actor="ana")
    with Client(settings=services.settings) as sdk:
        probe = churn_rows[1][FEATURES].iloc[:10].to_dict(orient="records")
        report = sdk.drill_deployment("churn-holdout", instances=probe, timeout_s=20)
    assert report["passed"], report["checks"]
    assert report["checks"]["cache"]["seeded"] == {"v1": 10}
    assert report["checks"]["probe"]["version"] == 2
    assert services.deployments.get("churn-holdout").status == "active"


def test_cli_commands_json_tables_and_exit_codes(
    services: Services,
    holdout: int,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    runner = CliRunner()
    shown = runner.invoke(cli, ["deploy", "holdout", "churn-holdout", "--metric", "roc_auc"])
    assert shown.exit_code == 0, shown.output
    assert "lift +" in shown.output and "holdout" in shown.output
    as_json = runner.invoke(cli, ["deploy", "holdout", "churn-holdout", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["metric"] == "roc_auc"
    debug = runner.invoke(cli, ["deploy", "debug", "churn-holdout", "--arm", "holdout"])
    assert debug.exit_code == 0, debug.output
    assert "step x slice" in debug.output
    probe = tmp_path / "probe.json"
    probe.write_text(churn_rows[1][FEATURES].iloc[:5].to_json(orient="records"))
    services.deployments.resume("churn-holdout", actor="ana")
    drill = runner.invoke(
        cli, ["deploy", "drill", "churn-holdout", "--instances", str(probe), "--timeout", "20"]
    )
    assert drill.exit_code == 0, drill.output
    assert "drill passed" in drill.output and "immediate" in drill.output
    for args, option in [
        (["holdout", "churn-holdout", "--metric", "f9"], "--metric"),
        (["holdout", "churn-holdout", "--since", "soon"], "--since"),
        (["debug", "churn-holdout", "--arm", "nope"], "--arm"),
        (["drill", "churn-holdout", "--probe-rows", "0"], "--probe-rows"),
        (["drill", "churn-holdout", "--instances", str(tmp_path / "none.json")], "--instances"),
        (["recommend", "--error-rate", "2", "--users", "1", "--impact", "1", "--requests",
          "1", "--cost-per-prediction", "1"], "--error-rate"),
    ]:  # fmt: skip
        bad = runner.invoke(cli, ["deploy", *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert option in bad.output, (args, bad.output)
    missing = runner.invoke(cli, ["deploy", "holdout", "nope"])
    assert missing.exit_code == 1 and "nope" in missing.output


def test_drill_needs_the_deployer_role_and_reads_need_a_viewer(
    auth_live: AuthServer,  # noqa: F811
) -> None:
    services = auth_live.services
    register_versions(services.settings, "owned", 2, owner="team-deployer")
    policy = {**POLICY, "name": "owned-live", "model": "owned", "guardrails": {}}
    services.deployments.create(policy, actor="ana")
    with serve_in_thread(create_app(services=services)) as url:
        owned = f"{url}/v1/deployments/owned-live/drill"
        # the owner passes authorization (nothing logged to probe with: 422 naming instances)
        for who, status in [("viewer", 403), ("editor", 403), ("stranger", 403), ("deployer", 422)]:
            response = httpx.post(owned, json={}, headers=auth_live.headers(who))
            assert response.status_code == status, (who, response.text)
        assert services.deployments.get("owned-live").status == "active"
        target = f"{url}/v1/deployments/x"
        response = httpx.post(f"{target}/drill", json={}, headers=auth_live.headers("deployer"))
        assert response.status_code == 404, response.text
        for path in ("debug", "holdout"):
            response = httpx.get(f"{target}/{path}", headers=auth_live.headers("viewer"))
            assert response.status_code == 404, (path, response.text)
            assert httpx.get(f"{target}/{path}").status_code == 401
