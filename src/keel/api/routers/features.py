"""REST routes of the feature store: online lookups, pushes, freshness, skew, definitions."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from keel.api.deps import Svc
from keel.errors import InvalidInput
from keel.features import Freshness, StoredDefinition, UnusedFeature

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


class ServedFrom(_Body):
    model: str
    version: int | None = None
    start: str | None = None
    end: str | None = None


class SkewRequest(_Body):
    offline: list[dict[str, Any]] = Field(min_length=1)
    served: list[dict[str, Any]] | None = None
    served_from: ServedFrom | None = Field(
        default=None, description="Read served values from the prediction log instead."
    )
    features: list[str] | None = None
    ks_threshold: float | None = Field(default=None, gt=0, le=1)
    psi_threshold: float | None = Field(default=None, gt=0)


@router.post("/online", response_model=OnlineResponse)
def online_features(body: OnlineRequest, svc: Svc) -> OnlineResponse:
    """Latest feature values for each entity row (404 names unknown features)."""
    rows = svc.features.get_online_features(
        body.entity_rows, body.features, full_names=body.full_names
    )
    return OnlineResponse(results=rows)


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
