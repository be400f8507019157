"""Monitoring entities: a monitor's definition and the stored result of one run."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from keel._models import Entity
from keel.monitoring.vocabulary import Correction, TestName

__all__ = ["Monitor", "MonitorRun", "MonitorSpec", "OverrideSpec", "parse_duration"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


def parse_duration(text: str) -> int:
    """Seconds in ``30m``, ``6h``, ``7d``; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"expected a duration like 30m, 6h or 7d, got {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


class OverrideSpec(Entity):
    """Per-feature drift test and/or threshold."""

    test: TestName | None = None
    threshold: float | None = Field(default=None, ge=0)


class MonitorSpec(Entity):
    """What a user declares: the model, the reference, the window and the checks."""

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1, max_length=256)
    version: str = Field(
        default="champion",
        description="Alias (champion), version number (3) or * for every version.",
        max_length=64,
    )
    reference: str | None = Field(
        default=None,
        description="Dataset 'name' or 'name@version'; default: the training data of the "
        "version being served (from its run's inputs).",
        max_length=300,
    )
    window: str = Field(default="7d", description="Rolling window: 30m, 6h, 7d …")
    features: list[str] | None = Field(default=None, max_length=1_000)
    overrides: dict[str, OverrideSpec] = Field(default_factory=dict)
    correction: Correction = "bh"
    min_samples: int = Field(default=30, ge=1, le=1_000_000)
    feature_views: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Feature-store views feeding the model: their freshness vs SLA is checked.",
    )
    slices: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Columns whose values define segments checked on their own.",
    )
    sampling_rate: float = Field(default=1.0, gt=0, le=1)
    label_column: str | None = Field(
        default=None, description="Target column of the reference (enables performance checks)."
    )
    task: Literal["classification", "regression"] | None = None
    null_rate_increase: float = Field(default=0.05, ge=0, le=1)
    out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    new_category_share: float = Field(default=0.01, ge=0, le=1)

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "*" and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("expected an alias, a version number or *")
        return value

    @property
    def window_s(self) -> int:
        """The window in seconds."""
        return parse_duration(self.window)


class Monitor(MonitorSpec):
    """A stored monitor."""

    created_by: str | None = None
    created_at_ms: int
    updated_at_ms: int


class MonitorRun(Entity):
    """One evaluation of a monitor over one window."""

    id: str
    monitor: str
    model: str
    version: int | None
    status: Literal["ok", "alert", "insufficient data"]
    started_at_ms: int
    window_start_ms: int
    window_end_ms: int
    seconds: float
    n_reference: int
    n_current: int
    n_labelled: int
    summary: dict[str, Any]
    results: dict[str, Any]
