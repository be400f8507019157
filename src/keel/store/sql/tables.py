"""SQLAlchemy table definitions. Rows never leave ``keel.store.sql``.

Times are integer milliseconds since the epoch (UTC): exact, sortable, and the
same on SQLite and PostgreSQL. Schema changes happen only through Alembic
migrations in ``migrations/versions``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ExperimentRow(Base):
    __tablename__ = "experiments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))
    start_time_ms: Mapped[int] = mapped_column(BigInteger)
    end_time_ms: Mapped[int | None] = mapped_column(BigInteger)
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    user: Mapped[str | None] = mapped_column(String(256))
    code_commit: Mapped[str | None] = mapped_column(String(64))
    code_dirty: Mapped[bool | None] = mapped_column(Boolean)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    environment_hash: Mapped[str | None] = mapped_column(String(64))
    seed: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_runs_experiment_start", "experiment_id", "start_time_ms"),)


class ParamRow(Base):
    __tablename__ = "params"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_params_key_run", "key", "run_id"),)


class RunTagRow(Base):
    __tablename__ = "run_tags"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_run_tags_key_run", "key", "run_id"),)


class MetricRow(Base):
    """Full metric history. NaN is stored as value 0 with ``is_nan`` set, because
    SQLite silently turns a NaN REAL into NULL."""

    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    key: Mapped[str] = mapped_column(String(256))
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_metrics_run_key_step", "run_id", "key", "step"),)


class LatestMetricRow(Base):
    """Last value per (run, key), denormalised with the experiment so that
    ``search_runs`` can filter and order by a metric through one index."""

    __tablename__ = "latest_metrics"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(32))
    value: Mapped[float] = mapped_column(Float)
    is_nan: Mapped[bool] = mapped_column(Boolean, default=False)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        Index("ix_latest_metrics_exp_key_value", "experiment_id", "key", "value", "run_id"),
        Index("ix_latest_metrics_key_value", "key", "value"),
    )


class ArtifactRow(Base):
    """A run's file at a relative path, pointing at a content-addressed blob."""

    __tablename__ = "run_artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)


class DatasetVersionRow(Base):
    __tablename__ = "dataset_versions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(64))
    blob_sha256: Mapped[str | None] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(32))
    schema_: Mapped[list[Any]] = mapped_column("schema", JSON, default=list)
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    source_uri: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_dataset_versions_name_version"),
        UniqueConstraint("name", "content_hash", name="uq_dataset_versions_name_hash"),
        Index("ix_dataset_versions_hash", "content_hash"),
    )


class RunInputRow(Base):
    """A dataset a run read: its name, role, content hash, schema and size."""

    __tablename__ = "run_inputs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    context: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(64))
    schema_: Mapped[list[Any]] = mapped_column("schema", JSON, default=list)
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    source_uri: Mapped[str | None] = mapped_column(Text)
    dataset_version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    __table_args__ = (
        UniqueConstraint(
            "run_id", "name", "context", "content_hash", name="uq_run_inputs_identity"
        ),
    )


class RegisteredModelRow(Base):
    __tablename__ = "registered_models"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    description: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    model_name: Mapped[str] = mapped_column(
        ForeignKey("registered_models.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    artifact_path: Mapped[str | None] = mapped_column(String(1024))
    files: Mapped[list[Any]] = mapped_column(JSON, default=list)
    content_hash: Mapped[str] = mapped_column(String(64))
    flavor: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    input_example: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    description: Mapped[str | None] = mapped_column(Text)
    card: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parents: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_by: Mapped[str | None] = mapped_column(String(256))
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (
        ForeignKeyConstraint(
            ["model_name", "version"],
            ["model_versions.model_name", "model_versions.version"],
            name="fk_model_aliases_version",
        ),
    )


class AliasEventRow(Base):
    """Append-only history of alias moves: who moved which alias from where to where."""

    __tablename__ = "alias_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(256))
    reason: Mapped[str | None] = mapped_column(Text)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_alias_events_model_alias", "model_name", "alias", "at_ms"),)


# Tables of other domains declare on the same Base; importing them here makes
# Base.metadata complete for Alembic comparisons. Kept last to avoid a cycle.
from keel.store.sql import (  # noqa: E402, F401
    tables_auth,
    tables_deploy,
    tables_features,
    tables_jobs,
    tables_monitoring,
    tables_triggers,
)
