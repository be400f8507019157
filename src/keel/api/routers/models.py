"""REST routes for the model registry."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from keel._models import MAX_VERSION, Page
from keel.api.authz import Caller, check_owner_assignment
from keel.api.deps import Actor, Svc
from keel.api.schemas import AliasBody, CreateModel, CreateVersion, UpdateModel, UpdateVersion
from keel.errors import NotFound
from keel.registry.models import AliasEvent, Lineage, ModelVersion, RegisteredModel
from keel.store.artifacts import normalize_artifact_path

router = APIRouter(prefix="/v1/models", tags=["registry"])

#: A version number in a path, bounded in the OpenAPI document as the registry service
#: bounds it (:func:`keel._models.stored_int`), with the same message.
VersionNo = Annotated[int, Path(ge=1, le=MAX_VERSION)]


@router.post("", status_code=201, response_model=RegisteredModel)
def create_model(body: CreateModel, svc: Svc, caller: Caller) -> RegisteredModel:
    """Register a model name (409 if taken)."""
    if body.owner is not None:
        check_owner_assignment(caller, body.owner, None)
    return svc.registry.create_model(
        body.name, description=body.description, owner=body.owner, card=body.card, tags=body.tags
    )


@router.get("", response_model=Page[RegisteredModel])
def list_models(
    svc: Svc,
    max_results: int = Query(100, ge=1, le=10_000),
    page_token: str | None = Query(None, max_length=200),
) -> Page[RegisteredModel]:
    """Registered models by name."""
    return svc.registry.list_models(max_results, page_token)


@router.get("/resolve", response_model=ModelVersion)
def resolve(svc: Svc, ref: str = Query(max_length=600)) -> ModelVersion:
    """The version a reference names: ``models:/churn@champion``, ``models:/churn/3``, ``churn``."""
    return svc.registry.resolve(ref)


@router.get("/{name}", response_model=RegisteredModel)
def get_model(name: str, svc: Svc) -> RegisteredModel:
    """A model with its aliases."""
    return svc.registry.get_model(name)


@router.patch("/{name}", response_model=RegisteredModel)
def update_model(name: str, body: UpdateModel, svc: Svc, caller: Caller) -> RegisteredModel:
    """Change description, owner, status, card or tags."""
    if body.owner is not None:
        check_owner_assignment(caller, body.owner, svc.registry.get_model(name))
    return svc.registry.update_model(name, **body.model_dump(exclude_none=True))


@router.post("/{name}/versions", status_code=201, response_model=ModelVersion)
def create_version(name: str, body: CreateVersion, svc: Svc, actor: Actor) -> ModelVersion:
    """Register the model a run logged under ``artifact_path`` as the next version."""
    return svc.registry.create_version(
        name,
        body.run_id,
        body.artifact_path,
        description=body.description,
        tags=body.tags,
        card=body.card,
        parents=body.parents,
        created_by=actor,
    )


@router.get("/{name}/versions", response_model=list[ModelVersion])
def list_versions(name: str, svc: Svc) -> list[ModelVersion]:
    """Versions of a model, newest first."""
    return svc.registry.list_versions(name)


@router.get("/{name}/versions/{version}", response_model=ModelVersion)
def get_version(name: str, version: VersionNo, svc: Svc) -> ModelVersion:
    """One version."""
    return svc.registry.get_version(name, version)


@router.patch("/{name}/versions/{version}", response_model=ModelVersion)
def update_version(name: str, version: VersionNo, body: UpdateVersion, svc: Svc) -> ModelVersion:
    """Change description, status (archive / deprecate), card or tags of a version."""
    return svc.registry.update_version(name, version, **body.model_dump(exclude_none=True))


@router.get("/{name}/economics")
def model_economics(
    name: str,
    svc: Svc,
    retrain_cost: float = Query(description="C: cost of one retraining."),
    value_per_point: float = Query(description="V: value per query of one accuracy unit."),
    queries_per_day: float | None = Query(None, description="Q; default: measured."),
    manual_deploy_days: float | None = Query(None, description="Sets the automate flag."),
    metric: str = Query("accuracy", max_length=32),
    window: str = Query("90d", max_length=32, description="History read, e.g. 90d."),
    bucket: str = Query("1d", max_length=32, description="One performance point per bucket."),
    min_rows: int = Query(30, ge=1, le=10_000_000),
    change_pct: float = Query(20.0),
) -> dict[str, Any]:
    """λ fitted to the model's performance history; T*, half-life, S(T), sensitivity,
    automate flag and assumptions beside its configured schedules. 422 naming
    ``history`` when the history is too short."""
    from keel.automation.model_economics import model_economics as economics

    return economics(
        svc,
        name,
        retrain_cost=retrain_cost,
        value_per_point=value_per_point,
        queries_per_day=queries_per_day,
        manual_deploy_days=manual_deploy_days,
        metric=metric,
        window=window,
        bucket=bucket,
        min_rows=min_rows,
        change_pct=change_pct,
    ).to_dict()


class ApprovalBody(BaseModel):
    """A human decision on a retrained version; ``reason`` goes in the decision log."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)
    stage: Literal["staging", "production"] = "staging"


