"""Tables of the feature store (definitions with their versions, usage, freshness).

Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds them;
created by migration 0002. Online feature values do not live here: they go to
the online store (its own SQLite file, or Redis).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.sql.tables import Base


class FeatureDefinitionRow(Base):
    """Every applied version of an entity, feature view or feature service.

    The newest version of a (kind, name) is the live one unless its
    ``removed_at_ms`` is set; older versions are history, never rewritten.
    """

    __tablename__ = "feature_definitions"
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    spec_hash: Mapped[str] = mapped_column(String(64))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    removed_at_ms: Mapped[int | None] = mapped_column(BigInteger)


class FeatureUsageRow(Base):
    """When each feature was defined and last read offline / online (for deprecation)."""

    __tablename__ = "feature_usage"
    view: Mapped[str] = mapped_column(String(128), primary_key=True)
    feature: Mapped[str] = mapped_column(String(128), primary_key=True)
    defined_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_offline_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_online_ms: Mapped[int | None] = mapped_column(BigInteger)


class FeatureFreshnessRow(Base):
    """How far each view's online copy reaches, and when it was last written."""

    __tablename__ = "feature_freshness"
    view: Mapped[str] = mapped_column(String(128), primary_key=True)
    materialized_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_materialized_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_push_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    rows_written: Mapped[int] = mapped_column(BigInteger, default=0)
