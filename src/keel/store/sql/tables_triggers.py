"""Table of retraining triggers: the definition and when it was last evaluated and fired.

Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds it; created by
migration 0008. Every evaluation itself is a row of the decision log, not of this table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.sql.tables import Base


class TriggerRow(Base):
    """One trigger: its spec (as applied) and its last evaluation and firing."""

    __tablename__ = "triggers"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_evaluated_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_fired_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_job_id: Mapped[str | None] = mapped_column(String(32))
    __table_args__ = (Index("ix_triggers_model", "model"),)
