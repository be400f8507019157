"""REST routes for feedback (delayed labels) and monitors."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from keel.api.deps import Actor, Svc
from keel.monitoring.models import Monitor, MonitorRun, MonitorSpec, SavedMonitor

router = APIRouter(tags=["monitoring"])


class FeedbackBatch(BaseModel):
    """Labels for logged predictions: each item has ``label`` and ``request_id``, or
    ``entity_key`` with ``event_time``; optional ``model``."""

    items: list[dict[str, Any]] = Field(max_length=100_000)


class FeedbackOutcome(BaseModel):
    """What happened to a batch: stored, ignored as duplicates, or naming unknown requests."""

    accepted: int
    duplicates: int
    unknown: int
    unknown_examples: list[str]


@router.post("/v1/feedback", response_model=FeedbackOutcome)
async def submit_feedback(batch: FeedbackBatch, svc: Svc) -> FeedbackOutcome:
    """Store ground-truth labels (idempotent); unknown request ids are counted, not rejected."""
    result = await run_in_threadpool(svc.feedback.submit, batch.items)
    return FeedbackOutcome(**result.__dict__)


@router.post("/v1/monitors", status_code=201, response_model=SavedMonitor)
def create_monitor(
    spec: MonitorSpec,
    svc: Svc,
    actor: Actor,
    drop_resolution_rules: bool = Query(
        False,
        description="On a replace, drop the rules incident resolutions added that the spec "
        "does not list (default: keep them).",
    ),
) -> SavedMonitor:
    """Create or replace a monitor; a replace keeps the rules incident resolutions added
    unless ``drop_resolution_rules``, and ``resolution_rules`` says which were kept or
    dropped."""
    return svc.monitors.create(spec, actor=actor, drop_resolution_rules=drop_resolution_rules)


@router.get("/v1/monitors", response_model=list[Monitor])
def list_monitors(svc: Svc) -> list[Monitor]:
    """Every monitor."""
    return svc.monitors.list_monitors()


@router.get("/v1/monitors/{name}", response_model=Monitor)
def get_monitor(name: str, svc: Svc) -> Monitor:
    """One monitor."""
    return svc.monitors.get(name)


@router.delete("/v1/monitors/{name}", status_code=204)
def delete_monitor(name: str, svc: Svc) -> None:
    """Delete a monitor and its stored runs."""
    svc.monitors.delete(name)


@router.post("/v1/monitors/{name}/run", response_model=MonitorRun)
def run_monitor(
    name: str,
    svc: Svc,
    window_end: str | None = Query(
        None, max_length=64, description="End of the window (ISO-8601, epoch ms); default now."
    ),
    as_of: str | None = Query(
        None, max_length=64, description="Count only labels received by then; default all."
    ),
) -> MonitorRun:
    """Evaluate the monitor over the window ending at ``window_end`` (default now) and store
    the result."""
    return svc.monitors.run(name, window_end=_time(window_end), as_of=_time(as_of))


def _time(value: str | None) -> str | int | None:
    # Epoch milliseconds arrive as text in a query string.
    return int(value) if value is not None and value.strip().isdigit() else value


@router.get("/v1/monitors/{name}/runs", response_model=list[MonitorRun])
def list_runs(name: str, svc: Svc, limit: int = Query(50, ge=1, le=1_000)) -> list[MonitorRun]:
    """Stored runs, newest first."""
    return svc.monitors.runs(name, limit)


@router.get("/v1/monitors/{name}/runs/{run_id}", response_model=MonitorRun)
def get_run(name: str, run_id: str, svc: Svc) -> MonitorRun:
    """One stored run with every number."""
    return svc.monitors.get_run(name, run_id)


@router.get("/v1/monitors/{name}/runs/{run_id}/report", response_class=HTMLResponse)
def run_report(name: str, run_id: str, svc: Svc) -> HTMLResponse:
    """A self-contained HTML report of one run, with distribution plots."""
    from keel.ui.monitor_report import render_run

    run = svc.monitors.get_run(name, run_id)
    reference, window = svc.monitors.samples(run)
    return HTMLResponse(render_run(run, reference, window))


@router.get("/v1/monitors/{name}/runs/{run_id}/diagnosis")
def run_diagnosis(
    name: str,
    run_id: str,
    svc: Svc,
    slice_by: list[str] = Query([], max_length=20),
) -> dict[str, Any]:
    """Which of data drift, concept drift, a data-quality break or a stale source best
    explains the run's window, with SHAP attributions and worst slices."""
    return svc.monitors.diagnose(name, run_id, slice_by=slice_by).as_dict()
