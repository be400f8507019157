"""The audit entry of one mutating HTTP call (written by the middleware and the fast lane)."""

from __future__ import annotations

from starlette.types import Scope

from keel._models import now_ms
from keel.api.authz.rules import OVERRIDES
from keel.auth.models import AuditEntry
from keel.store.sql.auth import RequestAudit

__all__ = ["audit_entry"]


def audit_entry(ctx: RequestAudit, scope: Scope, status: int) -> AuditEntry | None:
    """The audit entry of a mutating call answered with ``status``, or None for a read
    sent as POST."""
    route = scope.get("route")
    template: str | None = getattr(route, "path", None) or ctx.route
    rule = OVERRIDES.get((ctx.method, template)) if template else None
    if rule is not None and not rule.audited:
        return None
    # unrouted (401 before routing, 404): the raw path stands in for the template
    action = (rule.action if rule else None) or f"{ctx.method} {template or ctx.target[:200]}"
    # model_construct: the fields are built here, validating them again costs per call
    return AuditEntry.model_construct(
        id=None,
        before=None,
        after=None,
        at_ms=now_ms(),
        actor=ctx.actor,
        action=action,
        method=ctx.method,
        route=template,
        target=ctx.target[:2000],
        status=status,
        client=ctx.client,
    )
