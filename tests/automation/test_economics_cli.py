"""``keel economics interval`` through Typer's CliRunner on the sub-app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner, Result

from keel.cli.economics import economics_app

runner = CliRunner()
FRAUD = [
    "--retrain-cost", "5000",
    "--queries-per-day", "1000000",
    "--value-per-point", "0.5",
    "--a0", "0.95",
    "--decay", "0.02",
]  # fmt: skip


def economics(*args: str) -> Result:
    return runner.invoke(economics_app, list(args))


def test_economics_interval_json_reproduces_the_fraud_reference() -> None:
    result = economics("interval", *FRAUD, "--manual-deploy-days", "7", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert {
        "t_star_days",
        "t_star_sqrt_law_days",
        "half_life_days",
        "daily_cost_at_t_star",
        "staleness_cost_at_t_star",
        "sensitivity",
        "automate",
        "manual_deploy_days",
        "assumptions",
        "inputs",
    } <= set(body)
    assert round(body["t_star_days"], 2) == round(body["t_star_sqrt_law_days"], 2) == 1.03
    assert body["half_life_days"] == pytest.approx(34.657, abs=1e-3)
    assert body["automate"] is True
    assert {row["parameter"] for row in body["sensitivity"]} == {
        "retrain_cost", "queries_per_day", "value_per_point", "a0", "decay_per_day"
    }  # fmt: skip
    assert all(isinstance(note, str) for note in body["assumptions"])


def test_economics_interval_without_manual_time_leaves_automate_null() -> None:
    body = json.loads(economics("interval", *FRAUD, "--json").stdout)
    assert body["automate"] is None and body["manual_deploy_days"] is None


def test_economics_interval_no_finite_optimum_is_null_not_infinity() -> None:
    args = ["--retrain-cost", "1000000", "--queries-per-day", "100", "--value-per-point", "0.5"]
    result = economics("interval", *args, "--a0", "0.9", "--decay", "0.5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["t_star_days"] is None


def test_economics_interval_table_shows_results_and_assumptions() -> None:
    result = economics("interval", *FRAUD, "--manual-deploy-days", "7")
    assert result.exit_code == 0, result.output
    for text in ("1.033", "1.026", "34.66", "sensitivity of T*", "Assumptions", "automate"):
        assert text in result.stdout
    assert "concept drift" in result.stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--retrain-cost", "-5000"),
        ("--queries-per-day", "0"),
        ("--value-per-point", "nan"),
        ("--a0", "1.5"),
        ("--decay", "-0.02"),
        ("--manual-deploy-days", "0"),
        ("--change-pct", "150"),
    ],
)
def test_economics_interval_bad_input_exits_2_naming_the_option(option: str, value: str) -> None:
    args = dict(zip(FRAUD[::2], FRAUD[1::2], strict=True)) | {option: value}
    result = economics("interval", *[part for pair in args.items() for part in pair])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {option} ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_economics_interval_non_number_is_a_usage_error() -> None:
    result = economics("interval", *FRAUD[:-1], "fast")
    assert result.exit_code == 2
    assert "--decay" in result.output


@pytest.mark.parametrize("path", [(), ("interval",)])
def test_economics_help_has_an_example(path: tuple[str, ...]) -> None:
    result = economics(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example: keel economics interval --retrain-cost 5000" in result.stdout
