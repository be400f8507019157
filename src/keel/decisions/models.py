"""Entities of the decision log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, computed_field, model_validator

from keel._models import Entity

__all__ = ["KINDS", "Decision", "DecisionQuery"]

#: Known kinds. Automation and deployments write these; the log accepts others that
#: follow the same spelling (lowercase words joined by ``_``), so a new producer needs
#: no schema change.
KINDS = frozenset(
    {
        "trigger_evaluation",
        "diagnosis",
        "retraining",
        "gate",
        "promotion",
        "rollback",
        "override",
        "rollout_step",
        "evaluation",
        "deployment_created",
        "pause",
        "resume",
    }
)


class Decision(Entity):
    """One decision: when, about which model, what kind, why (``summary``) and the numbers.

    ``details`` holds everything behind the decision (observed values, thresholds,
    verdict); ``related`` names other records by id (a job, a trigger, a version).
    Every JSON record (REST, SDK, CLI) carries ``time`` (ISO-8601 UTC, derived from
    ``at_ms``, which stays for compatibility), ``model``, ``kind`` and ``summary``.
    """

    id: int | None = None
    at_ms: int
    model: str
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    summary: str = Field(max_length=2000)
    details: dict[str, Any] = Field(default_factory=dict)
    actor: str = Field(max_length=256)
    deployment: str | None = None
    related: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_time(cls, data: Any) -> Any:
        # ``time`` is derived from ``at_ms``: a record read back from JSON (the HTTP SDK)
        # carries it, and the strict entity would otherwise refuse it as unknown.
        if isinstance(data, dict) and "time" in data:
            data = {k: v for k, v in data.items() if k != "time"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time(self) -> str:
        """``at_ms`` as an ISO-8601 UTC time (``2026-12-07T06:13:27.123000+00:00``)."""
        return dt.datetime.fromtimestamp(self.at_ms / 1000, tz=dt.UTC).isoformat()


class DecisionQuery(Entity):
    """A filter over the log; every field optional, newest first."""

    model: str | None = None
    kind: str | None = None
    deployment: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int = Field(default=100, ge=1, le=10_000)
