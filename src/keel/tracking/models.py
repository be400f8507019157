"""Tracking entities: experiments, runs, params, metrics, tags, inputs, datasets."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import Field

from keel._models import MAX_INT64, MAX_VERSION, Entity, JsonFloat

__all__ = [
    "ArtifactFile",
    "DatasetVersion",
    "Experiment",
    "Metric",
    "Run",
    "RunInput",
    "RunStatus",
]


class RunStatus(enum.StrEnum):
    """Lifecycle of a run: RUNNING, then exactly one terminal state."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        """Whether the run has ended."""
        return self is not RunStatus.RUNNING


class Experiment(Entity):
    """A named group of runs."""

    id: str
    name: str
    description: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    created_at_ms: int


class Metric(Entity):
    """One metric value at a step; ``value`` may be NaN or ±inf."""

    key: str = Field(min_length=1, max_length=256)
    value: JsonFloat
    step: int = 0
    timestamp_ms: int | None = None


class RunInput(Entity):
    """A dataset a run read, identified by content hash."""

    name: str
    context: str = "training"
    content_hash: str
    schema_: list[dict[str, Any]] = Field(default_factory=list, alias="schema")
    row_count: int | None = Field(default=None, ge=0, le=MAX_INT64)
    source_uri: str | None = None
    dataset_version: int | None = Field(default=None, ge=1, le=MAX_VERSION)


class ArtifactFile(Entity):
    """A file logged to a run."""

    path: str
    sha256: str
    size_bytes: int


class Run(Entity):
    """A run with its latest metrics, params, tags, inputs and environment."""

    id: str
    experiment_id: str
    name: str | None = None
    status: RunStatus
    start_time_ms: int
    end_time_ms: int | None = None
    parent_run_id: str | None = None
    user: str | None = None
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, JsonFloat] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    inputs: list[RunInput] = Field(default_factory=list)
    code_commit: str | None = None
    code_dirty: bool | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    environment_hash: str | None = None
    seed: int | None = None

    @property
    def duration_ms(self) -> int | None:
        """Wall time of a finished run."""
        return None if self.end_time_ms is None else self.end_time_ms - self.start_time_ms

    def reproducibility(self) -> dict[str, Any]:
        """R-TRK-01: a run is reproducible when code, data, config and environment are recorded.

        Returns ``{"reproducible": bool, "missing": [...], "key": sha256 | None}``;
        the key hashes the four parts together.
        """
        import hashlib
        import json

        parts = {
            "code": self.code_commit if self.code_commit and not self.code_dirty else None,
            "data": sorted(i.content_hash for i in self.inputs) or None,
            "config": self.params or None,
            "environment": self.environment_hash,
        }
        missing = [name for name, value in parts.items() if value is None]
        key = None
        if not missing:
            key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return {"reproducible": not missing, "missing": missing, "key": key}


class DatasetVersion(Entity):
    """A named, content-addressed dataset version (DVC-style)."""

    name: str
    version: int
    content_hash: str
    blob_sha256: str | None = None
    format: str
    schema_: list[dict[str, Any]] = Field(default_factory=list, alias="schema")
    row_count: int | None = None
    size_bytes: int | None = None
    source_uri: str | None = None
    description: str | None = None
    created_at_ms: int
