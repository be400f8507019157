"""Stateful models (R-DEP-10): rollback checkpoints at every deployment boundary, the
session reset and the training-data contamination warning of a rollback.

A policy with ``stateful: true`` (or a block) gets a ``checkpoint`` decision record at each
boundary — creation, a step change, promotion, rollback — holding the routing state (weights,
versions, the deployment's state version, which is also the replicas' cache generation:
every gateway rebuilds routes and drops the idle versions' cache entries when it changes)
and, for a version that declares state (tag ``state_artifact``), the pointer to it.

keel's routing is a stateless hash of the routing key, so there is no per-session memo to
migrate: after a rollback every key hashes to the primary. "Resetting sessions" therefore
means the keel-held state of the rolled-back arms: their prediction-cache entries are
invalidated (the rollback does that on every replica) and their state pointers are named in
the rollback record so the model's own session store can be reset from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from keel.deploy.models import BadWindow, Deployment

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = ["Stateful", "as_stateful", "checkpoint_listener", "checkpoints", "stateful_rollback"]

STATE_TAG = "state_artifact"
_BOUNDARIES = {"created", "evaluated", "promoted", "rolled_back"}


class Stateful(BaseModel):
    """The policy's ``stateful:`` block (``stateful: true`` means these defaults)."""

    model_config = ConfigDict(extra="forbid")

    reset_sessions: bool = True
    feedback_loop: bool = True


def as_stateful(value: Any) -> Any:
    """``true`` → the default block, ``false`` → none (a pydantic BeforeValidator)."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


def _policy_stateful(deployment: Deployment) -> dict[str, Any] | None:
    found = deployment.policy.get("stateful")
    return found if isinstance(found, dict) else None


def _state_pointers(service: DeploymentService, deployment: Deployment) -> dict[str, str]:
    out: dict[str, str] = {}
    for arm, version in deployment.versions.items():
        tags = service.registry.get_version(deployment.model, version).tags
        if STATE_TAG in tags:
            out[arm] = tags[STATE_TAG]
    return out


def checkpoints(service: DeploymentService, name: str) -> list[dict[str, Any]]:
    """The checkpoints of ``name``, oldest first (empty unless the policy is stateful)."""
    found = service.decision_log.query(deployment=name, kind="checkpoint", limit=1_000)
    return [{"id": d.id, "at_ms": d.at_ms, **d.details} for d in reversed(found)]


def checkpoint_listener(service: DeploymentService) -> Any:
    """A deployment listener recording a checkpoint at each boundary of a stateful policy;
    an evaluation is a boundary only when it changed the weights (a step)."""

    def record(deployment: Deployment, event: str) -> None:
        if event not in _BOUNDARIES or _policy_stateful(deployment) is None:
            return
        if event == "evaluated":
            last = service.decision_log.query(
                deployment=deployment.name, kind="checkpoint", limit=1
            )
            if last and last[0].details.get("weights") == deployment.weights:
                return
        boundary = {"evaluated": "step"}.get(event, event)
        service.decision_log.record(
            "checkpoint",
            deployment.model,
            f"checkpoint at {boundary} of {deployment.name!r} (state version "
            f"{deployment.version}): "
            + ", ".join(f"{a}={w:g}%" for a, w in deployment.weights.items()),
            {
                "boundary": boundary,
                "status": deployment.status,
                "state_version": deployment.version,
                "cache_generation": deployment.version,
                "weights": deployment.weights,
                "versions": deployment.versions,
                "state_artifacts": _state_pointers(service, deployment),
            },
            "policy",
            deployment.name,
            at_ms=deployment.updated_at_ms,
        )

    return record


def stateful_rollback(
    service: DeploymentService, deployment: Deployment, windows: list[BadWindow]
) -> dict[str, Any]:
    """What a rollback record of a stateful policy adds: the session reset and the
    contamination warning naming each bad window and its logged row count."""
    policy = _policy_stateful(deployment)
    if policy is None:
        return {}
    out: dict[str, Any] = {}
    if policy.get("reset_sessions", True):
        arms = sorted({w.arm for w in windows})
        pointers = _state_pointers(service, deployment)
        out["session_reset"] = {
            "arms": arms,
            "versions": sorted({w.version for w in windows}),
            "state_artifacts": {a: pointers[a] for a in arms if a in pointers},
            "meaning": "routing keys all hash to the primary; the rolled-back versions' "
            "prediction-cache entries are invalidated on every replica; reset the model's "
            "own session state from the named state artifacts",
        }
    if policy.get("feedback_loop", True) and windows:
        from keel.deploy.armstats import ArmWindow, read_arm_stats

        found: list[dict[str, Any]] = []
        for w in windows:
            rows = 0
            if service.predictions_root is not None:
                stats = read_arm_stats(
                    service.predictions_root,
                    None,
                    deployment.model,
                    deployment.name,
                    [w.arm],
                    ArmWindow(w.from_ms, w.from_ms, w.from_ms, w.to_ms),
                    primary=w.arm,
                )
                rows = stats[w.arm].n
            found.append(
                {
                    "arm": w.arm,
                    "version": w.version,
                    "from_ms": w.from_ms,
                    "to_ms": w.to_ms,
                    "rows": rows,
                }
            )
        total = sum(int(f["rows"]) for f in found)
        out["contamination_warning"] = {
            "windows": found,
            "rows": total,
            "message": f"feedback-loop model: {total} predictions served by the rolled-back "
            "arm(s) in the bad window may have contaminated training data (labels and "
            "features shaped by them); retraining already excludes these windows "
            "(keel.deploy.badwindows), but data derived from them elsewhere does not",
        }
    return out
