"""Step progress in a deployment's status: what each candidate's step waits for, how far it
is, and when its gates are met at the traffic seen so far (``keel.deploy.progress``).

A controller on a test clock over a real prediction log of the telco churn table: the
numbers come from the controller's own evaluation record, the ETA from the step's request
rate, and ``keel deploy show`` prints them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from tests.deploy.conftest import POLICY, Clock, Models, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.deploy.progress import describe, rollout_progress
from keel.deploy.service import DeploymentService
from keel.services import Services

HOUR_MS = 3_600_000


def test_status_says_what_the_step_waits_for_and_when_it_is_done(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    policy: dict[str, Any] = {**POLICY, "min_dwell": "2h", "min_samples_per_step": 10_000}
    created = service.create(policy, actor="ana")
    before = service.get("churn-live").progress
    assert before is not None and set(before) == {"canary"}
    fresh = before["canary"]
    # no evaluation yet: the gates and the step, no numbers, no ETA
    assert fresh["step"] == 0 and fresh["share"] == 5.0 and fresh["phase"] == "live"
    assert fresh["samples_needed"] == 10_000 and fresh["wait_s"] == 7200
    assert fresh["evaluated_at_ms"] is None and fresh["eta_ms"] is None
    assert fresh["wait_until_ms"] == created.created_at_ms + 7200 * 1000

    serve_step(services, models, churn_rows[1].sample(1500, random_state=0), clock)
    clock.now = created.created_at_ms + HOUR_MS  # one hour into the step
    service.evaluate("churn-live")
    record = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
    seen = record.details["numbers"]["candidate"]["n_in_step"]
    assert 0 < seen < 10_000
    got = service.get("churn-live").progress
    assert got is not None
    step = got["canary"]
    assert step["samples"] == seen and step["evaluated_at_ms"] == clock.now
    assert step["verdict"] == record.details["verdict"] and step["action"] == "hold"
    assert step["reasons"] == record.details["reasons"]
    labelled = record.details["numbers"]["candidate"]["metric"]
    assert step["labelled"] == (labelled["n"] if labelled else None)
    # rate: the step's requests over the hour to the evaluation; ETA: the rest at that rate
    assert step["requests_per_hour"] == seen
    expected_eta = clock.now + -(-(10_000 - seen) * HOUR_MS // seen)
    assert abs(step["eta_ms"] - expected_eta) <= 1
    plan = service.get("churn-live").state.get("plan") or {}
    sized = [s for s in plan.get("steps", []) if s["share"] == 5.0 and s["samples_per_arm"]]
    if sized:
        assert step["labelled_planned"] == sized[0]["samples_per_arm"]["canary"]

    lines = describe(got, clock.now)
    assert lines[0].startswith("progress canary: live step 0 (5%)")
    assert f"{seen:,}/10,000 requests" in lines[0] and "1h of 2h" in lines[0]
    assert "gates met in ~" in lines[0]
    assert lines[1] == f"  last evaluation: {step['verdict']} -> hold"

    # the CLI prints it (the embedded SDK reads the same service)
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    monkeypatch.delenv("KEEL_SERVER_URL", raising=False)
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    shown = CliRunner().invoke(cli, ["deploy", "show", "churn-live"])
    assert shown.exit_code == 0, shown.output
    assert "progress canary: live step 0 (5%)" in shown.output
    assert f"{seen:,}/10,000 requests" in shown.output

    # paused: the numbers stay, no ETA (nothing moves until a person resumes)
    service.pause("churn-live", actor="ana", reason="look at it")
    paused = service.get("churn-live").progress
    assert paused is not None and paused["canary"]["eta_ms"] is None
    # finished: no progress left to report
    service.rollback("churn-live", actor="ana", reason="done looking")
    assert service.get("churn-live").progress == {}


def test_dwell_alone_gives_the_eta_when_the_samples_are_in() -> None:
    from keel.deploy.models import Deployment
    from keel.deploy.policy import parse_policy
    from keel.deploy.rollout import start
    from keel.deploy.state import rollout_to_json

    policy = parse_policy({**POLICY, "min_dwell": "1d", "min_samples_per_step": 10})
    st = start(policy, 1_000)
    deployment = Deployment(
        name="churn-live", model="churn", strategy="canary", status="active",
        policy=policy.to_document(), version=1, created_at_ms=1_000, updated_at_ms=1_000,
        state={"rollouts": {"canary": rollout_to_json(st)}, "versions": {"primary": 1}},
    )  # fmt: skip
    found = rollout_progress(deployment, policy, [])
    assert found["canary"]["eta_ms"] is None  # no evaluation: no rate yet
    assert found["canary"]["wait_until_ms"] == 1_000 + 86_400_000
