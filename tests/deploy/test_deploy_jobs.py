"""The deployment job kinds run through the jobs service (SQLite and PostgreSQL):
``deploy.evaluate`` rolls a worse canary back unattended; ``deploy.retention`` archives
only a previous champion whose retention passed and that nothing still uses;
``deploy.report`` is queued by a deployment's end (the call does not wait for it), retried
on failure and idempotent per end."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.automation.conftest import drain
from tests.deploy.conftest import POLICY, Canary, Models, serve_step
from typer.testing import CliRunner

from keel.cli.main import app as cli
from keel.deploy.jobs import EVALUATE_SCHEDULE, RETENTION_SCHEDULE
from keel.deploy.reportarchive import EXPERIMENT, build_report
from keel.errors import InvalidInput, NotFound
from keel.services import Services

DAY_MS = 86_400_000


def _run(services: Services, kind: str, **args: str) -> dict[str, object]:
    job = services.jobs.enqueue(kind, args)
    drain(services.jobs)
    done = services.jobs.get(job.id)
    assert done.status == "succeeded", (done.error, done.traceback)
    assert isinstance(done.result, dict)
    return done.result


def test_first_deployment_schedules_both_jobs_once(
    services: Services, register_churn: Callable[[str, str], Models]
) -> None:
    assert [s.name for s in services.jobs.list_schedules()] == []
    register_churn("good", "weak")
    services.deployments.create(POLICY, actor="ana")
    found = {s.name: s for s in services.jobs.list_schedules()}
    assert found[EVALUATE_SCHEDULE].kind == "deploy.evaluate"
    assert found[EVALUATE_SCHEDULE].cron == "* * * * *"
    assert found[RETENTION_SCHEDULE].kind == "deploy.retention"
    assert found[RETENTION_SCHEDULE].cron == "0 3 * * *"
    # the scheduler's tick fires the evaluation as a job (once per minute, by key)
    fired = services.jobs.fire_schedules(found[EVALUATE_SCHEDULE].next_fire_at_ms or 0)
    assert {j.kind for j in fired} == {"deploy.evaluate"}
    assert drain(services.jobs) == 1
    assert services.jobs.get(fired[0].id).result == {"deployments": {"churn-live": "evaluated"}}


def test_evaluate_job_rolls_back_a_worse_canary_unattended(
    services: Services, canary: Canary, churn_rows: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    service = canary.service
    rows = churn_rows[1].iloc[:1200]
    latency = {"primary": 5.0, "canary": 15.0}
    serve_step(services, canary.models, rows, canary.clock, latency_ms=latency)
    assert _run(services, "deploy.evaluate") == {"deployments": {"churn-live": "evaluated"}}
    assert service.get("churn-live").status == "rolled_back"
    rollback = services.decisions.query(deployment="churn-live", kind="rollback")[0]
    assert "p99_latency" in rollback.summary and rollback.actor == "policy"
    with pytest.raises(InvalidInput, match="args"):
        services.jobs.enqueue("deploy.evaluate", {"deploymnet": "churn-live"})


def test_retention_archives_only_an_expired_unused_previous_champion(
    services: Services, canary: Canary
) -> None:
    service, clock = canary.service, canary.clock
    service.promote("churn-live", actor="ana")  # v2 champion, v1 kept 14 days
    registry = services.registry
    clock.now += 13 * DAY_MS
    # not yet due; the promotion's own report job exists, so none is queued again
    assert _run(services, "deploy.retention") == {"versions": [], "reports_queued": []}
    clock.now += 2 * DAY_MS
    registry.set_alias("churn", "fallback", 1)  # someone relies on v1: kept
    kept = _run(services, "deploy.retention")["versions"]
    assert [(v["version"], v["outcome"]) for v in kept] == [(1, "kept")]  # type: ignore[index]
    assert registry.get_version("churn", 1).status == "ACTIVE"
    registry.delete_alias("churn", "fallback")
    # a new deployment serving v1 again: still never archived
    second = {**POLICY, "name": "churn-back"}
    second["arms"] = [{"version": 2, "role": "primary"}, {"version": 1, "role": "canary"}]
    service.create(second, actor="ana")
    kept = _run(services, "deploy.retention")["versions"]
    assert [v["outcome"] for v in kept] == ["kept"]  # type: ignore[index]
    assert "churn-back" in kept[0]["reason"]  # type: ignore[index]
    service.rollback("churn-back", reason="not needed", actor="ana")
    done = _run(services, "deploy.retention")["versions"]
    assert [(v["version"], v["outcome"]) for v in done] == [(1, "archived")]  # type: ignore[index]
    assert registry.get_version("churn", 1).status == "ARCHIVED"
    assert registry.get_version("churn", 2).status == "ACTIVE"
    record = services.decisions.query(deployment="churn-live", kind="archive")[0]
    assert record.actor == "retention" and "v1 archived" in record.summary
    assert _run(services, "deploy.retention") == {"versions": [], "reports_queued": []}


def test_rollback_returns_before_its_report_archive_job_which_retries(
    services: Services,
    canary: Canary,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    live_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = canary.service
    serve_step(services, canary.models, churn_rows[1].iloc[:300], canary.clock)
    services.jobs.backoff_s = 0.0  # the retry is due at once (drain runs it)
    tracking = services.tracking
    real_upload, failures = tracking.log_artifact_stream, []

    def upload_failing_once(*args: Any, **kw: Any) -> Any:
        if not failures:
            failures.append(args)
            raise OSError("artifact store unavailable")
        return real_upload(*args, **kw)

    monkeypatch.setattr(tracking, "log_artifact_stream", upload_failing_once)
    ended = service.rollback("churn-live", reason="by hand", actor="ana")
    # no consumer runs in this process: the call returned, the archive is only queued
    (job,) = services.jobs.list_jobs(kind="deploy.report")
    assert job.status == "queued" and job.args == {"deployment": "churn-live"}
    assert job.key == f"deploy.report:churn-live:{ended.updated_at_ms}"
    assert services.jobs.list_jobs(kind="deploy.contamination") == []  # not stateful
    before = build_report(service, tracking, "churn-live")
    assert (before["label"], before["archived"], before["archive_run_id"]) == (
        "final",
        False,
        None,
    )
    listed = httpx.get(f"{live_server}/v1/jobs", params={"kind": "deploy.report"}).json()
    assert [j["id"] for j in listed] == [job.id]
    env = {"KEEL_HOME": str(services.settings.home)}
    if services.settings.database_url:
        env["KEEL_DATABASE_URL"] = services.settings.database_url
    shown = CliRunner().invoke(cli, ["jobs", "list", "--kind", "deploy.report", "--json"], env=env)
    assert shown.exit_code == 0 and [j["id"] for j in json.loads(shown.stdout)] == [job.id]
    service.notify(ended, "rolled_back")  # the same end announced twice: one job
    assert len(services.jobs.list_jobs(kind="deploy.report")) == 1
    # first attempt fails mid-archive (a run left unfinished), the retry archives
    assert drain(services.jobs) == 2
    done = services.jobs.get(job.id)
    assert (done.status, done.attempts) == ("succeeded", 2), done.error
    assert done.result is not None
    run_id = done.result["archive_run_id"]
    runs = tracking.search_runs([EXPERIMENT], filter="tags.deployment = 'churn-live'").items
    assert sorted(r.status.value for r in runs) == ["FAILED", "FINISHED"]
    after = build_report(service, tracking, "churn-live")
    assert after["archived"] and after["archive_run_id"] == run_id
    assert sum(a["n"] for a in after["arms"]) == 300
    # idempotent: a second run of the kind finds this end's run and writes nothing
    again = _run(services, "deploy.report", deployment="churn-live")
    assert again == {"deployment": "churn-live", "archive_run_id": run_id}
    assert len(tracking.search_runs([EXPERIMENT]).items) == 2


@pytest.mark.parametrize("kind", ["deploy.report", "deploy.contamination"])
def test_finish_job_arguments_are_checked_at_enqueue(
    services: Services, canary: Canary, kind: str
) -> None:
    for args, field in (({}, "args.deployment"), ({"deployment": 3}, "args.deployment")):
        with pytest.raises(InvalidInput) as caught:
            services.jobs.enqueue(kind, args)
        assert caught.value.field == field
    with pytest.raises(InvalidInput) as extra:
        services.jobs.enqueue(kind, {"deployment": "churn-live", "when": 1})
    assert extra.value.field == "args"
    with pytest.raises(NotFound):
        services.jobs.enqueue(kind, {"deployment": "nope"})
    # an active deployment: nothing to archive or count (and no run written)
    result = _run(services, kind, deployment="churn-live")
    assert result == {
        "deployment": "churn-live",
        **({"archive_run_id": None} if kind == "deploy.report" else {"rows": None}),
    }


def test_retention_queues_the_report_an_unavailable_queue_missed(
    services: Services,
    canary: Canary,
    churn_rows: tuple[pd.DataFrame, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = canary.service
    serve_step(services, canary.models, churn_rows[1].iloc[:200], canary.clock)
    real_enqueue = services.jobs.enqueue

    def queue_down(*args: Any, **kw: Any) -> Any:
        raise ConnectionError("queue unavailable")

    monkeypatch.setattr(services.jobs, "enqueue", queue_down)
    try:
        ended = service.rollback("churn-live", reason="by hand", actor="ana")
    except ConnectionError:
        ended = service.get("churn-live")  # a listener may surface the failure
    assert ended.status == "rolled_back"
    monkeypatch.setattr(services.jobs, "enqueue", real_enqueue)
    assert services.jobs.list_jobs(kind="deploy.report") == []
    result = _run(services, "deploy.retention")
    assert result["reports_queued"] == ["churn-live"]
    (job,) = services.jobs.list_jobs(kind="deploy.report")
    assert job.key == f"deploy.report:churn-live:{ended.updated_at_ms}"
    drain(services.jobs)
    assert services.jobs.get(job.id).status == "succeeded"
    assert build_report(service, services.tracking, "churn-live")["archived"]
    # the next day's run finds the job and queues nothing more
    assert _run(services, "deploy.retention")["reports_queued"] == []
