"""The ``keel`` command on a temporary KEEL_HOME, seeded through the SDK."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner, Result

import keel
from keel.cli.main import app
from keel.config import Settings
from keel.services import Services
from keel.store.sql.migrate import head_revision

runner = CliRunner()


def cli(home: Path, *args: str) -> Result:
    """Run ``keel *args`` against ``home`` (other KEEL_* settings cleared)."""
    env = {"KEEL_HOME": str(home), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    return runner.invoke(app, list(args), env=env)


def ok_json(home: Path, *args: str) -> Any:
    result = cli(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_clean_failure(result: Result, exit_code: int) -> str:
    """A KeelError exit: the code, one "error:" line on stderr, no traceback."""
    assert result.exit_code == exit_code, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    return result.stderr


@dataclass
class Seeded:
    run_ids: dict[str, str]  # run name -> id


def seed_runs(home: Path) -> Seeded:
    """Experiment "churn" with runs r0, r1, r2 (auc 0.4, 0.7, 0.9)."""
    run_ids = {}
    with keel.Client(settings=Settings(home=home)) as client:
        for i, auc in enumerate([0.4, 0.7, 0.9]):
            params = {"model": "lr", "C": i}
            with client.start_run("churn", f"r{i}", params=params, capture_env=False) as run:
                run.log_metrics({"auc": auc})
                run_ids[f"r{i}"] = run.id
    return Seeded(run_ids)


def seed_model(home: Path) -> str:
    """Register version 1 of "churn-model" from a run that read dataset "train"; returns its run."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    with keel.Client(settings=Settings(home=home)) as client:
        with client.start_run("churn", "trained", capture_env=False) as run:
            run.log_input(X.assign(target=y), name="train")
            model = LogisticRegression(max_iter=300).fit(X, y)
            run.log_model(model, registered_name="churn-model", input_example=X.iloc[:5])
    return run.id


# ---- experiments and runs -------------------------------------------------------------------


