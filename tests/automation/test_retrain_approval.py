"""Approving and rejecting a retrained version through the CLI, the SDK and REST, embedded
and against a real server."""

from __future__ import annotations

import json

import httpx
import pytest
import tests.automation.test_retrain as base
from tests.conftest import serve_in_thread
from typer.testing import CliRunner

from keel import Client
from keel.api.app import create_app
from keel.cli.main import app
from keel.errors import InvalidInput
from keel.services import Services

svc, churn, logged = base.svc, base.churn, base.logged
runner = CliRunner()


def pending(services: Services) -> int:
    job = base.run_job(services, {"model": "churn", "retrain": base.spec(require_approval=True)})
    assert job.result["approval"] == "pending", job.traceback
    return int(job.result["version"])


@pytest.mark.parametrize("remote", [False, True])
def test_cli_approves_a_pending_version(logged: Services, remote: bool) -> None:
    version = pending(logged)
    env = {"KEEL_HOME": str(logged.settings.home)}
    with serve_in_thread(create_app(services=logged)) as url:
        server = ["--server", url] if remote else []
        bad = runner.invoke(
            app, ["models", "approve", "churn", str(version), "--reason", "ok",
                  "--stage", "prod", *server], env=env,
        )  # fmt: skip
        assert bad.exit_code == 2 and "stage" in bad.output
        done = runner.invoke(
            app, ["models", "approve", "churn", str(version), "--reason", "checked slices",
                  "--json", *server], env=env,
        )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["status"] == "approved"
    assert logged.registry.get_model("churn").aliases["challenger"] == version
    [release] = [d for d in logged.decisions.query(model="churn", kind="promotion")
                 if "checked slices" in d.summary]  # fmt: skip
    assert release.details["stage"] == "staging"


def test_rest_reject_needs_a_reason_and_records_it(logged: Services) -> None:
    version = pending(logged)
    with serve_in_thread(create_app(services=logged)) as url:
        route = f"{url}/v1/models/churn/versions/{version}/reject"
        empty = httpx.post(route, json={"reason": ""})
        assert empty.status_code == 422 and empty.json()["error"]["field"] == "reason"
        unknown = httpx.post(route, json={"reason": "x", "stage": "production"})
        assert unknown.status_code == 422
        missing = httpx.post(f"{url}/v1/models/churn/versions/99/reject", json={"reason": "x"})
        assert missing.status_code == 404
        done = httpx.post(route, json={"reason": "fails on new customers"})
    assert done.status_code == 200 and done.json()["status"] == "rejected"
    tags = logged.registry.get_version("churn", version).tags
    assert tags["keel.approval.status"] == "rejected"
    [decision] = [d for d in logged.decisions.query(model="churn", kind="promotion")
                  if "rejected" in d.summary]  # fmt: skip
    assert "fails on new customers" in decision.summary


def test_sdk_refuses_to_reject_the_champion(logged: Services) -> None:
    client = Client(settings=logged.settings)
    with pytest.raises(InvalidInput, match="reason"):
        client.approve_model_version("churn", 1, "")
    from keel.errors import Conflict

    with pytest.raises(Conflict, match="champion"):
        client.reject_model_version("churn", 1, "no")
    client.close()
