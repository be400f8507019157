"""The rollout step function: (policy, state, now, arm statistics) → decision record and next state.

Pure, so the controller (planned) only has to read stats from the durable log,
call :func:`evaluate` once per tick under its lease, persist the returned
state and apply the action; a restart resumes from the stored state.

Phases: ``shadow`` (candidate mirrored), ``live`` (canary steps, A/B split,
or blue before a blue-green switch), ``switched`` (blue-green: green serves,
verifying), ``done`` / ``rolled_back`` (terminal).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from keel._durations import UNITS_S, format_duration_s
from keel.deploy.policy import DeploymentPolicy
from keel.deploy.sequential import SequentialState
from keel.deploy.verdict import (
    ArmStats,
    GuardrailCheck,
    MetricCheck,
    Verdict,
    check_metric,
    check_safety,
    decide,
)

__all__ = [
    "SWITCHING",
    "Action",
    "Decision",
    "RolloutState",
    "about",
    "candidate_share",
    "evaluate",
    "start",
    "switched",
]

Phase = Literal["shadow", "live", "switched", "done", "rolled_back"]
#: The reason of a blue-green switch, the controller's or a person's.
SWITCHING = "switching to green"


class Action(StrEnum):
    """What the controller does with a decision."""

    HOLD = "hold"  # keep the current weights
    ADVANCE = "advance"  # next canary step / leave shadow / blue-green switch
    PROMOTE = "promote"  # candidate takes 100 %, champion alias moves (compare-and-set)
    ROLL_BACK = "roll_back"  # primary takes 100 % again
    PAUSE = "pause"  # stop and wait for a person (investigate, or auto_promote off)
    COMPLETE = "complete"  # a shadow-only deployment finished its comparison


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What survives between evaluations (persisted by the controller)."""

    phase: Phase
    step: int
    started_ms: int
    phase_started_ms: int
    breach_since_ms: dict[str, int] = field(default_factory=dict)
    sequential: SequentialState = field(default_factory=SequentialState)
    #: Starts of the live steps before the current one (burn-in cuts, R-DEP-15).
    step_starts_ms: tuple[int, ...] = ()
    #: Paused for a person's review at this step (R-DEP-02); a resume approves it.
    awaiting_review: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """One evaluation, with every number behind it: the decision record."""

    at_ms: int
    verdict: Verdict
    action: Action
    reasons: tuple[str, ...]
    phase: Phase
    step: int
    share: float  # candidate's live share (percent) when evaluated
    next_share: float  # after the action
    guardrails: tuple[GuardrailCheck, ...]
    metric: MetricCheck | None
    secondary: tuple[MetricCheck, ...]
    arms: tuple[ArmStats, ...]
    state: RolloutState
    actor: str = "policy"
    #: The canary step's dwell in force when evaluated (its own ``min_dwell`` or the
    #: policy's); None outside the canary's live steps.
    min_dwell_s: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able values for storage and the API: enums as strings, ±inf as "Infinity"."""
        out: dict[str, Any] = _jsonable(asdict(self))
        return out


def _jsonable(value: Any) -> Any:
    # JSON has no infinities; an interval not yet bounded is stored the way keel's
    # JsonFloat sends it, so float() reads it back.
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def start(policy: DeploymentPolicy, now_ms: int) -> RolloutState:
    """The state of a rollout created at ``now_ms``."""
    phase: Phase = "shadow" if policy.shadow is not None else "live"
    return RolloutState(phase, 0, now_ms, now_ms)


def candidate_share(policy: DeploymentPolicy, state: RolloutState) -> float:
    """Live traffic percent of the candidate arm in ``state`` (shadow copies excluded)."""
    if state.phase in ("done", "switched"):
        return 100.0
    if state.phase in ("shadow", "rolled_back"):
        return 0.0
    if policy.strategy == "canary":
        return policy.shares[state.step]
    if policy.strategy == "ab":
        return 100.0 - float(policy.arm("primary").weight or 0)
    return 0.0  # blue_green before the switch


def phase_gates(
    policy: DeploymentPolicy, state: RolloutState
) -> tuple[int | None, int | None, int]:
    """The gates of ``state``'s phase: (seconds to wait, requests to collect, the time both
    count from). Seconds are None where the phase has no timed gate (blue-green with no
    ``switch_after``: a person switches), requests None where it counts none."""
    if state.phase == "shadow" and policy.shadow is not None:
        return policy.shadow.duration_s, policy.shadow.min_samples, state.phase_started_ms
    if policy.strategy == "canary":
        return policy.step_dwell_s(state.step), policy.min_samples_per_step, state.phase_started_ms
    if policy.strategy == "ab":
        return policy.min_duration_s or 0, None, state.started_ms
    if policy.blue_green is not None:
        if state.phase == "switched":
            return policy.blue_green.verify_s, None, state.phase_started_ms
        return policy.blue_green.switch_after_s, None, state.phase_started_ms
    return None, None, state.phase_started_ms


def _gates(policy: DeploymentPolicy, state: RolloutState, now_ms: int, cand: ArmStats) -> bool:
    """Whether ``cand`` has met every gate of its phase at ``now_ms``."""
    wait_s, needed, count_from = phase_gates(policy, state)
    if wait_s is None or now_ms - count_from < wait_s * 1000:
        return False
    return needed is None or cand.n_in_step >= needed


def evaluate(
    policy: DeploymentPolicy,
    state: RolloutState,
    now_ms: int,
    primary: ArmStats,
    candidate: ArmStats,
) -> Decision:
    """One tick of the rollout of ``candidate`` against ``primary``.

    For blue-green after the switch, ``primary`` carries the blue arm's
    pre-switch numbers (the baseline). An A/B with several challengers
    evaluates each against the primary with its own state.
    """
    share = candidate_share(policy, state)
    if state.phase in ("done", "rolled_back"):
        return _record(
            policy,
            state,
            now_ms,
            Verdict.KEEP_COLLECTING,
            Action.HOLD,
            ["rollout finished"],
            share,
            [],
            None,
            [],
            primary,
            candidate,
            state,
        )
    safety = check_safety(
        policy.guardrails, primary, candidate, since_ms=state.breach_since_ms, now_ms=now_ms
    )
    since = {g.name: g.since_ms for g in safety if g.since_ms is not None}
    reasons: list[str] = []
    metric, sequential, secondary = _metrics(policy, state, primary, candidate)
    if state.phase == "shadow":
        metric, secondary = None, []  # shadow answers reach nobody: judged on safety
        agreement = policy.shadow.min_agreement if policy.shadow else None
        if agreement is not None and candidate.agreement is not None:
            if candidate.n_in_step >= policy.guardrails.error_rate.min_samples and (
                candidate.agreement < agreement
            ):
                safety.append(
                    GuardrailCheck(
                        "agreement",
                        candidate.agreement,
                        agreement,
                        True,
                        now_ms,
                        True,
                        f"agreement {candidate.agreement:.4g} < {agreement:g}",
                    )
                )
    if state.phase == "switched":
        metric, secondary = None, []  # no concurrent control after a blue-green switch
    gates = _gates(policy, state, now_ms, candidate)
    max_s = policy.max_step_duration_s
    exhausted = (
        policy.strategy == "canary"
        and state.phase == "live"
        and max_s is not None
        and now_ms - state.phase_started_ms >= max_s * 1000
    )
    verdict, reasons = decide(safety, metric, secondary, enough_samples=gates, exhausted=exhausted)
    held = replace(state, breach_since_ms=since, sequential=sequential or state.sequential)
    action, new, note = _act(policy, held, now_ms, verdict, gates, metric)
    if action is Action.HOLD and not gates and _dwell_s(policy, state) is not None:
        note = _waiting(policy, state, now_ms, candidate)
    if action in (Action.ADVANCE, Action.PROMOTE) and _needs_review(policy, state, share):
        # R-DEP-02: a person approves (keel deploy resume) before traffic moves on.
        action, new = Action.PAUSE, replace(held, awaiting_review=True)
        note = f"awaiting review at {share:g}% before moving on; resume to approve"
    if note:
        reasons.append(note)
    return _record(
        policy,
        state,
        now_ms,
        verdict,
        action,
        reasons,
        share,
        safety,
        metric,
        secondary,
        primary,
        candidate,
        new,
    )


def _metrics(
    policy: DeploymentPolicy, state: RolloutState, primary: ArmStats, candidate: ArmStats
) -> tuple[MetricCheck | None, SequentialState | None, list[MetricCheck]]:
    rule, analysis = policy.guardrails.metric, policy.analysis
    metric = sequential = None
    if rule is not None and primary.metric is not None and candidate.metric is not None:
        metric, sequential = check_metric(
            rule, primary.metric, candidate.metric, analysis, state.sequential
        )
    secondary = []
    for extra in policy.guardrails.secondary:
        a, b = primary.secondary.get(extra.name), candidate.secondary.get(extra.name)
        if a is not None and b is not None:
            secondary.append(check_metric(extra, a, b, analysis)[0])
    return metric, sequential, secondary


def _needs_review(policy: DeploymentPolicy, state: RolloutState, share: float) -> bool:
    # A resumed deployment still marked awaiting_review was approved by that resume.
    return state.phase == "live" and share in policy.review_at and not state.awaiting_review


def _act(
    policy: DeploymentPolicy,
    state: RolloutState,
    now_ms: int,
    verdict: Verdict,
    gates: bool,
    metric: MetricCheck | None = None,
) -> tuple[Action, RolloutState, str]:
    if verdict is Verdict.ROLL_BACK:
        return Action.ROLL_BACK, replace(state, phase="rolled_back", phase_started_ms=now_ms), ""
    if verdict is Verdict.INVESTIGATE:
        return Action.PAUSE, state, "paused for a person to weigh the trade-off"
    if not gates:
        return Action.HOLD, state, "waiting for the phase's minimum time and samples"
    moved = _moved(state, now_ms)
    if state.phase == "shadow":
        if policy.strategy == "shadow":
            return Action.COMPLETE, replace(moved, phase="done"), "shadow comparison complete"
        return Action.ADVANCE, replace(moved, phase="live", step=0), "shadow passed"
    if policy.strategy == "blue_green" and state.phase == "live":
        return Action.ADVANCE, switched(state, now_ms), SWITCHING
    if policy.strategy == "canary":
        if policy.shares[state.step + 1] < 100:
            # Intermediate steps need no proof of improvement, only no harm so far; but a
            # candidate that looks worse so far does not get more traffic: it waits at this
            # step until the test decides (rule 5 rolls it back once its interval lies
            # below the minimum improvement, or the step's maximum duration runs out).
            worse = metric is not None and metric.ready and metric.difference < 0
            if worse and policy.analysis.hold_when_worse:
                assert metric is not None
                return (
                    Action.HOLD,
                    state,
                    (
                        f"step gates met, but {metric.name} looks worse so far "
                        f"({metric.difference:+.4g}, not yet significant): holding this step"
                    ),
                )
            return Action.ADVANCE, replace(moved, step=state.step + 1), "step gates met"
    if verdict is not Verdict.SHIP:
        return Action.HOLD, state, "full traffic needs a ship verdict"
    if not policy.auto_promote:
        return Action.PAUSE, state, "ready to promote; auto_promote is off"
    step = len(policy.shares) - 1 if policy.steps else state.step
    return Action.PROMOTE, replace(moved, phase="done", step=step), "promoting"


def _moved(state: RolloutState, now_ms: int) -> RolloutState:
    """``state`` entering its next phase or step at ``now_ms``: fresh breach clocks, the
    phase's start kept for the burn-in cuts, any review approved."""
    return replace(
        state,
        phase_started_ms=now_ms,
        breach_since_ms={},
        step_starts_ms=(*state.step_starts_ms, state.phase_started_ms),
        awaiting_review=False,
    )


