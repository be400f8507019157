"""Every CLI command goes through the SDK and takes --server (#15.26): the prediction log,
labels, users, tokens and audit, embedded and against a real uvicorn server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import serve_in_thread
from typer.testing import CliRunner, Result

from keel.api import create_app
from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.errors import InvalidInput
from keel.services import open_services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

runner = CliRunner()
NOW_MS = int(time.time() * 1000)


@dataclass
class Env:
    settings: Settings
    url: str

    def cli(self, *args: str, server: bool = False) -> Result:
        env = {"KEEL_HOME": str(self.settings.home), "KEEL_SERVER_URL": None, "KEEL_TOKEN": None}
        extra = ["--server", self.url] if server else []
        return runner.invoke(app, [*args, *extra], env=env)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A home with 6 logged predictions (two arms) and 3 labels, served by a real server."""
    settings = Settings(home=tmp_path_factory.mktemp("home"))
    services = open_services(settings)
    with PredictionLog(log_root(settings), flush_interval_s=0.05) as log:
        for i in range(6):
            log.append(
                PredictionRecord(
                    request_id=f"r{i}",
                    at_ms=NOW_MS - 60_000 + 1_000 * i,
                    model="churn",
                    version=1 + i % 2,
                    features={"tenure": float(i)},
                    output=i % 2,
                    latency_ms=1.0,
                    probabilities=[0.4, 0.6],
                    deployment="churn-prod",
                    arm="canary" if i < 2 else "stable",
                )
            )
    services.feedback.submit([{"request_id": f"r{i}", "label": i % 2} for i in (0, 1, 4)])
    with serve_in_thread(create_app(services=services)) as url:
        yield Env(settings, url)
    services.close()


@pytest.fixture(params=["local", "http"])
def client(request: pytest.FixtureRequest, env: Env) -> Iterator[Client]:
    uri = env.url if request.param == "http" else None
    with Client(uri, settings=env.settings) as sdk:
        yield sdk


# ---- SDK ---------------------------------------------------------------------------------
def test_sdk_predictions_filter_limit_and_columns(client: Client) -> None:
    everything = client.predictions("churn", since="1h")
    assert list(everything["request_id"]) == [f"r{i}" for i in range(6)]
    canary = client.predictions(deployment="churn-prod", arm="canary", since="1h")
    assert list(canary["request_id"]) == ["r0", "r1"]
    newest = client.predictions("churn", version=2, since="1h", limit=2, columns=["request_id"])
    assert list(newest["request_id"]) == ["r3", "r5"]
    assert list(newest.columns) == ["model", "version", "request_id"]


