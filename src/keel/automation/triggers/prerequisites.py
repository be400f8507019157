"""Retraining prerequisites checked before a met trigger fires (R-TRN-10).

Each check writes its numbers into the evaluation's ``prerequisites`` (always, so a record
shows how close a blocked or fired trigger was) and returns the reason it blocks, if it does:

* ``labels``: at least ``min_labels`` labelled rows in the trigger's window;
* ``rollback``: a registered version to go back to;
* ``compute``: the retraining's expected minutes, from the model's earlier retraining runs'
  recorded ``duration_s.total`` (R-CICD-12's stage durations), and its cost at
  ``cost_per_hour``, under ``max_minutes`` / ``max_cost``;
* ``capacity``: fewer than ``max_jobs`` retraining jobs queued or running, and enough free
  disk in ``KEEL_HOME`` for the training rows;
* ``validation``: the holdout the gates will use (the retrain section's split of the
  labelled rows in its window) has at least ``min_holdout`` rows and both classes.

A check without a configured limit records its numbers and never blocks, except the disk
check, which always applies: a retraining that cannot store its rows fails half-way.
"""

from __future__ import annotations

import shutil
import statistics
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    import pandas as pd

    from keel.automation.triggers.context import EvaluationContext

__all__ = ["BYTES_PER_VALUE", "DISK_HEADROOM", "HISTORY_RUNS", "check_prerequisites"]

#: Earlier retraining runs the compute estimate reads (the newest finished ones).
HISTORY_RUNS = 5
#: Bytes one value of the training frame takes (float64; strings are dictionary-encoded).
BYTES_PER_VALUE = 8
#: The training rows are held about twice on disk at once: the registered dataset version
#: and the spilled frame or model artifacts written beside it.
DISK_HEADROOM = 2.0
_RETRAIN_KIND = "retrain.run"


def check_prerequisites(ctx: EvaluationContext, numbers: dict[str, Any]) -> list[str]:
    """Run every check, record its numbers in ``numbers``; the blocking reasons, in words."""
    blocked: list[str] = []
    for check in (_labels, _rollback, _compute, _capacity, _validation):
        reason = check(ctx, numbers)
        if reason:
            blocked.append(reason)
    return blocked


def _labels(ctx: EvaluationContext, numbers: dict[str, Any]) -> str | None:
    trigger, needs = ctx.trigger, ctx.trigger.prerequisites
    kinds = {cond.kind for _, cond in trigger.leaves()}
    if not (needs.labels is True or (needs.labels == "auto" and "performance" in kinds)):
        return None
    start = ctx.now_ms - trigger.seconds(None) * 1000
    n = len(ctx.labelled_between(start, ctx.now_ms, served=False))
    numbers["labels"] = {"n": n, "min": needs.min_labels}
    if n < needs.min_labels:
        return f"{n} labelled rows in the window, need {needs.min_labels}"
    return None


def _rollback(ctx: EvaluationContext, numbers: dict[str, Any]) -> str | None:
    if not ctx.trigger.prerequisites.rollback:
        return None
    versions = ctx.services.registry.list_versions(ctx.trigger.model)
    numbers["rollback"] = {"versions": len(versions)}
    return None if versions else "no registered version to roll back to"


def _compute(ctx: EvaluationContext, numbers: dict[str, Any]) -> str | None:
    needs = ctx.trigger.prerequisites
    seconds = _past_durations_s(ctx)
    out: dict[str, Any] = {
        "runs": len(seconds),
        "max_minutes": needs.max_minutes,
        "cost_per_hour": needs.cost_per_hour,
        "max_cost": needs.max_cost,
    }
    numbers["compute"] = out
    if not seconds:
        out["expected_minutes"] = out["expected_cost"] = None
        out["note"] = "no earlier finished retraining of this model to estimate from"
        return None
    minutes = statistics.median(seconds) / 60
    out["expected_minutes"] = round(minutes, 4)
    cost = None if needs.cost_per_hour is None else minutes / 60 * needs.cost_per_hour
    out["expected_cost"] = None if cost is None else round(cost, 6)
    reasons = []
    if needs.max_minutes is not None and minutes > needs.max_minutes:
        reasons.append(
            f"expected {minutes:.1f} min of compute (median of {len(seconds)} earlier "
            f"retrainings) > max_minutes {needs.max_minutes:g}"
        )
    if cost is not None and needs.max_cost is not None and cost > needs.max_cost:
        reasons.append(
            f"expected cost {cost:.2f} ({minutes:.1f} min at {needs.cost_per_hour:g}/h) "
            f"> max_cost {needs.max_cost:g}"
        )
    return "; ".join(reasons) or None


