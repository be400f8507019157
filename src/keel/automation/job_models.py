"""Job entities: a queued unit of work, its log lines, and a periodic schedule."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from keel._models import Entity
from keel.automation.cron import validate_cron
from keel.errors import InvalidInput, KeelError

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "Job",
    "JobLog",
    "PermanentFailure",
    "JobStatus",
    "Schedule",
    "ScheduleSpec",
    "is_permanent",
]

#: queued → running → succeeded | failed | retrying (→ running …); cancelled from any non-final.
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "retrying"]
FINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
ACTIVE_STATUSES: tuple[str, ...] = ("queued", "running", "retrying")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$"


class JobLog(Entity):
    """One log line of a job: what the job (or keel around it) said, when."""

    time_ms: int
    level: str
    message: str


class Job(Entity):
    """A unit of work on the queue; ``key`` makes enqueueing idempotent."""

    id: str
    kind: str
    key: str
    args: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus
    attempts: int = 0
    max_retries: int = 0
    backoff_s: float = 0.0
    created_at_ms: int
    run_at_ms: int  # earliest time the next attempt may start
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    lease_until_ms: int | None = None  # a running attempt's worker renews it; expired = dead
    worker: str | None = None
    error: str | None = None
    traceback: str | None = None
    result: Any = None
    actor: str | None = None
    schedule: str | None = None
    logs: list[JobLog] = Field(default_factory=list)

    @property
    def is_final(self) -> bool:
        """Whether the job will not run again."""
        return self.status in FINAL_STATUSES


class ScheduleSpec(Entity):
    """What a caller gives to schedule a job kind on a cron expression (UTC)."""

    name: str = Field(pattern=NAME_PATTERN)
    kind: str = Field(min_length=1, max_length=128)
    cron: str = Field(min_length=1, max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            return validate_cron(value)
        except InvalidInput as exc:  # pydantic prefixes the field itself
            raise ValueError(exc.message.removeprefix("cron: ")) from None


class Schedule(ScheduleSpec):
    """A stored schedule and when it last fired."""

    created_by: str | None = None
    created_at_ms: int
    updated_at_ms: int
    last_fired_at_ms: int | None = None
    last_job_id: str | None = None
    next_fire_at_ms: int | None = None  # computed when read


class PermanentFailure(Exception):
    """Raised by a job to fail at once, without retries: the same input fails the same way
    on every attempt (e.g. the user's train function raised on the job's rows)."""


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying ``exc`` cannot help: a :class:`PermanentFailure`, or a client error
    keel raised (bad input, not found, forbidden), which fails the same way on every
    attempt. A conflict (409) or a rate limit (429) may clear, so those are retried like
    any other exception, as is a worker or executor that died (re-delivered)."""
    if isinstance(exc, PermanentFailure):
        return True
    return isinstance(exc, KeelError) and 400 <= exc.status < 500 and exc.status not in (409, 429)
