"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from keel.api.deps import Svc
from keel.store.sql.diskfull import full_seen_within
from keel.store.sql.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])

#: Seconds after the database last refused a write for lack of space during which
#: /readyz answers 503. Readiness writes nothing to find out (a write probe would cost a
#: transaction per poll): the refused writes of real requests are the signal, so an
#: instance whose database disk fills up leaves the load balancer's pool until it has
#: gone this long without a refused write.
DATABASE_FULL_WINDOW_S = 30.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(svc: Svc, request: Request) -> JSONResponse:
    """The database answers (and refused no write for lack of space within
    :data:`DATABASE_FULL_WINDOW_S`), its schema is current, the artifact store can write
    and the preloaded models are warm; 503 otherwise (a model that failed to preload is
    named)."""
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
