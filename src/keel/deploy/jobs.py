"""The deployment job kinds and their default schedules.

- ``deploy.evaluate`` (every minute by default, ``KEEL_DEPLOY_EVALUATE_CRON``): one
  controller tick of every active deployment, each under its SQL lease, so rollouts
  advance, promote and roll back unattended in ``keel worker`` or ``keel server``'s
  in-process consumer.
- ``deploy.retention`` (daily by default, ``KEEL_DEPLOY_RETENTION_CRON``): archive each
  previous champion whose retention passed (:mod:`keel.deploy.retention`).

Both are idempotent (a second run finds nothing to do, or evaluates again), as job kinds
must be. The schedules are created with the first deployment (see :func:`schedule_on_create`).
"""

from __future__ import annotations

import logging
from typing import Any

from keel.automation.kinds import job_kind
from keel.deploy._changes import Listener
from keel.deploy.models import Deployment
from keel.errors import InvalidInput, NotFound

__all__ = [
    "EVALUATE_KIND",
    "EVALUATE_SCHEDULE",
    "RETENTION_KIND",
    "RETENTION_SCHEDULE",
    "ensure_schedules",
    "schedule_on_create",
]

log = logging.getLogger("keel.deploy")

EVALUATE_KIND = "deploy.evaluate"
RETENTION_KIND = "deploy.retention"
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
    return {"versions": outcomes}


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
