"""Feature-store definitions (entities, feature views, feature services) and results.

Definitions are pydantic models with ``extra="forbid"``: the same classes
validate Python code and YAML files, so an error names the field path either
way. Durations are seconds (``ttl``, ``freshness_sla``); YAML also accepts
``"1w"``, ``"90d"``, ``"6h"``, ``"30m"``, ``"45s"`` (the one grammar, :mod:`keel._durations`).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from keel._durations import Duration

__all__ = [
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "FileSource",
    "Freshness",
    "MaterializationRecord",
    "ObjectChange",
    "Plan",
    "ServedFrom",
    "SkewOptions",
    "SqlSource",
    "StoredDefinition",
    "UnusedFeature",
    "UsageRecord",
    "ValueType",
]

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class ValueType(StrEnum):
    """Types a feature or join key can have; each maps to one DuckDB/Arrow type."""

    INT64 = "int64"
    FLOAT64 = "float64"
    STRING = "string"
    BOOL = "bool"


Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Entity(_Spec):
    """What features describe (a customer), identified by its join keys."""

    kind: Literal["entity"] = "entity"
    name: Name
    join_keys: list[Name] = Field(min_length=1)
    value_type: ValueType = ValueType.INT64
    description: str = ""
    owner: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("value_type")
    @classmethod
    def _key_type(cls, value: ValueType) -> ValueType:
        if value not in (ValueType.INT64, ValueType.STRING):
            raise ValueError("join keys are int64 or string")
        return value

    @field_validator("join_keys")
    @classmethod
    def _unique_keys(cls, keys: list[str]) -> list[str]:
        if len(set(keys)) != len(keys):
            raise ValueError("join keys must be unique")
        return keys


def _features_shorthand(value: Any) -> Any:
    # YAML shorthand: {tenure_days: int64, plan_type: string}
    if isinstance(value, dict):
        return [{"name": k, "dtype": v} for k, v in value.items()]
    return value


class Feature(_Spec):
    """One typed column of a feature view."""

    name: Name
    dtype: ValueType
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)


class FileSource(_Spec):
    """A Parquet or CSV file (or a glob of them) with one row per entity and event time."""

    type: Literal["file"] = "file"
    path: str = Field(min_length=1)
    format: Literal["parquet", "csv"] = "parquet"
    timestamp_field: Name = "event_timestamp"
    created_timestamp_field: Name | None = None


class SqlSource(_Spec):
    """A table or query read through SQLAlchemy (any database it can reach)."""

    type: Literal["sql"] = "sql"
    url: str = Field(min_length=1, description="SQLAlchemy URL of the source database.")
    table: str | None = None
    query: str | None = None
    timestamp_field: Name = "event_timestamp"
    created_timestamp_field: Name | None = None

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        return self


class FeatureView(_Spec):
    """Typed features of one or more entities, read from one source.

    ``ttl`` (seconds; 0 = no limit) bounds how old a value may be relative to
    the row it is joined to; ``freshness_sla`` (seconds) is how stale the
    online copy may get before freshness reports it stale.
    """

    kind: Literal["feature_view"] = "feature_view"
    name: Name
    entities: list[Name] = Field(min_length=1)
    features: Annotated[list[Feature], BeforeValidator(_features_shorthand)] = Field(min_length=1)
    source: Annotated[FileSource | SqlSource, Field(discriminator="type")]
    ttl: Duration = 0
    freshness_sla: Duration | None = None
    cadence: Literal["hourly", "daily", "weekly", "streaming", "manual"] = "daily"
    owner: str | None = None
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    online: bool = True

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[Feature]) -> list[Feature]:
        names = [f.name for f in features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate feature names: {', '.join(duplicates)}")
        return features

    def feature(self, name: str) -> Feature | None:
        """The feature called ``name``, or None."""
        return next((f for f in self.features if f.name == name), None)


class FeatureService(_Spec):
    """A named set of ``view:feature`` references, usually the inputs of one model."""

    kind: Literal["feature_service"] = "feature_service"
    name: Name
    features: list[str] = Field(min_length=1)
    model: str | None = Field(default=None, description="Registered model that reads these.")
    owner: str | None = None
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _references(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            view, _, feature = ref.partition(":")
            if not re.match(NAME_PATTERN, view) or not (
                feature == "*" or re.match(NAME_PATTERN, feature)
            ):
                raise ValueError(f"{ref!r} is not 'view:feature' or 'view:*'")
        return refs


Definition = Entity | FeatureView | FeatureService


class StoredDefinition(BaseModel):
    """One applied version of a definition."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    name: str
    version: int
    spec: dict[str, Any]
    spec_hash: str
    created_at_ms: int
    removed_at_ms: int | None = None


class ObjectChange(BaseModel):
    """One line of a plan: what ``apply`` would do to one definition."""

    action: Literal["add", "change", "remove", "unchanged"]
    kind: str
    name: str
    from_version: int | None = None
    to_version: int | None = None
    changes: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """What ``apply`` would change: adds, changes and removals (unchanged ones too)."""

    items: list[ObjectChange]
    warnings: list[str] = Field(
        default_factory=list,
        description="Sources of added or changed views that cannot be read now (apply "
        "still writes: the file or database may appear before the first retrieval).",
    )

    @property
    def has_changes(self) -> bool:
        """True when applying would write anything."""
        return any(item.action != "unchanged" for item in self.items)


class UsageRecord(BaseModel):
    """When a feature was defined and last read offline (training) / online (serving)."""

    view: str
    feature: str
    defined_at_ms: int
    last_offline_ms: int | None = None
    last_online_ms: int | None = None


class MaterializationRecord(BaseModel):
    """What the store remembers about a view's online copy."""

    view: str
    materialized_until_ms: int | None = None
    last_materialized_at_ms: int | None = None
    last_push_at_ms: int | None = None
    rows_written: int = 0


class Freshness(BaseModel):
    """How current a view's online copy is."""

    view: str
    cadence: str
    materialized_until_ms: int | None
    last_materialized_at_ms: int | None
    last_push_at_ms: int | None
    rows_written: int
    age_s: float | None
    sla_s: int | None
    is_stale: bool | None


class UnusedFeature(BaseModel):
    """A feature nobody read (offline or online) within the deprecation window."""

    view: str
    feature: str
    last_used_ms: int | None
    defined_at_ms: int
    dependent_models: list[str]


# Skew-check options: the REST body (api/routers/features.py) extends these, and the SDK
# validates with them on both transports (#15.26).
class ServedFrom(BaseModel):
    """Read served values from the prediction log: a model, a version, a window."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    version: int | None = Field(default=None, ge=1)
    start: str | None = None
    end: str | None = None


class SkewOptions(BaseModel):
    """Which features to compare and the thresholds (None: the configured defaults)."""

    model_config = ConfigDict(extra="forbid")

    served_from: ServedFrom | None = Field(
        default=None, description="Read served values from the prediction log instead."
    )
    features: list[str] | None = None
    ks_threshold: float | None = Field(default=None, gt=0, le=1)
    psi_threshold: float | None = Field(default=None, gt=0)
