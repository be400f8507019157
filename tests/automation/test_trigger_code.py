"""R-CICD-02 code-commit triggers: the ``code`` condition compares the train function's source
and a posted commit with what the newest version recorded; ``fire`` (REST, SDK on both
transports, CLI) is CI's webhook, its commit and actor kept on the evaluation and the run."""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tests.automation.triggerdata as data
from tests.automation.conftest import drain
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel import Client
from keel.api.app import create_app
from keel.automation.retrain.pipeline import register_retrain_kind
from keel.cli.main import app
from keel.demo.data import TARGET
from keel.errors import InvalidInput
from keel.services import Services

Env = tuple[Services, Any]
runner = CliRunner()
USER_CODE = Path(__file__).parent / "retrain_train.py"
GATES = {
    "latency": {"enabled": False},
    "equivalence": {"enabled": False},
    "stress": {"enabled": False},
    "skew": {"enabled": False},
    "margin": {"min_improvement": -0.05},
    "floor": {"min_auc": 0.6},
}
COMMIT = "a" * 40


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A copy of the retraining tests' train function in a module of its own on sys.path."""
    name = f"h6_train_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "code" / f"{name}.py"
    path.parent.mkdir()
    path.write_text(USER_CODE.read_text())
    monkeypatch.syspath_prepend(str(path.parent))
    yield f"{name}:train", path  # type: ignore[misc]
    sys.modules.pop(name, None)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.name.encode() + path.read_bytes()).hexdigest()


def ci_trigger(name: str, train: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "model": "churn",
        "cooldown": "0s",
        "any": list(conditions),
        "retrain": {"train": train, "label": TARGET, "window": "30d", "gates": GATES},
    }


def test_commit_fires_a_retraining_that_records_it_then_a_source_change_fires(
    trigger_env: Env, user_module: tuple[str, Path]
) -> None:
    services, _ = trigger_env
    train, path = user_module
    register_retrain_kind()  # a real retraining: its run and version must carry the code
    services.triggers.apply(ci_trigger("ci", train, {"metric": "code"}, {"metric": "manual"}))
    services.triggers.apply(ci_trigger("ci-code", train, {"metric": "code"}))
    first = services.triggers.evaluate("ci-code", data.now_ms())
    assert not first.met and "recorded no code hash" in first.conditions[0].reason
    fired = services.triggers.fire("ci", {"commit": COMMIT, "actor": "ci-bot"})
    assert fired.fired and fired.event == {"commit": COMMIT, "actor": "ci-bot"}
    records = services.decisions.query(model="churn", kind="trigger_evaluation")
    (record,) = [r for r in records if r.id == fired.decision_id]
    assert record.actor == "ci-bot" and record.details["event"]["commit"] == COMMIT
    assert drain(services.jobs) >= 1
    job = services.jobs.get(fired.job_id or "")
    assert job.status == "succeeded", job.traceback
    version = services.registry.get_version("churn", job.result["version"])
    run = services.tracking.get_run(version.run_id or "")
    for tags in (version.tags, run.tags):
        assert tags["keel.retrain.code_hash"] == sha256_of(path)
        assert tags["keel.retrain.commit"] == COMMIT
        assert tags["keel.retrain.fired_by"] == "ci-bot"
    # the same code and commit again: nothing changed
    same = services.triggers.fire("ci-code", {"commit": COMMIT[:12]})
    assert not same.met and "unchanged" in same.conditions[0].reason
    other = services.triggers.fire("ci-code", {"commit": "b" * 40})
    assert other.met and "differs from v2" in other.conditions[0].reason
    # an edit of the train module, deployed to the worker: the next evaluation fires
    path.write_text(path.read_text() + "\n# tuned\n")
    edited = services.triggers.evaluate("ci-code", data.now_ms())
    assert edited.met and edited.fired
    assert "source changed since v2" in edited.conditions[0].reason
    assert edited.conditions[0].details["code_hash"] == sha256_of(path)


def test_a_code_condition_needs_a_train_function(trigger_env: Env) -> None:
    services, _ = trigger_env
    services.triggers.apply({"name": "c", "model": "churn", "any": [{"metric": "code"}]})
    result = services.triggers.evaluate("c", data.now_ms())
    assert not result.met and "no retrain.train" in result.conditions[0].reason


