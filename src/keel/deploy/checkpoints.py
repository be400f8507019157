"""Stateful models (R-DEP-10): rollback checkpoints at every deployment boundary, the
session reset and the training-data contamination warning of a rollback (its row count is
taken by the ``deploy.contamination`` job after the rollback, not inside it).

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

import os
import uuid
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from keel.decisions.models import Decision
from keel.deploy.models import BadWindow, Deployment
from keel.errors import Conflict

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = [
    "CONTAMINATION",
    "Stateful",
    "as_stateful",
    "checkpoint_listener",
    "checkpoints",
    "contamination_warning",
    "count_contamination",
    "stateful_rollback",
]

STATE_TAG = "state_artifact"
#: Decision kind of a counted contamination warning (written by ``deploy.contamination``).
CONTAMINATION = "contamination"
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
    contamination warning naming each bad window, its row count pending (reads nothing
    from the prediction log: :func:`count_contamination` counts them in a job)."""
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
        # The rows are counted by the deploy.contamination job (one prediction-log read
        # per window: not inside the rollback call); until then the count is pending.
        out["contamination_warning"] = _warning(
            [{**_window(w), "rows": None} for w in windows], counted=False
        )
    return out


def _window(w: BadWindow | dict[str, Any]) -> dict[str, Any]:
    found = w.model_dump() if isinstance(w, BadWindow) else w
    return {k: found[k] for k in ("arm", "version", "from_ms", "to_ms")}


def _warning(windows: list[dict[str, Any]], *, counted: bool) -> dict[str, Any]:
    total = sum(int(w["rows"]) for w in windows) if counted else None
    served = f"{total} predictions" if counted else "the predictions (being counted)"
    return {
        "windows": windows,
        "rows": total,
        "counted": counted,
        "message": f"feedback-loop model: {served} served by the rolled-back "
        "arm(s) in the bad window may have contaminated training data (labels and "
        "features shaped by them); retraining already excludes these windows "
        "(keel.deploy.badwindows), but data derived from them elsewhere does not",
    }


def contamination_warning(
    service: DeploymentService, name: str, rollback: Decision | None = None
) -> dict[str, Any] | None:
    """The contamination warning of ``name``'s last rollback (or ``rollback``): counted
    once the ``deploy.contamination`` job has run, else the pending one (rows null)."""
    if rollback is None:
        found = service.decision_log.query(deployment=name, kind="rollback", limit=1)
        rollback = found[0] if found else None
    if rollback is None or "contamination_warning" not in rollback.details:
        return None
    for record in service.decision_log.query(deployment=name, kind=CONTAMINATION, limit=100):
        if record.details.get("rollback_id") == rollback.id:
            counted: dict[str, Any] = record.details["contamination_warning"]
            return counted
    pending: dict[str, Any] = rollback.details["contamination_warning"]
    return pending


def count_contamination(service: DeploymentService, name: str) -> dict[str, Any] | None:
    """Count the rows of the last rollback's bad windows and record them (decision kind
    ``contamination``, naming the rollback); the counted warning, or None when the
    deployment's last rollback has none. Idempotent: a recorded count is returned as it
    is. Under the SQL lease ``contamination:NAME``; Conflict (retried by the job) when
    another process is counting."""
    found = service.decision_log.query(deployment=name, kind="rollback", limit=1)
    if not found or "contamination_warning" not in found[0].details:
        return None
    rollback = found[0]
    lease, holder = f"contamination:{name}", f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if not service.store.acquire_lease(lease, holder, 60_000, service.clock()):
        raise Conflict(f"the contamination of {name!r} is being counted elsewhere", field="name")
    try:
        known = contamination_warning(service, name, rollback)
        if known is not None and known.get("counted", True):
            return known
        windows = [_window(w) for w in rollback.details["contamination_warning"]["windows"]]
        counted = [{**w, "rows": _rows(service, rollback.model, name, w)} for w in windows]
        warning = _warning(counted, counted=True)
        service.decision_log.record(
            CONTAMINATION,
            rollback.model,
            f"{warning['rows']} predictions of {name!r} in the rolled-back window(s) counted",
            {"rollback_id": rollback.id, "contamination_warning": warning},
            "policy",
            name,
        )
        return warning
    finally:
        service.store.release_lease(lease, holder)


def _rows(service: DeploymentService, model: str, name: str, w: dict[str, Any]) -> int:
    if service.predictions_root is None:
        return 0
    from keel.deploy.armstats import ArmWindow, read_arm_stats

    start, end = int(w["from_ms"]), int(w["to_ms"])
    stats = read_arm_stats(
        service.predictions_root,
        None,
        model,
        name,
        [str(w["arm"])],
        ArmWindow(start, start, start, end),
        primary=str(w["arm"]),
    )
    return stats[str(w["arm"])].n
