"""REST routes of served team-draft interleaving (R-DEP-18): rank a request's candidates
with both arms of a deployment, record clicks, read the preference test.

Thin adapters over :mod:`keel.deploy.interleaving_service`: the rank body is read like a
predict body (bounded by ``KEEL_SERVING_MAX_BODY_BYTES``, JSON whatever the Content-Type)
and checked by the same validator as the SDK's. Authorization
(:mod:`keel.api.authz.rules`): rank and clicks are serving traffic, as predict (viewer,
not audited); the test is a viewer GET.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Query, Request

from keel.api.deps import Svc
from keel.api.routers.serving import client_key, gateway_of, read_body
from keel.deploy.interleaving_models import (
    ClicksRequest,
    RankRequest,
    check_clicks,
    check_rank,
)
from keel.deploy.interleaving_service import impressions_of
from keel.serving import _json

router = APIRouter(tags=["deployments"])


def _body(schema: type[Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema.model_json_schema()}},
        }
    }


@router.post("/v1/deployments/{name}/rank", openapi_extra=_body(RankRequest))
async def rank_deployment(name: str, request: Request, svc: Svc) -> dict[str, Any]:
    """Score the candidate rows with the primary (team ``a``) and the candidate arm (team
    ``b``), rank each by score and merge them by team draft seeded with the impression id.
    The answer: ``impression_id``, ``items``, ``teams``, ``arms``, ``versions``. 422 names
    ``item_ids``, ``k``, ``instances``, a row's field or ``arms`` (no candidate arm); 409
    ``impression_id`` when the id already names another list."""
    from keel.deploy.interleaving_service import rank

    gateway = gateway_of(request)
    raw = await read_body(request.scope, request.receive, gateway.settings.serving_max_body_bytes)
    body = check_rank(_json.loads(raw or b"{}"))
    return await rank(gateway, impressions_of(svc), name, body, client_key=client_key(request))


@router.post("/v1/deployments/{name}/clicks", openapi_extra=_body(ClicksRequest))
async def clicks_deployment(name: str, request: Request, svc: Svc) -> dict[str, Any]:
    """Record every item clicked in one impression; a repeat replaces its clicks. 404
    names ``impression_id``; 422 names ``clicked`` for an item the impression did not show."""
    from keel.deploy.interleaving_service import record_clicks

    body = check_clicks(_json.loads(await request.body() or b"{}"))
    return await asyncio.to_thread(record_clicks, impressions_of(svc), name, body)


@router.get("/v1/deployments/{name}/interleaving")
def interleaving_deployment(
    name: str, svc: Svc, alpha: float = Query(default=0.05, gt=0, lt=1)
) -> dict[str, Any]:
    """The team-draft preference over impressions with a click: wins of ``a`` and ``b``,
    ties, the share ``a`` won with its exact CI, the sign test's p-value and the
    preferred team and arm (None unless significant at ``alpha``)."""
    from keel.deploy.interleaving_service import interleaving_test

    return interleaving_test(impressions_of(svc), svc.deployments, name, alpha=alpha)