HAND = {"name": "hand", "model": "churn", "any": [{"metric": "manual"}], "cooldown": "0s"}
BAD_FIRES = [
    ({"commit": "xyz"}, "commit"),
    ({"commit": "abc"}, "commit"),
    ({"actor": ""}, "actor"),
    ({"commit": COMMIT, "branch": "main"}, "branch"),
]


@pytest.fixture
def url(trigger_env: Env) -> Iterator[str]:
    with serve_in_thread(create_app(services=trigger_env[0])) as base:
        yield base


def test_rest_fire_records_the_commit_on_the_job(trigger_env: Env, url: str) -> None:
    services, _ = trigger_env
    with httpx.Client(base_url=url) as http:
        assert http.post("/v1/triggers", json=HAND).status_code == 200
        answer = http.post("/v1/triggers/hand/fire", json={"commit": "3FB19F3", "actor": "ci"})
        assert answer.status_code == 200, answer.text
        result = answer.json()
        for body, field in BAD_FIRES:
            bad = http.post("/v1/triggers/hand/fire", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.text
        assert http.post("/v1/triggers/hand/fire", content=b"{no").status_code == 422
        assert http.post("/v1/triggers/nope/fire", json={}).status_code == 404
        bad_days = dict(HAND, name="d", timing={"allowed_days": ["sat", "funday"]})
        refused = http.post("/v1/triggers", json=bad_days)
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "timing.allowed_days"
        budget = dict(HAND, name="b", prerequisites={"max_cost": -1, "cost_per_hour": 2})
        refused = http.post("/v1/triggers", json=budget)
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "prerequisites.max_cost"
    assert result["fired"] and result["event"] == {"commit": "3FB19F3", "actor": "ci"}
    (job,) = services.jobs.list_jobs(kind="retrain.run")
    assert job.args["source"] == {"commit": "3FB19F3", "actor": "ci"}
    assert [t.name for t in services.triggers.list_triggers()] == ["hand"]
    assert len(services.decisions.query(kind="trigger_evaluation")) == 1


@pytest.mark.parametrize("transport", ["local", "http"])
def test_sdk_fire_on_both_transports(trigger_env: Env, transport: str, request: Any) -> None:
    settings = trigger_env[0].settings
    if transport == "local":
        client = Client(settings=settings)
    else:
        base = request.getfixturevalue("url")
        client = Client(base, settings=settings.model_copy(update={"home": settings.home / "r"}))
    with client:
        client.apply_trigger(HAND)
        result = client.fire_trigger("hand", commit="3fb19f3", actor="ci")
        assert result["fired"] and result["event"]["commit"] == "3fb19f3"
        for body, field in BAD_FIRES[:3]:
            with pytest.raises(InvalidInput) as caught:
                client.fire_trigger("hand", **body)
            assert caught.value.field == field


def test_cli_fire_and_bad_input_exit_2(trigger_env: Env, tmp_path: Path) -> None:
    services, _ = trigger_env
    environ = {"KEEL_HOME": str(services.settings.home)}
    services.triggers.apply(HAND)
    ok = runner.invoke(
        app, ["triggers", "fire", "hand", "--commit", "3fb19f3", "--json"], env=environ
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["event"] == {"commit": "3fb19f3"}
    bad = runner.invoke(app, ["triggers", "fire", "hand", "--commit", "zz"], env=environ)
    assert bad.exit_code == 2 and "commit" in bad.output and "Traceback" not in bad.output
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: w\nmodel: churn\nany: [{metric: manual}]\ntiming: {allowed_hours: '22-30'}\n"
    )
    applied = runner.invoke(app, ["triggers", "apply", "-f", str(path)], env=environ)
    assert applied.exit_code == 2 and "timing.allowed_hours" in applied.output
    services.triggers.apply(dict(HAND, timing={"allowed_days": ["sat"]}))
    shown = runner.invoke(app, ["triggers", "show", "hand"], env=environ)
    assert "timing: {'allowed_days': ['sat']}" in shown.stdout
    assert [t.name for t in services.triggers.list_triggers()] == ["hand"]
