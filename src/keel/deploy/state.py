"""The stored form of a deployment's rollout state, and the live weights it implies (pure)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from keel.deploy.policy import DeploymentPolicy
from keel.deploy.rollout import RolloutState, candidate_share
from keel.deploy.sequential import SequentialState

__all__ = ["candidates", "rollout_from_json", "rollout_to_json", "weights_for"]


def _finite(value: Any) -> Any:
    # PostgreSQL's JSON has no Infinity; stored as the strings float() reads back.
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def rollout_to_json(state: RolloutState) -> dict[str, Any]:
    """JSON-able form of ``state`` (infinities as strings)."""
    out: dict[str, Any] = _finite(asdict(state))
    return out


def rollout_from_json(data: dict[str, Any]) -> RolloutState:
    """The inverse of :func:`rollout_to_json`."""
    seq = data.get("sequential") or {}
    return RolloutState(
        phase=data["phase"],
        step=int(data["step"]),
        started_ms=int(data["started_ms"]),
        phase_started_ms=int(data["phase_started_ms"]),
        breach_since_ms={str(k): int(v) for k, v in (data.get("breach_since_ms") or {}).items()},
        sequential=SequentialState(
            looks=int(seq.get("looks", 0)),
            pvalue=float(seq.get("pvalue", 1.0)),
            low=float(seq.get("low", -math.inf)),
            high=float(seq.get("high", math.inf)),
        ),
        step_starts_ms=tuple(int(v) for v in data.get("step_starts_ms") or ()),
        awaiting_review=bool(data.get("awaiting_review", False)),
    )


def candidates(policy: DeploymentPolicy) -> list[str]:
    """The arms judged against the primary: the canary, the challengers, or the shadows of a
    shadow deployment."""
    role = {"canary": "canary", "ab": "challenger", "blue_green": "challenger"}.get(
        policy.strategy, "shadow"
    )
    return [str(arm.name) for arm in policy.arms if arm.role == role]


def weights_for(policy: DeploymentPolicy, rollouts: dict[str, RolloutState]) -> dict[str, float]:
    """Arm → percent of live traffic for these rollout states (shadow arms 0: they get copies).

    Canary and blue-green follow the candidate's step/phase; an A/B keeps the policy's split,
    a rolled-back challenger's share goes to the primary, a promoted one takes everything.
    """
    primary = str(policy.arm("primary").name)
    weights = {str(arm.name): 0.0 for arm in policy.arms}
    done = [name for name, st in rollouts.items() if st.phase == "done"]
    if done and policy.strategy != "shadow":
        weights[done[0]] = 100.0
        return weights
    if policy.strategy == "ab":
        for arm in policy.arms:
            if arm.role != "shadow":
                weights[str(arm.name)] = float(arm.weight or 0)
        for name, st in rollouts.items():
            if st.phase in ("rolled_back", "shadow"):
                weights[primary] += weights[name]
                weights[name] = 0.0
        return weights
    weights[primary] = 100.0
    if policy.strategy in ("canary", "blue_green"):
        for name, st in rollouts.items():
            share = candidate_share(policy, st)
            weights[name] = share
            weights[primary] = 100.0 - share
    return weights
