"""The deployment job kinds run through the jobs service (SQLite and PostgreSQL):
``deploy.evaluate`` rolls a worse canary back unattended; ``deploy.retention`` archives
only a previous champion whose retention passed and that nothing still uses."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from tests.automation.conftest import drain
from tests.deploy.conftest import POLICY, Canary, Models, serve_step

from keel.deploy.jobs import EVALUATE_SCHEDULE, RETENTION_SCHEDULE
from keel.errors import InvalidInput
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
    assert _run(services, "deploy.retention") == {"versions": []}  # not yet due
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
    assert _run(services, "deploy.retention") == {"versions": []}  # idempotent
