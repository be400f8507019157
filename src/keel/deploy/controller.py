"""The controller: evaluate each active deployment from the durable log, under a lease.

One evaluation of deployment ``d``: take the SQL lease ``deployment:d`` (one conditional
UPDATE; an unexpired lease held by another process means someone else is evaluating, so
this one skips), re-read the deployment, read every arm's numbers from the prediction log
and labels (:mod:`keel.deploy.armstats`), call the pure :func:`keel.deploy.rollout.evaluate`
per candidate, and commit the new state with one decision record per candidate (the
numbers, thresholds, verdict, action) by compare-and-set. A person's promote/rollback in
between wins: the controller's write then fails the compare-and-set and is dropped.
State lives in SQL, so a restarted controller resumes at the stored step.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from keel.decisions.models import Decision
from keel.deploy._changes import CHAMPION
from keel.deploy.armstats import ArmWindow
from keel.deploy.judging import burn_in_cuts
from keel.deploy.models import FINISHED, AliasMove, BadWindow, Deployment
from keel.deploy.policy import Analysis
from keel.deploy.rollout import Action, RolloutState, evaluate
from keel.deploy.rollout import Decision as Step
from keel.deploy.segmentdiff import segment_warnings
from keel.deploy.segments import read_with_segments
from keel.deploy.state import rollout_to_json, weights_for
from keel.deploy.timing import hold_steps, release_start, settle
from keel.deploy.verdict import ArmStats
from keel.errors import Conflict, KeelError

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = ["HOLDER", "evaluate_all", "evaluate_deployment"]

log = logging.getLogger("keel.deploy")

#: This process's lease holder id (host-unique enough: pid + random).
HOLDER = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def evaluate_all(service: DeploymentService) -> dict[str, str]:
    """Evaluate every active deployment once; returns name → outcome (``evaluated``,
    ``skipped`` when another process holds its lease, or the error)."""
    outcomes: dict[str, str] = {}
    for deployment in service.store.list_deployments(active_only=True):
        try:
            done = evaluate_deployment(service, deployment.name)
            outcomes[deployment.name] = "evaluated" if done is not None else "skipped"
        except KeelError as exc:  # one deployment's trouble must not stop the others
            log.warning("evaluating %s failed: %s", deployment.name, exc.message)
            outcomes[deployment.name] = f"error: {exc.message}"
    return outcomes


def evaluate_deployment(
    service: DeploymentService, name: str, *, holder: str = HOLDER
) -> Deployment | None:
    """One controller tick for ``name``; None when skipped (lease held elsewhere, not
    active, or changed by a person meanwhile)."""
    lease = f"deployment:{name}"
    if not service.store.acquire_lease(lease, holder, service.lease_ttl_s * 1000, service.clock()):
        return None
    try:
        current = service.store.get_deployment(name)
        if current.status == "promoted" and not current.state.get("alias_moved", True):
            return _finish_promotion(service, current)
        if current.status != "active":
            return None
        return _tick(service, current)
    finally:
        service.store.release_lease(lease, holder)


def _tick(service: DeploymentService, current: Deployment) -> Deployment | None:
    policy = service.policy_of(current)
    rollouts = service.rollouts(current)
    primary = str(policy.arm("primary").name)
    now = service.clock()
    if (current.state.get("timing") or {}).get("held") == "start":
        return release_start(service, current, policy, now)  # R-TRN-21 (deploy.timing)
    metrics = []
    if policy.guardrails.metric is not None:
        metrics.append(policy.guardrails.metric.name)
    metrics += [m.name for m in policy.guardrails.secondary]
    running = {k: v for k, v in rollouts.items() if v.phase not in ("done", "rolled_back")}
    if not running:
        return None
    started = min(v.started_ms for v in running.values())
    arms = [primary, *running]
    steps: dict[str, Step] = {}
    numbers: dict[str, dict[str, Any]] = {}
    segments: dict[str, Any] = {}
    for arm, st in running.items():
        window = _window(service, current, st, now, started)
        # R-DEP-15: per-segment numbers ride along in every evaluation record (reported,
        # never decided on) over the very rows the arm's metric judged (same window: burn-in
        # cuts, attribution; one label join); each declared column is present even before
        # traffic arrives, and without analysis.segments keel.deploy.segments chooses them.
        stats, segments[arm] = _stats(service, current, arms, primary, st, window, metrics, arm)
        base = stats[primary]
        if st.phase == "switched":  # blue-green: blue's numbers before the switch
            before = _window(service, current, st, st.phase_started_ms, started, st.started_ms)
            base = _stats(service, current, arms, primary, st, before, metrics)[0][primary]
        steps[arm] = evaluate(policy, st, now, base, stats[arm])
        numbers[arm] = {
            "primary": _arm_dict(base),
            "candidate": _arm_dict(stats[arm]),
            "analysis": {**_judging(policy.analysis, st, now), "cuped": stats[arm].cuped},
        }
    for arm in numbers:
        numbers[arm]["segments"] = segments[arm]
        numbers[arm]["segment_warnings"] = segment_warnings(segments[arm])
    # R-TRN-21: no step or promotion in a disallowed hour; a rollback is never held
    steps, timing, held = hold_steps(service, current, policy, rollouts, steps, now)
    current = current.model_copy(update={"state": {**current.state, **timing}})
    new = {**rollouts, **{k: s.state for k, s in steps.items()}}
    records, windows = [], []
    for arm, step in steps.items():
        bad: list[BadWindow] = []
        if step.action is Action.ROLL_BACK:
            bad = service.bad_windows_for(
                current, {arm: rollouts[arm]}, now, "; ".join(step.reasons)
            )
            windows += bad
        # R-DEP-10: a stateful policy's rollback names its session reset and contamination.
        extra = service.stateful_rollback_details(current, bad) if bad else {}
        records.extend(_records(service, current, arm, step, numbers[arm], extra))
    records.extend(held)
    status = _status(policy.strategy, new, steps)
    promoted = next((k for k, s in steps.items() if s.action is Action.PROMOTE), None)
    try:
        if promoted is not None:
            details = {"reasons": list(steps[promoted].reasons), "arm": promoted}
            # refused by a moved champion alias: paused for a person (keel.deploy._refusal)
            # instead of being refused alike on every tick
            return service.apply_promotion(
                current,
                policy,
                new,
                promoted,
                now,
                "policy",
                details,
                records,
                pause_on_refusal=True,
            )
        state = {
            **current.state,
            "weights": weights_for(policy, new),
            "rollouts": {k: rollout_to_json(v) for k, v in new.items()},
        }
        if status in FINISHED:  # rolled back or completed: no timing hold left pending
            state.update(settle(current, status, "policy", now))
        changed = service.store.update_deployment(
            current.name,
            current.version,
            status=status,
            state=state,
            at_ms=now,
            decisions=records,
            bad_windows=windows,
        )
    except Conflict as exc:
        log.info("deployment %s not changed by this evaluation: %s", current.name, exc.message)
        return None
    service.notify(changed, "rolled_back" if status == "rolled_back" else "evaluated")
    return changed


def _window(
    service: DeploymentService,
    current: Deployment,
    st: RolloutState,
    end: int,
    started: int,
    guard_from: int | None = None,
) -> ArmWindow:
    """The rows of one candidate's evaluation: the arm numbers and the per-segment ones
    both read exactly these (R-DEP-15's burn-in cuts and attribution window included)."""
    guard = (
        guard_from
        if guard_from is not None
        else max(st.phase_started_ms, end - service.guard_window_s * 1000)
    )
    analysis = service.policy_of(current).analysis
    return ArmWindow(
        started,
        st.phase_started_ms,
        guard,
        end + 1,
        burn_in=_burn_in(analysis.burn_in_s, st, end),
        attribution_s=analysis.attribution_window_s,
    )


def _stats(
    service: DeploymentService,
    current: Deployment,
    arms: list[str],
    primary: str,
    st: RolloutState,
    window: ArmWindow,
    metrics: list[str],
    candidate: str | None = None,
) -> tuple[dict[str, ArmStats], dict[str, Any]]:
    """The arms' numbers, and with ``candidate`` its per-segment ones against the primary."""
    analysis = service.policy_of(current).analysis
    columns = analysis.segments if candidate is not None else []
    if service.predictions_root is None:
        empty = {c: {"values": [], "other_values": 0} for c in columns or ()}
        return {a: ArmStats(a, 0) for a in arms}, empty
    return read_with_segments(
        service.predictions_root,
        service.labels,
        current.model,
        current.name,
        window,
        columns,
        arms=arms,
        segment_arms=[primary, candidate] if candidate is not None else [],
        primary=primary,
        metrics=metrics,
        alpha=analysis.alpha,
        with_agreement=st.phase == "shadow",
        cuped=analysis.cuped["covariate"] if analysis.cuped else None,
    )


def _burn_in(burn_in_s: int, st: RolloutState, end: int) -> tuple[tuple[int, int], ...]:
    """R-DEP-15: [from, to) after the rollout's start and each step's start up to ``end``."""
    return burn_in_cuts(burn_in_s, [st.started_ms, *st.step_starts_ms, st.phase_started_ms], end)


def _judging(analysis: Analysis, st: RolloutState, now: int) -> dict[str, Any]:
    """What the metric comparison left out, for the decision record (R-DEP-15)."""
    window = analysis.attribution_window_s
    return {
        "burn_in_s": analysis.burn_in_s,
        "burn_in_cut": [
            {"from_ms": a, "to_ms": b} for a, b in _burn_in(analysis.burn_in_s, st, now)
        ],
        "attribution_window_s": window,
        "judged_before_ms": now - window * 1000 if window else None,
    }


def _status(strategy: str, rollouts: Mapping[str, RolloutState], steps: Mapping[str, Step]) -> str:
    actions = {s.action for s in steps.values()}
    phases = {v.phase for v in rollouts.values()}
    if Action.PAUSE in actions:
        return "paused"
    if phases <= {"rolled_back"}:
        return "rolled_back"
    if Action.COMPLETE in actions and phases <= {"done", "rolled_back"}:
        return "completed"
    return "active"


_KIND = {
    Action.ADVANCE: "rollout_step",
    Action.ROLL_BACK: "rollback",
    Action.PAUSE: "pause",
    Action.COMPLETE: "evaluation",
    Action.HOLD: "evaluation",
    Action.PROMOTE: "evaluation",
}


def _records(
    service: DeploymentService,
    current: Deployment,
    arm: str,
    step: Step,
    numbers: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> list[Decision]:
    """The evaluation record, plus a step/rollback/pause record when the action is one."""
    details = step.to_dict()
    details.pop("arms", None)
    details["arm"] = arm
    details["numbers"] = numbers
    details.update(extra or {})
    summary = (
        f"{arm}: {step.verdict} -> {step.action} at {step.phase} step {step.step} "
        f"({step.share:g}% -> {step.next_share:g}%): " + "; ".join(step.reasons)
    )
    build = service.decision_log.build
    out = [
        build(
            "evaluation", current.model, summary, details, "policy", current.name, at_ms=step.at_ms
        )
    ]
    kind = _KIND[step.action]
    if kind != "evaluation":
        out.append(
            build(kind, current.model, summary, details, "policy", current.name, at_ms=step.at_ms)
        )
    return out


def _arm_dict(stats: ArmStats) -> dict[str, Any]:
    return {
        "arm": stats.name,
        **stats.numbers(),
        "n_in_step": stats.n_in_step,
        "agreement": stats.agreement,
        "burn_in_excluded": stats.burn_in_excluded,
        "pending": stats.pending,
        "n_judged": stats.n_judged,
        "late_labels": stats.late_labels,
    }


def _finish_promotion(service: DeploymentService, current: Deployment) -> Deployment | None:
    """A promoted row of older keel whose alias move was cut short (that keel stored the
    state, then moved the alias): move it now, with the flag, in one transaction."""
    arm = next((k for k, v in current.state["rollouts"].items() if v["phase"] == "done"), None)
    if arm is None:
        return None
    version = current.versions[arm]
    move = AliasMove(
        current.model,
        CHAMPION,
        version,
        current.state.get("champion_before"),
        "policy",
        f"deployment {current.name!r} promoted {arm} (resumed)",
    )
    try:
        done = service.store.update_deployment(
            current.name,
            current.version,
            status="promoted",
            state={**current.state, "alias_moved": True},
            at_ms=service.clock(),
            alias=move,
        )
    except Conflict as exc:
        log.warning("promotion of %s cannot move the alias: %s", current.name, exc.message)
        return None
    service.registry.alias_moved(current.model, CHAMPION, version)
    return done
