"""REST routes that check a deployment without steering it: the rollback drill (R-DEP-09),
canary debugging per step × slice (R-DEP-21) and the holdout lift (R-DEP-18).

The drill runs in a worker thread and reaches this process's gateway through its event
loop (:class:`keel.deploy.drill.LiveGateway`), so the probes take the real answer path.
Authorization (:mod:`keel.api.authz.rules`): the drill rolls the deployment back and
restores it, so it needs what a rollback needs (deployer, owner of the model); the two
reads are viewer GETs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from keel.api.deps import Actor, Svc
from keel.api.routers.serving import gateway_of
from keel.deploy.drill import DrillRequest

router = APIRouter(tags=["deployments"])


@router.post("/v1/deployments/{name}/drill")
async def drill_deployment(
    name: str, request: Request, svc: Svc, actor: Actor, body: DrillRequest
) -> dict[str, Any]:
    """Roll the deployment back as a drill, verify replicas, probe predictions and the
    cache, time it against the R-DEP-07 tiers, record a ``drill`` decision and (by default)
    restore the prior state. 409 when the deployment is finished or changes meanwhile."""
    from keel.deploy.drill import LiveGateway, run_drill

    serving = LiveGateway(gateway_of(request), asyncio.get_running_loop())
    return await run_in_threadpool(
        run_drill,
        svc.deployments,
        serving,
        name,
        instances=body.instances,
        probe_rows=body.probe_rows,
        restore=body.restore,
        timeout_s=body.timeout_s,
        actor=actor,
    )


@router.get("/v1/deployments/{name}/debug")
def debug_deployment(
    name: str,
    svc: Svc,
    arm: str | None = Query(default=None, max_length=128),
    slices: list[str] | None = Query(default=None, max_length=20),
    metric: str | None = Query(default=None, max_length=64),
    alpha: float = Query(default=0.05, gt=0, lt=1),
) -> dict[str, Any]:
    """The candidate against the primary per traffic step × slice (R-DEP-21): requests,
    errors, metric, p99 latency per step, Holm-adjusted tests, flagged slices and the step
    each was first flagged at. 422 names ``arm``, ``metric`` or ``slices``."""
    from keel.deploy.debugging import debug_canary

    return debug_canary(svc.deployments, name, arm=arm, slices=slices, metric=metric, alpha=alpha)


@router.get("/v1/deployments/{name}/holdout")
def holdout_deployment(
    name: str,
    svc: Svc,
    holdout_arm: str = Query(default="holdout", max_length=128),
    champion_arm: str | None = Query(default=None, max_length=128),
    metric: str | None = Query(default=None, max_length=64),
    since: str | None = Query(default=None, max_length=64),
    alpha: float = Query(default=0.05, gt=0, lt=1),
) -> dict[str, Any]:
    """The champion's ongoing lift over the holdout arm (R-DEP-18), with its CI and the
    error-rate difference. 422 names ``holdout_arm``, ``champion_arm``, ``metric``, ``since``."""
    from keel.deploy.holdout import holdout_lift

    start: str | int | None = int(since) if since is not None and since.isdigit() else since
    return holdout_lift(
        svc.deployments,
        name,
        holdout_arm=holdout_arm,
        champion_arm=champion_arm,
        metric=metric,
        since=start,
        alpha=alpha,
    )
