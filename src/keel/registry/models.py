"""Registry entities: registered models, versions, aliases and their history."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import Field

from keel._models import Entity

__all__ = [
    "AliasEvent",
    "Lineage",
    "ModelCard",
    "ModelFile",
    "ModelStatus",
    "ModelVersion",
    "RegisteredModel",
]


class ModelStatus(enum.StrEnum):
    """Lifecycle of a registered model or version."""

    ACTIVE = "ACTIVE"
    DEPRECATED = "DEPRECATED"
    ARCHIVED = "ARCHIVED"


class ModelCard(Entity):
    """Model card fields (all optional, free text or small JSON)."""

    intended_use: str | None = None
    out_of_scope_use: str | None = None
    training_data: str | None = None
    evaluation_data: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    caveats: str | None = None
    ethical_considerations: str | None = None
    owners: list[str] = Field(default_factory=list)


class RegisteredModel(Entity):
    """A named model; versions hang off it."""

    name: str
    description: str | None = None
    owner: str | None = None
    status: ModelStatus = ModelStatus.ACTIVE
    card: ModelCard = Field(default_factory=ModelCard)
    tags: dict[str, str] = Field(default_factory=dict)
    aliases: dict[str, int] = Field(default_factory=dict)
    latest_version: int | None = None
    created_at_ms: int
    updated_at_ms: int


class ModelFile(Entity):
    """One file of a model version, by content hash."""

    path: str
    sha256: str
    size_bytes: int


class ModelVersion(Entity):
    """An immutable model version: files, flavor, signature and provenance."""

    name: str
    version: int
    run_id: str | None = None
    artifact_path: str | None = None
    files: list[ModelFile] = Field(default_factory=list)
    content_hash: str
    flavor: str
    signature: dict[str, Any] | None = None
    input_example: dict[str, Any] | None = None
    status: ModelStatus = ModelStatus.ACTIVE
    description: str | None = None
    card: ModelCard = Field(default_factory=ModelCard)
    tags: dict[str, str] = Field(default_factory=dict)
    parents: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    created_by: str | None = None
    created_at_ms: int
    updated_at_ms: int

    @property
    def uri(self) -> str:
        """``models:/name/version``."""
        return f"models:/{self.name}/{self.version}"


class AliasEvent(Entity):
    """One move of an alias (``to_version`` None = alias deleted)."""

    model_name: str
    alias: str
    from_version: int | None = None
    to_version: int | None = None
    actor: str | None = None
    reason: str | None = None
    at_ms: int


class Lineage(Entity):
    """Where a model version came from: run, datasets, code, environment, parents."""

    model: str
    version: int
    content_hash: str
    run: dict[str, Any] | None = None
    datasets: list[dict[str, Any]] = Field(default_factory=list)
    code_commit: str | None = None
    code_dirty: bool | None = None
    environment_hash: str | None = None
    parents: list[Lineage] = Field(default_factory=list)