def test_experiments_list_json_names_experiments(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    assert [e["name"] for e in ok_json(tmp_path, "experiments", "list")] == ["churn"]


def test_runs_list_json_lists_runs_of_experiment(tmp_path: Path) -> None:
    seeded = seed_runs(tmp_path)
    runs = ok_json(tmp_path, "runs", "list", "churn")
    assert {r["id"] for r in runs} == set(seeded.run_ids.values())
    assert all(r["status"] == "FINISHED" for r in runs)


def test_runs_search_filters_and_orders(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    args = ["runs", "search", "-e", "churn", "-f", "metrics.auc > 0.5", "-o", "metrics.auc DESC"]
    runs = ok_json(tmp_path, *args)
    assert [(r["name"], r["metrics"]["auc"]) for r in runs] == [("r2", 0.9), ("r1", 0.7)]


def test_runs_show_prints_params_and_metrics(tmp_path: Path) -> None:
    run_id = seed_runs(tmp_path).run_ids["r1"]
    result = cli(tmp_path, "runs", "show", run_id)
    assert result.exit_code == 0, result.output
    assert run_id in result.stdout and "FINISHED" in result.stdout
    assert "auc" in result.stdout and "0.7" in result.stdout and "model" in result.stdout


def test_runs_show_json_matches_run_and_uses_schema_key(tmp_path: Path) -> None:
    run_id = seed_model(tmp_path)
    shown = ok_json(tmp_path, "runs", "show", run_id)
    assert shown["id"] == run_id and shown["reproducibility"]["reproducible"] is False
    listed = next(r for r in ok_json(tmp_path, "runs", "list", "churn") if r["id"] == run_id)
    assert shown["inputs"] == listed["inputs"]  # same field names ("schema") in both
    assert "schema" in shown["inputs"][0]


def test_runs_show_reports_the_run_duration(tmp_path: Path) -> None:
    run_id = seed_runs(tmp_path).run_ids["r0"]
    shown = ok_json(tmp_path, "runs", "show", run_id)
    assert shown["duration_ms"] == shown["end_time_ms"] - shown["start_time_ms"] >= 0
    assert (
        f"took {shown['duration_ms'] / 1000:.3f} s" in cli(tmp_path, "runs", "show", run_id).stdout
    )


def test_runs_show_with_markup_characters_prints_them(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    for run_id in ["[/x]", "[bold]abc"]:
        stderr = assert_clean_failure(cli(tmp_path, "runs", "show", run_id), 1)
        assert f"run '{run_id}' not found" in stderr


# ---- models ---------------------------------------------------------------------------------


def test_models_list_shows_model(tmp_path: Path) -> None:
    seed_model(tmp_path)
    result = cli(tmp_path, "models", "list")
    assert result.exit_code == 0 and "churn-model" in result.stdout
    [model] = ok_json(tmp_path, "models", "list")
    assert (model["name"], model["latest_version"]) == ("churn-model", 1)


def test_models_show_lists_versions(tmp_path: Path) -> None:
    run_id = seed_model(tmp_path)
    assert "sklearn" in cli(tmp_path, "models", "show", "churn-model").stdout
    shown = ok_json(tmp_path, "models", "show", "churn-model")
    assert shown["model"]["name"] == "churn-model"
    assert [(v["version"], v["run_id"]) for v in shown["versions"]] == [(1, run_id)]


def test_models_alias_then_history_records_move(tmp_path: Path) -> None:
    seed_model(tmp_path)
    moved = cli(tmp_path, "models", "alias", "churn-model", "champion", "1", "--reason", "best")
    assert moved.exit_code == 0 and "champion" in moved.stdout
    [event] = ok_json(tmp_path, "models", "history", "churn-model")
    assert (event["alias"], event["from_version"], event["to_version"]) == ("champion", None, 1)
    assert event["reason"] == "best"


def test_models_lineage_resolves_alias(tmp_path: Path) -> None:
    run_id = seed_model(tmp_path)
    assert cli(tmp_path, "models", "alias", "churn-model", "champion", "1").exit_code == 0
    lineage = ok_json(tmp_path, "models", "lineage", "models:/churn-model@champion")
    assert (lineage["model"], lineage["version"]) == ("churn-model", 1)
    assert lineage["run"]["id"] == run_id
    assert [d["name"] for d in lineage["datasets"]] == ["train"]


def test_models_alias_invalid_alias_exits_2(tmp_path: Path) -> None:
    seed_model(tmp_path)
    stderr = assert_clean_failure(cli(tmp_path, "models", "alias", "churn-model", "1bad", "1"), 2)
    assert "1bad" in stderr and "alias" in stderr


def test_models_deprecate_then_archive_change_the_version_status(tmp_path: Path) -> None:
    seed_model(tmp_path)
    assert ok_json(tmp_path, "models", "deprecate", "churn-model", "1")["status"] == "DEPRECATED"
    assert cli(tmp_path, "models", "alias", "churn-model", "champion", "1").exit_code == 0
    assert "ARCHIVED" in cli(tmp_path, "models", "archive", "churn-model", "1").stdout
    shown = ok_json(tmp_path, "models", "show", "churn-model")
    assert [v["status"] for v in shown["versions"]] == ["ARCHIVED"]
    stderr = assert_clean_failure(cli(tmp_path, "models", "deprecate", "churn-model", "7"), 1)
    assert "7" in stderr


# ---- datasets -------------------------------------------------------------------------------


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    pd.DataFrame({"tenure": [1, 5, 9], "churned": [True, False, False]}).to_csv(path, index=False)
    return path


def test_datasets_add_then_list(tmp_path: Path) -> None:
    added = ok_json(tmp_path, "datasets", "add", "telco", str(_csv(tmp_path)))
    assert (added["name"], added["version"], added["row_count"]) == ("telco", 1, 3)
    [listed] = ok_json(tmp_path, "datasets", "list")
    assert listed["content_hash"] == added["content_hash"]


def test_datasets_show_prints_schema(tmp_path: Path) -> None:
    cli(tmp_path, "datasets", "add", "telco", str(_csv(tmp_path)))
    shown = ok_json(tmp_path, "datasets", "show", "telco")
    assert [c["name"] for c in shown["schema"]] == ["tenure", "churned"]
    assert "tenure" in cli(tmp_path, "datasets", "show", "telco", "--version", "1").stdout


def test_datasets_get_writes_the_stored_bytes(tmp_path: Path) -> None:
    source = _csv(tmp_path)
    cli(tmp_path, "datasets", "add", "telco", str(source))
    target = tmp_path / "out.csv"
    result = cli(tmp_path, "datasets", "get", "telco", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == source.read_bytes()


# ---- system ---------------------------------------------------------------------------------


def test_db_upgrade_then_current_is_head(tmp_path: Path) -> None:
    upgraded = ok_json(tmp_path, "db", "upgrade")
    assert upgraded["revision"] == head_revision()
    assert str(tmp_path) in upgraded["database"]
    assert ok_json(tmp_path, "db", "current") == {
        "current": head_revision(),
        "head": head_revision(),
    }


def test_version_prints_package_version(tmp_path: Path) -> None:
    result = cli(tmp_path, "version")
    assert result.exit_code == 0 and result.stdout.strip() == keel.__version__


# ---- bad input ------------------------------------------------------------------------------


def test_runs_search_invalid_filter_exits_2(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    result = cli(tmp_path, "runs", "search", "-e", "churn", "-f", "metrics.auc >> 0.5")
    stderr = assert_clean_failure(result, 2)
    assert "filter" in stderr and "position" in stderr


def test_runs_show_unknown_run_exits_1_naming_it(tmp_path: Path) -> None:
    seed_runs(tmp_path)
    stderr = assert_clean_failure(cli(tmp_path, "runs", "show", "no-such-run"), 1)
    assert "no-such-run" in stderr


# ---- --server ------------------------------------------------------------------------------


def test_cli_server_option_reads_from_live_server(
    live_server: str, services: Services, tmp_path: Path
) -> None:
    run = services.tracking.create_run("remote-exp", name="over-http")
    result = cli(
        tmp_path / "unused", "runs", "list", "remote-exp", "--server", live_server, "--json"
    )
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(result.stdout)] == [run.id]


# ---- help text (docs) -----------------------------------------------------------------------


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths += _command_paths(sub, (*path, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_command_walk_finds_every_group() -> None:
    assert {p[0] for p in COMMANDS if p} >= {"datasets", "db", "experiments", "models", "runs"}
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "keel")
def test_help_has_example(path: tuple[str, ...], tmp_path: Path) -> None:
    result = cli(tmp_path, *path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
