"""The rollout step function: canary steps, shadow phase, A/B and blue-green, as pure ticks."""

from __future__ import annotations

import json

from keel.deploy.policy import load_policy
from keel.deploy.rollout import Action, candidate_share, evaluate, start
from keel.deploy.verdict import ArmStats, MetricEstimate, Verdict

MIN = 60_000
CANARY = """\
name: churn-live
model: churn
strategy: canary
arms:
  - {version: 1, role: primary}
  - {version: 2, role: canary}
steps: [5, 25, 50, 100]
min_samples_per_step: 200
min_dwell: 10m
guardrails:
  error_rate: {max_increase: 0.01}
  p99_latency: {max_ratio: 2.0, for: 5m}
  metric: {name: roc_auc, min_improvement: 0.02, relative: false}
"""


def _arms(
    auc: float, n_in_step: int = 300, errors: int = 2, p99: float = 20.0, se: float = 0.004
) -> tuple[ArmStats, ArmStats]:
    primary = ArmStats("primary", 2000, 2, 20.0, 5000, MetricEstimate(0.80, se, 5000))
    candidate = ArmStats("canary", 500, errors, p99, n_in_step, MetricEstimate(auc, se, 5000))
    return primary, candidate


def test_better_challenger_walks_every_step_and_is_promoted() -> None:
    policy = load_policy(CANARY)
    state, now = start(policy, 0), 0
    shares, actions = [], []
    for _ in range(6):
        now += 11 * MIN
        decision = evaluate(policy, state, now, *_arms(0.86))
        shares.append(decision.next_share)
        actions.append(decision.action)
        state = decision.state
        if decision.action is Action.PROMOTE:
            break
    assert actions == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]
    assert shares == [25.0, 50.0, 100.0] and state.phase == "done"
    assert decision.verdict is Verdict.SHIP


def test_step_waits_for_dwell_and_samples() -> None:
    policy = load_policy(CANARY)
    state = start(policy, 0)
    early = evaluate(policy, state, 5 * MIN, *_arms(0.86))
    assert early.action is Action.HOLD and early.next_share == 5.0
    thin = evaluate(policy, state, 11 * MIN, *_arms(0.86, n_in_step=150))
    assert thin.action is Action.HOLD


def test_undecided_metric_holds_before_full_traffic() -> None:
    policy = load_policy(CANARY)
    state = start(policy, 0)
    state = evaluate(policy, state, 11 * MIN, *_arms(0.81, se=0.02)).state
    state = evaluate(policy, state, 22 * MIN, *_arms(0.81, se=0.02)).state
    at_fifty = evaluate(policy, state, 33 * MIN, *_arms(0.81, se=0.02))
    assert at_fifty.share == 50.0 and at_fifty.action is Action.HOLD
    assert at_fifty.verdict is Verdict.KEEP_COLLECTING


def test_a_candidate_that_looks_worse_is_held_at_its_step_unless_the_policy_says_not() -> None:
    policy = load_policy(CANARY)
    state = start(policy, 0)
    # 0.79 vs 0.80 with s.e. 0.02: worse on the estimate, nowhere near significant
    held = evaluate(policy, state, 11 * MIN, *_arms(0.79, se=0.02))
    assert held.verdict is Verdict.KEEP_COLLECTING and held.action is Action.HOLD
    assert held.next_share == 5.0 and held.metric is not None and held.metric.difference < 0
    assert any("looks worse so far" in r for r in held.to_dict()["reasons"])
    # the same numbers a hair better than the primary move on
    better = evaluate(policy, state, 11 * MIN, *_arms(0.81, se=0.02))
    assert better.action is Action.ADVANCE and better.next_share == 25.0
    # analysis.hold_when_worse: false is the earlier rule: only significant harm stops a step
    loose = load_policy(CANARY + "analysis: {hold_when_worse: false}\n")
    moved = evaluate(loose, start(loose, 0), 11 * MIN, *_arms(0.79, se=0.02))
    assert moved.action is Action.ADVANCE and moved.next_share == 25.0


