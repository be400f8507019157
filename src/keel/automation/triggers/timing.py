"""When a met trigger may fire (R-TRN-21: no retraining or rollout at peak traffic).

A trigger's ``timing`` section defers a fire, never drops it. The section and its
evaluation (allowed hours/days, ``avoid_peak`` from the hour-of-week traffic) are
:mod:`keel.automation.timing`'s, shared with deployment policies. A deferred evaluation
is recorded with the numbers and the next allowed time; the next evaluation fires the
pending fire once the time is allowed, even if the conditions that met have since
cleared (:mod:`keel.automation.triggers.service` carries it forward).

A trigger's ``retrain.rollout`` with no ``timing`` of its own takes the trigger's
(:func:`retrain_section`), so the rollout a retraining starts also stays out of the hours
the retraining itself avoided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keel.automation.timing import (
    HOURS_PER_WEEK,
    PeakGuard,
    Timing,
    TimingCheck,
    evaluate_timing,
    hourly_traffic,
)

if TYPE_CHECKING:
    from keel.automation.triggers.context import EvaluationContext
    from keel.automation.triggers.models import Trigger, TriggerSpec

__all__ = [
    "HOURS_PER_WEEK",
    "PeakGuard",
    "Timing",
    "TimingCheck",
    "check_timing",
    "hourly_traffic",
    "pending_fire",
    "retrain_section",
]


def check_timing(ctx: EvaluationContext) -> TimingCheck:
    """The trigger's timing at ``ctx.now_ms`` (its model's traffic for ``avoid_peak``)."""
    root = ctx.services.monitors.inputs.predictions_root
    return evaluate_timing(ctx.trigger.timing, ctx.trigger.model, ctx.now_ms, root)


def retrain_section(trigger: TriggerSpec) -> dict[str, Any]:
    """The trigger's ``retrain`` section for its job; a ``rollout`` without ``timing`` of
    its own inherits the trigger's, so the deployment is held the same way."""
    retrain = dict(trigger.retrain)
    rollout = retrain.get("rollout")
    if trigger.timing is not None and isinstance(rollout, dict) and "timing" not in rollout:
        inherited = trigger.timing.model_dump(mode="json", exclude_none=True)
        retrain["rollout"] = {**rollout, "timing": inherited}
    return retrain


def pending_fire(services: Any, trigger: Trigger) -> dict[str, Any] | None:
    """The fire the trigger's previous evaluation owed (deferred by timing, or blocked while
    owed), read from its decision record: ``{since_ms, event}``; None when it fired or owed
    nothing. Kept in the decision log, so a restart loses no deferred fire."""
    if trigger.last_evaluated_at_ms is None:
        return None
    records = services.decisions.query(
        model=trigger.model,
        kind="trigger_evaluation",
        since=trigger.last_evaluated_at_ms,
        limit=1_000,
    )
    mine = [r for r in records if r.related.get("trigger") == trigger.name]
    if not mine:
        return None
    owed = max(mine, key=lambda r: (r.at_ms, r.id)).details.get("pending_fire")
    return owed if isinstance(owed, dict) else None
