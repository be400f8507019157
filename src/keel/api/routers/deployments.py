"""REST routes for deployments (create, read, promote, roll back, pause, resume, the
blue-green switch, replay, decisions) and the decision log.

``POST /v1/deployments/{name}/predict`` is served by the gateway's routing (not here).
Authorization is in :mod:`keel.api.authz` (deployer role, ownership of the model).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query

from keel.api.authz import Caller, check_model_owner
from keel.api.deps import Actor, Svc
from keel.decisions.models import Decision
from keel.deploy.models import ActionBody, Deployment
from keel.deploy.replay import ReplayRequest

router = APIRouter(tags=["deployments"])


@router.post("/v1/deployments", status_code=201, response_model=Deployment)
async def create_deployment(
    svc: Svc,
    actor: Actor,
    caller: Caller,
    policy: dict[str, Any] = Body(..., description="The policy: the YAML file's keys as JSON."),
) -> Deployment:
    """Create a deployment from a policy; 422 names a bad key, weight, role or arm version."""
    from fastapi.concurrency import run_in_threadpool

    model = policy.get("model")
    if caller is not None and isinstance(model, str):
        await check_model_owner(svc, caller, model)
    return await run_in_threadpool(svc.deployments.create, policy, actor)


@router.get("/v1/deployments", response_model=list[Deployment])
def list_deployments(
    svc: Svc, model: str | None = Query(None, max_length=256, description="Only this model's.")
) -> list[Deployment]:
    """Every deployment, by name."""
    return svc.deployments.list(model)


@router.get("/v1/deployments/{name}", response_model=Deployment)
def get_deployment(name: str, svc: Svc) -> Deployment:
    """One deployment: policy, state (weights, step), replicas and whether rollout is complete."""
    return svc.deployments.get(name)


@router.post("/v1/deployments/{name}/promote", response_model=Deployment)
def promote_deployment(
    name: str, svc: Svc, actor: Actor, body: ActionBody | None = None
) -> Deployment:
    """Give the candidate all traffic and move ``champion`` to it (409 on a concurrent change)."""
    body = body or ActionBody()
    return svc.deployments.promote(name, actor, arm=body.arm, reason=body.reason)


@router.post("/v1/deployments/{name}/rollback", response_model=Deployment)
def rollback_deployment(
    name: str, svc: Svc, actor: Actor, body: ActionBody | None = None
) -> Deployment:
    """All traffic back to the primary now; the candidate's log window is marked bad."""
    return svc.deployments.rollback(name, (body or ActionBody()).reason, actor)


@router.post("/v1/deployments/{name}/pause", response_model=Deployment)
def pause_deployment(
    name: str, svc: Svc, actor: Actor, body: ActionBody | None = None
) -> Deployment:
    """Freeze the weights; the controller leaves it alone until resumed."""
    return svc.deployments.pause(name, actor, (body or ActionBody()).reason)


@router.post("/v1/deployments/{name}/resume", response_model=Deployment)
def resume_deployment(
    name: str, svc: Svc, actor: Actor, body: ActionBody | None = None
) -> Deployment:
    """Let the controller evaluate a paused deployment again."""
    return svc.deployments.resume(name, actor, (body or ActionBody()).reason)


@router.post("/v1/deployments/{name}/switch", response_model=Deployment)
def switch_deployment(
    name: str, svc: Svc, actor: Actor, body: ActionBody | None = None
) -> Deployment:
    """Blue-green: all live traffic to green now, then verify as after the automatic switch;
    409 naming the state unless an active blue-green deployment before its switch."""
    return svc.deployments.switch(name, actor, (body or ActionBody()).reason)


@router.post("/v1/deployments/{name}/replay")
def replay_deployment(name: str, svc: Svc, body: ReplayRequest) -> dict[str, Any]:
    """Re-score the deployment's logged requests since ``since`` with each candidate version
    (R-TRK-11): agreement, PSI/KS of the scores, latency p50/p99, metrics where labels exist;
    ``synthetic`` adds generated test cases per case kind (seeded by ``seed``). Changes
    nothing; 422 names ``versions``, ``since``, ``limit``, ``synthetic`` (or an empty window)."""
    return svc.deployments.replay(
        name, body.versions, since=body.since, limit=body.limit,
        synthetic=body.synthetic, seed=body.seed,
    )  # fmt: skip


@router.get("/v1/deployments/{name}/decisions", response_model=list[Decision])
def deployment_decisions(
    name: str, svc: Svc, limit: int = Query(100, ge=1, le=10_000)
) -> list[Decision]:
    """The deployment's decision records, newest first."""
    return svc.deployments.decisions(name, limit)


@router.get("/v1/decisions", response_model=list[Decision])
def list_decisions(
    svc: Svc,
    model: str | None = Query(None, max_length=256),
    kind: str | None = Query(None, max_length=64),
    deployment: str | None = Query(None, max_length=128),
    since: str | None = Query(None, max_length=64, description="Epoch ms, ISO-8601 or age (7d)."),
    limit: int = Query(100, ge=1, le=10_000),
    open: bool | None = Query(None, description="true: unresolved incidents only."),
) -> list[Decision]:
    """The decision log (deployments, automation, operations), newest first."""
    return svc.decisions.query(
        model=model, kind=kind, deployment=deployment, since=since, limit=limit, open=open
    )
