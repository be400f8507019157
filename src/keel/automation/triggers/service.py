"""Apply, list and evaluate retraining triggers; fire ``retrain.run`` jobs.

An evaluation computes every condition's numbers at ``now`` and appends one
``trigger_evaluation`` decision with them, fired or not. A met trigger then checks its
prerequisites (R-TRN-10, :mod:`~keel.automation.triggers.prerequisites`), cooldown and timing
(R-TRN-21, :mod:`~keel.automation.triggers.timing`: a deferred fire stays pending and fires at a
later evaluation once the time is allowed), asks the diagnosis what to do
(:mod:`keel.automation.triggers.action`), and either records a ``diagnosis`` alert
(no retraining on broken or stale data) or enqueues one ``retrain.run`` job. Two guards make
a storm of identical evaluations give one job: the cooldown is claimed by a
compare-and-set on the trigger's row, and the job's key is the trigger plus its cooldown
period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from keel._models import now_ms
from keel.automation.triggers.action import Action, decide_action
from keel.automation.triggers.conditions import (
    Outcome,
    dependent_views,
    evaluate_condition,
    prefetch_drift,
)
from keel.automation.triggers.context import EvaluationContext, monitor_spec
from keel.automation.triggers.models import Trigger, TriggerSpec, parse_trigger
from keel.automation.triggers.prerequisites import check_prerequisites
from keel.automation.triggers.timing import check_timing, pending_fire, retrain_section
from keel.decisions.models import Decision
from keel.errors import InvalidInput, NotFound
from keel.store.sql.triggers import TriggerSql

__all__ = ["EVALUATE_KIND", "RETRAIN_KIND", "SCHEDULE_NAME", "Evaluation", "TriggerService"]

log = logging.getLogger("keel.triggers")

RETRAIN_KIND = "retrain.run"
EVALUATE_KIND = "triggers.evaluate"
#: The job schedule that evaluates every enabled trigger (change its cron to change the pace).
SCHEDULE_NAME = "triggers"
DEFAULT_CRON = "* * * * *"


@dataclass
class Evaluation:
    """The outcome of one evaluation (the decision record holds the same numbers)."""

    trigger: str
    model: str
    at_ms: int
    met: bool
    fired: bool
    reason: str
    conditions: list[Outcome]
    action: str | None = None
    data: dict[str, Any] | None = None
    diagnosis: dict[str, Any] | None = None
    prerequisites: dict[str, Any] = field(default_factory=dict)
    event: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    pending_fire: dict[str, Any] | None = None
    decision_id: int | None = None
    job_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly."""
        out = {k: v for k, v in self.__dict__.items() if k != "conditions"}
        out["conditions"] = [c.as_dict() for c in self.conditions]
        return out


