"""A person's blue-green switch: all live traffic to green now (``switch_after`` none means
only this switches; with it set, a person may switch early).

The same move as the controller's switch (:func:`keel.deploy.rollout.switched`): the
rollout enters ``switched`` now, so the controller verifies green against blue's numbers
before this moment for ``verify``, switches back on a breach and promotes after it. The
change is a compare-and-set on the deployment's version written with its ``rollout_step``
record in one transaction: against a concurrent rollback (or controller tick) one wins and
the other gets 409, with nothing half-applied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.deploy.rollout import SWITCHING, candidate_share, switched
from keel.deploy.state import rollout_to_json, weights_for
from keel.deploy.timing import switch_hold
from keel.errors import Conflict

if TYPE_CHECKING:
    from keel.deploy.models import Deployment
    from keel.deploy.service import DeploymentService

__all__ = ["switch_to_green"]


def switch_to_green(
    service: DeploymentService, name: str, actor: str | None = None, reason: str | None = None
) -> Deployment:
    """Move all of ``name``'s live traffic to green now, as the controller's switch does.

    409 (Conflict naming the state) unless ``name`` is an active blue-green deployment
    before its switch: not blue_green, paused, finished, already switched, or changed
    concurrently. NotFound for an unknown deployment.
    """
    current = service.store.get_deployment(name)
    policy = service.policy_of(current)
    if policy.strategy != "blue_green":
        raise Conflict(
            f"deployment {name!r} is not blue_green (it is {policy.strategy}); "
            "only a blue-green deployment switches",
            field="strategy",
        )
    if current.status != "active":
        raise Conflict(f"deployment {name!r} is {current.status}; cannot switch", field="status")
    rollouts = service.rollouts(current)
    arm, state = next(iter(rollouts.items()))  # blue-green has one candidate: green
    if state.phase != "live":  # blue-green has no shadow phase: live, then switched
        raise Conflict(
            f"deployment {name!r} is already switched to green; roll back to switch back",
            field="status",
        )
    at = service.clock()
    who = actor or "unknown"
    rollouts[arm] = switched(state, at)
    weights = weights_for(policy, rollouts)
    share, next_share = candidate_share(policy, state), candidate_share(policy, rollouts[arm])
    summary = f"{arm}: {SWITCHING} by {who} ({share:g}% -> {next_share:g}%)" + (
        f": {reason}" if reason else ""
    )
    record = service.decision_log.build(
        "rollout_step",
        current.model,
        summary,
        {
            "arm": arm,
            "reason": reason,
            "action": "advance",
            "reasons": [SWITCHING],
            "phase": state.phase,
            "step": state.step,
            "share": share,
            "next_share": next_share,
            "state": rollout_to_json(rollouts[arm]),
            "weights_before": current.weights,
            "weights": weights,
        },
        who,
        name,
        at_ms=at,
    )
    state_after = {
        **current.state,
        "weights": weights,
        "rollouts": {k: rollout_to_json(v) for k, v in rollouts.items()},
        # R-TRN-21: a hold of this switch (the controller's, at peak) is over: it is made
        **switch_hold(current, who, at),
    }
    changed = service.store.update_deployment(
        name, current.version, status="active", state=state_after, at_ms=at, decisions=[record]
    )
    # the controller's switch is an evaluation that moved the weights: the same listeners
    # (gateways' routes, Redis announcement, a stateful policy's step checkpoint) hear it
    service.notify(changed, "evaluated")
    return changed
