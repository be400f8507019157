"""Tables of deployments and the decision log: deployments with their policy and state,
per-replica status, bad prediction-log windows, leases, decisions, and interleaving
impressions.

Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds them; created by
migration 0007 (impressions: 0011).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.sql.tables import Base


class DecisionRow(Base):
    """One entry of the decision log (append-only by convention: nothing updates it)."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at_ms: Mapped[int] = mapped_column(BigInteger)
    model: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(String(256))
    deployment: Mapped[str | None] = mapped_column(String(128))
    related: Mapped[dict[str, Any]] = mapped_column(JSON)
    # a resolution record: the incident it closes; unique, so of two concurrent
    # resolutions of one incident exactly one is written (migration 0010)
    resolves: Mapped[int | None] = mapped_column(Integer, unique=True)
    __table_args__ = (
        Index("ix_decisions_model_at", "model", "at_ms"),
        Index("ix_decisions_deployment_at", "deployment", "at_ms"),
        Index("ix_decisions_at", "at_ms"),
    )


class DeploymentRow(Base):
    """A deployment: its policy as given, its rollout state, and a version for compare-and-set.

    Every state change is ``UPDATE … SET version = version + 1 WHERE name = ? AND
    version = ?``: of two concurrent changes one matches and the other finds no row (409).
    """

    __tablename__ = "deployments"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    strategy: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_deployments_model", "model"),)


class DeploymentReplicaRow(Base):
    """What one gateway replica last reported serving for a deployment (R-DEP-06)."""

    __tablename__ = "deployment_replicas"
    deployment: Mapped[str] = mapped_column(
        ForeignKey("deployments.name", ondelete="CASCADE"), primary_key=True
    )
    replica: Mapped[str] = mapped_column(String(128), primary_key=True)
    state_version: Mapped[int] = mapped_column(Integer)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON)
    reported_at_ms: Mapped[int] = mapped_column(BigInteger)
    # shadow-copy counts by "arm:outcome" (migration 0009); NULL in older reports
    shadow: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class BadWindowRow(Base):
    """Predictions of one arm in ``[from_ms, to_ms)`` came from a rolled-back version.

    The prediction log is append-only Parquet; retraining excludes these rows by query.
    """

    __tablename__ = "prediction_bad_windows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(256))
    arm: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    from_ms: Mapped[int] = mapped_column(BigInteger)
    to_ms: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_prediction_bad_windows_model", "model", "version"),)


class LeaseRow(Base):
    """A named lease: whoever holds an unexpired row is the only one doing that work."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


class ImpressionRow(Base):
    """One interleaved list served by ``POST /v1/deployments/{name}/rank`` (R-DEP-18): the
    candidates, the items shown with the team that placed each, the arms and versions of
    the two teams, and the last clicks recorded (``winner``: ``a``, ``b``, ``tie``, NULL
    while nothing was clicked). Created by migration 0011."""

    __tablename__ = "interleaving_impressions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment: Mapped[str] = mapped_column(ForeignKey("deployments.name", ondelete="CASCADE"))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    routing_key: Mapped[str | None] = mapped_column(String(256))
    k: Mapped[int | None] = mapped_column(Integer)
    candidates: Mapped[list[Any]] = mapped_column(JSON)
    items: Mapped[list[Any]] = mapped_column(JSON)
    teams: Mapped[list[str]] = mapped_column(JSON)
    arm_a: Mapped[str] = mapped_column(String(128))
    arm_b: Mapped[str] = mapped_column(String(128))
    version_a: Mapped[int] = mapped_column(Integer)
    version_b: Mapped[int] = mapped_column(Integer)
    clicked: Mapped[list[Any] | None] = mapped_column(JSON)
    clicked_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    winner: Mapped[str | None] = mapped_column(String(8))
    __table_args__ = (Index("ix_interleaving_impressions_deployment", "deployment", "winner"),)
