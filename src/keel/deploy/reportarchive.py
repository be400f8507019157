"""Archived experiment reports (R-DEP-17): kept as tracking runs, served from there.

When a deployment ends (promoted, rolled back, a shadow comparison completed) its final
report (:func:`keel.deploy.report.compute_report`) is stored as a finished run of the
tracking experiment :data:`EXPERIMENT`, tagged ``deployment``/``model``/``status``, the
end's time (``finished_at_ms``) and the hypothesis verdicts, with ``report.json`` and
``report.md`` as artifacts: durable (SQL + content-addressed artifact store), shared by
every replica, searchable with the run filters, and never rewritten — later log retention
or late labels do not change what the experiment concluded. The decision log stays the
list of the rollout's own decisions.

The archive reads the whole prediction log of the deployment (seconds over 100k labelled
rows), so it is a job (``deploy.report``, :mod:`keel.deploy.jobs`) the end of a deployment
enqueues, never work inside the promote/rollback call; until it has run the report is
computed on request (``archived: false``). :func:`archive` is idempotent per end.
"""

from __future__ import annotations

import io
import json
import logging
from typing import TYPE_CHECKING, Any

from keel.deploy.models import FINISHED
from keel.deploy.report import compute_report, to_markdown
from keel.errors import NotFound

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService
    from keel.tracking.service import TrackingService

__all__ = ["EXPERIMENT", "archive", "archived_report", "build_report"]

EXPERIMENT = "keel-deployment-reports"
log = logging.getLogger("keel.deploy")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _runs(tracking: TrackingService, name: str, extra: str = "", limit: int = 1) -> list[Any]:
    try:
        return tracking.search_runs(
            [EXPERIMENT],
            filter=f"tags.deployment = {_quoted(name)}{extra}",
            order_by=["start_time DESC"],
            max_results=limit,
        ).items
    except NotFound:  # no deployment has ended yet: the experiment does not exist
        return []


def archived_report(tracking: TrackingService, name: str) -> dict[str, Any] | None:
    """The newest archived report of deployment ``name`` (None when there is none); a run
    an interrupted archive job left unfinished is not one."""
    runs = _runs(tracking, name, " AND attributes.status = 'FINISHED'")
    if not runs:
        return None
    _, path = tracking.artifact_file(runs[0].id, "report.json")
    report: dict[str, Any] = json.loads(path.read_text())
    return {**report, "archived": True, "archive_run_id": runs[0].id}


def build_report(
    service: DeploymentService, tracking: TrackingService | None, name: str
) -> dict[str, Any]:
    """The archived final report of a finished deployment, else one computed now."""
    if tracking is not None and service.store.get_deployment(name).status in FINISHED:
        found = archived_report(tracking, name)
        if found is not None:
            return found
    return {**compute_report(service, name), "archived": False, "archive_run_id": None}


def archive(service: DeploymentService, tracking: TrackingService, name: str) -> str | None:
    """Store the final report of ``name`` as a finished tracking run; returns its id, or
    None when the deployment is not finished (a restored rollback drill).

    Idempotent: the run of this end (``finished_at_ms``) when one exists; a run an
    interrupted attempt left unfinished is ended as FAILED and written anew.
    """
    deployment = service.store.get_deployment(name)
    if deployment.status not in FINISHED:
        return None
    end = str(deployment.updated_at_ms)
    same_end = f" AND tags.finished_at_ms = {_quoted(end)}"
    for run in _runs(tracking, name, same_end, limit=100):
        if run.status.value == "FINISHED":
            return str(run.id)
        tracking.end_run(run.id, "FAILED")
    report = compute_report(service, name)
    verdicts = {a: v["hypothesis"]["verdict"] for a, v in report["verdicts"].items()}
    run = tracking.create_run(
        EXPERIMENT,
        name=f"{name} report",
        tags={
            "deployment": name,
            "model": report["model"],
            "status": report["status"],
            "finished_at_ms": end,
            **{f"verdict.{arm}": verdict for arm, verdict in verdicts.items()},
        },
        params={"strategy": report["strategy"], "label": report["label"]},
        user="policy",
    )
    body = json.dumps(report, sort_keys=True).encode()
    tracking.log_artifact_stream(run.id, "report.json", io.BytesIO(body))
    markdown = to_markdown({**report, "archived": True}).encode()
    tracking.log_artifact_stream(run.id, "report.md", io.BytesIO(markdown))
    tracking.end_run(run.id)
    return run.id
