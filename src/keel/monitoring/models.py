"""Monitoring entities: a monitor's definition and the stored result of one run."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from keel._durations import PositiveDurationText, parse_duration_s
from keel._models import Entity
from keel.monitoring.rules import MAX_RULES, MonitorRule
from keel.monitoring.vocabulary import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    Correction,
    PerformanceMetric,
    TestName,
)

__all__ = [
    "Monitor",
    "MonitorRun",
    "MonitorSpec",
    "OverrideSpec",
    "PerformanceThreshold",
    "ResolutionRules",
    "SavedMonitor",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class OverrideSpec(Entity):
    """Per-feature drift test and/or threshold."""

    test: TestName | None = None
    threshold: float | None = Field(default=None, ge=0)


class PerformanceThreshold(Entity):
    """How far a metric may fall below its reference level (``drop`` in the metric's units,
    ``relative_drop`` as a share of the level); the smaller allowance applies."""

    drop: float | None = Field(default=None, gt=0)
    relative_drop: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one_given(self) -> PerformanceThreshold:
        if self.drop is None and self.relative_drop is None:
            raise ValueError("give drop and/or relative_drop")
        return self


#: Alert on a 0.05 fall of accuracy or ROC AUC, or a 5% rise of MAE or RMSE (hardening #15.15).
DEFAULT_PERFORMANCE_THRESHOLDS = {
    "classification": {m: PerformanceThreshold(drop=0.05) for m in ("accuracy", "roc_auc")},
    "regression": {m: PerformanceThreshold(relative_drop=0.05) for m in REGRESSION_METRICS},
}


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
    window: PositiveDurationText = Field(
        default="7d", description="Rolling window: 30m, 6h, 7d, 1w … (keel._durations)."
    )
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
    out_of_range_error_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of a column outside the reference range that is a data-quality "
        "error (a unit change, a broken feed) rather than a drift warning.",
    )
    performance_thresholds: dict[PerformanceMetric, PerformanceThreshold] | None = Field(
        default=None,
        description="Per metric, the allowed fall below the reference (validation) level of "
        "realised and estimated performance; None: accuracy and roc_auc 0.05 for "
        "classification, mae and rmse 5% for regression; {} turns the checks off.",
    )
    rules: list[MonitorRule] = Field(
        default_factory=list,
        max_length=MAX_RULES,
        description="Alert conditions on one column each (null_share(x) > 0.01), often "
        "added as the prevention of an incident (keel decisions resolve).",
    )
    performance_alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="One-sided level at which a performance drop or a concept-drift gap must "
        "also exceed sampling noise.",
    )

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "*" and not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
            raise ValueError("expected an alias, a version number or *")
        return value

    @field_validator("performance_thresholds")
    @classmethod
    def _metrics_fit_task(
        cls, value: dict[str, PerformanceThreshold] | None, info: ValidationInfo
    ) -> dict[str, PerformanceThreshold] | None:
        # A field validator (task is declared earlier) so the error names this field.
        task = info.data.get("task")
        allowed = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
        if task is not None and value:
            wrong = sorted(set(value) - set(allowed[task]))
            if wrong:
                raise ValueError(
                    f"{', '.join(wrong)} not measured for {task} (use {', '.join(allowed[task])})"
                )
        return value

    @property
    def drop_thresholds(self) -> dict[str, PerformanceThreshold]:
        """The performance thresholds in force (the task's defaults unless given)."""
        if self.performance_thresholds is not None:
            return {str(k): v for k, v in self.performance_thresholds.items()}
        return dict(DEFAULT_PERFORMANCE_THRESHOLDS.get(self.task or "", {}))

    @property
    def window_s(self) -> int:
        """The window in seconds."""
        return parse_duration_s(self.window, field="window", positive=True)


class Monitor(MonitorSpec):
    """A stored monitor."""

    created_by: str | None = None
    created_at_ms: int
    updated_at_ms: int


class ResolutionRules(Entity):
    """What replacing a monitor did with the rules incident resolutions had added to it:
    ``kept`` (the new spec lists them, or they were carried over) or ``dropped``
    (``drop_resolution_rules`` and the new spec does not list them)."""

    kept: list[MonitorRule] = Field(default_factory=list)
    dropped: list[MonitorRule] = Field(default_factory=list)


class SavedMonitor(Monitor):
    """A monitor as a create or replace stored it, with what became of its resolution rules
    (both lists empty for a new monitor)."""

    resolution_rules: ResolutionRules = Field(default_factory=ResolutionRules)


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
