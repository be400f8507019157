"""The authorization policy as data: which role (and ownership) each route needs.

Read by the access check (:mod:`keel.api.authz.access`), the middleware that
authenticates and audits (:mod:`keel.api.authz.middleware`), the audit entry
builder, the fast lane and the hit path; nothing here touches a request.

The role a route needs comes from :func:`rule_for`: a default by method (GET/HEAD →
viewer, other methods → editor), :data:`OVERRIDES` keyed by (method, route template),
then :data:`PREFIX_RULES`; every write under a model also needs ownership of it
(:data:`OWNED_PREFIXES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from starlette.routing import compile_path

from keel.auth.models import Role

__all__ = [
    "DECISION_MODEL",
    "DEPLOYMENT_MODEL",
    "OVERRIDES",
    "OWNED_PREFIXES",
    "PENDING_ROUTES",
    "PREFIX_RULES",
    "PUBLIC_PATHS",
    "READ_METHODS",
    "TRIGGER_MODEL",
    "Rule",
    "is_unaudited",
    "rule_for",
]

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Paths served without a token (liveness, scraping, API documentation).
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)


@dataclass(frozen=True, slots=True)
class Rule:
    """What a route needs: a role, optionally ownership of the model in path param ``owned``.

    ``audited=False`` marks reads sent as POST (search, predict): they change
    nothing, and auditing every prediction would flood the log.
    """

    role: Role
    owned: str | None = None
    action: str | None = None
    audited: bool = True


_ALIAS = "/v1/models/{name}/aliases/{alias}"
_VERSION = "/v1/models/{name}/versions/{version}"
_DEPLOYMENT = "/v1/deployments/{name}"
#: ``Rule.owned`` value meaning "the model of the deployment in path parameter ``name``".
DEPLOYMENT_MODEL = "deployment:name"
#: ``Rule.owned`` value meaning "the model of the trigger in path parameter ``name``".
TRIGGER_MODEL = "trigger:name"
#: ``Rule.owned`` value meaning "the model of the decision in path parameter ``decision_id``".
DECISION_MODEL = "decision:decision_id"
_READ = Rule(Role.VIEWER, audited=False)

#: Routes whose need differs from the default (GET/HEAD → viewer, other methods → editor).
OVERRIDES: dict[tuple[str, str], Rule] = {
    # reads sent as POST
    ("POST", "/v1/runs/search"): _READ,
    ("POST", "/v1/models/{name}@{alias}/predict"): _READ,
    ("POST", "/v1/models/{name}/{version}/predict"): _READ,
    ("POST", "/v1/deployments/{name}/predict"): _READ,
    # interleaving is serving traffic: a list per page view and its clicks, as predict
    ("POST", "/v1/deployments/{name}/rank"): _READ,
    ("POST", "/v1/deployments/{name}/clicks"): _READ,
    ("POST", "/v1/features/online"): _READ,
    ("POST", "/v1/features/historical"): _READ,
    # what serves production traffic: deployer, and the owner when the model has one
    ("PUT", _ALIAS): Rule(Role.DEPLOYER, owned="name", action="alias.set"),
    ("DELETE", _ALIAS): Rule(Role.DEPLOYER, owned="name", action="alias.delete"),
    # a human release or refusal of a retrained version (R-REG-02): moves aliases
    ("POST", _VERSION + "/approve"): Rule(Role.DEPLOYER, owned="name", action="version.approve"),
    ("POST", _VERSION + "/reject"): Rule(Role.DEPLOYER, owned="name", action="version.reject"),
    # the gate decision of a validation (keel validate): an editor's write under the model
    ("POST", _VERSION + "/validations"): Rule(
        Role.EDITOR, owned="name", action="version.validation"
    ),
    # deployments: deployer, and the owner of the deployment's model (create checks the
    # model named in the body itself, through check_model_owner)
    ("POST", "/v1/deployments"): Rule(Role.DEPLOYER, action="deployment.create"),
    ("POST", _DEPLOYMENT + "/promote"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.promote"
    ),
    ("POST", _DEPLOYMENT + "/rollback"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.rollback"
    ),
    ("POST", _DEPLOYMENT + "/pause"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.pause"
    ),
    ("POST", _DEPLOYMENT + "/resume"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.resume"
    ),
    ("POST", _DEPLOYMENT + "/switch"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.switch"
    ),
    # replay changes nothing, but loads and runs models server-side over logged requests:
    # deployer (audited) like the other deployment calls; no ownership, as it writes nothing
    ("POST", _DEPLOYMENT + "/replay"): Rule(Role.DEPLOYER, action="deployment.replay"),
    # a rollback drill rolls the deployment back and restores it: as rollback
    ("POST", _DEPLOYMENT + "/drill"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.drill"
    ),
    # the pre-registered hypothesis steers what the experiment concludes: as promote
    ("PUT", _DEPLOYMENT + "/hypothesis"): Rule(
        Role.DEPLOYER, owned=DEPLOYMENT_MODEL, action="deployment.hypothesis"
    ),
    # triggers: a firing starts a retraining that may roll out, so deployer, and the owner
    # of the model (apply checks the model named in the body, through check_model_owner)
    ("POST", "/v1/triggers"): Rule(Role.DEPLOYER, action="trigger.apply"),
    ("PUT", "/v1/triggers"): Rule(Role.DEPLOYER, action="trigger.apply"),
    ("POST", "/v1/triggers/{name}/evaluate"): Rule(
        Role.DEPLOYER, owned=TRIGGER_MODEL, action="trigger.evaluate"
    ),
    ("POST", "/v1/triggers/{name}/fire"): Rule(
        Role.DEPLOYER, owned=TRIGGER_MODEL, action="trigger.fire"
    ),
    # resolving an incident adds a permanent check to its model (R-CICD-13): an editor who
    # owns the model (a resolution without a check: admin or owner, checked by the route)
    ("POST", "/v1/decisions/{decision_id}/resolve"): Rule(
        Role.EDITOR, owned=DECISION_MODEL, action="decision.resolve"
    ),
    # users, tokens and the audit log
    ("GET", "/v1/users"): Rule(Role.ADMIN),
    ("POST", "/v1/users"): Rule(Role.ADMIN, action="user.create"),
    ("GET", "/v1/users/{name}"): Rule(Role.ADMIN),
    ("PATCH", "/v1/users/{name}"): Rule(Role.ADMIN, action="user.update"),
    ("GET", "/v1/users/{name}/tokens"): Rule(Role.ADMIN),
    ("POST", "/v1/users/{name}/tokens"): Rule(Role.ADMIN, action="token.create"),
    ("GET", "/v1/tokens"): Rule(Role.ADMIN),
    ("DELETE", "/v1/tokens/{token_id}"): Rule(Role.ADMIN, action="token.revoke"),
    ("GET", "/v1/audit"): Rule(Role.ADMIN),
}

#: Overrides for routes not written yet (deployments, ARCHITECTURE.md flow 1); the
#: policy test allows them to be absent. Remove an entry once its route exists.
PENDING_ROUTES: frozenset[tuple[str, str]] = frozenset()

#: Path templates under which every mutating route writes to one model (its versions,
#: aliases, card, tags, owner): the caller must own that model (or be an admin). Applied
#: by :func:`rule_for` on top of the role, so a route added later under a model inherits it.
OWNED_PREFIXES: tuple[tuple[str, str], ...] = (("/v1/models/{name}", "name"),)

#: Path prefixes whose mutating routes need more than editor (checked after OVERRIDES).
PREFIX_RULES: tuple[tuple[str, Rule], ...] = (
    ("/v1/deployments", Rule(Role.DEPLOYER)),
    ("/v1/triggers", Rule(Role.DEPLOYER)),
    ("/v1/users", Rule(Role.ADMIN)),
    ("/v1/tokens", Rule(Role.ADMIN)),
    ("/v1/audit", Rule(Role.ADMIN)),
)

_VIEWER, _EDITOR = Rule(Role.VIEWER), Rule(Role.EDITOR)


def rule_for(method: str, template: str) -> Rule | None:
    """What ``method`` on the route ``template`` needs; None for public paths."""
    if template in PUBLIC_PATHS:
        return None
    rule = _role_rule(method, template)
    # reads (and reads sent as POST: predict) need no ownership; every write under a model does
    if rule.owned is None and rule.audited and method not in READ_METHODS:
        for prefix, param in OWNED_PREFIXES:
            if template == prefix or template.startswith(prefix + "/"):
                return replace(rule, owned=param)
    return rule


def _role_rule(method: str, template: str) -> Rule:
    rule = OVERRIDES.get((method, template))
    if rule is not None:
        return rule
    for prefix, prefixed in PREFIX_RULES:
        if template == prefix or template.startswith(prefix + "/"):
            if method not in READ_METHODS or prefixed.role is Role.ADMIN:
                return prefixed
    return _VIEWER if method in READ_METHODS else _EDITOR


def _unaudited_patterns() -> dict[str, re.Pattern[str]]:
    templates: dict[str, list[str]] = {}
    for (method, template), rule in OVERRIDES.items():
        if not rule.audited:
            pattern = compile_path(template)[0].pattern
            # one alternation per method: the templates' group names would clash
            templates.setdefault(method, []).append(re.sub(r"\(\?P<\w+>", "(?:", pattern))
    return {method: re.compile("|".join(found)) for method, found in templates.items()}


_UNAUDITED = _unaudited_patterns()


def is_unaudited(method: str, path: str) -> bool:
    """Whether ``path`` is a read sent as POST (predict, search): no audit entry to build.

    Known before routing, this spares the hottest routes the audit bookkeeping; the
    policy tests check that each such path is routed to the route of its template.
    """
    pattern = _UNAUDITED.get(method)
    return pattern is not None and pattern.match(path) is not None
