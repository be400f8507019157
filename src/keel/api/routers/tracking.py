"""REST routes for experiments, runs, metrics, params, tags, inputs and artifacts."""

from __future__ import annotations

import io
import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from keel._models import Page
from keel.api.deps import Svc
from keel.api.schemas import (
    METRIC_SCHEMA,
    BatchBody,
    CreateExperiment,
    CreateRun,
    EndRun,
    SearchRuns,
)
from keel.tracking.models import ArtifactFile, Experiment, Metric, Run, RunInput

router = APIRouter(prefix="/v1", tags=["tracking"])


@router.post("/experiments", status_code=201, response_model=Experiment)
def create_experiment(body: CreateExperiment, svc: Svc) -> Experiment:
    """Create an experiment (409 if the name is taken)."""
    return svc.tracking.create_experiment(body.name, body.description, body.tags)


@router.get("/experiments", response_model=Page[Experiment])
def list_experiments(
    svc: Svc,
    max_results: int = Query(100, ge=1, le=10_000),
    page_token: str | None = Query(None, max_length=200),
) -> Page[Experiment]:
    """List experiments by name."""
    return svc.tracking.list_experiments(max_results, page_token)


@router.get("/experiments/{experiment}", response_model=Experiment)
def get_experiment(experiment: str, svc: Svc) -> Experiment:
    """An experiment by id or name."""
    return svc.tracking.get_experiment(experiment)


@router.post("/runs", status_code=201, response_model=Run)
def create_run(body: CreateRun, svc: Svc) -> Run:
    """Start a run (the experiment is created when the name is new)."""
    return svc.tracking.create_run(
        body.experiment,
        name=body.name,
        parent_run_id=body.parent_run_id,
        tags=body.tags,
        params=body.params,
        user=body.user,
        environment=body.environment,
        seed=body.seed,
        start_time_ms=body.start_time_ms,
    )


@router.post("/runs/search", response_model=Page[Run])
def search_runs(body: SearchRuns, svc: Svc) -> Page[Run]:
    """Search runs with a filter such as ``metrics.auc > 0.8 and params.model = 'lgbm'``."""
    return svc.tracking.search_runs(
        body.experiments, body.filter, body.order_by, body.max_results, body.page_token
    )


@router.get("/runs/{run_id}", response_model=Run)
def get_run(run_id: str, svc: Svc) -> Run:
    """A run with its params, latest metrics, tags and inputs."""
    return svc.tracking.get_run(run_id)


@router.get("/runs/{run_id}/reproducibility")
def run_reproducibility(run_id: str, svc: Svc) -> dict[str, object]:
    """Whether code, data, config and environment were all recorded, and the run's key."""
    return svc.tracking.get_run(run_id).reproducibility()


@router.post("/runs/{run_id}/end", response_model=Run)
def end_run(run_id: str, body: EndRun, svc: Svc) -> Run:
    """End a run as FINISHED, FAILED or KILLED."""
    return svc.tracking.end_run(run_id, body.status)


#: A metric as sent: parse_metric checks it (MetricBody only documents the shape).
MetricJson = Annotated[Any, Body(json_schema_extra=METRIC_SCHEMA)]


@router.post("/runs/{run_id}/metrics", status_code=204)
def log_metric(run_id: str, body: MetricJson, svc: Svc) -> Response:
    """Log one metric value ``{key, value, step?, timestamp_ms?}``."""
    svc.tracking.log_metric_body(run_id, body)
    return Response(status_code=204)


@router.post("/runs/{run_id}/batch", status_code=204)
def log_batch(run_id: str, body: BatchBody, svc: Svc) -> Response:
    """Log metrics, params and tags in one transaction (all or nothing)."""
    svc.tracking.log_batch(
        run_id,
        metrics=body.metrics,
        params=body.params,
        tags=body.tags,
    )
    return Response(status_code=204)


@router.get("/runs/{run_id}/metrics/{key:path}/history", response_model=list[Metric])
def metric_history(run_id: str, key: str, svc: Svc) -> list[Metric]:
    """Every value of one metric."""
    return svc.tracking.metric_history(run_id, key)


@router.post("/runs/{run_id}/inputs", response_model=Run)
def log_input(run_id: str, body: RunInput, svc: Svc) -> Run:
    """Record a dataset (by content hash) the run read."""
    return svc.tracking.log_input(run_id, body)


@router.put("/runs/{run_id}/artifacts/{path:path}", status_code=201, response_model=ArtifactFile)
async def upload_artifact(run_id: str, path: str, request: Request, svc: Svc) -> ArtifactFile:
    """Upload one file of a run (raw bytes body)."""
    data = await request.body()
    return await run_in_threadpool(svc.tracking.log_artifact_stream, run_id, path, io.BytesIO(data))


@router.get("/runs/{run_id}/artifacts", response_model=list[ArtifactFile])
def list_artifacts(run_id: str, svc: Svc, prefix: str | None = None) -> list[ArtifactFile]:
    """Files of a run."""
    return svc.tracking.list_artifacts(run_id, prefix)


@router.get("/runs/{run_id}/artifacts/{path:path}")
def download_artifact(run_id: str, path: str, svc: Svc) -> FileResponse:
    """The bytes of one file of a run."""
    item, local = svc.tracking.artifact_file(run_id, path)
    media = mimetypes.guess_type(item.path)[0] or "application/octet-stream"
    return FileResponse(local, media_type=media, headers={"x-keel-sha256": item.sha256})
