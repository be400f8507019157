"""Archived experiment reports (R-DEP-17): kept as tracking runs, served from there.

When a deployment ends (promoted, rolled back, a shadow comparison completed) its final
report (:func:`keel.deploy.report.compute_report`) is stored as a finished run of the
tracking experiment :data:`EXPERIMENT`, tagged ``deployment``/``model``/``status`` and the
hypothesis verdicts, with ``report.json`` and ``report.md`` as artifacts: durable (SQL +
content-addressed artifact store), shared by every replica, searchable with the run
filters, and never rewritten — later log retention or late labels do not change what the
experiment concluded. The decision log stays the list of the rollout's own decisions.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from keel.deploy.models import FINISHED, Deployment
from keel.deploy.report import compute_report, to_markdown
from keel.errors import NotFound

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService
    from keel.tracking.service import TrackingService

__all__ = ["EXPERIMENT", "archive_listener", "archived_report", "build_report"]

EXPERIMENT = "keel-deployment-reports"
_ENDING = {"promoted", "rolled_back"}
log = logging.getLogger("keel.deploy")


def archived_report(tracking: TrackingService, name: str) -> dict[str, Any] | None:
    """The newest archived report of deployment ``name`` (None when there is none)."""
    try:
        runs = tracking.search_runs(
            [EXPERIMENT],
            filter=f"tags.deployment = '{name}'",
            order_by=["start_time DESC"],
            max_results=1,
        ).items
    except NotFound:  # no deployment has ended yet: the experiment does not exist
        return None
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


def archive(service: DeploymentService, tracking: TrackingService, name: str) -> str:
    """Store the final report of ``name`` as a finished tracking run; returns its id."""
    report = compute_report(service, name)
    verdicts = {a: v["hypothesis"]["verdict"] for a, v in report["verdicts"].items()}
    run = tracking.create_run(
        EXPERIMENT,
        name=f"{name} report",
        tags={
            "deployment": name,
            "model": report["model"],
            "status": report["status"],
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


def archive_listener(
    service: DeploymentService, tracking: TrackingService
) -> Callable[[Deployment, str], None]:
    """A deployment listener archiving the final report when a deployment ends."""

    def on_change(deployment: Deployment, event: str) -> None:
        ended = event in _ENDING or (event == "evaluated" and deployment.status == "completed")
        if ended and deployment.status in FINISHED:
            run_id = archive(service, tracking, deployment.name)
            log.info("experiment report of %s archived as run %s", deployment.name, run_id)

    return on_change
