"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from huey.storage import SqliteStorage
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from keel.api.deps import Svc
from keel.services import Services
from keel.store.sql.diskfull import full_seen_within
from keel.store.sql.freespace import low_space, sqlite_file
from keel.store.sql.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])

#: Seconds after the database last refused a write for lack of space during which
#: /readyz answers 503. Readiness writes nothing to find out (a write probe would cost a
#: transaction per poll): the refused writes of real requests are the signal, so an
#: instance whose database disk fills up leaves the load balancer's pool until it has
#: gone this long without a refused write.
DATABASE_FULL_WINDOW_S = 30.0


def _sqlite_files(svc: Services) -> dict[str, Path]:
    """The check name and path of each SQLite file this process writes: the database,
    and the job queue when it is a SQLite file (the one Huey opened, not Redis)."""
    files: dict[str, Path] = {}
    database = sqlite_file(svc.store.engine)
    if database is not None:
        files["database_disk"] = database
    storage = svc.jobs.queue.huey.storage
    if isinstance(storage, SqliteStorage):
        files["jobs_queue_disk"] = Path(storage.filename)
    return files


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(svc: Svc, request: Request) -> JSONResponse:
    """The database answers (and refused no write for lack of space within
    :data:`DATABASE_FULL_WINDOW_S`), its schema is current, the volume of each SQLite file
    (database, job queue) has ``KEEL_SQLITE_MIN_FREE_BYTES`` free, the artifact store can
    write and the preloaded models are warm; 503 otherwise (a model that failed to preload,
    a SQLite file whose volume is low, is named)."""
    checks: dict[str, str] = {}
    gateway = getattr(request.app.state, "gateway", None)
    if gateway is None or not gateway.ready:
        checks["serving"] = "warming up"
    elif gateway.preload_errors:
        failed = ", ".join(f"{ref}: {error}" for ref, error in gateway.preload_errors.items())
        checks["serving"] = f"preload failed: {failed}"
    else:
        checks["serving"] = "ok"
    try:
        with svc.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision, head = current_revision(svc.store.engine), head_revision()
        full_s = full_seen_within(svc.store.engine, DATABASE_FULL_WINDOW_S)
        checks["database"] = (
            "ok"
            if full_s is None
            else f"error: disk full (a write was refused {full_s:.0f} s ago); free space on "
            "the database's volume"
        )
        checks["schema"] = "ok" if revision == head else f"at {revision}, expected {head}"
    except Exception as exc:  # readiness reports any failure instead of raising
        checks["database"] = f"error: {type(exc).__name__}"
    # statvfs, no write and no round trip: a volume running out shows before SQLite
    # refuses a write, and shows ready again as soon as space is freed.
    for check, path in _sqlite_files(svc).items():
        problem = low_space(path, svc.settings.sqlite_min_free_bytes, "KEEL_SQLITE_MIN_FREE_BYTES")
        checks[check] = "ok" if problem is None else f"error: {problem}"
    # A write probe, not just mkdir: a full or read-only disk must read as not ready
    # while uploads would answer 507 (#15.13).
    problem = svc.artifacts.write_problem()
    checks["artifacts"] = "ok" if problem is None else f"error: {problem}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
