"""``keel features`` over ``--server`` (#15.26): the same commands, the same answers,
embedded and against a real uvicorn server on the same home."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import serve_in_thread
from tests.features.conftest import Seed, usage_frame
from typer.testing import CliRunner, Result

from keel.api import create_app
from keel.cli.main import app
from keel.config import Settings
from keel.services import open_services

runner = CliRunner()


@pytest.fixture(params=["embedded", "server"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    home = tmp_path / "home"
    env = {"KEEL_HOME": str(home), "KEEL_DATABASE_URL": None, "KEEL_REDIS_URL": None}

    def run(extra: list[str]) -> object:
        def invoke(*args: str) -> Result:
            return runner.invoke(app, ["features", *args, *extra], env=env)

        return invoke

    if request.param == "embedded":
        yield run([])
        return
    services = open_services(Settings(home=home))
    with serve_in_thread(create_app(services=services)) as url:
        yield run(["--server", url])
    services.close()


def test_every_features_command_runs_over_the_sdk(cli: object, seed: Seed, tmp_path: Path) -> None:
    invoke = cli  # a (*args) -> Result callable
    applied = invoke("apply", "-f", str(seed.defs), "--json")  # type: ignore[operator]
    assert applied.exit_code == 0, applied.output
    assert [i["action"] for i in json.loads(applied.stdout)["items"]] == ["add"] * 4
    planned = invoke("plan", "-f", str(seed.defs))  # type: ignore[operator]
    assert "0 change(s) to apply" in planned.stdout
    listed = json.loads(invoke("list", "--kind", "feature_view", "--json").stdout)  # type: ignore[operator]
    assert {d["name"] for d in listed} == {"customer_account", "customer_usage"}
    shown = json.loads(invoke("show", "customer_account", "--json").stdout)  # type: ignore[operator]
    assert shown["dependent_models"] == ["churn"] and shown["versions"] == [1]
    assert shown["freshness"]["view"] == "customer_account"
    done = invoke("materialize", "2026-01-06T00:00:00", "--start", "2026-01-01", "--json")  # type: ignore[operator]
    assert json.loads(done.stdout) == {"customer_account": 50, "customer_usage": 50}
    got = invoke("get", "customer_usage:login_count_last_7d", "customer_id=3", "--json")  # type: ignore[operator]
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)[0]["customer_id"] == 3
    fresh = json.loads(invoke("freshness", "--json").stdout)  # type: ignore[operator]
    assert {f["view"] for f in fresh} == {"customer_account", "customer_usage"}
    assert json.loads(invoke("deprecated", "--days", "30", "--json").stdout) == []  # type: ignore[operator]
    offline = usage_frame(60, 2, seed=1)
    offline.to_parquet(tmp_path / "train.parquet")
    skewed_frame = offline.assign(calls_last_30d=offline.calls_last_30d + 50)
    skewed_frame.to_parquet(tmp_path / "bad.parquet")
    base = ["skew", "--offline", str(tmp_path / "train.parquet"), "--served"]
    skewed = invoke(*base, str(tmp_path / "bad.parquet"), "--json")  # type: ignore[operator]
    assert skewed.exit_code == 1, skewed.output
    assert json.loads(skewed.stdout)["skewed"] == ["calls_last_30d"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("show", "nope"), "nope"),
        (("deprecated", "--days", "0"), "--days"),
        (("get", "churn_v1", "customer_id"), "entity"),
        (("skew", "--offline", "x.parquet"), "served"),
    ],
)
def test_bad_input_names_the_option(cli: object, args: tuple[str, ...], named: str) -> None:
    result = cli(*args)  # type: ignore[operator]
    assert result.exit_code in (1, 2), result.output  # 1: not found, 2: bad input
    assert named in result.output and "Traceback" not in result.output