def test_worse_challenger_is_rolled_back_with_the_numbers() -> None:
    policy = load_policy(CANARY)
    decision = evaluate(policy, start(policy, 0), 3 * MIN, *_arms(0.72))
    assert decision.action is Action.ROLL_BACK and decision.next_share == 0.0
    assert decision.metric is not None and decision.metric.high < 0
    record = decision.to_dict()
    json.dumps(record)  # storable as is
    assert record["verdict"] == "roll_back" and "roc_auc 0.72 vs 0.8" in record["reasons"][0]


def test_latency_breach_rolls_back_after_its_duration_across_ticks() -> None:
    policy = load_policy(CANARY)
    state = start(policy, 0)
    first = evaluate(policy, state, 1 * MIN, *_arms(0.86, p99=45.0))
    assert first.action is Action.HOLD and first.state.breach_since_ms == {"p99_latency": MIN}
    second = evaluate(policy, first.state, 6 * MIN, *_arms(0.86, p99=45.0))
    assert second.action is Action.ROLL_BACK
    assert "p99_latency 2.25 > 2" in second.reasons[0]


def test_shadow_phase_then_canary_and_agreement_guard() -> None:
    policy = load_policy(CANARY + "shadow: {duration: 1h, min_samples: 100, min_agreement: 0.9}\n")
    state = start(policy, 0)
    assert state.phase == "shadow" and candidate_share(policy, state) == 0.0
    shadow = ArmStats("canary", 500, 0, 20.0, 300, agreement=0.97)
    primary = ArmStats("primary", 2000, 2, 20.0, 2000)
    passed = evaluate(policy, state, 61 * MIN, primary, shadow)
    assert passed.action is Action.ADVANCE and passed.state.phase == "live"
    assert passed.next_share == 5.0
    disagree = ArmStats("canary", 500, 0, 20.0, 300, agreement=0.5)
    failed = evaluate(policy, state, 30 * MIN, primary, disagree)
    assert failed.action is Action.ROLL_BACK and "agreement 0.5 < 0.9" in failed.reasons[0]


def test_ab_waits_for_min_duration_then_ships() -> None:
    policy = load_policy(
        "name: x\nmodel: m\nstrategy: ab\nmin_duration: 1d\n"
        "arms: [{version: 1, role: primary}, {version: 2, role: challenger}]\n"
        "guardrails: {metric: {name: roc_auc, min_improvement: 0.02}}\n"
    )
    state = start(policy, 0)
    assert evaluate(policy, state, 60 * MIN, *_arms(0.86)).action is Action.HOLD
    done = evaluate(policy, state, 24 * 60 * MIN, *_arms(0.86))
    assert done.action is Action.PROMOTE and done.share == 50.0


def test_blue_green_switches_then_verifies_or_switches_back() -> None:
    policy = load_policy(
        "name: b\nmodel: m\nstrategy: blue_green\nblue_green: {switch_after: 1m, verify: 5m}\n"
        "arms: [{version: 1, role: primary}, {version: 2, role: challenger}]\n"
    )
    state = start(policy, 0)
    switched = evaluate(policy, state, 2 * MIN, *_arms(0.8))
    assert switched.action is Action.ADVANCE and switched.next_share == 100.0
    bad = evaluate(policy, switched.state, 3 * MIN, *_arms(0.8, errors=100))
    assert bad.action is Action.ROLL_BACK and bad.next_share == 0.0
    good = evaluate(policy, switched.state, 8 * MIN, *_arms(0.8))
    assert good.action is Action.PROMOTE


def test_auto_promote_off_pauses_before_full_traffic() -> None:
    policy = load_policy(CANARY + "auto_promote: false\n")
    state, now = start(policy, 0), 0
    for _ in range(3):
        now += 11 * MIN
        decision = evaluate(policy, state, now, *_arms(0.86))
        state = decision.state
    assert decision.action is Action.PAUSE and decision.verdict is Verdict.SHIP