class TriggerService:
    """Use cases of triggers over their store and the composition root's services."""

    def __init__(self, store: TriggerSql, services: Any, clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.services = services
        self.clock = clock

    # -- definitions ----------------------------------------------------------------------
    def apply(self, data: Any, *, actor: str | None = None) -> Trigger:
        """Create or replace a trigger from a mapping or YAML/JSON text; InvalidInput naming
        the key path for an unknown key, metric, feature, view or a bad cron."""
        spec = data if isinstance(data, TriggerSpec) else parse_trigger(data)
        self._check_references(spec)
        now = self.clock()
        try:
            created = self.store.get_trigger(spec.name).created_at_ms
        except NotFound:
            created = now
        trigger = Trigger(
            **spec.model_dump(), created_by=actor, created_at_ms=created, updated_at_ms=now
        )
        saved = self.store.save_trigger(trigger)
        self.ensure_schedule()
        return saved

    def _check_references(self, spec: TriggerSpec) -> None:
        services = self.services
        services.registry.get_model(spec.model)
        if spec.monitor is not None:
            try:
                monitor = services.monitors.get(spec.monitor)
            except NotFound:
                raise InvalidInput(
                    f"monitor: no monitor named {spec.monitor!r}", field="monitor"
                ) from None
            if monitor.model != spec.model:
                raise InvalidInput(
                    f"monitor: {spec.monitor!r} watches {monitor.model}, not {spec.model}",
                    field="monitor",
                )
        self._check_retrain(spec)
        known = self._reference_columns(spec)
        for path, cond in spec.leaves():
            if cond.features and known is not None:
                unknown = [f for f in cond.features if f not in known]
                if unknown:
                    raise InvalidInput(
                        f"{path}.features: not in the model's reference: {', '.join(unknown)}",
                        field=f"{path}.features",
                    )
            for view in cond.views or []:
                try:
                    services.features.get_view(view)
                except NotFound:
                    raise InvalidInput(
                        f"{path}.views: unknown feature view {view!r}", field=f"{path}.views"
                    ) from None

    def _check_retrain(self, spec: TriggerSpec) -> None:
        """The ``retrain`` section as the registered ``retrain.run`` will read it, checked
        now (InvalidInput naming ``retrain.<key>``) rather than at the first firing."""
        from keel.automation.kinds import get_kind

        try:
            kind = get_kind(RETRAIN_KIND)
        except InvalidInput:
            return  # not registered in this process: a firing records that instead
        if kind.check is None:
            return
        args = _job_args(spec, 0, {"mode": "fresh", "since_ms": 0})
        try:
            kind.check(self.services, args)
        except InvalidInput as exc:
            field = (exc.field or "retrain").removeprefix("args.")
            message = exc.message.removeprefix("args.")
            raise InvalidInput(message, field=field) from None

    def _reference_columns(self, spec: TriggerSpec) -> set[str] | None:
        """The reference's columns, or None when they cannot be found yet (no champion)."""
        trigger = Trigger(**spec.model_dump(), created_at_ms=0, updated_at_ms=0)
        try:
            inputs = self.services.monitors.inputs
            monitor = monitor_spec(self.services, trigger)
            return set(inputs.reference(monitor, inputs.version(monitor)).frame.columns)
        except (NotFound, InvalidInput):
            return None

    def get(self, name: str) -> Trigger:
        """One trigger; NotFound otherwise."""
        return self.store.get_trigger(name)

    def list_triggers(self, model: str | None = None) -> list[Trigger]:
        """Every trigger (of one model)."""
        return self.store.list_triggers(model)

    def delete(self, name: str) -> None:
        """Delete a trigger; its decision records stay."""
        self.store.delete_trigger(name)

    def ensure_schedule(self, cron: str = DEFAULT_CRON) -> None:
        """Create the schedule that evaluates triggers unattended, unless one exists (an
        operator's own cron for it is kept)."""
        jobs = self.services.jobs
        try:
            jobs.get_schedule(SCHEDULE_NAME)
        except NotFound:
            jobs.schedule(SCHEDULE_NAME, EVALUATE_KIND, cron, {}, actor="triggers")

    # -- evaluation -----------------------------------------------------------------------
    def evaluate(
        self,
        name: str,
        now: int | None = None,
        *,
        manual: bool = False,
        actor: str = "trigger",
        event: dict[str, Any] | None = None,
    ) -> Evaluation:
        """Evaluate one trigger at ``now`` (default: the clock), record it, fire if due.
        ``event``: what a ``fire`` request posted (commit, actor), kept on the record and
        the retraining run."""
        trigger = self.store.get_trigger(name)
        at = self.clock() if now is None else now
        pending = pending_fire(self.services, trigger)
        if pending and event is None:
            event = pending.get("event")
        ctx = EvaluationContext(self.services, trigger, at, manual=manual, event=event)
        prefetch_drift(ctx)
        outcomes = [
            evaluate_condition(ctx, path, cond)
            for path, cond in zip(_paths(trigger), trigger.conditions, strict=True)
        ]
        combine = trigger.combine
        met = any(o.met for o in outcomes) if combine == "any" else all(o.met for o in outcomes)
        result = Evaluation(trigger.name, trigger.model, at, met, False, "", outcomes, event=event)
        self.store.mark_evaluated(trigger.name, at)
        if not met and pending is None:
            result.reason = f"not met ({combine} of {len(outcomes)} conditions)"
            self._record(trigger, result, actor)
            return result
        # a fire deferred earlier is still owed, whether or not the conditions still hold;
        # only timing defers (prerequisites and the cooldown are asked again next time)
        result.pending_fire = pending
        prefix = "met" if met or not pending else f"deferred fire of {_iso(pending['since_ms'])}"
        cooldown_ms = trigger.seconds(trigger.cooldown) * 1000
        blocked = check_prerequisites(ctx, result.prerequisites)
        timing = check_timing(ctx)
        result.timing = {"allowed": timing.allowed, **timing.numbers} if timing.numbers else None
        if blocked:
            result.reason = (
                f"{prefix}, not fired: prerequisites not satisfied ({'; '.join(blocked)})"
            )
        elif trigger.last_fired_at_ms is not None and trigger.last_fired_at_ms > at - cooldown_ms:
            until = trigger.last_fired_at_ms + cooldown_ms
            result.reason = f"{prefix}, not fired: in cooldown until {_iso(until)}"
        elif not timing.allowed:
            retry = f"; next allowed {_iso(timing.retry_at_ms)}" if timing.retry_at_ms else ""
            result.reason = f"{prefix}, deferred: {timing.reason}{retry}"
            result.timing = {**(result.timing or {}), "deferred": True}
            result.pending_fire = pending or {"since_ms": at, "event": event}
        else:
            result.pending_fire = None
            return self._act(ctx, trigger, result, cooldown_ms, actor)
        self._record(trigger, result, actor)
        return result

    def fire(
        self, name: str, event: Any = None, *, actor: str | None = None, now: int | None = None
    ) -> Evaluation:
        """R-CICD-02's webhook: evaluate now as asked for by hand (``manual`` conditions are
        met) with the posted commit and actor (``code`` conditions compare the commit); both
        are recorded on the evaluation and the retraining run. The decision's actor is the
        authenticated caller, else the posted actor."""
        from keel.automation.triggers.code import parse_fire_event

        checked = parse_fire_event(event).model_dump(exclude_none=True)
        who = actor or checked.get("actor") or "api"
        return self.evaluate(name, now, manual=True, actor=who, event=checked or None)

    def _act(
        self,
        ctx: EvaluationContext,
        trigger: Trigger,
        result: Evaluation,
        cooldown_ms: int,
        actor: str,
    ) -> Evaluation:
        windows = [w for o in result.conditions for w in o.met_windows_s()]
        action = decide_action(ctx, min(windows) if windows else None)
        result.action, result.diagnosis = action.kind, action.diagnosis
        if action.kind == "alert":
            result.reason = f"met, not fired: {action.verdict}; no retraining on this data"
            record = self._record(trigger, result, actor)
            self._record_diagnosis(trigger, action, record, actor)
            return result
        from keel.automation.kinds import get_kind

        try:
            kind = get_kind(RETRAIN_KIND)
            if kind.check is not None:  # refused arguments must not cost the cooldown
                probe = _job_args(trigger, 0, action.data)
                kind.check(self.services, probe)
        except InvalidInput as exc:
            result.reason = f"met, not fired: no retraining job could be queued ({exc.message})"
            self._record(trigger, result, actor)
            return result
        if not self.store.claim_firing(trigger.name, ctx.now_ms, cooldown_ms):
            result.reason = "met, not fired: another evaluation fired it within the cooldown"
            self._record(trigger, result, actor)
            return result
        result.fired, result.data = True, action.data
        result.reason = f"fired: {action.verdict} → retrain on {_describe(action)}"
        record = self._record(trigger, result, actor)
        if action.verdict not in ("not diagnosed",):
            self._record_diagnosis(trigger, action, record, actor)
        bucket = ctx.now_ms // max(cooldown_ms, 60_000)
        args = _job_args(trigger, record.id, action.data)
        if result.event:  # the posted commit and actor, for the run's tags
            args["source"] = dict(result.event)
        job = self.services.jobs.enqueue(
            RETRAIN_KIND,
            args,
            key=f"trigger:{trigger.name}:{bucket}",
            actor=f"trigger:{trigger.name}",
        )
        self.store.set_job(trigger.name, job.id)
        result.job_id = job.id
        return result

    def _record(self, trigger: Trigger, result: Evaluation, actor: str) -> Decision:
        details = result.as_dict()
        details.update(combine=trigger.combine, cooldown=trigger.cooldown)
        details.pop("decision_id", None)
        summary = f"trigger {trigger.name}: {result.reason}"
        record: Decision = self.services.decisions.record(
            "trigger_evaluation",
            trigger.model,
            summary,
            details,
            actor=actor,
            related={"trigger": trigger.name},
            at_ms=result.at_ms,
        )
        result.decision_id = record.id
        return record

    def _record_diagnosis(
        self, trigger: Trigger, action: Action, evaluation: Decision, actor: str
    ) -> None:
        evidence = "; ".join(action.diagnosis.get("evidence", [])[:3])
        what = (
            "alert, no retraining" if action.kind == "alert" else f"retrain on {_describe(action)}"
        )
        self.services.decisions.record(
            "diagnosis",
            trigger.model,
            f"{action.verdict} → {what}" + (f" ({evidence})" if evidence else ""),
            {
                "verdict": action.verdict,
                "action": action.kind,
                "data": action.data,
                **action.diagnosis,
            },
            actor=actor,
            related={"trigger": trigger.name, "evaluation": evaluation.id},
            at_ms=evaluation.at_ms,
        )

    def evaluate_due(self, now: int | None = None) -> list[Evaluation]:
        """Evaluate every enabled trigger whose ``min_interval`` has passed (the periodic
        job); one trigger's failure is logged and does not stop the others."""
        at = self.clock() if now is None else now
        done = []
        for trigger in self.store.list_triggers():
            if not trigger.enabled:
                continue
            interval_ms = trigger.seconds(trigger.min_interval) * 1000
            last = trigger.last_evaluated_at_ms
            if last is not None and interval_ms and at - last < interval_ms:
                continue
            try:
                done.append(self.evaluate(trigger.name, at))
            except Exception:
                log.exception("trigger %s could not be evaluated", trigger.name)
        return done

    def dependent_views(self, model: str) -> list[str]:
        """The feature views a model reads through its feature services (R-FEA-08)."""
        return dependent_views(self.services, model)


def _job_args(
    trigger: TriggerSpec, decision_id: int | None, data: dict[str, Any]
) -> dict[str, Any]:
    """The ``retrain.run`` job's arguments: the trigger's ``retrain`` section, its rollout
    inheriting the trigger's ``timing`` when it has none (R-TRN-21)."""
    retrain = retrain_section(trigger)
    return dict(
        model=trigger.model,
        trigger=trigger.name,
        decision_id=decision_id,
        data=data,
        retrain=retrain,
    )


def _paths(trigger: Trigger) -> list[str]:
    return [f"{trigger.field_name}[{i}]" for i in range(len(trigger.conditions))]


def _describe(action: Action) -> str:
    if action.mode == "after_change_point":
        return f"rows after the change point {_iso(action.since_ms or 0)}"
    return "fresh samples"


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
