"""Triggers through REST, the SDK on both transports and ``keel triggers``: same answers,
bad definitions refused naming the key (422 / exit 2), nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel import Client
from keel.api.app import create_app
from keel.cli.main import app
from keel.errors import InvalidInput
from keel.services import Services

Env = tuple[Services, Any]
runner = CliRunner()
FIXTURES = Path(__file__).parent / "fixtures"
SEED_004 = (FIXTURES / "trigger_seed004.yaml").read_text()
BAD = {
    "unknown key": (SEED_004.replace("    below: 0.78", "    floor: 0.78"), "any[0].floor"),
    "unknown metric": (SEED_004.replace("metric: auc ", "metric: aucc "), "any[0].metric"),
    "invalid cron": (SEED_004.replace("@monthly", "0 0 32 * *"), "any[2].cron"),
    "unknown feature": (
        SEED_004.replace("    min_features: 3", "    features: [tenure, tenur]"),
        "any[1].features",
    ),
}


@pytest.fixture
def url(trigger_env: Env) -> Iterator[str]:
    with serve_in_thread(create_app(services=trigger_env[0])) as base:
        yield base


@pytest.fixture(params=["local", "http"])
def sdk(request: pytest.FixtureRequest, trigger_env: Env) -> Iterator[Client]:
    settings = trigger_env[0].settings
    if request.param == "local":
        client = Client(settings=settings)
    else:
        base = request.getfixturevalue("url")
        client = Client(base, settings=settings.model_copy(update={"home": settings.home / "r"}))
    yield client
    client.close()


def test_rest_apply_yaml_list_show_evaluate(url: str) -> None:
    with httpx.Client(base_url=url) as http:
        applied = http.put(
            "/v1/triggers", content=SEED_004, headers={"content-type": "application/yaml"}
        )
        assert applied.status_code == 200, applied.text
        assert applied.json()["name"] == "churn-retrain"
        assert [t["name"] for t in http.get("/v1/triggers").json()] == ["churn-retrain"]
        assert http.get("/v1/triggers/churn-retrain").json()["model"] == "churn"
        result = http.post("/v1/triggers/churn-retrain/evaluate").json()
        assert [c["metric"] for c in result["conditions"]][0] == "roc_auc"
        assert result["fired"] is False and result["decision_id"] is not None
        decisions = http.get("/v1/decisions", params={"kind": "trigger_evaluation"}).json()
        assert len(decisions) == 1
        assert http.get("/v1/triggers/nope").status_code == 404


@pytest.mark.parametrize("case", sorted(BAD))
def test_rest_bad_definition_is_422_naming_the_key(url: str, case: str) -> None:
    text, field = BAD[case]
    with httpx.Client(base_url=url) as http:
        answer = http.post("/v1/triggers", content=text, headers={"content-type": "text/yaml"})
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "invalid_input" and error["message"].startswith(field + ":")
        assert http.get("/v1/triggers").json() == []


def test_rest_bad_json_body_is_422(url: str) -> None:
    answer = httpx.post(
        f"{url}/v1/triggers", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422 and "body" in answer.json()["error"]["message"]


def test_rest_yaml_nested_too_deeply_is_400_not_500(url: str) -> None:
    """The YAML parser recurses once per level: 100,000 levels were a RecursionError (500)."""
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = httpx.post(f"{url}/v1/triggers", content=deep, headers={"content-type": "text/yaml"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "bad_request"
    assert answer.json()["error"]["field"] == "body"


def test_sdk_both_transports(sdk: Client) -> None:
    applied = sdk.apply_trigger(FIXTURES / "trigger_seed004.yaml")
    assert applied.name == "churn-retrain" and len(applied.conditions) == 4
    assert [t.name for t in sdk.list_triggers(model="churn")] == ["churn-retrain"]
    assert sdk.get_trigger("churn-retrain").cooldown == "1d"
    result = sdk.evaluate_trigger("churn-retrain")
    assert result["met"] is False and len(result["conditions"]) == 4
    with pytest.raises(InvalidInput) as caught:
        sdk.apply_trigger(BAD["unknown feature"][0])
    assert caught.value.field == "any[1].features"


def _cli_env(services: Services) -> dict[str, str]:
    return {"KEEL_HOME": str(services.settings.home)}


def test_cli_apply_list_show_evaluate(trigger_env: Env, tmp_path: Path) -> None:
    services, _ = trigger_env
    path = tmp_path / "t.yaml"
    path.write_text(SEED_004)
    environ = _cli_env(services)
    applied = runner.invoke(app, ["triggers", "apply", "-f", str(path), "--json"], env=environ)
    assert applied.exit_code == 0, applied.output
    listed = runner.invoke(app, ["triggers", "list", "--json"], env=environ)
    assert [t["name"] for t in json.loads(listed.stdout)] == ["churn-retrain"]
    shown = runner.invoke(app, ["triggers", "show", "churn-retrain"], env=environ)
    assert shown.exit_code == 0 and "any[0]" in shown.stdout
    evaluated = runner.invoke(app, ["triggers", "evaluate", "churn-retrain", "--json"], env=environ)
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["conditions"][3]["metric"] == "new_labels"


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_bad_definition_exits_2(trigger_env: Env, tmp_path: Path, case: str) -> None:
    services, _ = trigger_env
    text, field = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["triggers", "apply", "-f", str(path)], env=_cli_env(services))
    assert result.exit_code == 2
    assert field in result.output and "Traceback" not in result.output
    assert services.triggers.list_triggers() == []


def test_manual_evaluation_through_rest(url: str) -> None:
    spec = {"name": "hand", "model": "churn", "any": [{"metric": "manual"}]}
    with httpx.Client(base_url=url) as http:
        assert http.post("/v1/triggers", json=spec).status_code == 200
        result = http.post("/v1/triggers/hand/evaluate", json={"manual": True}).json()
    assert result["fired"] is True and result["job_id"]
