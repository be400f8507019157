"""R-DEP-17 pre-registered hypothesis and archived report, R-DEP-10 stateful rollback
checkpoints and contamination warning, R-DEP-15 interference warnings: over real churn
models, a real prediction log and labels, a real server for REST, the SDK and the CLI."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from scipy.stats import norm
from statsmodels.stats.power import NormalIndPower
from tests.automation.conftest import drain
from tests.deploy.conftest import POLICY, Clock, Models, log_traffic, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.client import Client
from keel.deploy.hypothesis import hypothesis_verdict
from keel.deploy.interference import interference_warnings
from keel.deploy.policy import parse_policy
from keel.deploy.service import DeploymentService
from keel.errors import Conflict, InvalidInput
from keel.services import Services
from keel.serving.predlog import log_root
from keel.serving.predquery import predictions

HYPOTHESIS: dict[str, Any] = {
    "statement": "v2 ranks churners better than v1",
    "metric": "roc_auc",
    "direction": "increase",
    "minimum_effect": 0.02,
}
STATEFUL = {**POLICY, "stateful": True, "hypothesis": HYPOTHESIS}


def _error(data: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_policy(data)
    return caught.value


def test_planned_sample_size_is_checked_against_the_textbook_formula() -> None:
    # R-DEP-12: n = (z_{a/2} + z_b)^2 * 2 p (1 - p) / delta^2 per arm, rounded up.
    p, delta = 0.3, 0.02
    need = math.ceil((norm.isf(0.025) + norm.ppf(0.8)) ** 2 * 2 * p * (1 - p) / delta**2)
    plan = {**HYPOTHESIS, "baseline": p, "planned_samples_per_arm": need}
    assert parse_policy({**POLICY, "hypothesis": plan}).hypothesis is not None
    error = _error({**POLICY, "hypothesis": {**plan, "planned_samples_per_arm": need - 1}})
    assert error.field == "hypothesis.planned_samples_per_arm"
    assert f"below the {need} per arm" in error.message
    # the analysis block's alpha and power are the ones checked (alpha 0.01 needs more)
    strict = {**POLICY, "analysis": {"alpha": 0.01}, "hypothesis": plan}
    assert _error(strict).field == "hypothesis.planned_samples_per_arm"
    # a mean metric (sd given): statsmodels' normal-approximation size for d = 1/10
    means = {**HYPOTHESIS, "baseline": 50.0, "sd": 10.0, "minimum_effect": 1.0}
    exact = NormalIndPower().solve_power(effect_size=0.1, alpha=0.05, power=0.8, ratio=1.0)
    small = {**means, "planned_samples_per_arm": math.ceil(exact) - 2}
    assert _error({**POLICY, "hypothesis": small}).field == "hypothesis.planned_samples_per_arm"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"colour": "red"}, "hypothesis.colour"),
        ({"minimum_effect": 0}, "hypothesis.minimum_effect"),
        ({"direction": "sideways"}, "hypothesis.direction"),
        ({"statement": ""}, "hypothesis.statement"),
        ({"baseline": 0.99}, "hypothesis.minimum_effect"),  # 0.99 + 0.02 leaves (0, 1)
    ],
)
def test_bad_hypothesis_names_the_field(patch: dict[str, Any], field: str) -> None:
    assert _error({**POLICY, "hypothesis": {**HYPOTHESIS, **patch}}).field == field


def test_bad_stateful_block_names_the_field() -> None:
    assert _error({**POLICY, "stateful": {"reset": True}}).field == "stateful.reset"
    assert _error({**POLICY, "stateful": "yes please"}).field == "stateful"
    assert parse_policy({**POLICY, "stateful": False}).stateful is None


def test_hypothesis_verdict_on_either_orientation_of_the_metric() -> None:
    check = {"name": "roc_auc", "primary": 0.70, "candidate": 0.75, "difference": 0.05}
    assert (
        hypothesis_verdict(HYPOTHESIS, {**check, "low": 0.03, "high": 0.07}, 500)["verdict"]
        == "supported"
    )
    assert (
        hypothesis_verdict(HYPOTHESIS, {**check, "low": 0.0, "high": 0.04}, 500)["verdict"]
        == "inconclusive"
    )
    short = hypothesis_verdict(HYPOTHESIS, {**check, "low": -0.02, "high": 0.01}, 500)
    assert short["verdict"] == "not_supported" and short["ci_high"] == pytest.approx(0.01)
    planned = {**HYPOTHESIS, "planned_samples_per_arm": 1_000}
    assert (
        hypothesis_verdict(planned, {**check, "low": 0.03, "high": 0.07}, 999)["verdict"]
        == "inconclusive"
    )
    # log loss: lower is better, so the controller's difference is primary - candidate
    loss = {"name": "log_loss", "primary": 0.5, "candidate": 0.4, "difference": 0.1}
    down = {**HYPOTHESIS, "metric": "log_loss", "direction": "decrease", "minimum_effect": 0.03}
    found = hypothesis_verdict(down, {**loss, "low": 0.05, "high": 0.15}, 500)
    assert found["verdict"] == "supported"
    assert (found["ci_low"], found["ci_high"]) == pytest.approx((0.05, 0.15))
    assert found["observed_effect"] == pytest.approx(0.1)
    relative = {**HYPOTHESIS, "minimum_effect": 0.05, "relative": True}  # 5% of 0.70 = 0.035
    assert (
        hypothesis_verdict(relative, {**check, "low": 0.03, "high": 0.07}, 500)["verdict"]
        == "inconclusive"
    )
    assert hypothesis_verdict(None, check, 1)["verdict"] == "no_hypothesis"


def test_interference_warnings_by_design() -> None:
    ab = {
        **POLICY,
        "strategy": "ab",
        "arms": [
            {"version": 1, "role": "primary", "weight": 50},
            {"version": 2, "role": "challenger", "weight": 50},
        ],
    }
    for key in ("steps", "min_samples_per_step", "min_dwell"):
        ab.pop(key)
    per_request = parse_policy({**ab, "unit": "request"})
    codes = [w["code"] for w in interference_warnings(per_request, ranking=True)]
    assert codes == ["ranking_interference", "shared_routing_key"]
    assert "per request" in interference_warnings(per_request, ranking=True)[0]["message"]
    assert interference_warnings(parse_policy(ab), ranking=False) == []  # sticky A/B
    canary = [w["code"] for w in interference_warnings(parse_policy(POLICY), ranking=False)]
    assert canary == ["shared_routing_key"]


def _canary_rows(services: Services, arm: str, start: int, end: int) -> int:
    table = predictions(
        root=log_root(services.settings), deployment="churn-live", arm=arm, start=start, end=end
    )
    return table.num_rows


def test_stateful_rollback_checkpoints_contamination_and_archived_report(
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: Any,
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    models = register_churn("good", "weak")
    created = service.create(STATEFUL, actor="ana")
    start = created.created_at_ms
    # before any traffic the hypothesis may still change (recorded), a bad one is refused
    from keel.deploy.hypothesis import amend_hypothesis

    with pytest.raises(InvalidInput) as caught:
        amend_hypothesis(service, "churn-live", {**HYPOTHESIS, "metric": "vibes"}, "ana")
    assert caught.value.field == "hypothesis.metric"
    amended = amend_hypothesis(service, "churn-live", {**HYPOTHESIS, "minimum_effect": 0.03})
    assert amended["minimum_effect"] == 0.03
    status = service.get("churn-live")
    assert [c["boundary"] for c in status.checkpoints or []] == ["created"]
    assert status.checkpoints[0]["weights"] == {"primary": 95.0, "canary": 5.0}  # type: ignore[index]
    assert [w["code"] for w in status.warnings] == ["shared_routing_key"]
    interim = service_report(services, "churn-live")
    assert (interim["label"], interim["archived"]) == ("interim", False)
    assert interim["hypothesis"]["minimum_effect"] == 0.03
    # a canary three times slower is rolled back by the controller
    rows = churn_rows[1].iloc[:1200]
    serve_step(services, models, rows, clock, latency_ms={"primary": 5.0, "canary": 15.0})
    with pytest.raises(Conflict):  # traffic served: the hypothesis is pre-registered
        amend_hypothesis(service, "churn-live", HYPOTHESIS, "ana")
    after = service.evaluate("churn-live")
    assert after is not None and after.status == "rolled_back"
    rollback = services.decisions.query(deployment="churn-live", kind="rollback")[0]
    served = _canary_rows(services, "canary", start, clock.now)
    assert served > 0
    # the rollback names the windows; their rows are counted by a job, not in the rollback
    pending = rollback.details["contamination_warning"]
    assert (pending["rows"], pending["counted"]) == (None, False)
    assert pending["windows"] == [
        {"arm": "canary", "version": 2, "from_ms": start, "to_ms": clock.now, "rows": None}
    ]
    assert rollback.details["session_reset"]["arms"] == ["canary"]
    assert rollback.details["session_reset"]["versions"] == [2]
    boundaries = [c["boundary"] for c in service.get("churn-live").checkpoints or []]
    assert boundaries == ["created", "rolled_back"]
    unarchived = service_report(services, "churn-live")
    assert (unarchived["label"], unarchived["archived"]) == ("final", False)
    assert unarchived["contamination_warning"]["rows"] is None
    queued = {j.kind: j.status for j in services.jobs.list_jobs()}
    assert queued == {"deploy.contamination": "queued", "deploy.report": "queued"}
    assert drain(services.jobs) == 2
    counted = services.decisions.query(deployment="churn-live", kind="contamination")
    assert len(counted) == 1 and counted[0].details["rollback_id"] == rollback.id
    warning = counted[0].details["contamination_warning"]
    assert (warning["rows"], warning["counted"]) == (served, True)
    assert warning["windows"] == [
        {"arm": "canary", "version": 2, "from_ms": start, "to_ms": clock.now, "rows": served}
    ]
    assert "retraining already excludes" in warning["message"]
    # the final report is archived and served from the archive
    report = service_report(services, "churn-live")
    assert (report["label"], report["archived"]) == ("final", True)
    arms = {a["arm"]: a for a in report["arms"]}
    assert arms["canary"]["n"] == served
    assert arms["primary"]["n"] + served == len(rows)
    assert report["contamination_warning"]["rows"] == served
    assert [d["kind"] for d in report["decisions"]] == [
        "deployment_created",
        "hypothesis_registered",
        "rollback",
    ]
    assert report["verdicts"]["canary"]["hypothesis"]["verdict"] in (
        "not_supported",
        "inconclusive",
    )
    assert report["analysis"]["burn_in_s"] == 0 and "attribution_window_s" in report["analysis"]


def service_report(services: Services, name: str) -> dict[str, Any]:
    """The report as the embedded SDK returns it."""
    client = Client(settings=services.settings)
    try:
        found: dict[str, Any] = client.deployment_report(name)
        return found
    finally:
        client.close()


def test_report_rest_sdk_and_cli(
    live_server: str,
    services: Services,
    register_churn: Callable[[str, str], Models],
    churn_rows: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = register_churn("good", "weak")
    policy = {**POLICY, "hypothesis": HYPOTHESIS, "analysis": {"segments": ["tenure"]}}
    assert httpx.post(f"{live_server}/v1/deployments", json=policy).status_code == 201
    url = f"{live_server}/v1/deployments/churn-live"
    report = httpx.get(f"{url}/report").json()
    assert report["label"] == "interim" and report["hypothesis"]["metric"] == "roc_auc"
    assert report["warnings"][0]["code"] == "shared_routing_key"
    assert httpx.get(f"{url}/report", params={"format": "xml"}).status_code == 422
    assert httpx.get(f"{live_server}/v1/deployments/nope/report").status_code == 404
    bad = httpx.put(f"{url}/hypothesis", json={**HYPOTHESIS, "colour": 1})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "hypothesis.colour"
    assert httpx.put(f"{url}/hypothesis", json=[1]).status_code == 422
    assert httpx.put(f"{url}/hypothesis", json=HYPOTHESIS).status_code == 200
    # 200 requests served between creation and now (real clock: the server's)
    created_ms = httpx.get(url).json()["created_at_ms"]
    time.sleep(0.25)
    log_traffic(
        services,
        models,
        churn_rows[1].iloc[:200],
        deployment="churn-live",
        arms={"primary": 1, "canary": 2},
        shares={"primary": 95, "canary": 5},
        start_ms=created_ms + 1,
        end_ms=services.deployments.clock(),
    )
    refused = httpx.put(f"{url}/hypothesis", json=HYPOTHESIS)
    assert refused.status_code == 409 and "pre-registered" in refused.json()["error"]["message"]
    markdown = httpx.get(f"{url}/report", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith("# Experiment report: churn-live (interim)")
    assert "## Segment tenure" in markdown.text and "| primary | primary | 1 |" in markdown.text
    assert httpx.post(f"{url}/rollback", json={"reason": "enough"}).status_code == 200
    assert httpx.get(f"{url}/report").json()["archived"] is False  # the job has not run
    assert drain(services.jobs) == 1  # deploy.report (not stateful: nothing to count)
    remote = Client(
        live_server,
        settings=services.settings.model_copy(update={"home": services.settings.home / "remote"}),
    )
    try:
        final = remote.deployment_report("churn-live")
        assert final["archived"] and final["label"] == "final"
        assert sum(a["n"] for a in final["arms"]) == 200
        assert "(archived final)" in remote.deployment_report("churn-live", markdown=True)
        with pytest.raises(Conflict):
            remote.amend_deployment_hypothesis("churn-live", HYPOTHESIS)
    finally:
        remote.close()
    monkeypatch.setenv("KEEL_HOME", str(services.settings.home))
    if services.settings.database_url:
        monkeypatch.setenv("KEEL_DATABASE_URL", services.settings.database_url)
    runner = CliRunner()
    shown = runner.invoke(cli, ["deploy", "report", "churn-live", "--markdown"])
    assert shown.exit_code == 0 and "(archived final)" in shown.output
    as_json = json.loads(runner.invoke(cli, ["deploy", "report", "churn-live", "--json"]).output)
    assert as_json["archive_run_id"] == final["archive_run_id"]
    both = runner.invoke(cli, ["deploy", "report", "churn-live", "--json", "--markdown"])
    assert both.exit_code == 2
    assert runner.invoke(cli, ["deploy", "report", "nope"]).exit_code == 1
    file = tmp_path / "h.yaml"
    file.write_text(yaml.safe_dump(HYPOTHESIS))
    refused_cli = runner.invoke(cli, ["deploy", "hypothesis", "churn-live", "-f", str(file)])
    assert refused_cli.exit_code == 1 and "rolled_back" in refused_cli.output
    file.write_text("- just\n- a list\n")
    listed = runner.invoke(cli, ["deploy", "hypothesis", "churn-live", "-f", str(file)])
    assert listed.exit_code == 2 and "hypothesis" in listed.output


def test_promotion_of_a_stateful_ranking_model_archives_and_checkpoints(
    services: Services,
    register_churn: Callable[[str, str], Models],
    clocked: tuple[DeploymentService, Clock],
) -> None:
    service, clock = clocked
    register_churn("weak", "good")
    services.registry.update_version(
        "churn", 2, tags={"task": "ranking", "state_artifact": "s3://b/v2"}
    )
    service.create({**POLICY, "stateful": {"reset_sessions": False}}, actor="ana")
    codes = [w["code"] for w in service.get("churn-live").warnings]
    assert codes == ["ranking_interference", "shared_routing_key"]
    clock.now += 5_000
    service.promote("churn-live", "ana", reason="looks good")
    assert drain(services.jobs) == 1  # the report archive
    checkpoints = service.get("churn-live").checkpoints or []
    assert [c["boundary"] for c in checkpoints] == ["created", "promoted"]
    assert checkpoints[-1]["weights"] == {"primary": 0.0, "canary": 100.0}
    assert checkpoints[-1]["state_artifacts"] == {"canary": "s3://b/v2"}
    report = service_report(services, "churn-live")
    assert report["archived"] and report["status"] == "promoted"
    assert report["hypothesis"] is None and report["verdicts"] == {}  # never evaluated
    assert [w["code"] for w in report["warnings"]] == codes
    assert [d["kind"] for d in report["decisions"]] == ["deployment_created", "promotion"]
    run = services.tracking.get_run(report["archive_run_id"])
    assert run.tags["deployment"] == "churn-live" and run.tags["status"] == "promoted"
    assert sorted(a.path for a in services.tracking.list_artifacts(run.id)) == [
        "report.json",
        "report.md",
    ]
