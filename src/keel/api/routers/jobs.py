"""REST routes for jobs, periodic schedules and monitor schedules."""

from __future__ import annotations

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import Actor, Svc
from keel.automation.job_models import Job, JobStatus, Schedule

router = APIRouter(tags=["jobs"])


class MonitorSchedule(BaseModel):
    """When a monitor runs: a 5-field cron expression in UTC (``0 * * * *``) or an alias
    (``@hourly``)."""

    model_config = ConfigDict(extra="forbid")
    #: None (or absent): the monitor's default cadence (keel.monitoring.cadence).
    cron: str | None = Field(default=None, min_length=1, max_length=200)


@router.get("/v1/jobs", response_model=list[Job])
def list_jobs(
    svc: Svc,
    status: JobStatus | None = Query(None, description="Only jobs in this status."),
    kind: str | None = Query(None, max_length=128, description="Only jobs of this kind."),
    limit: int = Query(50, ge=1, le=1000),
) -> list[Job]:
    """Jobs, newest first (without their log lines)."""
    return svc.jobs.list_jobs(status=status, kind=kind, limit=limit)


@router.get("/v1/jobs/{job_id}", response_model=Job)
def get_job(job_id: str, svc: Svc) -> Job:
    """One job with its log lines, error and traceback."""
    return svc.jobs.get(job_id)


@router.post("/v1/jobs/{job_id}/cancel", response_model=Job)
def cancel_job(job_id: str, svc: Svc, actor: Actor) -> Job:
    """Cancel a job that has not finished (409 if it has)."""
    return svc.jobs.cancel(job_id, actor=actor)


@router.get("/v1/schedules", response_model=list[Schedule])
def list_schedules(svc: Svc) -> list[Schedule]:
    """Every periodic schedule, with its last and next firing."""
    return svc.jobs.list_schedules()


@router.put("/v1/monitors/{name}/schedule", response_model=Schedule)
def schedule_monitor(name: str, body: MonitorSchedule, svc: Svc, actor: Actor) -> Schedule:
    """Run a monitor on a cron schedule, each run a ``monitor.run`` job (R-MON-14); without
    ``cron``, on the default cadence of its fastest check."""
    from keel.monitoring.cadence import schedule_monitor as schedule

    return schedule(svc, name, body.cron, actor)


@router.delete("/v1/monitors/{name}/schedule", status_code=204)
def unschedule_monitor(name: str, svc: Svc) -> None:
    """Stop running a monitor on a schedule."""
    svc.jobs.unschedule_monitor(name)
