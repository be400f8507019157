"""The explanation and runtime gates through ``keel validate`` (exit 0/1/2, the Markdown
summary, the stored report) and a retraining trigger's gates over REST (422 naming the key)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tests.conftest import serve_in_thread
from typer.testing import CliRunner, Result

from keel.api.app import create_app
from keel.automation.gates.record import REPORT_JSON
from keel.cli.main import app
from keel.client import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.services import open_services

runner = CliRunner()
NUMBERS = ["tenure", "monthly_charges"]
COLUMNS = [*NUMBERS, "contract"]
BASE = """\
latency: {budget_ms: 10000, max_batches: 10}
importance: {top: 2, max_share: 0.9, sample_rows: 200}
runtime: {warmup: {repeats: 3}, memory: {max_rows: 200}}
"""
TRUE = BASE + "shap_direction: {expected: {tenure: negative, monthly_charges: positive}}\n"
FLIPPED = BASE + "shap_direction: {expected: {tenure: positive, monthly_charges: positive}}\n"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = load_churn().drop(columns=["customer_id"])[COLUMNS + [TARGET]]
    train, _, holdout = split(frame, 7)
    encode = make_column_transformer(
        (make_pipeline(SimpleImputer(), StandardScaler()), NUMBERS),
        (OneHotEncoder(handle_unknown="ignore"), ["contract"]),
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=1000))
    model.fit(train[COLUMNS], train[TARGET])
    root = tmp_path_factory.mktemp("explain-cli")
    with Client(settings=Settings(home=root / "keel")) as client:
        with client.start_run("churn", capture_env=False) as run:
            run.log_model(model, input_example=train[COLUMNS].head(20), registered_name="churn")
    holdout.head(400).to_parquet(root / "holdout.parquet")
    for name, text in {"true": TRUE, "flipped": FLIPPED}.items():
        (root / f"{name}.yaml").write_text(text)
    return root


def validate(root: Path, policy: str, *extra: str) -> Result:
    env = {"KEEL_HOME": str(root / "keel"), "KEEL_DATABASE_URL": None, "KEEL_SERVER_URL": None}
    args = ["validate", "models:/churn/1", "--holdout", str(root / "holdout.parquet"),
            "--label", TARGET, "--policy", str(root / policy), *extra]  # fmt: skip
    return runner.invoke(app, args, env=env)


def test_true_directions_pass_and_the_report_holds_the_numbers(home: Path) -> None:
    out = home / "true.md"
    result = validate(home, "true.yaml", "--markdown", str(out))
    assert result.exit_code == 0, result.output
    markdown = out.read_text()
    assert "| importance | ✅ pass |" in markdown and "| shap_direction | ✅ pass |" in markdown
    assert "| shap_direction | tenure | negative (expected negative" in markdown
    assert "| runtime.equivalence | ✅ pass |" in markdown
    assert "| runtime.versions | scikit-learn |" in markdown
    with Client(settings=Settings(home=home / "keel")) as client:
        run_id = client.get_model_version("churn", 1).tags["keel.validation.run_id"]
        stored = json.loads(client.download_artifact(run_id, REPORT_JSON, home / "r.json")
                            .read_text())  # fmt: skip
        gates = {g["name"]: g for g in stored["gates"]}
        assert set(gates["importance"]["numbers"]["shares"]) == set(COLUMNS)
        assert gates["runtime.memory"]["numbers"]["method"] == "tracemalloc"
        assert gates["shap_direction"]["numbers"]["features"]["tenure"]["correlation"] < 0
        metrics = client.get_run(run_id).metrics
        assert "gate.runtime.equivalence" in metrics and "gate.importance" in metrics


def test_a_flipped_declaration_exits_1_naming_the_feature(home: Path) -> None:
    out = home / "flipped.md"
    result = validate(home, "flipped.yaml", "--markdown", str(out), "--no-record")
    assert result.exit_code == 1, result.output
    markdown = out.read_text()
    assert "| shap_direction | ❌ fail |" in markdown and "tenure r -" in markdown


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("shap_direction: {expected: {tenur: negative}}\n", "shap_direction.expected.tenur"),
        ("shap_direction: {expected: {tenure: down}}\n", "shap_direction.expected.tenure"),
        ("shap_direction: {expected: {contract: up}}\n", "shap_direction.expected.contract"),
        ("importance: {top: 0}\n", "importance.top"),
        ("importance: {max_share: 1.5}\n", "importance.max_share"),
        ("runtime: {equivalence: {reference: onnxx}}\n", "runtime.equivalence.reference"),
    ],
)
def test_cli_bad_policy_exits_2_naming_the_key(home: Path, text: str, field: str) -> None:
    (home / "bad.yaml").write_text(text)
    result = validate(home, "bad.yaml", "--no-record")
    assert result.exit_code == 2, result.output
    assert field in result.stderr and "Traceback" not in result.output


@pytest.fixture
def url(home: Path, tmp_path: Path) -> Iterator[str]:
    services = open_services(Settings(home=home / "keel"))
    try:
        with serve_in_thread(create_app(services=services)) as base:
            yield base
    finally:
        services.close()


@pytest.mark.parametrize(
    ("gates", "field"),
    [
        ({"importance": {"top": 0}}, "importance.top"),
        ({"importance": {"max_share": 0}}, "importance.max_share"),
        ({"shap_direction": {"expected": {"tenure": "down"}}}, "shap_direction.expected.tenure"),
        # a feature churn v1 does not take: refused when the trigger is applied, not when
        # its retraining runs
        ({"shap_direction": {"expected": {"tenur": "negative"}}}, "shap_direction.expected.tenur"),
    ],
)
def test_rest_trigger_with_bad_gates_is_422_naming_the_key(
    url: str, gates: dict[str, Any], field: str
) -> None:
    trigger = {
        "name": "churn-explained",
        "model": "churn",
        "any": [{"metric": "manual"}],
        "retrain": {"train": "tests.automation.retrain_train:train", "label": TARGET,
                    "window": "30d", "gates": gates},
    }  # fmt: skip
    with httpx.Client(base_url=url) as http:
        answer = http.post("/v1/triggers", json=trigger)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_input" and field in error["message"]
        assert http.get("/v1/triggers").json() == []
