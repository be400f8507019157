"""Authentication, authorization and audit for the whole HTTP API, in one package.

- :mod:`~keel.api.authz.rules`: the policy as data (:data:`OVERRIDES`,
  :data:`PUBLIC_PATHS`, :func:`rule_for`), read by every module below.
- :mod:`~keel.api.authz.access`: the decision (:func:`authorize`, an app-wide
  dependency when ``KEEL_AUTH=on``, and :func:`check_access`), ownership included.
- :mod:`~keel.api.authz.middleware`: :class:`SecurityMiddleware` (ASGI, outermost)
  authenticates and audits every mutating call, through
  :mod:`~keel.api.authz.audit`.
- :mod:`~keel.api.authz.routes`: the app's routes as the (method, template) pairs
  the policy is keyed on.
"""

from __future__ import annotations

from keel.api.authz.access import (
    Caller,
    app_dependencies,
    authorize,
    check_access,
    check_model_owner,
    check_owner_assignment,
    get_principal,
)
from keel.api.authz.audit import audit_entry
from keel.api.authz.middleware import SecurityMiddleware, bearer_token
from keel.api.authz.routes import flat_routes, iter_routes
from keel.api.authz.rules import (
    OVERRIDES,
    OWNED_PREFIXES,
    PENDING_ROUTES,
    PREFIX_RULES,
    PUBLIC_PATHS,
    READ_METHODS,
    Rule,
    rule_for,
)

__all__ = [
    "Caller",
    "OVERRIDES",
    "OWNED_PREFIXES",
    "PENDING_ROUTES",
    "PREFIX_RULES",
    "PUBLIC_PATHS",
    "READ_METHODS",
    "Rule",
    "SecurityMiddleware",
    "app_dependencies",
    "audit_entry",
    "authorize",
    "bearer_token",
    "check_access",
    "check_model_owner",
    "check_owner_assignment",
    "flat_routes",
    "get_principal",
    "iter_routes",
    "rule_for",
]
