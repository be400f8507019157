"""REST writes to the decision log: the ``gate`` decision of a kept validation report, and
the resolution of an incident with its prevention (R-CICD-13).

``POST /v1/models/{name}/versions/{version}/validations`` is what ``keel validate
--server`` (``Client.validate_model`` over HTTP) calls once the report is on its
validation run; the embedded SDK calls the same function
(:func:`keel.automation.gates.decision.record_gate_decision`). Editor and ownership of
the model, like every write under ``/v1/models/{name}`` (:mod:`keel.api.authz.rules`).
Reads of the log stay at ``GET /v1/decisions``.

``POST /v1/decisions/{decision_id}/resolve`` closes an incident: editor and ownership of
the incident's model (:data:`keel.api.authz.rules.DECISION_MODEL`); a resolution without
a check (``no_check_reason``) needs an admin or an owner of the model itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from keel._models import MAX_INT32
from keel.api.authz import Caller
from keel.api.deps import Actor, Svc
from keel.api.routers.models import VersionNo
from keel.auth.models import Role
from keel.automation.gates.decision import VALIDATE_ACTOR, record_gate_decision
from keel.decisions.models import Decision
from keel.decisions.prevention import ResolveRequest, resolve_incident
from keel.errors import Forbidden

router = APIRouter(tags=["decisions"])

#: A decision id in a path, bounded as :meth:`keel.decisions.service.DecisionLog.get` is.
DecisionId = Annotated[int, Path(ge=1, le=MAX_INT32)]


class ValidationBody(BaseModel):
    """The validation run that holds the report (``keel.validation.run_id`` on the version)."""

    model_config = ConfigDict(extra="forbid")
    run_id: str = Field(min_length=1, max_length=64)


@router.post(
    "/v1/models/{name}/versions/{version}/validations",
    status_code=201,
    response_model=Decision,
)
async def record_validation(
    name: str, version: VersionNo, body: ValidationBody, svc: Svc, actor: Actor
) -> Decision:
    """Record the ``gate`` decision of the validation kept on run ``run_id``.

    404 for an unknown version; 422 naming ``run_id`` when the run is not a validation of
    this version or holds no report. Nothing is recorded then.
    """
    return await run_in_threadpool(
        record_gate_decision,
        svc.tracking,
        svc.registry,
        svc.decisions,
        name,
        version,
        body.run_id,
        actor or VALIDATE_ACTOR,
    )


#: Who a resolution is from when the request names no user (auth off, no hint).
RESOLVE_ACTOR = "api"


@router.get("/v1/decisions/{decision_id}", response_model=Decision)
def get_decision(decision_id: DecisionId, svc: Svc) -> Decision:
    """One record of the log, with ``open`` and ``resolution`` for an incident; 404 if unknown."""
    return svc.decisions.get(decision_id)


@router.post(
    "/v1/decisions/{decision_id}/resolve",
    status_code=201,
    response_model=Decision,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": ResolveRequest.model_json_schema()}}
        }
    },
)
async def resolve_decision(
    decision_id: DecisionId,
    svc: Svc,
    actor: Actor,
    caller: Caller,
    body: dict[str, Any] = Body(
        ..., description="check (gate or monitor + rule), or no_check_reason; optional note."
    ),
) -> Decision:
    """Resolve incident ``decision_id``: apply the check and append a ``resolution`` record.

    422 naming ``check`` when there is no prevention (or a bad one: ``check.gate.<key>``,
    ``check.monitor``, ``check.rule``), or ``id`` when the record is not an incident; 404
    for an unknown id; 409 when it is already resolved; 403 for ``no_check_reason`` from
    anyone but an admin or an owner of the model.
    """
    request = ResolveRequest.parse(body)
    if request.no_check_reason is not None and caller is not None and caller.role is not Role.ADMIN:
        incident = await run_in_threadpool(svc.decisions.get, decision_id)
        owner = (await run_in_threadpool(svc.registry.get_model, incident.model)).owner
        if not caller.owns(owner):
            raise Forbidden(
                f"no_check_reason: only an admin or an owner of model {incident.model!r} may "
                "resolve an incident without a check",
                field="no_check_reason",
            )
    return await run_in_threadpool(
        resolve_incident,
        svc.decisions,
        svc.monitors,
        decision_id,
        request,
        actor or RESOLVE_ACTOR,
    )
