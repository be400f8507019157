"""The feature store over HTTP (a real server) and through the ``keel features`` CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.conftest import serve_in_thread
from tests.features.conftest import Seed, usage_frame
from typer.testing import CliRunner, Result

from keel.api import create_app
from keel.cli.main import app
from keel.config import Settings
from keel.features import FeatureStore
from keel.services import Services, open_services

runner = CliRunner()


@pytest.fixture
def api(services: Services, seed: Seed, live_server: str) -> Iterator[httpx.Client]:
    services.features.apply(seed.defs)
    services.features.materialize("2026-01-01", "2026-01-06")
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def lite_api(sqlite_settings: Settings, seed: Seed) -> Iterator[httpx.Client]:
    """The API over SQLite only: for request validation that does not touch the database."""
    services = open_services(sqlite_settings)
    services.features.apply(seed.defs)
    with serve_in_thread(create_app(services=services)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    services.close()


def _row(customer: int, at: str) -> dict[str, Any]:
    return {
        "customer_id": customer,
        "event_timestamp": at,
        "calls_last_30d": 2.5,
        "data_usage_gb_last_30d": 1.0,
        "support_tickets_last_30d": 0,
        "login_count_last_7d": 3,
        "features_used_count": 4,
    }


def test_api_push_then_online(api: httpx.Client) -> None:
    now = pd.Timestamp.now(tz="UTC").isoformat()
    pushed = api.post("/v1/features/push", json={"view": "customer_usage", "rows": [_row(4, now)]})
    assert pushed.status_code == 200, pushed.text
    assert pushed.json() == {"view": "customer_usage", "rows": 1}
    response = api.post(
        "/v1/features/online",
        json={"entity_rows": [{"customer_id": 4}], "features": ["customer_usage:calls_last_30d"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"] == [{"customer_id": 4, "calls_last_30d": 2.5}]


def test_api_unknown_features_404_names_them(lite_api: httpx.Client) -> None:
    response = lite_api.post(
        "/v1/features/online",
        json={"entity_rows": [{"customer_id": 1}], "features": ["customer_usage:nope", "x:y"]},
    )
    assert response.status_code == 404
    body = response.json()["error"]
    assert body["detail"]["unknown"] == ["customer_usage:nope", "x:y"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        (
            "/v1/features/online",
            {"entity_rows": [{"id": 1}], "features": "churn_v1"},
            422,
            "entity_rows[0].customer_id",
        ),
        ("/v1/features/online", {"entity_rows": [], "features": "churn_v1"}, 422, "entity_rows"),
        (
            "/v1/features/push",
            {
                "view": "customer_usage",
                "rows": [{**_row(1, "2026-01-01T00:00:00"), "event_timestamp": None}],
            },
            422,
            "event_timestamp",
        ),
        (
            "/v1/features/push",
            {
                "view": "customer_usage",
                "rows": [_row(1, "2026-01-01T00:00:00"), _row(2, "2026-01-01T00:00:00+02:00")],
            },
            422,
            "event_timestamp",
        ),
        ("/v1/features/push", {"view": "ghost", "rows": [_row(1, "2026-01-01")]}, 404, "view"),
        ("/v1/features/skew", {"offline": [{"x": 1}]}, 422, "served"),
    ],
    ids=["no-key", "no-rows", "null-time", "mixed-tz", "unknown-view", "no-served"],
)
def test_api_bad_input_is_4xx(
    lite_api: httpx.Client, path: str, body: dict[str, Any], status: int, field: str
) -> None:
    response = lite_api.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


def test_api_freshness_and_definitions(api: httpx.Client) -> None:
    fresh = api.get("/v1/features/freshness").json()
    assert {f["view"] for f in fresh} == {"customer_account", "customer_usage"}
    assert all(f["rows_written"] == 50 for f in fresh)
    defs = api.get("/v1/features/definitions", params={"kind": "feature_service"}).json()
    assert [d["name"] for d in defs] == ["churn_v1"]
    assert api.get("/v1/features/definitions/customer_usage").json()[0]["version"] == 1
    assert api.get("/v1/features/deprecated").json() == []


def test_api_skew_report(lite_api: httpx.Client) -> None:
    offline = usage_frame(100, 2, seed=1)[["calls_last_30d"]]
    served = offline.assign(calls_last_30d=offline.calls_last_30d * 2)
    response = lite_api.post(
        "/v1/features/skew",
        json={"offline": offline.to_dict("records"), "served": served.to_dict("records")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["skewed"] == ["calls_last_30d"]


# ---- CLI ---------------------------------------------------------------------------------
def cli(home: Path, *args: str) -> Result:
    env = {"KEEL_HOME": str(home), "KEEL_DATABASE_URL": None, "KEEL_REDIS_URL": None}
    return runner.invoke(app, ["features", *args], env=env)


def test_cli_plan_apply_list_show(tmp_path: Path, seed: Seed) -> None:
    home = tmp_path / "home"
    planned = cli(home, "plan", "-f", str(seed.defs))
    assert planned.exit_code == 0, planned.output
    assert "+ feature_view customer_usage v1" in planned.stdout
    assert "4 change(s) to apply" in planned.stdout
    applied = cli(home, "apply", "-f", str(seed.defs), "--json")
    assert [i["action"] for i in json.loads(applied.stdout)["items"]] == ["add"] * 4
    listed = json.loads(cli(home, "list", "--json").stdout)
    assert {d["name"] for d in listed} == {
        "customer",
        "customer_account",
        "customer_usage",
        "churn_v1",
    }
    shown = json.loads(cli(home, "show", "customer_account", "--json").stdout)
    assert shown["dependent_models"] == ["churn"] and shown["versions"] == [1]


def test_cli_materialize_get_freshness(tmp_path: Path, seed: Seed) -> None:
    home = tmp_path / "home"
    cli(home, "apply", "-f", str(seed.defs))
    done = cli(home, "materialize", "2026-01-06T00:00:00", "--start", "2026-01-01")
    assert done.exit_code == 0, done.output
    assert "customer_usage" in done.stdout
    again = json.loads(cli(home, "materialize", "2026-01-06T01:00:00", "--json").stdout)
    assert again == {"customer_account": 0, "customer_usage": 0}  # incremental: nothing new
    got = cli(home, "get", "customer_usage:login_count_last_7d", "customer_id=3", "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)[0]["customer_id"] == 3
    fresh = json.loads(cli(home, "freshness", "--json").stdout)
    assert {f["view"]: f["rows_written"] for f in fresh} == {
        "customer_account": 50,
        "customer_usage": 50,
    }
    assert json.loads(cli(home, "deprecated", "--json").stdout) == []


def test_cli_skew_exit_codes(tmp_path: Path) -> None:
    offline = usage_frame(100, 2, seed=1)
    offline.to_parquet(tmp_path / "train.parquet")
    usage_frame(100, 2, seed=2).to_parquet(tmp_path / "same.parquet")
    offline.assign(calls_last_30d=offline.calls_last_30d + 50).to_parquet(tmp_path / "bad.parquet")
    base = ["skew", "--offline", str(tmp_path / "train.parquet"), "--served"]
    assert cli(tmp_path, *base, str(tmp_path / "same.parquet")).exit_code == 0
    skewed = cli(tmp_path, *base, str(tmp_path / "bad.parquet"), "--json")
    assert skewed.exit_code == 1
    assert json.loads(skewed.stdout)["skewed"] == ["calls_last_30d"]


@pytest.mark.parametrize(
    "args",
    [
        ("apply", "-f", "{bad_yaml}"),
        ("plan", "-f", "{missing}"),
        ("get", "churn_v1", "customer_id"),
        ("skew", "--offline", "{missing}", "--served", "{missing}"),
    ],
    ids=["invalid-yaml", "missing-file", "bad-entity", "unreadable-frames"],
)
def test_cli_bad_input_exits_2(tmp_path: Path, seed: Seed, args: tuple[str, ...]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("feature_views:\n  - name: v\n    ttl: soon\n")
    filled = [a.format(bad_yaml=bad, missing=tmp_path / "nope.yaml") for a in args]
    result = cli(tmp_path / "home", *filled)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_cli_invalid_yaml_names_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("feature_views:\n  - name: v\n    entities: [c]\n    ttl: soon\n")
    result = cli(tmp_path / "home", "apply", "-f", str(bad))
    assert "feature_views[0]" in result.stderr


def test_cli_help_has_examples() -> None:
    for command in (
        "apply",
        "plan",
        "list",
        "show",
        "materialize",
        "get",
        "skew",
        "freshness",
        "deprecated",
    ):
        result = runner.invoke(app, ["features", command, "--help"])
        assert result.exit_code == 0 and "Example: keel features" in result.stdout, command


def test_feature_store_from_services_shares_callbacks(services: Services) -> None:
    calls: list[str] = []
    services.features.add_invalidation_callback(lambda view, keys: calls.append(view))
    assert FeatureStore(services)._callbacks is services.features._callbacks


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    sink = io.BytesIO()
    frame.to_parquet(sink)
    return sink.getvalue()


def test_api_historical_parquet_in_parquet_out(lite_api: httpx.Client) -> None:
    import io

    entity = pd.DataFrame(
        {
            "customer_id": [1, 1],
            "event_timestamp": pd.to_datetime(["2026-01-02", "2025-12-01"], utc=True),
        }
    )
    response = lite_api.post(
        "/v1/features/historical",
        params={"features": ["customer_account:tenure_days", "customer_account:plan_type"]},
        content=_parquet(entity),
        headers={"content-type": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    result = pd.read_parquet(io.BytesIO(response.content))
    assert list(result.columns) == ["tenure_days", "plan_type"]  # feature columns only
    assert result["tenure_days"].notna().tolist() == [True, False]  # nothing before the data


@pytest.mark.parametrize(
    ("params", "body", "field", "message"),
    [
        ({"features": ["customer_account:tenure_days"]}, b"", "body", "no entity rows"),
        ({"features": ["customer_account:tenure_days"]}, b"PAR1 junk", "body", "not a valid"),
        ({}, b"x", "features", "no features requested"),
        ({"features": ["a:b"], "service": "churn_v1"}, b"x", "features", "not both"),
        ({"service": "churn_v1", "engine": "spark"}, b"x", "engine", "unknown retrieval engine"),
    ],
)
def test_api_historical_bad_requests_are_named(
    lite_api: httpx.Client, params: dict[str, Any], body: bytes, field: str, message: str
) -> None:
    response = lite_api.post(
        "/v1/features/historical",
        params=params,
        content=body,
        headers={"content-type": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field and message in error["message"]


def test_api_apply_plan_and_materialize(lite_api: httpx.Client) -> None:
    listed = lite_api.get("/v1/features/definitions", params={"kind": "feature_view"}).json()
    definitions = {
        "entities": [{"name": "customer", "join_keys": ["customer_id"]}],
        "feature_views": [listed[0]["spec"]],
    }
    planned = lite_api.post(
        "/v1/features/apply", json={"definitions": definitions, "dry_run": True}
    )
    assert planned.status_code == 200, planned.text
    removed = {i["name"] for i in planned.json()["items"] if i["action"] == "remove"}
    assert removed == {"churn_v1", listed[1]["name"]}  # prune: the rest would go
    # dry_run changed nothing
    assert len(lite_api.get("/v1/features/definitions").json()) == 4
    written = lite_api.post(
        "/v1/features/materialize",
        json={"start": "2026-01-01", "end": "2026-01-06", "views": ["customer_account"]},
    )
    assert written.status_code == 200, written.text
    assert written.json() == {"written": {"customer_account": 50}}
    bad = lite_api.post("/v1/features/materialize", json={"end": "yesterday-ish"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "end"
