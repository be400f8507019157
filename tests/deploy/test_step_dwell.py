"""R-DEP-02: a canary step may carry its own dwell (``{percent: 5, min_dwell: 1w}``), so seed
004's phased plan is written exactly; docs/examples/churn-phased-rollout.yaml ships it.

Policy validation (422 / exit 2 naming ``steps[i].min_dwell``), the pure rollout (a step is
not advanced before its own dwell; the record names the dwell in force), the controller on
a test clock over a real prediction log, and ``keel deploy create -f`` / ``show``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from tests.deploy.conftest import POLICY, Clock, Models, serve_step
from typer.testing import CliRunner

from keel import Client
from keel.cli.main import app as cli
from keel.deploy.policy import load_policy, parse_policy
from keel.deploy.rollout import Action, evaluate, start
from keel.deploy.service import DeploymentService
from keel.deploy.verdict import ArmStats, MetricEstimate
from keel.errors import InvalidInput
from keel.services import Services

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "churn-phased-rollout.yaml"
DAY_S, WEEK_S = 86_400, 604_800
DAY_MS = DAY_S * 1000
CANARY: dict[str, Any] = {
    "name": "churn-live",
    "model": "churn",
    "strategy": "canary",
    "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}],
    "min_dwell": "10m",
}


def _with_steps(steps: list[Any], **extra: Any) -> dict[str, Any]:
    return {**CANARY, "steps": steps, **extra}


def test_steps_may_be_objects_with_their_own_dwell_and_round_trip() -> None:
    policy = parse_policy(
        _with_steps(
            [{"percent": 5, "min_dwell": "7d"}, {"percent": 25, "min_dwell": "4d"}, 50, 100]
        )
    )
    assert policy.shares == [5.0, 25.0, 50.0, 100.0]
    # a plain number keeps meaning "the policy's min_dwell"
    assert [policy.step_dwell_s(i) for i in range(3)] == [7 * DAY_S, 4 * DAY_S, 600]
    assert [a.weight for a in policy.arms] == [95.0, 5.0]  # the first step's share
    document = policy.to_document()
    assert document["steps"] == [
        {"percent": 5.0, "min_dwell": 7 * DAY_S},
        {"percent": 25.0, "min_dwell": 4 * DAY_S},
        50.0,
        100.0,
    ]
    assert load_policy(json.dumps(document)) == policy == parse_policy(document)
    # a policy of plain numbers is stored exactly as before
    plain = parse_policy(_with_steps([5, 25, 50, 100]))
    assert plain.steps == [5, 25, 50, 100] and plain.to_document()["steps"] == [5, 25, 50, 100]
    # {percent: 50} alone is the same step as 50
    assert parse_policy(_with_steps([5, {"percent": 50}, 100])).step_dwell_s(1) == 600


@pytest.mark.parametrize(
    ("steps", "extra", "field", "words"),
    [
        ([{"percent": 5, "min_dwell": "soon"}, 100], {}, "steps[0].min_dwell", "duration like"),
        ([{"percent": 5, "min_dwell": -1}, 100], {}, "steps[0].min_dwell", "non-negative"),
        ([5, {"percent": 9, "min_dwell": "3651d"}, 100], {}, "steps[1].min_dwell", "3650d"),
        ([5, {"percent": 150}, 100], {}, "steps[1].percent", "less than or equal to 100"),
        ([{"min_dwell": "1d"}, 100], {}, "steps[0].percent", "Field required"),
        ([{"percent": 5, "dwell": "1d"}, 100], {}, "steps[0].dwell", "unknown key 'dwell'"),
        (
            [{"percent": 25}, {"percent": 5, "min_dwell": "1d"}, 100],
            {},
            "steps[1].percent",
            "increase",
        ),
        ([5, 0, 100], {}, "steps[1]", "greater than 0"),
        ([5, 50, {"percent": 100, "min_dwell": "1w"}], {}, "steps[2].min_dwell", "keep_previous"),
        (
            [{"percent": 5, "min_dwell": "2w"}, 100],
            {"max_step_duration": "1w"},
            "steps[0].min_dwell",
            "max_step_duration",
        ),
    ],
)
def test_a_bad_step_names_its_field(
    steps: list[Any], extra: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(_with_steps(steps, **extra))
    assert caught.value.field == field, caught.value.message
    assert words in caught.value.message and caught.value.message.startswith(f"{field}: ")


def test_review_at_reads_the_shares_of_step_objects() -> None:
    policy = parse_policy(_with_steps([{"percent": 5}, {"percent": 50, "min_dwell": "1w"}, 100]))
    assert parse_policy({**policy.to_document(), "review_at": [50]}).review_at == [50]
    with pytest.raises(InvalidInput, match=r"review_at\[0\]"):
        parse_policy(_with_steps([{"percent": 5}, 100], review_at=[25]))


def _arms(n_in_step: int = 300) -> tuple[ArmStats, ArmStats]:
    primary = ArmStats("primary", 2000, 2, 20.0, 5000, MetricEstimate(0.80, 0.004, 5000))
    better = ArmStats("canary", 500, 2, 20.0, n_in_step, MetricEstimate(0.86, 0.004, 5000))
    return primary, better


def test_each_step_waits_its_own_dwell_and_the_record_names_it() -> None:
    policy = parse_policy(
        {
            **_with_steps(
                [{"percent": 5, "min_dwell": "1w"}, {"percent": 25, "min_dwell": "4d"}, 50, 100]
            ),
            "guardrails": {"metric": {"name": "roc_auc"}},
        }
    )
    state = start(policy, 0)
    early = evaluate(policy, state, WEEK_S * 1000 - 1000, *_arms())
    assert early.action is Action.HOLD and early.next_share == 5.0
    assert early.min_dwell_s == WEEK_S and early.to_dict()["min_dwell_s"] == WEEK_S
    assert any("min_dwell 1w" in r for r in early.reasons), early.reasons
    moved = evaluate(policy, state, WEEK_S * 1000, *_arms())
    assert moved.action is Action.ADVANCE and moved.next_share == 25.0
    assert moved.min_dwell_s == WEEK_S
    at_25 = moved.state
    held = evaluate(policy, at_25, WEEK_S * 1000 + 4 * DAY_MS - 1000, *_arms())
    assert held.action is Action.HOLD and held.min_dwell_s == 4 * DAY_S
    assert any("min_dwell 4d" in r for r in held.reasons), held.reasons
    next_ = evaluate(policy, at_25, WEEK_S * 1000 + 4 * DAY_MS, *_arms())
    assert next_.action is Action.ADVANCE and next_.next_share == 50.0
    # 50 is a plain number: the policy's min_dwell (10m) is in force there
    at_50 = next_.state
    t50 = at_50.phase_started_ms
    assert evaluate(policy, at_50, t50 + 599_000, *_arms()).action is Action.HOLD
    last = evaluate(policy, at_50, t50 + 600_000, *_arms())
    assert last.min_dwell_s == 600 and last.action is Action.PROMOTE
    # the dwell is time: enough samples alone do not move a step
    assert evaluate(policy, state, DAY_MS, *_arms(n_in_step=10**6)).action is Action.HOLD


def test_the_example_plan_is_seed_004_phase_by_phase() -> None:
    policy = load_policy(EXAMPLE.read_text())
    assert policy.strategy == "canary"
    # Phase 1: shadow for a week, mirrored traffic only
    assert policy.shadow is not None and policy.shadow.duration_s == WEEK_S
    assert start(policy, 0).phase == "shadow"
    # Phase 2: canary at 5 % for a week, A/B of retention (the churn label's mean, lower is
    # better) against the control arm; less than 2 points better rolls back (R-DEP-03)
    assert policy.shares[0] == 5.0 and policy.step_dwell_s(0) == WEEK_S
    metric = policy.guardrails.metric
    assert metric is not None and metric.name == "label_mean"
    assert metric.higher_is_better is False and metric.min_improvement == 0.02
    assert not metric.relative
    # Phase 3: 5 → 25 → 50 → 100 over two weeks, a weekly checkpoint per step, a review at 50
    assert policy.shares == [5.0, 25.0, 50.0, 100.0]
    assert [policy.step_dwell_s(i) for i in (1, 2)] == [WEEK_S, WEEK_S]
    assert policy.review_at == [50]
    # Phase 4: 100 % with the old model kept two weeks for rollback
    assert policy.retention.keep_previous_s == 2 * WEEK_S and policy.auto_promote
    assert policy.arm("primary").alias == "champion"


def _walk_policy() -> dict[str, Any]:
    """The example's steps, dwells and review, with the test set-up's metric and sample sizes
    (two churn models whose AUCs differ; a label_mean A/B would need a real retention effect)."""
    plan = yaml.safe_load(EXAMPLE.read_text())
    return {
        **plan,
        "name": POLICY["name"],
        "arms": POLICY["arms"],
        "shadow": None,
        "guardrails": POLICY["guardrails"],
        "min_samples_per_step": POLICY["min_samples_per_step"],
    }


def test_controller_walks_the_example_plan_honouring_each_dwell(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("weak", "good")
    document = {k: v for k, v in _walk_policy().items() if v is not None}
    service.create(document, actor="ana")
    for i, share in enumerate([5.0, 25.0, 50.0]):
        entered = clock.now
        serve_step(services, models, churn_rows[1].sample(1500, random_state=i), clock)
        clock.now = entered + WEEK_S * 1000 - 60_000  # a minute short of this step's week
        service.evaluate("churn-live")
        current = service.get("churn-live")
        assert current.status == "active" and current.weights["canary"] == share
        waiting = services.decisions.query(deployment="churn-live", kind="evaluation")[0]
        assert waiting.details["min_dwell_s"] == WEEK_S and waiting.details["share"] == share
        assert "min_dwell 1w" in " ".join(waiting.details["reasons"])
        clock.now = entered + WEEK_S * 1000
        service.evaluate("churn-live")
    paused = service.get("churn-live")
    assert paused.status == "paused" and paused.weights["canary"] == 50.0  # review at 50 %
    steps = services.decisions.query(deployment="churn-live", kind="rollout_step")
    assert [d.details["next_share"] for d in reversed(steps)] == [25.0, 50.0]
    assert [d.at_ms - service.get("churn-live").created_at_ms for d in reversed(steps)] == [
        WEEK_S * 1000,
        2 * WEEK_S * 1000,
    ]
    service.resume("churn-live", actor="board", reason="stakeholder review passed")
    after = service.evaluate("churn-live")
    assert after is not None and after.status == "promoted"
    assert after.state["retain_until_ms"] == clock.now + 2 * WEEK_S * 1000


def test_rest_names_a_bad_step_dwell(live_server: str) -> None:
    bad = _with_steps([{"percent": 5, "min_dwell": "a week"}, 100])
    response = httpx.post(f"{live_server}/v1/deployments", json=bad)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "steps[0].min_dwell" and "a week" in error["message"]


@pytest.mark.parametrize("where", ["rest", "sdk-http", "sdk-embedded"])
def test_a_step_dwell_beyond_3650d_is_refused_naming_the_step(
    live_server: str,
    services: Services,
    register_churn: Callable[[str, str], Models],
    where: str,
) -> None:
    """A step's ``min_dwell`` is bounded like the policy's other durations (a Span): 100
    million days is a typo, not a plan, and milliseconds past it leave 64-bit integers."""
    register_churn("good", "weak")  # the arms exist: only the dwell is wrong
    bad = _with_steps([5, {"percent": 25, "min_dwell": "100000000d"}, 100])
    if where == "rest":
        response = httpx.post(f"{live_server}/v1/deployments", json=bad)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        field, message = error["field"], error["message"]
        assert error["code"] == "invalid_input" and "detail" in error
    else:
        remote = where == "sdk-http"
        client = Client(live_server if remote else None, settings=services.settings)
        try:
            with pytest.raises(InvalidInput) as caught:
                client.create_deployment(bad)
        finally:
            client.close()
        field, message = caught.value.field, caught.value.message
    assert field == "steps[1].min_dwell", message
    assert "at most 3650d" in message
    assert services.deployments.list() == []  # nothing stored


def test_cli_creates_the_example_and_shows_the_plan(
    services: Services,
    register_churn: Callable[[str, str], Models],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_churn("good", "weak")
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    runner = CliRunner()
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("min_dwell: 1w}", "min_dwell: 1 fortnight}", 1))
    refused = runner.invoke(cli, ["deploy", "create", "-f", str(bad)])
    assert refused.exit_code == 2 and "steps[0].min_dwell" in refused.output, refused.output
    created = runner.invoke(cli, ["deploy", "create", "-f", str(EXAMPLE)])
    assert created.exit_code == 0, created.output
    shown = runner.invoke(cli, ["deploy", "show", "churn-phased"])
    assert shown.exit_code == 0, shown.output
    assert "plan: [shadow 1w] → 5% for 1w → 25% for 1w → 50% for 1w, review → 100%" in (
        shown.output
    ), shown.output
