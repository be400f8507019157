"""REST routes for retraining triggers: apply (YAML or JSON), list, read, evaluate now, and
the CI webhook ``fire`` (R-CICD-02).

Authorization is in :mod:`keel.api.authz`: deployer, and ownership of the trigger's model
(a firing starts a retraining that may roll out, as a deployment does).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from keel.api.authz import Caller, check_model_owner
from keel.api.deps import Actor, Svc
from keel.automation.triggers.models import Trigger, parse_trigger
from keel.errors import InvalidInput

router = APIRouter(tags=["triggers"])

MAX_BODY = 1_000_000


class EvaluateBody(BaseModel):
    """``manual: true`` makes a ``manual`` condition true for this evaluation."""

    model_config = ConfigDict(extra="forbid")
    manual: bool = False


async def _apply(request: Request, svc: Svc, actor: Actor, caller: Caller) -> Trigger:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"body: at most {MAX_BODY:,} bytes", field="body")
    kind = request.headers.get("content-type", "")
    if "json" in kind:
        try:
            document: Any = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"body: not valid JSON: {exc}", field="body") from None
    else:  # YAML (a JSON document is YAML too)
        document = raw.decode("utf-8", errors="replace")
    spec = parse_trigger(document)
    if caller is not None:
        await check_model_owner(svc, caller, spec.model)
    return await run_in_threadpool(svc.triggers.apply, spec, actor=actor)


@router.post(
    "/v1/triggers",
    response_model=Trigger,
    openapi_extra={"requestBody": {"content": {"application/json": {}, "application/yaml": {}}}},
)
async def apply_trigger(request: Request, svc: Svc, actor: Actor, caller: Caller) -> Trigger:
    """Create or replace a trigger from its YAML or JSON definition; 422 names the bad key
    path (``any[1].features``), metric, feature, view or cron field."""
    return await _apply(request, svc, actor, caller)


@router.put(
    "/v1/triggers",
    response_model=Trigger,
    openapi_extra={"requestBody": {"content": {"application/json": {}, "application/yaml": {}}}},
)
async def put_trigger(request: Request, svc: Svc, actor: Actor, caller: Caller) -> Trigger:
    """Same as POST: apply is create-or-replace."""
    return await _apply(request, svc, actor, caller)


@router.get("/v1/triggers", response_model=list[Trigger])
def list_triggers(
    svc: Svc, model: str | None = Query(None, max_length=256, description="Only this model's.")
) -> list[Trigger]:
    """Every trigger (of one model), by name, with its last evaluation and firing."""
    return svc.triggers.list_triggers(model)


@router.get("/v1/triggers/{name}", response_model=Trigger)
def get_trigger(name: str, svc: Svc) -> Trigger:
    """One trigger."""
    return svc.triggers.get(name)


@router.post("/v1/triggers/{name}/evaluate")
def evaluate_trigger(
    name: str, svc: Svc, actor: Actor, body: EvaluateBody | None = None
) -> dict[str, Any]:
    """Evaluate now: every condition's numbers, whether it fired, the job it queued; the
    evaluation is recorded in the decision log either way."""
    manual = (body or EvaluateBody()).manual
    result = svc.triggers.evaluate(name, manual=manual, actor=actor or "api")
    return result.as_dict()


@router.post("/v1/triggers/{name}/fire")
async def fire_trigger(name: str, request: Request, svc: Svc, actor: Actor) -> dict[str, Any]:
    """CI's webhook: evaluate now with ``manual`` conditions met and the posted ``commit``
    (``code`` conditions compare it), ``actor`` and ``ref`` recorded on the evaluation and
    the retraining run; 422 naming a bad field."""
    from keel.automation.triggers.code import parse_fire_event

    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise InvalidInput(f"body: at most {MAX_BODY:,} bytes", field="body")
    try:
        document: Any = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not valid JSON: {exc}", field="body") from None
    event = parse_fire_event(document)
    result = await run_in_threadpool(
        svc.triggers.fire, name, event.model_dump(exclude_none=True), actor=actor
    )
    return result.as_dict()