def _past_durations_s(ctx: EvaluationContext) -> list[float]:
    """``duration_s.total`` of the model's newest finished retraining runs."""
    from keel.tracking.models import RunStatus

    experiment = ctx.trigger.retrain.get("experiment") or f"retrain-{ctx.trigger.model}"
    model = ctx.trigger.model.replace("'", "''")
    try:
        page = ctx.services.tracking.search_runs(
            [experiment], f"tags.`keel.retrain.model` = '{model}'", ["start_time DESC"], 50
        )
    except NotFound:  # never retrained: the experiment does not exist yet
        return []
    found = [
        float(run.metrics["duration_s.total"])
        for run in page.items
        if run.status == RunStatus.FINISHED and "duration_s.total" in run.metrics
    ]
    return found[:HISTORY_RUNS]


def _capacity(ctx: EvaluationContext, numbers: dict[str, Any]) -> str | None:
    needs = ctx.trigger.prerequisites
    jobs = ctx.services.jobs
    active = sum(
        len(jobs.list_jobs(status=status, kind=_RETRAIN_KIND, limit=1000))
        for status in ("queued", "running", "retrying")
    )
    rows = _window_rows(ctx)
    columns = _columns(ctx)
    need = int(len(rows) * (columns + 2) * BYTES_PER_VALUE * DISK_HEADROOM)
    free = shutil.disk_usage(ctx.services.settings.home).free
    numbers["capacity"] = {
        "retrain_jobs_active": active,
        "max_jobs": needs.max_jobs,
        "disk_free_bytes": free,
        "disk_needed_bytes": need,
        "training_rows": len(rows),
    }
    reasons = []
    if needs.max_jobs is not None and active >= needs.max_jobs:
        reasons.append(
            f"{active} retraining jobs queued or running, at most {needs.max_jobs - 1} "
            f"before another (max_jobs {needs.max_jobs})"
        )
    if free < need:
        reasons.append(f"{free:,} bytes free in KEEL_HOME, the training rows need about {need:,}")
    return "; ".join(reasons) or None


def _columns(ctx: EvaluationContext) -> int:
    """The training frame's width: the reference's columns (1 when it cannot be read)."""
    from keel.errors import KeelError

    try:
        return len(ctx.reference().frame.columns)
    except KeelError:
        return 1


def _window_rows(ctx: EvaluationContext) -> pd.DataFrame:
    """Labelled rows (of every version) in the retrain section's window."""
    from keel.automation.retrain.spec import RetrainSpec

    spec = _retrain_spec(ctx)
    window_s = spec.window_s if spec is not None else RetrainSpec.model_fields["window_s"].default
    start = ctx.now_ms - window_s * 1000
    return ctx.labelled_between(start, ctx.now_ms, served=False)


def _retrain_spec(ctx: EvaluationContext) -> Any:
    """The trigger's retrain section as the job will read it, or None when it cannot be
    (no ``train``: the firing records why instead)."""
    from keel.automation.retrain.spec import RetrainSpec

    if "train" not in ctx.trigger.retrain:
        return None
    try:
        return RetrainSpec.model_validate(ctx.trigger.retrain)
    except (ValueError, InvalidInput):
        return None


def _validation(ctx: EvaluationContext, numbers: dict[str, Any]) -> str | None:
    needs = ctx.trigger.prerequisites
    spec = _retrain_spec(ctx)
    if spec is None:
        if needs.min_holdout is not None:
            numbers["validation"] = {"min_holdout": needs.min_holdout, "holdout_rows": None}
            return "no retrain section with a train function to size the holdout from"
        return None
    rows = _window_rows(ctx)
    holdout = _holdout(rows, spec)
    truth = holdout["label_value"].to_numpy()
    positive = (truth == _number(spec.positive)).sum() if len(truth) else 0
    numbers["validation"] = {
        "holdout_rows": len(holdout),
        "positives": int(positive),
        "negatives": int(len(holdout) - positive),
        "split": spec.split.describe(),
        "min_holdout": needs.min_holdout,
    }
    if needs.min_holdout is None:
        return None
    if len(holdout) < needs.min_holdout:
        return f"the gates' holdout would hold {len(holdout)} rows, need {needs.min_holdout}"
    if positive == 0 or positive == len(holdout):
        return f"the gates' holdout of {len(holdout)} rows would hold one class only"
    return None


def _holdout(rows: pd.DataFrame, spec: Any) -> pd.DataFrame:
    """The rows the retraining's own :func:`~keel.automation.retrain.data.time_split` would
    hold out for the gates."""
    from keel.automation.retrain.data import TS_COLUMN, time_split

    frame = rows[["ts_ms", "label_value"]].rename(columns={"ts_ms": TS_COLUMN})
    return time_split(frame, spec.split)[2]


def _number(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
