"""The deployment job kinds and their default schedules.

- ``deploy.evaluate`` (every minute by default, ``KEEL_DEPLOY_EVALUATE_CRON``): one
  controller tick of every active deployment, each under its SQL lease, so rollouts
  advance, promote and roll back unattended in ``keel worker`` or ``keel server``'s
  in-process consumer.
- ``deploy.retention`` (daily by default, ``KEEL_DEPLOY_RETENTION_CRON``): archive each
  previous champion whose retention passed (:mod:`keel.deploy.retention`).

Two more are queued by a deployment's end, so the promote/rollback call does not wait for
their reads of the whole prediction log:

- ``deploy.report`` (``{"deployment": NAME}``, key ``deploy.report:NAME:END_MS``): archive
  the final experiment report (:mod:`keel.deploy.reportarchive`), after counting a
  stateful rollback's contamination when that job has not yet done so;
- ``deploy.contamination`` (same args and key scheme): count the rows of a stateful
  rollback's bad windows (:func:`keel.deploy.checkpoints.count_contamination`).

All are idempotent (a second run finds nothing to do, or evaluates again), as job kinds
must be. The schedules are created with the first deployment (see :func:`schedule_on_create`).
"""

from __future__ import annotations

import logging
from typing import Any

from keel.automation.kinds import job_kind
from keel.deploy._changes import Listener
from keel.deploy.models import FINISHED, Deployment
from keel.errors import InvalidInput, NotFound

__all__ = [
    "CONTAMINATION_KIND",
    "EVALUATE_KIND",
    "REPORT_KIND",
    "EVALUATE_SCHEDULE",
    "RETENTION_KIND",
    "RETENTION_SCHEDULE",
    "ensure_schedules",
    "finish_listener",
    "queue_missing_reports",
    "schedule_on_create",
]

log = logging.getLogger("keel.deploy")

EVALUATE_KIND = "deploy.evaluate"
RETENTION_KIND = "deploy.retention"
REPORT_KIND = "deploy.report"
CONTAMINATION_KIND = "deploy.contamination"
#: Schedule names (``keel jobs schedules``); created by keel with the actor below.
EVALUATE_SCHEDULE = "deployments:evaluate"
RETENTION_SCHEDULE = "deployments:retention"
_ACTOR = "deployments"


def _no_args(kind: str) -> Any:
    def check(services: Any, args: dict[str, Any]) -> None:
        extra = sorted(set(args) - ({"deployment"} if kind == EVALUATE_KIND else set()))
        if extra:
            raise InvalidInput(f"args: unexpected {extra} for {kind}", field="args")
        if "deployment" in args:
            services.deployments.get(args["deployment"])  # NotFound now, not at run time

    return check