class RejectBody(BaseModel):
    """Why a version is refused."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


@router.post("/{name}/versions/{version}/approve")
def approve_version(
    name: str, version: VersionNo, body: ApprovalBody, svc: Svc, actor: Actor
) -> dict[str, Any]:
    """Release a version into ``stage`` (staging → alias challenger and its rollout,
    production → champion); over a failed gate or a rejection it is an override."""
    from keel.automation.retrain import approve

    who = actor or "anonymous"
    return approve(svc, name, version, actor=who, reason=body.reason, stage=body.stage)


@router.post("/{name}/versions/{version}/reject")
def reject_version(
    name: str, version: VersionNo, body: RejectBody, svc: Svc, actor: Actor
) -> dict[str, Any]:
    """Refuse a version: it keeps no challenger alias; recorded in the decision log."""
    from keel.automation.retrain import reject

    return reject(svc, name, version, actor=actor or "anonymous", reason=body.reason)


@router.get("/{name}/versions/{version}/lineage", response_model=Lineage)
def lineage(name: str, version: VersionNo, svc: Svc) -> Lineage:
    """Version → run → datasets → code commit → parent versions."""
    return svc.registry.lineage(name, version)


@router.get("/{name}/versions/{version}/files/{path:path}")
def version_file(name: str, version: VersionNo, path: str, svc: Svc) -> FileResponse:
    """One file of a version (used by remote ``load_model``)."""
    clean = normalize_artifact_path(path)
    item = svc.registry.get_version(name, version)
    for f in item.files:
        if f.path == clean:
            return FileResponse(
                svc.artifacts.path(f.sha256),
                media_type="application/octet-stream",
                headers={"x-keel-sha256": f.sha256},
            )
    raise NotFound(f"{item.uri} has no file {clean!r}", field="path")


@router.put("/{name}/aliases/{alias}", response_model=AliasEvent)
def set_alias(name: str, alias: str, body: AliasBody, svc: Svc, actor: Actor) -> AliasEvent:
    """Point an alias (e.g. ``champion``) at a version; the move is kept in history."""
    return svc.registry.set_alias(name, alias, body.version, actor=actor, reason=body.reason)


@router.delete("/{name}/aliases/{alias}", response_model=AliasEvent)
def delete_alias(name: str, alias: str, svc: Svc, actor: Actor) -> AliasEvent:
    """Remove an alias (recorded in history)."""
    return svc.registry.delete_alias(name, alias, actor=actor)


@router.get("/{name}/aliases/{alias}", response_model=ModelVersion)
def get_alias(name: str, alias: str, svc: Svc) -> ModelVersion:
    """The version an alias points at."""
    return svc.registry.resolve(f"models:/{name}@{alias}")


@router.get("/{name}/alias-history", response_model=list[AliasEvent])
def alias_history(name: str, svc: Svc, alias: str | None = None) -> list[AliasEvent]:
    """Every alias move of a model, oldest first."""
    return svc.registry.alias_history(name, alias)
