"""REST routes of the feature store: point-in-time and online lookups, pushes,
materialisation, definitions, freshness, skew."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import Svc
from keel.errors import InvalidInput
from keel.features import Definitions, Freshness, Plan, StoredDefinition, UnusedFeature
from keel.features._engine import engine_from
from keel.features.models import SkewOptions
from keel.features.wire import ARROW_STREAM, PARQUET, read_table, write_table

router = APIRouter(prefix="/v1/features", tags=["features"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OnlineRequest(_Body):
    entity_rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)
    features: list[str] | str = Field(
        description="['view:feature', 'view:*'] or a feature service name."
    )
    full_names: bool = False


class OnlineResponse(BaseModel):
    results: list[dict[str, Any]]


class PushRequest(_Body):
    view: str
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=100_000)


class PushResponse(BaseModel):
    view: str
    rows: int


class SkewRequest(SkewOptions):
    offline: list[dict[str, Any]] = Field(min_length=1)
    served: list[dict[str, Any]] | None = None


@router.post("/online", response_model=OnlineResponse)
def online_features(body: OnlineRequest, svc: Svc) -> OnlineResponse:
    """Latest feature values for each entity row (404 names unknown features)."""
    rows = svc.features.get_online_features(
        body.entity_rows, body.features, full_names=body.full_names
    )
    return OnlineResponse(results=rows)


@router.post(
    "/historical",
    response_class=Response,
    responses={200: {"content": {ARROW_STREAM: {}, PARQUET: {}}}},
)
async def historical_features(
    request: Request,
    svc: Svc,
    features: list[str] | None = Query(None, description="'view:feature' or 'view:*', repeated"),
    service: str | None = Query(None, description="A feature service name instead of features"),
    timestamp_column: str = Query("event_timestamp", max_length=256),
    full_names: bool = False,
    engine: str | None = Query(None, description="local or ray; default KEEL_FEATURES_ENGINE"),
) -> Response:
    """Point-in-time features for entity rows sent as an Arrow IPC stream or Parquet body.

    The answer holds the feature columns only, one row per entity row in the
    same order, in the body's format (``Accept`` may ask for the other one).
    The body is bounded by ``KEEL_MAX_REQUEST_BYTES``; larger entity sets go
    through ``keel features historical`` (Parquet to Parquet on the server).
    """
    if features is not None and service is not None:
        raise InvalidInput("give features or service, not both", field="features")
    if features is None and service is None:
        raise InvalidInput("no features requested", field="features")
    chosen = engine_from(engine, svc.settings.features_engine)
    body = await request.body()
    kind = request.headers.get("content-type", ARROW_STREAM)
    accept = request.headers.get("accept", "")
    answer = PARQUET if PARQUET in accept else ARROW_STREAM if ARROW_STREAM in accept else None

    def run() -> tuple[bytes, str]:
        entity = read_table(body, kind)
        result = svc.features.get_historical_features(
            entity,
            service if service is not None else list(features or []),
            timestamp_column=timestamp_column,
            full_names=full_names,
            as_arrow=True,
            features_only=True,
            engine=chosen,
        )
        media = answer or (PARQUET if kind.startswith(PARQUET) else ARROW_STREAM)
        return write_table(result, media), media

    content, media = await run_in_threadpool(run)
    return Response(content=content, media_type=media)


class MaterializeRequest(_Body):
    start: str | None = Field(
        default=None, description="ISO time; omit for an incremental run from the last end."
    )
    end: str
    views: list[str] | None = None


class MaterializeResponse(BaseModel):
    written: dict[str, int]


@router.post("/materialize", response_model=MaterializeResponse)
def materialize(body: MaterializeRequest, svc: Svc) -> MaterializeResponse:
    """Copy the latest value per entity in ``[start, end]`` into the online store."""
    if body.start is None:
        written = svc.features.materialize_incremental(body.end, body.views)
    else:
        written = svc.features.materialize(body.start, body.end, body.views)
    return MaterializeResponse(written=written)


class ApplyRequest(_Body):
    definitions: Definitions
    prune: bool = Field(default=True, description="Remove live definitions missing from this set.")
    dry_run: bool = Field(default=False, description="Only plan: change nothing.")


@router.post("/apply", response_model=Plan)
def apply(body: ApplyRequest, svc: Svc) -> Plan:
    """Store new or changed definitions as new versions (or, with dry_run, only plan)."""
    if body.dry_run:
        return svc.features.plan(body.definitions, prune=body.prune)
    return svc.features.apply(body.definitions, prune=body.prune)


@router.post("/push", response_model=PushResponse)
def push(body: PushRequest, svc: Svc) -> PushResponse:
    """Write rows into a view's online copy now (streaming updates)."""
    written = svc.features.push(body.view, pd.DataFrame.from_records(body.rows))
    return PushResponse(view=body.view, rows=written)


@router.get("/freshness", response_model=list[Freshness])
def freshness(svc: Svc, view: list[str] | None = Query(None)) -> list[Freshness]:
    """Per view: materialised until, last write, age against its freshness SLA."""
    return svc.features.freshness(view)


@router.get("/deprecated", response_model=list[UnusedFeature])
def deprecated(svc: Svc, days: int | None = Query(None, ge=1)) -> list[UnusedFeature]:
    """Features not read offline or online for ``days`` (default 90), with dependent models."""
    return svc.features.unused_features(days=days)


@router.post("/skew")
def skew(body: SkewRequest, svc: Svc) -> dict[str, Any]:
    """Offline vs served distributions per feature (KS, PSI, null rates) and a verdict."""
    if (body.served is None) == (body.served_from is None):
        raise InvalidInput("give exactly one of served or served_from", field="served")
    if body.served is not None:
        served: Any = pd.DataFrame.from_records(body.served)
    else:
        source = body.served_from
        assert source is not None
        served = svc.features.served_features(
            source.model, source.version, source.start, source.end
        )
    report = svc.features.check_skew(
        pd.DataFrame.from_records(body.offline),
        served,
        body.features,
        ks_threshold=body.ks_threshold,
        psi_threshold=body.psi_threshold,
    )
    return report.to_dict()


@router.get("/definitions", response_model=list[StoredDefinition])
def definitions(svc: Svc, kind: str | None = None) -> list[StoredDefinition]:
    """Newest live version of every entity, feature view and feature service."""
    return svc.features.list_definitions(kind)


@router.get("/definitions/{name}", response_model=list[StoredDefinition])
def definition_history(name: str, svc: Svc) -> list[StoredDefinition]:
    """Every version of one definition, oldest first."""
    return svc.features.history(name)


@router.get("/definitions/{name}/models", response_model=list[str])
def dependent_models(name: str, svc: Svc) -> list[str]:
    """Registered models whose versions read this feature view (``keel features show``)."""
    return svc.features.dependent_models(name)
