"""``keel jobs`` and ``keel monitor schedule`` through the real command table, embedded and
with ``--server``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.automation.conftest import drain
from typer.testing import CliRunner

from keel.cli.main import app
from keel.services import Services

runner = CliRunner()


@pytest.fixture
def env(services: Services) -> dict[str, str]:
    settings = services.settings
    values = {"KEEL_HOME": str(settings.home)}
    if settings.database_url:
        values["KEEL_DATABASE_URL"] = settings.database_url
    return values


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("remote", [False, True])
def test_jobs_list_show_cancel(
    services: Services, env: dict[str, str], tmp_path: Path, remote: bool, request
) -> None:
    server = ["--server", request.getfixturevalue("live_server")] if remote else []
    done = services.jobs.enqueue("test.count", {"path": str(tmp_path / "out")})
    drain(services.jobs)
    waiting = services.jobs.enqueue("test.count", {"path": "x"}, delay_s=3600)
    listed = runner.invoke(app, ["jobs", "list", "--json", *server], env=env)
    assert listed.exit_code == 0, listed.output
    assert [j["id"] for j in json.loads(listed.stdout)] == [waiting.id, done.id]
    shown = runner.invoke(app, ["jobs", "show", done.id, "--json", *server], env=env)
    body = json.loads(shown.stdout)
    assert body["status"] == "succeeded" and body["logs"][-1]["message"] == "succeeded"
    human = runner.invoke(app, ["jobs", "show", done.id, *server], env=env)
    assert "status: succeeded" in human.stdout
    cancelled = runner.invoke(app, ["jobs", "cancel", waiting.id, *server], env=env)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    again = runner.invoke(app, ["jobs", "cancel", waiting.id, *server], env=env)
    assert again.exit_code == 1 and "already cancelled" in again.output
    missing = runner.invoke(app, ["jobs", "show", "nope", *server], env=env)
    assert missing.exit_code == 1 and "not found" in missing.output
    bad = runner.invoke(app, ["jobs", "list", "--status", "sleeping", *server], env=env)
    assert bad.exit_code == 2 and "status" in bad.output


@pytest.mark.parametrize("backend", ["sqlite"])
def test_monitor_schedule_bad_input_exits_2(env: dict[str, str]) -> None:
    bad_cron = runner.invoke(app, ["monitor", "schedule", "m", "--cron", "0 25 * * *"], env=env)
    assert bad_cron.exit_code == 2 and "hour '25'" in bad_cron.output
    both = runner.invoke(app, ["monitor", "schedule", "m", "--off", "--cron", "@daily"], env=env)
    assert both.exit_code == 2 and "--cron" in both.output
    # no --cron means the monitor's default cadence (test_monitor_cadence.py): needs the monitor
    neither = runner.invoke(app, ["monitor", "schedule", "m"], env=env)
    assert neither.exit_code == 1 and "monitor 'm' not found" in neither.output
    unknown = runner.invoke(app, ["monitor", "schedule", "m", "--cron", "@daily"], env=env)
    assert unknown.exit_code == 1 and "monitor 'm' not found" in unknown.output
    listed = runner.invoke(app, ["jobs", "schedules", "--json"], env=env)
    assert listed.exit_code == 0 and json.loads(listed.stdout) == []
