"""REST routes for dataset versions."""

from __future__ import annotations

import io

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from keel._models import invalid_field
from keel.api.deps import Svc
from keel.tracking.models import DatasetVersion

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("/{name}/versions", status_code=201, response_model=DatasetVersion)
async def register_dataset(
    name: str,
    request: Request,
    svc: Svc,
    format: str = Query("parquet", pattern="^(parquet|csv|file)$"),
    description: str | None = Query(None, max_length=10_000),
    source_uri: str | None = Query(None, max_length=4096),
) -> DatasetVersion:
    """Upload bytes as the next version of ``name`` (identical content returns the existing one)."""
    data = await request.body()
    return await run_in_threadpool(
        svc.datasets.register_stream,
        name,
        io.BytesIO(data),
        format,
        description=description,
        source_uri=source_uri,
    )


@router.get("", response_model=list[DatasetVersion])
def list_datasets(svc: Svc, name: str | None = None) -> list[DatasetVersion]:
    """All dataset versions (of one dataset when ``name`` is given)."""
    return svc.datasets.list(name)


@router.get("/by-hash/{content_hash}", response_model=DatasetVersion)
def dataset_by_hash(content_hash: str, svc: Svc) -> DatasetVersion:
    """The version with this content hash (or unique prefix of at least 8 characters)."""
    return svc.datasets.get_by_hash(content_hash)


@router.get("/{name}/versions/{version}", response_model=DatasetVersion)
def get_dataset(name: str, version: str, svc: Svc) -> DatasetVersion:
    """One version by number, or ``latest``."""
    return svc.datasets.get(name, _version(version))


@router.get("/{name}/versions/{version}/data")
def dataset_data(name: str, version: str, svc: Svc) -> FileResponse:
    """The stored bytes of a version."""
    item = svc.datasets.get(name, _version(version))
    media = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}.get(
        item.format, "application/octet-stream"
    )
    return FileResponse(svc.datasets.path(item), media_type=media)


def _version(text: str) -> int | None:
    """A path's version: None for ``latest``; the service bounds a number (one message)."""
    if text == "latest":
        return None
    if not text.isdigit():
        raise invalid_field("version", "must be a positive integer or 'latest'")
    return int(text)
