"""Entities of deployments as stored and served: the deployment, replica reports, bad windows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel._models import Entity

__all__ = ["AliasMove", "BadWindow", "Deployment", "ReplicaStatus", "Status"]

#: ``active``: the controller evaluates it; ``paused``: weights frozen, not evaluated;
#: ``promoted`` / ``rolled_back`` / ``completed`` (a shadow-only comparison): finished.
Status = Literal["active", "paused", "promoted", "rolled_back", "completed"]
FINISHED: frozenset[str] = frozenset({"promoted", "rolled_back", "completed"})


class ReplicaStatus(Entity):
    """What one gateway replica last reported serving (R-DEP-06)."""

    replica: str
    state_version: int
    weights: dict[str, float]
    reported_at_ms: int
    #: This replica's shadow-copy counts by ``arm:outcome`` (answered, error, dropped)
    #: since it started, as of ``reported_at_ms``.
    shadow: dict[str, int] = Field(default_factory=dict)


class Deployment(Entity):
    """A deployment: the policy as given (``to_document`` form) and its rollout state.

    ``state`` holds ``weights`` (arm → live percent), ``versions`` (arm → the model version
    it serves, aliases resolved at creation), ``rollouts`` (candidate arm → the pure
    :class:`~keel.deploy.rollout.RolloutState`), ``champion_before`` (the champion when the
    rollout began: the expected value of the promotion's compare-and-set) and, once
    finished, ``previous_champion`` / ``retain_until_ms``. ``version`` increases with every
    change; ``complete`` is true when every live replica reports this version's weights.
    """

    name: str
    model: str
    strategy: str
    status: Status
    policy: dict[str, Any]
    state: dict[str, Any]
    version: int
    created_by: str | None = None
    created_at_ms: int
    updated_at_ms: int
    replicas: list[ReplicaStatus] = Field(default_factory=list)
    complete: bool | None = None
    #: Shadow arm → its comparison with the primary (:mod:`keel.deploy.shadowcompare`):
    #: agreement, PSI/KS, latency, errors and per-replica queue drops; filled by ``get``.
    shadow_comparison: dict[str, dict[str, Any]] | None = None
    #: Interference warnings (R-DEP-15, :mod:`keel.deploy.interference`); filled by ``get``.
    warnings: list[dict[str, Any]] = Field(default_factory=list)
    #: Rollback checkpoints of a stateful policy (R-DEP-10, :mod:`keel.deploy.checkpoints`).
    checkpoints: list[dict[str, Any]] | None = None
    #: Candidate arm → where it stands in its step and when its gates are met
    #: (:mod:`keel.deploy.progress`); filled by ``get``.
    progress: dict[str, dict[str, Any]] | None = None

    @property
    def weights(self) -> dict[str, float]:
        """Arm name → percent of live traffic now."""
        return {str(k): float(v) for k, v in self.state.get("weights", {}).items()}

    @property
    def versions(self) -> dict[str, int]:
        """Arm name → model version it serves."""
        return {str(k): int(v) for k, v in self.state.get("versions", {}).items()}


class BadWindow(Entity):
    """Predictions of ``arm`` (``model`` v``version``) in ``[from_ms, to_ms)`` are suspect:
    the arm was rolled back. Retraining excludes them (:meth:`DeploymentService.bad_windows`)."""

    id: int | None = None
    deployment: str
    model: str
    arm: str
    version: int
    from_ms: int
    to_ms: int
    reason: str
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class AliasMove:
    """A registry alias compare-and-set written in the same transaction as a deployment's
    change (its promotion moves ``champion``): both are stored, or neither."""

    model: str
    alias: str
    version: int
    #: The version the alias must point at now (None: it must not exist).
    expected: int | None
    actor: str
    reason: str


class ActionBody(BaseModel):
    """Why a person acts on a deployment (kept in the decision log) and, for a promotion,
    which candidate arm of an A/B: the body of ``POST /v1/deployments/{name}/promote``
    (rollback, pause, resume, switch), checked by the SDK before either transport."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=2000)
    arm: str | None = Field(default=None, max_length=128)
