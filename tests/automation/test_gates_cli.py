"""``keel validate`` and ``Client.validate_model``: exit codes, Markdown, the stored report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from typer.testing import CliRunner, Result

from keel.automation.gates.record import EXPERIMENT, REPORT_JSON
from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split

runner = CliRunner()
POLICY = """\
slices:
  columns: [contract]
fairness:
  sensitive_columns: [female]
latency:
  budget_ms: 10000
  max_batches: 10
equivalence:
  margin: 0.1
cost:
  cost_fp: 1
  cost_fn: 5
"""


def _logistic(frame: Any, columns: list[str]) -> Any:
    # explicit column lists: a registered skops file may not hold make_column_selector
    numbers = [c for c in columns if frame[c].dtype.kind == "f"]
    categories = [c for c in columns if c not in numbers]
    encode = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), numbers),
        (OneHotEncoder(handle_unknown="ignore"), categories),
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=1000))
    return model.fit(frame[columns], frame[TARGET])


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    frame = load_churn().drop(columns=["customer_id"])
    train, _, holdout = split(frame, 7)
    features = [c for c in frame.columns if c != TARGET]
    return {
        "train": train,
        "holdout": holdout,
        "features": features,
        "small": _logistic(train, ["tenure", "monthly_charges", "contract"]),
        "full": _logistic(train, features),
    }


def _register(client: Client, data: dict[str, Any]) -> None:
    """churn v1 (3 features, alias champion) and v2 (every feature)."""
    example = data["train"][data["features"]].head(20)
    for model in (data["small"], data["full"]):
        with client.start_run("churn", capture_env=False) as run:
            run.log_model(model, input_example=example, registered_name="churn")
    client.set_alias("churn", "champion", 1)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]) -> Path:
    root = tmp_path_factory.mktemp("validate")
    with Client(settings=Settings(home=root / "keel")) as client:
        _register(client, data)
    data["holdout"].to_parquet(root / "holdout.parquet")
    data["train"].to_parquet(root / "train.parquet")
    (root / "gates.yaml").write_text(POLICY)
    return root


def keel(root: Path, *args: str) -> Result:
    env = {"KEEL_HOME": str(root / "keel"), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    return runner.invoke(app, list(args), env=env)


def validate(root: Path, model: str, *extra: str) -> Result:
    return keel(
        root, "validate", model, "--against", "models:/churn@champion",
        "--holdout", str(root / "holdout.parquet"), "--label", TARGET,
        "--policy", str(root / "gates.yaml"), *extra,
    )  # fmt: skip


def test_validate_cli_passes_writes_markdown_and_stores_the_report(home: Path) -> None:
    out = home / "gates.md"
    result = validate(home, "models:/churn/2", "--train", str(home / "train.parquet"),
                      "--markdown", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    markdown = out.read_text()
    assert "✅ **passed**" in markdown and "| margin | ✅ pass |" in markdown
    assert "| gate | result | value | threshold | reason |" in markdown
    assert "cost curve" in markdown and "contract=Month-to-month" in markdown
    with Client(settings=Settings(home=home / "keel")) as client:
        tags = client.get_model_version("churn", 2).tags
        assert tags["keel.validation.status"] == "passed"
        assert tags["keel.validation.against"] == "models:/churn/1"
        run = client.get_run(tags["keel.validation.run_id"])
        assert run.tags["keel.validation.model"] == "models:/churn/2"
        stored = client.download_artifact(run.id, REPORT_JSON, home / "report.json")
        report = json.loads(stored.read_text())
        assert report["passed"] is True and report["decision_threshold"] < 0.5
        assert {g["name"] for g in report["gates"]} >= {"margin", "fairness", "skew", "stress"}
        decisions = client.decisions(model="churn", kind="gate")
        assert decisions and decisions[0].details["passed"] is True
        assert decisions[0].details["gates"]["margin"]["status"] == "pass"


def test_validate_cli_worse_challenger_exits_1_with_the_margin_numbers(home: Path) -> None:
    # v1 against itself: the margin cannot be met (+0.02 over its own AUC)
    out = home / "worse.md"
    result = validate(home, "models:/churn/1", "--markdown", str(out), "--json")
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    margin = next(g for g in body["gates"] if g["name"] == "margin")
    assert margin["status"] == "fail" and margin["value"] < margin["threshold"]
    assert "❌ **failed**" in out.read_text() and "| margin | ❌ fail |" in out.read_text()
    with Client(settings=Settings(home=home / "keel")) as client:
        tags = client.get_model_version("churn", 1).tags
        assert tags["keel.validation.status"] == "failed"
        assert "margin" in tags["keel.validation.failed_gates"].split(",")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--label", "no_such_column"], "--label"),
        (["--holdout", "missing.parquet"], "--holdout"),
        (["--against", "models:/churn/zero"], "--against"),
        # the key path stays in the message, as docs/automation.md shows it
        (["--policy", "bad.yaml"], "--policy: fairness.max_dp: unknown key 'max_dp'"),
    ],
)
def test_validate_cli_bad_input_exits_2_naming_the_option(
    home: Path, args: list[str], named: str
) -> None:
    (home / "bad.yaml").write_text("fairness:\n  max_dp: 0.1\n")
    base = {
        "--against": "models:/churn@champion",
        "--holdout": str(home / "holdout.parquet"),
        "--label": TARGET,
        "--policy": str(home / "gates.yaml"),
    }
    option, value = args
    base[option] = value if option == "--label" or value.startswith("models") else str(home / value)
    flat = [item for pair in base.items() for item in pair]
    result = keel(home, "validate", "models:/churn/2", "--no-record", *flat)
    assert result.exit_code == 2, result.output
    assert named in result.stderr and "Traceback" not in result.output


def test_validate_model_sdk_on_both_transports(client: Client, data: dict[str, Any]) -> None:
    _register(client, data)
    report = client.validate_model(
        "models:/churn/2",
        data["holdout"],
        TARGET,
        against="models:/churn@champion",
        policy={
            "latency": {"budget_ms": 10_000, "max_batches": 10},
            "margin": {"kind": "relative"},
        },
    )
    assert report.gate("margin").status == "pass" and report.champion == "models:/churn/1"
    version = client.get_model_version("churn", 2)
    assert version.tags["keel.validation.status"] == ("passed" if report.passed else "failed")
    assert client.search_runs([EXPERIMENT]).items[0].id == version.tags["keel.validation.run_id"]
    assert report.gate("size").value == sum(f.size_bytes for f in version.files)
