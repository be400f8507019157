"""R-TRN-21 on the rollout side: no traffic shift, step or promotion at peak traffic.

A deployment policy's ``timing`` section is the trigger's (:class:`keel.automation.timing.Timing`,
evaluated by the same :func:`~keel.automation.timing.evaluate_timing` over the model's
hour-of-week traffic in the prediction log). While the time is not allowed:

* a rollout whose first phase gives the candidate live traffic (canary, A/B) is created
  with the primary serving everything; its start is released, with the clock of every step
  starting then, at the first allowed controller tick (:func:`release_start`);
* an ``advance`` (next canary step, leaving shadow, the blue-green switch) or ``promote``
  of the controller is turned into a ``hold`` at the current step (:func:`hold_steps`);
* a rollback is never held: safety first. A person's promote or rollback is not held either.

Every tick that asks records its verdict and numbers in the deployment's state
(``state.timing``: shown by ``GET /v1/deployments/{name}`` and ``keel deploy show``); a
``timing_hold`` decision is written once per held hour, not on every tick. A held step
whose next tick would not move any more (still collecting, the metric undecided) is no
longer held: that tick checks the time and records what each arm now waits for
(``waiting``: the controller's verdict and reason). When the deployment finishes
(promoted, rolled back, completed; by the controller or a person) the section is settled
(:func:`settle`): no hold or retry time is left pending, ``settled`` says how, when and by
whom, and the last check stays beside it (for the controller's promotion, the allowed check
that let it through). A pause ends a hold too (:func:`pause_hold`: nothing moves while
paused, so no retry time is pending; ``paused`` says who, when and what was held); on resume
(:func:`resume_hold`) the hold applies afresh at the next tick, a held start held again. A
person's blue-green switch ends a hold of that switch (:func:`switch_hold`: ``switched``
says who, when and what was held); the promotion after verify is held or not on its own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from keel.automation.timing import TimingCheck, evaluate_timing
from keel.deploy.rollout import Action, start
from keel.deploy.rollout import Decision as Step
from keel.deploy.state import candidates, rollout_to_json, weights_for
from keel.errors import Conflict

if TYPE_CHECKING:
    from keel.decisions.models import Decision
    from keel.deploy.models import Deployment
    from keel.deploy.policy import DeploymentPolicy
    from keel.deploy.rollout import RolloutState
    from keel.deploy.service import DeploymentService

__all__ = [
    "HOLD_KIND",
    "describe",
    "hold_start",
    "hold_steps",
    "pause_hold",
    "release_start",
    "resume_hold",
    "settle",
    "switch_hold",
]

#: The decision kind of a held start, step or promotion (once per held hour).
HOLD_KIND = "timing_hold"
_HOUR_MS = 3_600_000
_MOVES = (Action.ADVANCE, Action.PROMOTE)
#: ``state.timing`` of a deployment nothing will move (finished or paused): no hold pending.
_NOT_PENDING: dict[str, Any] = {"retry_at_ms": None, "held": None, "held_since_ms": None}


def _check(service: DeploymentService, policy: DeploymentPolicy, now: int) -> TimingCheck:
    return evaluate_timing(policy.timing, policy.model, now, service.predictions_root)


def _state(
    check: TimingCheck, now: int, held: str | None, before: dict[str, Any] | None
) -> dict[str, Any]:
    """``state.timing``: the last verdict; ``held_since_ms`` survives while still held."""
    previous = before or {}
    since = previous.get("held_since_ms") if previous.get("held") == held else None
    return {
        "allowed": check.allowed,
        "reason": check.reason,
        "checked_ms": now,
        "retry_at_ms": check.retry_at_ms,
        "numbers": check.numbers,
        "held": held,
        "held_since_ms": (since or now) if held else None,
        "held_hour_ms": (now - now % _HOUR_MS) if held else previous.get("held_hour_ms"),
    }


def _hold_record(
    service: DeploymentService,
    policy: DeploymentPolicy,
    what: str,
    check: TimingCheck,
    now: int,
    before: dict[str, Any] | None,
) -> list[Decision]:
    """The ``timing_hold`` decision, unless this hour already has one."""
    if (before or {}).get("held_hour_ms") == now - now % _HOUR_MS:
        return []
    retry = f"; next allowed {_iso(check.retry_at_ms)}" if check.retry_at_ms else ""
    return [
        service.decision_log.build(
            HOLD_KIND,
            policy.model,
            f"{what} held: {check.reason}{retry}",
            {"held": what, "retry_at_ms": check.retry_at_ms, "numbers": check.numbers},
            "policy",
            policy.name,
            at_ms=now,
        )
    ]


def hold_start(
    service: DeploymentService, policy: DeploymentPolicy, weights: dict[str, float], now: int
) -> tuple[dict[str, float], dict[str, Any], list[Decision]]:
    """At creation: ``(weights, extra state, decisions)``; the primary keeps all live
    traffic while the time is not allowed and the first phase would shift some."""
    primary = str(policy.arm("primary").name)
    if policy.timing is None or weights[primary] >= 100:
        return weights, {}, []
    check = _check(service, policy, now)
    if check.allowed:
        return weights, {"timing": _state(check, now, None, None)}, []
    held = {arm: (100.0 if arm == primary else 0.0) for arm in weights}
    records = _hold_record(service, policy, "rollout start", check, now, None)
    return held, {"timing": _state(check, now, "start", None)}, records


def release_start(
    service: DeploymentService, current: Deployment, policy: DeploymentPolicy, now: int
) -> Deployment | None:
    """A controller tick of a deployment whose start is held: start it (every candidate's
    rollout clock from ``now``) once the time is allowed, else keep holding."""
    before = current.state.get("timing")
    check = _check(service, policy, now)
    if not check.allowed:
        state = {**current.state, "timing": _state(check, now, "start", before)}
        records = _hold_record(service, policy, "rollout start", check, now, before)
    else:
        rollouts = {name: start(policy, now) for name in candidates(policy)}
        weights = weights_for(policy, rollouts)
        state = {
            **current.state,
            "weights": weights,
            "rollouts": {k: rollout_to_json(v) for k, v in rollouts.items()},
            "timing": _state(check, now, None, before),
        }
        records = [
            service.decision_log.build(
                "rollout_step",
                policy.model,
                "rollout started, held since "
                f"{_iso((before or {}).get('held_since_ms') or current.created_at_ms)}: "
                + ", ".join(f"{arm} {share:g}%" for arm, share in weights.items()),
                {"weights": weights, "timing": state["timing"]},
                "policy",
                policy.name,
                at_ms=now,
            )
        ]
    try:
        changed = service.store.update_deployment(
            current.name,
            current.version,
            status=current.status,
            state=state,
            at_ms=now,
            decisions=records,
        )
    except Conflict:  # a person acted meanwhile: their change wins
        return None
    if check.allowed:
        service.notify(changed, "evaluated")
    return changed


def hold_steps(
    service: DeploymentService,
    current: Deployment,
    policy: DeploymentPolicy,
    rollouts: dict[str, RolloutState],
    steps: dict[str, Step],
    now: int,
) -> tuple[dict[str, Step], dict[str, Any], list[Decision]]:
    """The controller's steps with every advance/promote held while the time is not
    allowed: ``(steps, extra state, decisions)``. Rollbacks and pauses pass untouched; the
    timing is only asked when some step would move traffic, or a step hold is pending: a tick
    that no longer moves ends it (``waiting``: each arm's own verdict and reason instead)."""
    before = current.state.get("timing")
    moves = any(s.action in _MOVES for s in steps.values())
    pending = (before or {}).get("held") == "step"
    if policy.timing is None or not (moves or pending):
        return steps, {}, []
    check = _check(service, policy, now)
    if not moves:  # held before, not moving now: the rollout waits for itself, not the time
        waiting = {
            arm: {"verdict": str(s.verdict), "reason": s.reasons[-1] if s.reasons else ""}
            for arm, s in steps.items()
        }
        return steps, {"timing": {**_state(check, now, None, before), "waiting": waiting}}, []
    if check.allowed:
        return steps, {"timing": _state(check, now, None, before)}, []
    out = dict(steps)
    moving = sorted(arm for arm, s in steps.items() if s.action in _MOVES)
    for arm in moving:
        step = steps[arm]
        # the state of a hold: this step, with the breach clocks and the sequential test
        # carried on (an advance had reset them)
        since = {g.name: g.since_ms for g in step.guardrails if g.since_ms is not None}
        kept = replace(rollouts[arm], breach_since_ms=since, sequential=step.state.sequential)
        what = "promotion" if step.action is Action.PROMOTE else "advance"
        out[arm] = replace(
            step,
            action=Action.HOLD,
            next_share=step.share,
            reasons=(*step.reasons, f"{what} held: {check.reason}"),
            state=kept,
        )
    what = f"{', '.join(moving)} at {steps[moving[0]].share:g}%"
    records = _hold_record(service, policy, what, check, now, before)
    return out, {"timing": _state(check, now, "step", before)}, records


def settle(current: Deployment, outcome: str, actor: str, now: int) -> dict[str, Any]:
    """Extra state of a deployment finishing as ``outcome`` (its new status) at ``now``:
    ``state.timing`` with no pending hold (``held``, ``held_since_ms``, ``retry_at_ms``
    cleared) and ``settled`` = ``{outcome, at_ms, actor}``; the last check is kept. Empty
    for a deployment whose policy has no timing and was never checked."""
    last = _last(current)
    if last is None:
        return {}
    last.pop("paused", None)  # finished: no longer paused
    last.pop("switched", None)  # nor is a hand switch's ended hold news any more
    settled = {"outcome": outcome, "at_ms": now, "actor": actor}
    return {"timing": {**last, **_NOT_PENDING, "settled": settled}}


def pause_hold(current: Deployment, actor: str, now: int) -> dict[str, Any]:
    """Extra state of ``current`` being paused at ``now``: ``state.timing`` with no pending
    hold (nothing moves while paused, so no retry time will come) and ``paused`` =
    ``{at_ms, actor, held}`` (what the timing held: ``start``, ``step`` or None); the last
    check is kept. ``held_hour_ms`` is forgotten so that a hold after the resume is recorded
    even in the same hour. Empty for a deployment whose policy has no timing and was never
    checked."""
    return _hold_ended(current, "paused", actor, now)


def switch_hold(current: Deployment, actor: str, now: int) -> dict[str, Any]:
    """Extra state of a person's blue-green switch of ``current`` at ``now``: the switch is
    made, so a hold of it (``held``, ``held_since_ms``, ``retry_at_ms``) is no longer
    pending; ``switched`` = ``{at_ms, actor, held}`` says who switched, when and what the
    timing held then. The last check is kept and ``held_hour_ms`` forgotten: a promotion
    held after verify is a hold of its own, recorded even in the same hour. Empty for a
    deployment whose policy has no timing and was never checked."""
    return _hold_ended(current, "switched", actor, now)


def _hold_ended(current: Deployment, how: str, actor: str, now: int) -> dict[str, Any]:
    """``state.timing`` with no hold pending and ``how`` = ``{at_ms, actor, held}``."""
    last = _last(current)
    if last is None:
        return {}
    last.pop("waiting", None)  # nothing waits for the timing now
    ended = {"at_ms": now, "actor": actor, "held": last.get("held")}
    return {"timing": {**last, **_NOT_PENDING, "held_hour_ms": None, how: ended}}


def resume_hold(current: Deployment, now: int) -> dict[str, Any]:
    """Extra state of ``current`` resumed at ``now``: ``paused`` dropped. A start held
    when paused is held again from ``now`` (its rollout has not begun: the next tick checks
    the time, :func:`release_start`); a step hold is decided afresh by the next tick."""
    before = current.state.get("timing")
    if before is None:
        return {}
    was = (before.get("paused") or {}).get("held")
    timing = {k: v for k, v in before.items() if k != "paused"}
    if was == "start":
        timing.update(held="start", held_since_ms=now)
    return {"timing": timing}


def describe(timing: dict[str, Any] | None, policy: dict[str, Any]) -> str | None:
    """One line for ``keel deploy show``: the policy's timing and its last verdict."""
    rules = policy.get("timing")
    if not rules and not timing:
        return None
    parts = [", ".join(f"{k}={v}" for k, v in (rules or {}).items()) or "no rules"]
    if not timing:
        return parts[0] + "; not checked yet"
    settled = timing.get("settled")
    if settled:  # finished: nothing pending, only how it ended and the last check
        outcome = str(settled["outcome"]).replace("_", " ")
        parts.append(f"{outcome} at {_iso(settled['at_ms'])} by {settled['actor']}")
    paused = timing.get("paused")
    if paused:  # paused: nothing pending until resumed
        parts.append(f"paused at {_iso(paused['at_ms'])} by {paused['actor']}")
        if paused.get("held"):
            parts.append(f"{paused['held']} not held while paused")
    switched = timing.get("switched")
    if switched:  # a person's blue-green switch: the switch is made, not held any more
        by = f"switched to green by hand at {_iso(switched['at_ms'])} by {switched['actor']}"
        parts.append(by + ("; the switch no longer held" if switched.get("held") else ""))
    if timing.get("held"):
        parts.append(
            f"{timing['held']} held since {_iso(timing['held_since_ms'])}: {timing['reason']}"
        )
        if timing.get("retry_at_ms"):
            parts.append(f"next allowed {_iso(timing['retry_at_ms'])}")
    elif timing.get("checked_ms") is not None:
        verdict = "allowed" if timing.get("allowed") else f"not allowed ({timing.get('reason')})"
        last = "last check " if settled or paused or switched else ""
        parts.append(f"{last}{verdict} at {_iso(timing['checked_ms'])}")
    for arm, wait in (timing.get("waiting") or {}).items():  # a step hold that ended
        parts.append(f"{arm} waits ({wait['verdict']}): {wait['reason']}")
    return "; ".join(parts)


def _last(current: Deployment) -> dict[str, Any] | None:
    """A copy of the last ``state.timing`` (an empty check if none yet); None for a
    deployment whose policy has no timing and was never checked."""
    before = current.state.get("timing")
    if before is None and not current.policy.get("timing"):
        return None
    return dict(before or {"allowed": None, "reason": None, "checked_ms": None, "numbers": {}})


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
