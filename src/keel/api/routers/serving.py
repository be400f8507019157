"""Serving routes: predict by alias or version, cache invalidation, gateway status.

A thin adapter: the body is read raw (bounded by ``KEEL_SERVING_MAX_BODY_BYTES``) and
handed to :class:`keel.serving.gateway.Gateway`, which validates it against the model
signature itself (faster than a pydantic model per instance); the response is
serialised with orjson and carries a ``Server-Timing`` header.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope

from keel._models import MAX_VERSION
from keel.api.linger import discard_body
from keel.api.routers.models import VersionNo
from keel.errors import PayloadTooLarge, Unavailable
from keel.serving import _json
from keel.serving.gateway import Gateway, PredictResult, Target
from keel.serving.hits import TIMING
from keel.serving.ratelimit import client_key as rate_limit_key

router = APIRouter(tags=["serving"])

_PREDICT_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "instances": {"type": "array", "items": {"type": "object"}},
                        "columns": {"type": "array", "items": {"type": "string"}},
                        "data": {"type": "array", "items": {"type": "array"}},
                        "probabilities": {"type": "boolean"},
                        "entity_keys": {"type": "array", "items": {"type": "string"}},
                        "routing_key": {
                            "type": "string",
                            "description": "Deployments: the sticky routing key (e.g. a "
                            "user id); ignored by model routes.",
                        },
                        "event_time": {
                            "type": ["string", "integer"],
                            "description": "When the predicted event happened (ISO-8601 or "
                            "epoch milliseconds; at most 300 s ahead): the prediction is "
                            "logged at that time, for replays and backfills.",
                        },
                    },
                }
            }
        },
    }
}


class InvalidateBody(BaseModel):
    """What to drop from the prediction cache."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, max_length=256)
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    entity: str | None = Field(default=None, max_length=1024)
    all: bool = False


def gateway_of(request: Request) -> Gateway:
    """The process's gateway (started in the app lifespan)."""
    gateway: Gateway | None = getattr(request.app.state, "gateway", None)
    if gateway is None:
        raise Unavailable("the serving gateway is not running", field="gateway")
    return gateway


def client_key(request: Request) -> str:
    """Whom the rate limit counts (:func:`keel.serving.ratelimit.client_key`)."""
    return client_key_of(request.scope)


def client_key_of(scope: Scope) -> str:
    """:func:`client_key` from the ASGI scope (the fast lane has no Request object)."""
    gateway: Gateway | None = getattr(scope["app"].state, "gateway", None)
    header = gateway.limiter.key_header if gateway is not None else b""
    customer = None
    for key, value in scope.get("headers") or ():
        if key == header and value:
            customer = value
            break
    return rate_limit_key(scope.get("state", {}).get("user"), customer, scope.get("client"))


#: The stages of most answers, in order (``TIMING`` formats their Server-Timing at once).
_STAGES = ("validation", "cache", "model")


def predict_payload(result: PredictResult) -> tuple[bytes, str]:
    """The response body and its ``Server-Timing`` header value."""
    mark = time.perf_counter()
    payload = _json.dumps(result.body)
    serialisation = (time.perf_counter() - mark) * 1000
    stages = result.timings_ms
    if tuple(stages) == _STAGES:
        timing = TIMING % (stages["validation"], stages["cache"], stages["model"], serialisation)
    else:
        timings = dict(stages, serialisation=serialisation)
        timing = ", ".join(f"{stage};dur={ms:.3f}" for stage, ms in timings.items())
    return payload, timing


async def read_body(scope: Scope, receive: Receive, limit: int | None) -> bytes:
    """The request body; 413 as soon as it exceeds ``limit`` bytes (by Content-Length
    up front, else while it streams). Shared by the route and the fast lane."""
    if limit is not None:
        for key, value in scope.get("headers") or ():
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                await discard_body(scope, receive)  # so plain clients read the 413
                raise PayloadTooLarge(
                    f"predict body exceeds {limit} bytes", field="body", limit=limit
                )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            if message.get("more_body", False):
                await discard_body(scope, receive)
            raise PayloadTooLarge(f"predict body exceeds {limit} bytes", field="body", limit=limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _serve(request: Request, target: Target) -> Response:
    gateway = gateway_of(request)
    body = await read_body(request.scope, request.receive, gateway.settings.serving_max_body_bytes)
    result = await gateway.predict(target, body, client_key=client_key(request))
    payload, timing = predict_payload(result)
    return Response(payload, media_type="application/json", headers={"Server-Timing": timing})


@router.post("/v1/models/{name}@{alias}/predict", openapi_extra=_PREDICT_DOC)
async def predict_alias(name: str, alias: str, request: Request) -> Response:
    """Predict with the version an alias points at (e.g. ``churn@champion``)."""
    return await _serve(request, Target(name, alias=alias))


@router.post("/v1/models/{name}/{version}/predict", openapi_extra=_PREDICT_DOC)
async def predict_version(name: str, version: VersionNo, request: Request) -> Response:
    """Predict with one model version."""
    return await _serve(request, Target(name, version=version))


@router.post("/v1/deployments/{name}/predict", openapi_extra=_PREDICT_DOC)
async def predict_deployment(name: str, request: Request) -> Response:
    """Predict through a deployment: the arm (sticky by ``routing_key``, else random) is
    chosen first; the answer adds ``deployment`` and ``arm``."""
    return await _serve(request, Target(name, deployment=True))


@router.post(
    "/v1/cache/invalidate",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": InvalidateBody.model_json_schema()}},
        }
    },
)
async def invalidate(request: Request) -> dict[str, Any]:
    """Drop prediction-cache entries (a model, a version, an entity, or all) on every replica.

    The body is JSON whatever the Content-Type says, as for predict (``curl -d`` sends
    form-encoded by default); a body that is not JSON is a 400 ``bad_request`` (the one
    parser of request bodies), a bad field a 422 naming it.
    """
    body = InvalidateBody.model_validate(_json.loads(await request.body() or b"{}"))
    dropped = await gateway_of(request).invalidate(
        model=body.model, version=body.version, entity=body.entity, everything=body.all
    )
    return {"dropped": dropped}


@router.get("/v1/serving/status")
async def status(request: Request) -> dict[str, Any]:
    """Loaded models (load, warm-up and first-request times), aliases, breakers, cache."""
    return gateway_of(request).status()
