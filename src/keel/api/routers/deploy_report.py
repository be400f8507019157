"""REST routes of a deployment's experiment record (R-DEP-17): its report (interim while
running, the archived final one once ended; JSON or Markdown) and the amendment of its
pre-registered hypothesis, allowed only until the first prediction is served (then 409).

Authorization (:mod:`keel.api.authz.rules`): the report is a viewer GET; changing the
hypothesis needs what steering the deployment needs (deployer, owner of the model).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from keel.api.deps import Actor, Svc

router = APIRouter(tags=["deployments"])


@router.get("/v1/deployments/{name}/report", response_model=None)
def deployment_report(
    name: str,
    svc: Svc,
    format: Literal["json", "markdown"] = Query(default="json"),  # noqa: A002
) -> dict[str, Any] | Response:
    """The experiment report: hypothesis and verdict, analysis settings (burn-in,
    attribution window), numbers per arm and per segment, decisions, interference and
    contamination warnings. ``label`` is ``interim`` while running; ``archived`` is true
    when served from the tracking run written as the deployment ended."""
    from keel.deploy.report import to_markdown
    from keel.deploy.reportarchive import build_report

    report = build_report(svc.deployments, svc.tracking, name)
    if format == "markdown":
        return PlainTextResponse(to_markdown(report), media_type="text/markdown")
    return report


@router.put("/v1/deployments/{name}/hypothesis")
async def amend_deployment_hypothesis(
    name: str,
    svc: Svc,
    actor: Actor,
    hypothesis: dict[str, Any] = Body(..., description="The policy's hypothesis: block."),
) -> dict[str, Any]:
    """Replace the hypothesis before any traffic; 409 once a prediction was served (it is
    pre-registered), 422 names the ``hypothesis.*`` field."""
    from keel.deploy.hypothesis import amend_hypothesis

    return await run_in_threadpool(amend_hypothesis, svc.deployments, name, hypothesis, actor)
