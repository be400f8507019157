"""Archiving the champion a promotion replaced, once its retention has passed.

A promotion keeps the previous champion warm for ``retention.keep_previous`` (default
14 days, ``state.retain_until_ms``) so a rollback is instant; afterwards the daily
``deploy.retention`` job archives it through the registry and records an ``archive``
decision. A version that still matters is never archived: one any alias points at (a
person moved ``champion`` back, say) or one an unfinished deployment serves (the
registry's archive guard refuses it, 409); those are kept and looked at again next run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from keel.deploy.models import Deployment
from keel.errors import Conflict, NotFound
from keel.registry.models import ModelStatus

if TYPE_CHECKING:
    from keel.deploy.service import DeploymentService

__all__ = ["archive_expired"]

log = logging.getLogger("keel.deploy")


def archive_expired(service: DeploymentService, actor: str = "retention") -> list[dict[str, Any]]:
    """Archive every previous champion whose retention passed; one outcome per deployment
    looked at: ``archived``, ``already_archived``, ``missing`` or ``kept`` (with why)."""
    now = service.clock()
    outcomes = []
    for deployment in service.store.list_deployments():
        state = deployment.state
        previous = state.get("previous_champion")
        due = state.get("retain_until_ms")
        if (
            deployment.status != "promoted"
            or previous is None
            or due is None
            or state.get("retention_done")
            or state.get("retention_then", "archive") != "archive"
            or int(due) > now
        ):
            continue
        outcomes.append(_retire(service, deployment, int(previous), now, actor))
    return outcomes


def _retire(
    service: DeploymentService, deployment: Deployment, version: int, now: int, actor: str
) -> dict[str, Any]:
    out: dict[str, Any] = {"deployment": deployment.name, "model": deployment.model}
    out["version"] = version
    try:
        found = service.registry.get_version(deployment.model, version)
    except NotFound:
        return _done(service, deployment, now, actor, {**out, "outcome": "missing"})
    if found.status is ModelStatus.ARCHIVED:
        return _done(service, deployment, now, actor, {**out, "outcome": "already_archived"})
    if found.aliases:
        why = f"v{version} holds alias(es) {', '.join(sorted(found.aliases))}"
        return {**out, "outcome": "kept", "reason": why}
    try:
        service.registry.update_version(
            deployment.model, version, status=ModelStatus.ARCHIVED.value
        )
    except Conflict as exc:  # an unfinished deployment serves it: look again next run
        return {**out, "outcome": "kept", "reason": exc.message}
    return _done(service, deployment, now, actor, {**out, "outcome": "archived"})


def _done(
    service: DeploymentService,
    deployment: Deployment,
    now: int,
    actor: str,
    outcome: dict[str, Any],
) -> dict[str, Any]:
    """Mark the retention finished with its decision record (compare-and-set: a concurrent
    change of the deployment leaves it for the next run, where it is idempotent)."""
    version = outcome["version"]
    what = {
        "archived": "archived",
        "already_archived": "was already archived",
        "missing": "no longer exists",
    }[outcome["outcome"]]
    record = service.decision_log.build(
        "archive",
        deployment.model,
        f"previous champion v{version} {what}: retention of deployment {deployment.name!r} ended",
        {**outcome, "retain_until_ms": deployment.state["retain_until_ms"]},
        actor,
        deployment.name,
        at_ms=now,
    )
    try:
        service.store.update_deployment(
            deployment.name,
            deployment.version,
            status=deployment.status,
            state={**deployment.state, "retention_done": True, "archived_at_ms": now},
            at_ms=now,
            decisions=[record],
        )
    except Conflict:
        log.info("deployment %s changed during retention; next run", deployment.name)
        return {**outcome, "outcome": "kept", "reason": "deployment changed concurrently"}
    return outcome
