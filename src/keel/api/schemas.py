"""Request bodies of the REST API (responses are the domain models themselves)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from keel._models import MAX_INT64, MAX_VERSION
from keel.registry.models import ModelCard, ModelStatus
from keel.tracking.models import RunStatus

__all__ = [
    "AliasBody",
    "BatchBody",
    "CreateExperiment",
    "CreateModel",
    "CreateRun",
    "CreateVersion",
    "EndRun",
    "METRIC_SCHEMA",
    "MetricBody",
    "SearchRuns",
    "UpdateModel",
    "UpdateVersion",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Integers are bounded to what the database columns hold (64-bit; versions 32-bit).
_INT64 = MAX_INT64


class CreateExperiment(_Body):
    name: str = Field(max_length=256)
    description: str | None = Field(default=None, max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)


class CreateRun(_Body):
    experiment: str = Field(max_length=256, description="Experiment id or name (created if new).")
    name: str | None = Field(default=None, max_length=256)
    parent_run_id: str | None = Field(default=None, max_length=64)
    tags: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    user: str | None = Field(default=None, max_length=256)
    environment: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=-_INT64, le=_INT64)
    start_time_ms: int | None = Field(default=None, ge=0, le=_INT64)


class EndRun(_Body):
    status: RunStatus = RunStatus.FINISHED


class MetricBody(_Body):
    """The shape of a metric, for the API schema only: the routes pass the JSON as sent to
    :func:`keel.tracking.validation.parse_metric`, the one check the embedded SDK uses too
    (pydantic's lax parsing took ``true`` for 1.0 over HTTP; issue #15 item 9)."""

    key: str = Field(min_length=1, max_length=250)
    value: float = Field(
        description='A number; NaN and infinities as "NaN", "Infinity", "-Infinity".'
    )
    step: int = Field(default=0, ge=-_INT64, le=_INT64)
    timestamp_ms: int | None = Field(default=None, ge=0, le=_INT64)


#: MetricBody's JSON schema, for bodies typed ``Any`` that parse_metric checks.
METRIC_SCHEMA: dict[str, Any] = MetricBody.model_json_schema()


class BatchBody(_Body):
    metrics: list[Any] = Field(default_factory=list, json_schema_extra={"items": METRIC_SCHEMA})
    params: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class SearchRuns(_Body):
    experiments: list[str] = Field(min_length=1, max_length=100)
    filter: str | None = Field(default=None, max_length=4000)
    order_by: list[str] = Field(default_factory=list, max_length=10)
    max_results: int = Field(default=100, ge=1, le=10_000)
    page_token: str | None = Field(default=None, max_length=200)


class CreateModel(_Body):
    name: str = Field(max_length=256)
    description: str | None = Field(default=None, max_length=10_000)
    owner: str | None = Field(default=None, max_length=256)
    card: ModelCard = Field(default_factory=ModelCard)
    tags: dict[str, str] = Field(default_factory=dict)


class UpdateModel(_Body):
    description: str | None = Field(default=None, max_length=10_000)
    owner: str | None = Field(default=None, max_length=256)
    status: ModelStatus | None = None
    card: ModelCard | None = None
    tags: dict[str, str] | None = None


class CreateVersion(_Body):
    run_id: str = Field(max_length=64)
    artifact_path: str = Field(default="model", max_length=1024)
    description: str | None = Field(default=None, max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)
    card: ModelCard = Field(default_factory=ModelCard)
    parents: list[str] = Field(default_factory=list, max_length=50)


class UpdateVersion(_Body):
    description: str | None = Field(default=None, max_length=10_000)
    status: ModelStatus | None = None
    card: ModelCard | None = None
    tags: dict[str, str] | None = None


class AliasBody(_Body):
    version: int = Field(ge=1, le=MAX_VERSION)
    reason: str | None = Field(default=None, max_length=2000)