def switched(state: RolloutState, now_ms: int) -> RolloutState:
    """A blue-green rollout switched to green at ``now_ms`` (verify starts then): the
    controller's switch and a person's (:mod:`keel.deploy.bluegreen`) are this one move."""
    return replace(_moved(state, now_ms), phase="switched")


def _dwell_s(policy: DeploymentPolicy, state: RolloutState) -> int | None:
    """The dwell in force at ``state``: a canary's live step only."""
    live = policy.strategy == "canary" and state.phase == "live"
    return policy.step_dwell_s(state.step) if live else None


def _waiting(policy: DeploymentPolicy, state: RolloutState, now_ms: int, cand: ArmStats) -> str:
    """Why a canary step holds: its dwell and sample count so far against what it needs."""
    dwell_s = policy.step_dwell_s(state.step)
    elapsed_s = max(now_ms - state.phase_started_ms, 0) // 1000
    return (
        f"waiting at {policy.shares[state.step]:g}%: min_dwell {format_duration_s(dwell_s)} "
        f"({about(elapsed_s)} so far), samples {cand.n_in_step} "
        f"(needs {policy.min_samples_per_step})"
    )


def about(seconds: int) -> str:
    """A time so far, rounded down (``6.99d``, ``2.5h``, ``40s``): it is rarely a whole unit,
    and rounding up would show a dwell not yet over as done (``7d`` of ``1w``)."""
    for unit in ("w", "d", "h", "m"):
        if seconds >= UNITS_S[unit]:
            return f"{math.floor(seconds / UNITS_S[unit] * 100) / 100:g}{unit}"
    return f"{seconds}s"


def _record(
    policy: DeploymentPolicy,
    before: RolloutState,
    now_ms: int,
    verdict: Verdict,
    action: Action,
    reasons: list[str],
    share: float,
    safety: list[GuardrailCheck],
    metric: MetricCheck | None,
    secondary: list[MetricCheck],
    primary: ArmStats,
    candidate: ArmStats,
    after: RolloutState,
) -> Decision:
    return Decision(
        now_ms,
        verdict,
        action,
        tuple(reasons),
        before.phase,
        before.step,
        share,
        candidate_share(policy, after),
        tuple(safety),
        metric,
        tuple(secondary),
        (primary, candidate),
        after,
        min_dwell_s=_dwell_s(policy, before),
    )