def test_sdk_labels_with_as_of(client: Client) -> None:
    labelled = client.labels("churn", since="1h")
    assert sorted(labelled["request_id"]) == ["r0", "r1", "r4"]
    assert {"label", "label_value", "label_delay_s"} <= set(labelled.columns)
    assert client.labels("churn", since="1h", as_of="2000-01-01").empty
    assert list(client.labels(arm="stable", since="1h")["request_id"]) == ["r4"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"since": "last tuesday"}, "since"),
        ({"until": "soon"}, "until"),
        ({"limit": 0}, "limit"),
        ({"version": 0}, "version"),
        ({"since": "1h", "until": "2h"}, "since"),
        ({"columns": ["nope"], "since": "1h"}, "columns"),
    ],
)
def test_sdk_bad_filters_name_the_field_on_both_transports(
    client: Client, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        client.predictions(**kwargs)
    assert caught.value.field == field


def test_sdk_json_page_is_capped(client: Client) -> None:
    page = client.prediction_page("churn", since="1h", limit=2)
    assert page.truncated and [r["request_id"] for r in page.rows] == ["r4", "r5"]
    with pytest.raises(InvalidInput) as caught:
        client.prediction_page(limit=10_001)
    assert caught.value.field == "limit"


# ---- REST --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "nope"}, "since"),
        ({"limit": 20_000}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"as_of": "nope"}, "as_of"),
        ({"format": "csv"}, "format"),
        ({"bogus": 1, "version": 0}, "version"),
    ],
)
def test_rest_4xx_names_the_field(env: Env, params: dict[str, Any], field: str) -> None:
    route = "/v1/feedback" if "as_of" in params else "/v1/predictions"
    response = httpx.get(env.url + route, params=params, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


def test_rest_arrow_and_json(env: Env) -> None:
    import pyarrow as pa

    params = {"model": "churn", "since": "1h", "format": "arrow"}
    arrow = httpx.get(env.url + "/v1/predictions", params=params, timeout=30)
    assert arrow.status_code == 200
    assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 6
    page = httpx.get(env.url + "/v1/feedback", params={"since": "1h"}, timeout=30).json()
    assert page["truncated"] is False and len(page["rows"]) == 3


# ---- CLI ---------------------------------------------------------------------------------
@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_cli_predictions_and_labels(env: Env, server: bool) -> None:
    listed = env.cli(
        "predictions", "list", "--arm", "stable", "--since", "1h", "--json", server=server
    )
    assert listed.exit_code == 0, listed.output
    assert [r["request_id"] for r in json.loads(listed.stdout)["rows"]] == ["r5", "r4", "r3", "r2"]
    labels = env.cli("predictions", "labels", "--since", "1h", "--json", server=server)
    assert labels.exit_code == 0, labels.output
    assert [r["request_id"] for r in json.loads(labels.stdout)["rows"]] == ["r4", "r1", "r0"]
    table = env.cli("predictions", "list", "--since", "1h", "--limit", "1", server=server)
    assert table.exit_code == 0 and "r5" in table.stdout and "older rows left out" in table.stdout


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["predictions", "list", "--since", "last tuesday"], "since"),
        (["predictions", "list", "--limit", "0"], "--limit"),
        (["predictions", "labels", "--as-of", "nope"], "as_of"),
        (["tokens", "create", "nobody", "--expires-in-days", "0"], "expires_in_days"),
        (["audit", "--since", "soon"], "since"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_option(
    env: Env, server: bool, args: list[str], named: str
) -> None:
    result = env.cli(*args, server=server)
    assert result.exit_code == 2, result.output
    assert named in result.output


@pytest.mark.parametrize("server", [False, True], ids=["embedded", "server"])
def test_cli_users_tokens_audit(env: Env, server: bool) -> None:
    name = "srv" if server else "emb"
    made = env.cli(
        "users", "create", name, "--role", "editor", "--team", "growth", "--json", server=server
    )
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["role"] == "editor"
    token = env.cli("tokens", "create", name, "--name", "ci", "--json", server=server)
    assert token.exit_code == 0, token.output
    token_id = json.loads(token.stdout)["id"]
    listed = env.cli("tokens", "list", "--user", name, "--json", server=server)
    assert [t["id"] for t in json.loads(listed.stdout)] == [token_id]
    revoked = env.cli("tokens", "revoke", token_id, "--json", server=server)
    assert json.loads(revoked.stdout)["revoked_at_ms"] is not None
    disabled = env.cli("users", "disable", name, "--json", server=server)
    assert json.loads(disabled.stdout)["is_active"] is False
    users = env.cli("users", "list", "--json", server=server)
    assert name in [u["name"] for u in json.loads(users.stdout)]
    audit = env.cli("audit", "--since", "1h", "--action", "token", "--json", server=server)
    assert audit.exit_code == 0, audit.output
    assert any(e["target"] and token_id in e["target"] for e in json.loads(audit.stdout))


def test_cli_cache_over_the_sdk_names_server_when_nothing_listens(tmp_path: Path) -> None:
    # embedded, no Redis, no server at KEEL_HOST:KEEL_PORT: a clear error, no traceback
    env = {"KEEL_HOME": str(tmp_path), "KEEL_PORT": "9", "KEEL_REDIS_URL": None}
    result = runner.invoke(app, ["cache", "invalidate", "churn"], env=env)
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "--server" in result.output
