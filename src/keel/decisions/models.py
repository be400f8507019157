"""Entities of the decision log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field, computed_field, model_validator

from keel._models import Entity
from keel.decisions.incidents import RESOLUTION_KIND, is_incident

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
        RESOLUTION_KIND,
    }
)

#: Fields derived when a record is read; a record read back from JSON carries them.
_DERIVED = frozenset({"time", "incident", "open"})


class Decision(Entity):
    """One decision: when, about which model, what kind, why (``summary``) and the numbers.

    ``details`` holds everything behind the decision (observed values, thresholds,
    verdict); ``related`` names other records by id (a job, a trigger, a version).
    Every JSON record (REST, SDK, CLI) carries ``time`` (ISO-8601 UTC, derived from
    ``at_ms``, which stays for compatibility), ``model``, ``kind`` and ``summary``.

    Incidents (:mod:`keel.decisions.incidents`) are ``open`` until a ``resolution``
    record names them in ``resolves``; ``resolution`` is that record's id (filled when
    the log is read, never stored on the incident: the log is only appended to).
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
    resolves: int | None = None
    resolution: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_time(cls, data: Any) -> Any:
        # ``time``, ``incident`` and ``open`` are derived: a record read back from JSON (the
        # HTTP SDK) carries them, and the strict entity would otherwise refuse them.
        if isinstance(data, dict) and _DERIVED.intersection(data):
            data = {k: v for k, v in data.items() if k not in _DERIVED}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time(self) -> str:
        """``at_ms`` as an ISO-8601 UTC time (``2026-12-07T06:13:27.123000+00:00``)."""
        return dt.datetime.fromtimestamp(self.at_ms / 1000, tz=dt.UTC).isoformat()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def incident(self) -> bool:
        """Whether this record is an incident (:func:`keel.decisions.incidents.is_incident`)."""
        return is_incident(self.kind, self.details)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def open(self) -> bool:
        """An incident no ``resolution`` record names yet (always false for other records)."""
        return self.incident and self.resolution is None


class DecisionQuery(Entity):
    """A filter over the log; every field optional, newest first."""

    model: str | None = None
    kind: str | None = None
    deployment: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    open: bool | None = Field(
        default=None, description="True: unresolved incidents only; False: everything else."
    )
    limit: int = Field(default=100, ge=1, le=10_000)
