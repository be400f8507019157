"""``keel monitor create|list|run|runs|report|feedback|delete`` on an embedded home."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.monitoring.conftest import serve_rows
from typer.testing import CliRunner, Result

from keel.cli.main import app
from keel.config import Settings
from keel.demo.data import TARGET
from keel.services import Services, open_services
from keel.serving.predlog import log_root

runner = CliRunner()


def cli(home: Path, *args: str) -> Result:
    env = {"KEEL_HOME": str(home), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    return runner.invoke(app, list(args), env=env)


@pytest.fixture
def services(tmp_path: Path) -> Any:
    """An embedded SQLite home (the CLI reads KEEL_HOME)."""
    opened = open_services(Settings(home=tmp_path / "home"))
    yield opened
    opened.close()


def test_monitor_lifecycle_from_the_command_line(
    services: Services, churn: tuple[pd.DataFrame, pd.DataFrame], churn_model: Any, tmp_path: Path
) -> None:
    home = services.settings.home
    rows = churn[1].head(300)
    ids = serve_rows(churn_model, rows, log_root(services.settings))
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": ids, "label": rows[TARGET].to_numpy()}).to_csv(labels, index=False)

    uploaded = cli(home, "monitor", "feedback", str(labels), "--json")
    assert uploaded.exit_code == 0, uploaded.output
    assert json.loads(uploaded.stdout) == {"accepted": 300, "duplicates": 0, "unknown": 0}

    spec = tmp_path / "monitor.yaml"
    spec.write_text("task: classification\nlabel_column: churn\nwindow: 6h\n")
    created = cli(home, "monitor", "create", "churn-6h", "--model", "churn", "-f", str(spec))
    assert created.exit_code == 0, created.output
    listed = json.loads(cli(home, "monitor", "list", "--json").stdout)
    assert [(m["name"], m["window"], m["task"]) for m in listed] == [
        ("churn-6h", "6h", "classification")
    ]

    ran = cli(home, "monitor", "run", "churn-6h")
    assert ran.exit_code == 0, ran.output
    assert "ok churn-6h" in ran.stdout and "300 predictions, 300 labelled" in ran.stdout
    runs = json.loads(cli(home, "monitor", "runs", "churn-6h", "--json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "ok"

    diagnosed = cli(home, "monitor", "diagnose", "churn-6h", "--json")
    assert diagnosed.exit_code == 0, diagnosed.output
    assert json.loads(diagnosed.stdout)["verdict"] == "no clear cause"

    out = tmp_path / "report.html"
    written = cli(home, "monitor", "report", "churn-6h", "-o", str(out))
    assert written.exit_code == 0, written.output
    assert "<svg" in out.read_text() and "churn-6h" in out.read_text()

    assert cli(home, "monitor", "delete", "churn-6h").exit_code == 0
    assert json.loads(cli(home, "monitor", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "m"], "--model: required"),
        (["create", "m", "--model", "churn", "--window", "7 days"], "window:"),
        (["create", "m", "--model", "churn", "--sampling-rate", "2"], "sampling_rate:"),
        (["create", "m", "--model", "churn", "-f", "/nope.yaml"], "--file: no such file"),
        (["run", "missing"], "monitor 'missing' not found"),
        (["report", "missing"], "monitor 'missing' not found"),
        (["feedback", "/nope.csv"], "path: no such file"),
    ],
)
def test_bad_input_exits_2_or_1_with_a_message(
    services: Services, churn_model: Any, args: list[str], message: str
) -> None:
    result = cli(services.settings.home, "monitor", *args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_create_over_an_existing_monitor_says_replaced_and_what_changed(
    services: Services, churn_model: Any, tmp_path: Path
) -> None:
    """#15.24: README's second `monitor create churn-weekly` silently dropped task/label."""
    home = services.settings.home
    spec = tmp_path / "monitor.yaml"
    spec.write_text("task: classification\nlabel_column: churn\n")
    first = cli(home, "monitor", "create", "churn-weekly", "--model", "churn", "-f", str(spec))
    assert first.exit_code == 0, first.output
    assert "replaced" not in first.stdout

    again = cli(home, "monitor", "create", "churn-weekly", "--model", "churn", "--window", "7d")
    assert again.exit_code == 0, again.output
    assert "replaced monitor churn-weekly" in again.stdout
    assert "changed: label_column, task" in again.stdout
