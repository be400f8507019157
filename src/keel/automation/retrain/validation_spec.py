"""The ``data_validation`` section of a retrain spec (R-CICD-07, R-TRN-21): thresholds of
the checks keel runs on the assembled training rows before any training.

On by default with the defaults below; ``data_validation: false`` skips the checks. Every
share is in [0, 1]; a bad value is an InvalidInput naming
``args.retrain.data_validation.<field>`` (HTTP 422) when the job or trigger is created.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel._durations import PositiveDuration

__all__ = ["DataValidationSpec", "QuarantineSpec", "SkewSpec", "WindowSpec", "validation_section"]

Action = Literal["refuse", "warn"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SkewSpec(_Strict):
    """Skew of each feature against the reference: KS (numeric) and PSI (every feature).

    ``warn`` by default: a retraining is often fired *because* the inputs moved, and
    refusing it then would keep the stale model; ``refuse`` for a feed that must not move.
    """

    max_ks: float = Field(default=0.2, gt=0, le=1)
    max_psi: float = Field(default=0.25, gt=0)
    action: Action = "warn"


class WindowSpec(_Strict):
    """Training-window sanity (R-TRN-21): the window must cover the reference's usual days
    of week, at least ``min_hours_coverage`` of its usual hours of week, and span at least
    ``min_span`` (default: not checked)."""

    action: Action = "refuse"
    min_hours_coverage: float = Field(default=0.5, ge=0, le=1)
    min_span_s: PositiveDuration | None = Field(default=None, alias="min_span")


class QuarantineSpec(_Strict):
    """Rows of a corrupted source period (a ``period`` of the window whose rows fail the
    column checks) are left out and counted while their share of the rows is at most
    ``max_share``; above it the whole retraining is refused."""

    period_s: PositiveDuration = Field(default=86_400, alias="period")
    max_share: float = Field(default=0.1, ge=0, lt=1)


class DataValidationSpec(_Strict):
    """Thresholds of the checks on the training rows (docs/automation.md#data-validation).

    A column fails when its missing share exceeds the reference's by more than
    ``max_missing_share``, more than ``max_out_of_range_share`` of it lies outside the
    reference's range (a unit or feed change; drift moves less), more than
    ``max_unseen_category_share`` of it holds categories the reference never had, or it is
    constant where the reference makes that improbable.
    """

    # refusing a retraining costs a fresh model, so the bar is a broken feed, not the
    # monitors' alert level (0.05): a feature store's TTL gaps move a day's share by ~0.1
    max_missing_share: float = Field(default=0.25, ge=0, le=1)
    max_out_of_range_share: float = Field(default=0.5, ge=0, le=1)
    max_unseen_category_share: float = Field(default=0.2, ge=0, le=1)
    min_period_rows: int = Field(default=30, ge=1, description="Fewer rows: period not judged.")
    skew: SkewSpec = Field(default_factory=SkewSpec)
    window: WindowSpec = Field(default_factory=WindowSpec)
    quarantine: QuarantineSpec = Field(default_factory=QuarantineSpec)


def validation_section(value: Any) -> Any:
    """The spec's ``data_validation`` value before validation: ``false``/``null`` → None
    (checks skipped), ``true`` → the defaults, a mapping as given."""
    if value is False or value is None:
        return None
    if value is True:
        return {}
    return value
