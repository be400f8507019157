"""Tables of the job queue's durable state: jobs, their log lines, periodic schedules.

Huey carries the messages; these rows are the truth about each job (status, attempts,
lease, result), so a message lost with a killed worker is re-delivered from here.
Imported by :mod:`keel.store.sql.tables` so that ``Base.metadata`` holds them; created by
migration 0006.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.sql.tables import Base


class JobRow(Base):
    """One job: kind, arguments, status, attempts, lease and outcome."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(300), unique=True)  # idempotency
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    max_retries: Mapped[int] = mapped_column(Integer)
    backoff_s: Mapped[float] = mapped_column(Float)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    run_at_ms: Mapped[int] = mapped_column(BigInteger)
    submitted_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    started_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    finished_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    lease_until_ms: Mapped[int | None] = mapped_column(BigInteger)
    worker: Mapped[str | None] = mapped_column(String(128))
    task_id: Mapped[str | None] = mapped_column(String(64))  # Huey message id, for revoke
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    actor: Mapped[str | None] = mapped_column(String(256))
    schedule: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (
        Index("ix_jobs_status_run_at", "status", "run_at_ms"),
        Index("ix_jobs_kind_created", "kind", "created_at_ms"),
    )


class JobLogRow(Base):
    """A log line of a job, in order."""

    __tablename__ = "job_logs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    time_ms: Mapped[int] = mapped_column(BigInteger)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    __table_args__ = (Index("ix_job_logs_job", "job_id", "id"),)


class JobScheduleRow(Base):
    """A periodic schedule: run ``kind`` with ``args`` at each firing of ``cron`` (UTC)."""

    __tablename__ = "job_schedules"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(128))
    cron: Mapped[str] = mapped_column(String(200))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str | None] = mapped_column(String(256))
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    updated_at_ms: Mapped[int] = mapped_column(BigInteger)
    last_fired_at_ms: Mapped[int | None] = mapped_column(BigInteger)
    last_job_id: Mapped[str | None] = mapped_column(String(32))
