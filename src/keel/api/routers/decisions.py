"""REST writes to the decision log: the ``gate`` decision of a kept validation report.

``POST /v1/models/{name}/versions/{version}/validations`` is what ``keel validate
--server`` (``Client.validate_model`` over HTTP) calls once the report is on its
validation run; the embedded SDK calls the same function
(:func:`keel.automation.gates.decision.record_gate_decision`). Editor and ownership of
the model, like every write under ``/v1/models/{name}`` (:mod:`keel.api.authz.rules`).
Reads of the log stay at ``GET /v1/decisions``.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import Actor, Svc
from keel.automation.gates.decision import record_gate_decision
from keel.decisions.models import Decision

router = APIRouter(tags=["decisions"])

#: Who a gate decision is from when the request names no user (auth off, no hint).
VALIDATE_ACTOR = "keel validate"


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
    name: str, version: int, body: ValidationBody, svc: Svc, actor: Actor
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