@job_kind(EVALUATE_KIND, check=_no_args(EVALUATE_KIND))
def evaluate_deployments(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Evaluate every active deployment once (or the one named), each under its lease."""
    deployments = services.deployments
    if "deployment" in args:
        done = deployments.evaluate(args["deployment"])
        outcomes = {args["deployment"]: "evaluated" if done is not None else "skipped"}
    else:
        outcomes = deployments.evaluate_all()
    for name, outcome in outcomes.items():
        log.info("deployment %s: %s", name, outcome)
    return {"deployments": outcomes}


@job_kind(RETENTION_KIND, check=_no_args(RETENTION_KIND))
def retain_deployments(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Archive previous champions whose retention passed (a version in use is kept)."""
    outcomes = services.deployments.archive_expired()
    for outcome in outcomes:
        log.info("retention of %s v%s: %s", outcome["model"], outcome["version"], outcome)
    return {"versions": outcomes, "reports_queued": queue_missing_reports(services)}


def queue_missing_reports(services: Any) -> list[str]:
    """Queue the report job of each ended deployment that has none: its end queues it, but
    a queue that was down then (the end itself is already committed) would otherwise leave
    the report computed on every read and never archived. Keyed like the end's own job, so
    a deployment whose job exists (whatever its status) queues nothing."""
    queued = []
    for deployment in services.deployments.list():
        if deployment.status in FINISHED and _queue(services.jobs, REPORT_KIND, deployment):
            queued.append(deployment.name)
    return queued


def _one_deployment(kind: str) -> Any:
    def check(services: Any, args: dict[str, Any]) -> None:
        name = args.get("deployment")
        if not isinstance(name, str) or not name:
            field = "args.deployment"
            raise InvalidInput(f"{field}: the deployment's name is required", field=field)
        extra = sorted(set(args) - {"deployment"})
        if extra:
            raise InvalidInput(f"args: unexpected {extra} for {kind}", field="args")
        services.deployments.store.get_deployment(name)  # NotFound now, not at run time

    return check


@job_kind(REPORT_KIND, check=_one_deployment(REPORT_KIND))
def archive_report(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Archive the final experiment report of an ended deployment as a tracking run."""
    from keel.deploy.checkpoints import count_contamination
    from keel.deploy.reportarchive import archive

    name = args["deployment"]
    # The archive is never rewritten: a stateful rollback's rows are counted first.
    count_contamination(services.deployments, name)
    run_id = archive(services.deployments, services.tracking, name)
    if run_id is None:
        log.info("deployment %s is no longer finished: nothing to archive", name)
    else:
        log.info("experiment report of %s archived as run %s", name, run_id)
    return {"deployment": name, "archive_run_id": run_id}


@job_kind(CONTAMINATION_KIND, check=_one_deployment(CONTAMINATION_KIND))
def count_rollback_contamination(services: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Count the predictions a stateful rollback's bad windows served (R-DEP-10)."""
    from keel.deploy.checkpoints import count_contamination

    name = args["deployment"]
    warning = count_contamination(services.deployments, name)
    rows = None if warning is None else warning["rows"]
    log.info("contamination of %s: %s rows", name, rows)
    return {"deployment": name, "rows": rows}


def finish_listener(jobs: Any) -> Listener:
    """A deployment-service listener queueing the work of a deployment's end: the report
    archive, and a stateful rollback's contamination count. Keyed by deployment and end
    time: a repeated notification queues nothing more; the caller never waits for them."""

    def listener(deployment: Deployment, event: str) -> None:
        ended = event in ("promoted", "rolled_back") or (
            event == "evaluated" and deployment.status == "completed"
        )
        if not ended or deployment.status not in FINISHED:
            return
        kinds = [REPORT_KIND]
        if event == "rolled_back" and _counts_contamination(deployment):
            kinds.insert(0, CONTAMINATION_KIND)
        for kind in kinds:
            _queue(jobs, kind, deployment)

    return listener


def _queue(jobs: Any, kind: str, deployment: Deployment) -> bool:
    """Queue ``kind`` for the end of ``deployment``; False when its key already has a job."""
    key = f"{kind}:{deployment.name}:{deployment.updated_at_ms}"
    if jobs.store.find_job_by_key(key) is not None:
        return False
    job = jobs.enqueue(kind, {"deployment": deployment.name}, key=key, actor=_ACTOR)
    log.info("%s of %s queued as job %s", kind, deployment.name, job.id)
    return True


def _counts_contamination(deployment: Deployment) -> bool:
    stateful = deployment.policy.get("stateful")
    return isinstance(stateful, dict) and bool(stateful.get("feedback_loop", True))


def ensure_schedules(jobs: Any, evaluate_cron: str, retention_cron: str) -> None:
    """Create both schedules, or bring keel's own to the configured cron; a schedule an
    operator replaced (another actor) is left as it is."""
    for name, kind, cron in (
        (EVALUATE_SCHEDULE, EVALUATE_KIND, evaluate_cron),
        (RETENTION_SCHEDULE, RETENTION_KIND, retention_cron),
    ):
        try:
            found = jobs.get_schedule(name)
        except NotFound:
            found = None
        if found is None or (found.created_by == _ACTOR and found.cron != cron):
            jobs.schedule(name, kind, cron, {}, actor=_ACTOR)


def schedule_on_create(jobs: Any, evaluate_cron: str, retention_cron: str) -> Listener:
    """A deployment-service listener that ensures the schedules when a deployment is
    created (a store with no deployments runs no evaluation job)."""

    def listener(deployment: Deployment, event: str) -> None:
        if event == "created":
            ensure_schedules(jobs, evaluate_cron, retention_cron)

    return listener
