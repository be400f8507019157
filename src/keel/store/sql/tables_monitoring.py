"""Tables of monitoring: monitor definitions and the stored result of every monitor run.

Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds them;
created by migration 0004.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.sql.tables import Base


class MonitorRow(Base):
    """A monitor: which model, compared with which reference, over which window."""

    __tablename__ = "monitors"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256))
    version_ref: Mapped[str] = mapped_column(String(64))  # alias, version number or "*"
    reference: Mapped[str | None] = mapped_column(String(300))  # dataset "name@version"
    window_s: Mapped[int] = mapped_column(BigInteger)
    sampling_rate: Mapped[float] = mapped_column(Float)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)


class MonitorRunRow(Base):
    """One evaluation of a monitor over one window: verdict, numbers, cost."""

    __tablename__ = "monitor_runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    monitor: Mapped[str] = mapped_column(ForeignKey("monitors.name", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(256))
    version: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32))
    started_at_ms: Mapped[int] = mapped_column(BigInteger)
    window_start_ms: Mapped[int] = mapped_column(BigInteger)
    window_end_ms: Mapped[int] = mapped_column(BigInteger)
    seconds: Mapped[float] = mapped_column(Float)
    n_reference: Mapped[int] = mapped_column(Integer)
    n_current: Mapped[int] = mapped_column(Integer)
    n_labelled: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    results: Mapped[dict[str, Any]] = mapped_column(JSON)
    __table_args__ = (Index("ix_monitor_runs_monitor_started", "monitor", "started_at_ms"),)
