"""Replay (R-TRK-11) through its interfaces: REST over a real server, the SDK on both
transports (same numbers), the CLI, and the authorization row (deployer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.conftest import serve_in_thread
from tests.deploy.conftest import START_MS, Canary, serve_step
from tests.deploy.test_deploy_api import auth_live  # noqa: F401  (a fixture)
from tests.security.conftest import AuthServer
from typer.testing import CliRunner

from keel.api import create_app
from keel.cli.main import app as cli
from keel.client import Client
from keel.errors import InvalidInput, NotFound
from keel.services import Services

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
def logged(
    services: Services, canary: Canary, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> int:
    """churn-live created (v1 good primary, v2 weak canary) with 300 logged, labelled rows."""
    rows = churn_rows[1].iloc[:300]
    serve_step(services, canary.models, rows, canary.clock)
    return len(rows)


def _numbers(report: dict[str, Any]) -> dict[str, Any]:
    """Everything but the timings, which differ from run to run."""
    return {
        **{k: report[k] for k in ("deployment", "model", "rows", "labelled")},
        "versions": [{k: v for k, v in r.items() if k != "latency_ms"} for r in report["versions"]],
    }


def test_rest_and_both_sdk_transports_give_the_same_numbers(
    services: Services, live_server: str, logged: int, tmp_path: Path
) -> None:
    url = f"{live_server}/v1/deployments/churn-live/replay"
    response = httpx.post(url, json={"versions": [1, 2], "since": START_MS}, timeout=60)
    assert response.status_code == 200, response.text
    rest = response.json()
    assert rest["rows"] == logged == rest["labelled"]
    assert [v["version"] for v in rest["versions"]] == [1, 2]
    assert rest["versions"][0]["agreement"] > rest["versions"][1]["agreement"]
    assert set(rest["versions"][0]["metrics"]) == {"accuracy", "roc_auc"}
    assert rest["versions"][0]["latency_ms"]["p99"] >= rest["versions"][0]["latency_ms"]["p50"]
    embedded = Client(settings=services.settings)
    remote = Client(
        live_server, settings=services.settings.model_copy(update={"home": tmp_path / "remote"})
    )
    try:
        for sdk in (embedded, remote):
            report = sdk.replay_deployment("churn-live", versions=[1, 2], since=START_MS)
            assert _numbers(report) == _numbers(rest)
            assert sdk.replay_deployment("churn-live", [2], START_MS, limit=40)["rows"] == 40
            # the one validator: the same error before either transport is called
            with pytest.raises(InvalidInput) as caught:
                sdk.replay_deployment("churn-live", versions=["x"])  # type: ignore[list-item]
            assert caught.value.field == "versions[0]"
            with pytest.raises(InvalidInput) as caught:
                sdk.replay_deployment("churn-live", versions=[1], since="soon")
            assert caught.value.field == "since"
            with pytest.raises(InvalidInput, match="has no version 9") as caught:
                sdk.replay_deployment("churn-live", versions=[1, 9], since=START_MS)
            assert caught.value.field == "versions"
            with pytest.raises(NotFound):
                sdk.replay_deployment("nope", versions=[1])
    finally:
        embedded.close()
        remote.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"versions": ["x"]}, "versions[0]"),  # as the SDK names it (keel._models.error_path)
        ({"versions": []}, "versions"),
        ({}, "versions"),
        ({"versions": [1], "since": "soon"}, "since"),
        ({"versions": [1], "limit": 0}, "limit"),
        ({"versions": [1], "limit": 10**9}, "limit"),
        ({"versions": [9], "since": START_MS}, "versions"),
        ({"versions": [1], "since": START_MS + 10**9}, "since"),  # nothing logged after
        ({"versions": [1], "colour": "blue"}, "colour"),
    ],
)
def test_rest_bad_input_is_422_naming_the_field(
    live_server: str, logged: int, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(f"{live_server}/v1/deployments/churn-live/replay", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_cli_json_table_and_bad_input(
    services: Services, logged: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    runner = CliRunner()
    base = ["deploy", "replay", "churn-live"]
    result = runner.invoke(cli, [*base, "--versions", "1,2", "--since", str(START_MS), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {"deployment", "model", "since", "rows", "labelled", "versions"} <= set(report)
    assert report["rows"] == logged
    assert {"version", "agreement", "psi", "ks", "latency_ms", "metrics"} <= set(
        report["versions"][0]
    )
    shown = runner.invoke(cli, [*base, "--versions", "2", "--limit", "30"])
    assert shown.exit_code == 0, shown.output
    assert "replayed 30 logged requests" in shown.output and "v2" in shown.output
    assert "roc_auc=" in shown.output
    for args, option in [
        (["--versions", "x"], "--versions"),
        (["--versions", "1,,2"], "--versions"),
        (["--versions", "1", "--since", "soon"], "--since"),
        (["--versions", "9"], "--versions"),  # unknown version: bad input, like create
        (["--versions", "1", "--limit", "0"], "--limit"),
    ]:
        bad = runner.invoke(cli, [*base, *args])
        assert bad.exit_code == 2, (args, bad.output)
        assert option in bad.output, (args, bad.output)
    missing = runner.invoke(cli, ["deploy", "replay", "nope", "--versions", "1"])
    assert missing.exit_code == 1 and "nope" in missing.output  # 404, like deploy show


def test_replay_needs_the_deployer_role(auth_live: AuthServer) -> None:  # noqa: F811
    with serve_in_thread(create_app(services=auth_live.services)) as url:
        target = f"{url}/v1/deployments/x/replay"
        for who, status in [("viewer", 403), ("editor", 403), ("deployer", 422)]:
            response = httpx.post(target, json={}, headers=auth_live.headers(who))
            assert response.status_code == status, (who, response.text)
