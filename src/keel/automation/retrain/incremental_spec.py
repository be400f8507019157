"""The ``incremental`` section of a retrain spec (R-TRN-09): how a continuous/online update
takes its batch, holds part of it out, guards its labels and is promoted.

Only read when the spec says ``mode: incremental``; the run itself is
:mod:`keel.automation.retrain.incremental`, the label checks
:mod:`keel.automation.retrain.labelguard`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel._durations import Duration, PositiveDuration

__all__ = ["GuardSpec", "IncrementalSpec", "check_mode"]


class GuardSpec(BaseModel):
    """Label sanity checks on a batch before it may update the model (noisy or adversarial
    labels). A batch failing either check is quarantined: recorded, never trained on.

    - *positive-rate shift*: the batch's positive rate against the labels of the recent
      window (``recent_window`` before the batch, quarantined batches left out); it fails
      when the difference exceeds ``max_positive_rate_shift`` and the two-proportion z-test
      gives p < ``alpha``. Skipped with fewer than ``min_recent_rows`` recent labels.
    - *label flips*: on the rows where the champion is confident (its predicted class has
      probability ≥ ``confidence``), the share of labels agreeing with it against what its
      probabilities expect (Poisson-binomial test); it fails when agreement is short of the
      expectation by more than ``max_disagreement_excess`` and p < ``alpha``. Skipped with
      fewer than ``min_confident_rows`` confident rows.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    max_positive_rate_shift: float = Field(default=0.15, gt=0.0, le=1.0)
    recent_window_s: PositiveDuration = Field(default=30 * 86_400, alias="recent_window")
    min_recent_rows: int = Field(default=50, ge=1)
    confidence: float = Field(default=0.8, gt=0.5, lt=1.0)
    max_disagreement_excess: float = Field(default=0.15, gt=0.0, le=1.0)
    min_confident_rows: int = Field(default=30, ge=1)
    alpha: float = Field(default=0.001, gt=0.0, lt=0.5)


class IncrementalSpec(BaseModel):
    """How each incremental update runs (see docs/automation.md#incremental-updates)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    holdout: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="The newest share of the batch (by prediction time): the gates' fresh "
        "holdout, never given to the update.",
    )
    settle_s: Duration = Field(
        default=30,
        alias="settle",
        description="Labels received in the last `settle` are left for the next run: a "
        "label batch being written as the run reads must not slip under the mark.",
    )
    promote_to: Literal["challenger", "champion"] = Field(
        default="challenger",
        description="challenger: the usual promotion (alias, rollout, approval); champion: "
        "a passing update takes the champion alias, so the next update builds on it.",
    )
    guard: GuardSpec = Field(default_factory=GuardSpec)


def check_mode(mode: str, spec: dict[str, Any]) -> str:
    """The retrain spec's ``mode`` against its other (already validated) keys: an
    incremental update neither searches, warm-starts (it always starts from the champion)
    nor decays weights; ``update`` is only read in incremental mode; promoting straight to
    champion skips the rollout and approval, so it cannot have them."""
    if mode == "incremental":
        clashing = [
            key
            for key, unset in (("search", None), ("warm_start", False), ("decay_per_day", None))
            if key in spec and spec[key] != unset
        ]
        if clashing:
            raise ValueError(
                f"incremental updates start from the champion and take no {', '.join(clashing)}"
            )
        section = spec.get("incremental")
        direct = section is not None and section.promote_to == "champion"
        if direct and (spec.get("rollout") is not None or spec.get("require_approval")):
            raise ValueError(
                "incremental.promote_to: champion replaces the champion directly; it takes "
                "no rollout or require_approval (use promote_to: challenger for those)"
            )
    elif spec.get("update") is not None:
        raise ValueError("'update' is only used with mode: incremental")
    return mode
