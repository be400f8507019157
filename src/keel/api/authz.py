"""Authentication, authorization and audit for the whole HTTP API, in one place.

- :class:`SecurityMiddleware` (ASGI, outermost): checks the bearer token when
  ``KEEL_AUTH=on`` (401 before any body is read), puts the caller in
  ``request.state.user`` / ``request.state.principal``, and appends an audit entry
  for every mutating call (method not GET/HEAD/OPTIONS), whatever its outcome,
  to the batched writer (:mod:`keel.auth.audit`); alias moves, users and tokens
  are audited inside their own transaction instead.
- :func:`authorize` (an app-wide dependency when auth is on, so a route added
  later is covered automatically): the role the route needs comes from :func:`rule_for` — a
  default by method plus :data:`OVERRIDES` keyed by (method, route template) —
  and, for routes that name a model, the model's owner.

With ``KEEL_AUTH=off`` the per-request work is a dictionary lookup and, for
mutating calls, the audit entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel._models import now_ms
from keel.auth.models import AuditEntry, Principal, Role
from keel.config import Settings
from keel.errors import Forbidden, KeelError, NotFound, Unauthorized
from keel.registry.models import RegisteredModel
from keel.services import Services
from keel.store.sql.auth import RequestAudit, audit_context

__all__ = [
    "Caller",
    "OVERRIDES",
    "OWNED_PREFIXES",
    "PENDING_ROUTES",
    "PREFIX_RULES",
    "PUBLIC_PATHS",
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
_DEPLOYMENT_MODEL = "deployment:name"
#: ``Rule.owned`` value meaning "the model of the trigger in path parameter ``name``".
_TRIGGER_MODEL = "trigger:name"
_READ = Rule(Role.VIEWER, audited=False)

#: Routes whose need differs from the default (GET/HEAD → viewer, other methods → editor).
OVERRIDES: dict[tuple[str, str], Rule] = {
    # reads sent as POST
    ("POST", "/v1/runs/search"): _READ,
    ("POST", "/v1/models/{name}@{alias}/predict"): _READ,
    ("POST", "/v1/models/{name}/{version}/predict"): _READ,
    ("POST", "/v1/deployments/{name}/predict"): _READ,
    ("POST", "/v1/features/online"): _READ,
    ("POST", "/v1/features/historical"): _READ,
    # what serves production traffic: deployer, and the owner when the model has one
    ("PUT", _ALIAS): Rule(Role.DEPLOYER, owned="name", action="alias.set"),
    ("DELETE", _ALIAS): Rule(Role.DEPLOYER, owned="name", action="alias.delete"),
    # a human release or refusal of a retrained version (R-REG-02): moves aliases
    ("POST", _VERSION + "/approve"): Rule(Role.DEPLOYER, owned="name", action="version.approve"),
    ("POST", _VERSION + "/reject"): Rule(Role.DEPLOYER, owned="name", action="version.reject"),
    # deployments: deployer, and the owner of the deployment's model (create checks the
    # model named in the body itself, through check_model_owner)
    ("POST", "/v1/deployments"): Rule(Role.DEPLOYER, action="deployment.create"),
    ("POST", _DEPLOYMENT + "/promote"): Rule(
        Role.DEPLOYER, owned=_DEPLOYMENT_MODEL, action="deployment.promote"
    ),
    ("POST", _DEPLOYMENT + "/rollback"): Rule(
        Role.DEPLOYER, owned=_DEPLOYMENT_MODEL, action="deployment.rollback"
    ),
    ("POST", _DEPLOYMENT + "/pause"): Rule(
        Role.DEPLOYER, owned=_DEPLOYMENT_MODEL, action="deployment.pause"
    ),
    ("POST", _DEPLOYMENT + "/resume"): Rule(
        Role.DEPLOYER, owned=_DEPLOYMENT_MODEL, action="deployment.resume"
    ),
    # replay changes nothing, but loads and runs models server-side over logged requests:
    # deployer (audited) like the other deployment calls; no ownership, as it writes nothing
    ("POST", _DEPLOYMENT + "/replay"): Rule(Role.DEPLOYER, action="deployment.replay"),
    # triggers: a firing starts a retraining that may roll out, so deployer, and the owner
    # of the model (apply checks the model named in the body, through check_model_owner)
    ("POST", "/v1/triggers"): Rule(Role.DEPLOYER, action="trigger.apply"),
    ("PUT", "/v1/triggers"): Rule(Role.DEPLOYER, action="trigger.apply"),
    ("POST", "/v1/triggers/{name}/evaluate"): Rule(
        Role.DEPLOYER, owned=_TRIGGER_MODEL, action="trigger.evaluate"
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


def flat_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(prefix, route)`` for every route, in matching order, included routers opened
    (FastAPI >= 0.160 keeps an included router as one nested entry)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            extra = str(getattr(context, "prefix", "") or "")
            yield from flat_routes(included.routes, prefix + extra)
        else:
            yield prefix, route


def iter_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """``(method, served path, route.path)`` of every HTTP route, routers included.

    :func:`authorize` keys the policy on ``route.path``; the two paths differ only
    for a router included with a ``prefix``, which the policy test forbids.
    """
    for outer, route in flat_routes(routes, prefix):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path is not None and methods:
            for method in sorted(methods):
                if method != "HEAD":
                    yield method, outer + path, path


def app_dependencies(settings: Settings) -> list[Any]:
    """The app-wide dependencies: :func:`authorize` when ``KEEL_AUTH=on``, else none.

    With auth off there is nothing to authorize, and each app-wide dependency
    costs every request FastAPI's dependency resolution (~40 µs measured).
    """
    return [Depends(authorize)] if settings.auth == "on" else []


async def authorize(request: Request) -> None:
    """App-wide dependency: 403 unless the caller's role (and ownership) allows the route."""
    services: Services = request.app.state.services
    if not services.auth.enabled:
        return
    route = request.scope.get("route")
    template: str = getattr(route, "path", request.url.path)
    principal: Principal | None = getattr(request.state, "principal", None)
    await check_access(services, request.method, template, principal, request.path_params)


async def check_access(
    services: Services,
    method: str,
    template: str,
    principal: Principal | None,
    path_params: Mapping[str, Any],
) -> None:
    """Raise Unauthorized/Forbidden unless ``principal`` may call ``method`` on ``template``.

    The one authorization decision, shared by :func:`authorize` and the fast lane
    (:mod:`keel.api.fastlane`); call it only when authentication is on.
    """
    rule = rule_for(method, template)
    if rule is None:
        return
    if principal is None:
        raise Unauthorized("an API token is required (Authorization: Bearer keel_...)")
    if not principal.role.allows(rule.role):
        raise Forbidden(
            f"{method} {template} needs role {rule.role.value}; "
            f"{principal.name!r} has role {principal.role.value}",
            needed=rule.role.value,
            role=principal.role.value,
        )
    if rule.owned is not None and principal.role is not Role.ADMIN:
        if rule.owned == _DEPLOYMENT_MODEL:
            deployment = path_params.get("name")
            if deployment is not None:
                await _check_deployment_owner(services, principal, str(deployment))
            return
        if rule.owned == _TRIGGER_MODEL:
            trigger = path_params.get("name")
            if trigger is not None:
                await _check_trigger_owner(services, principal, str(trigger))
            return
        name = path_params.get(rule.owned)
        if name is not None:
            await _check_owner(services, principal, str(name))


async def check_model_owner(services: Services, principal: Principal, model: str) -> None:
    """Forbidden unless ``principal`` is an admin or owns ``model`` (unowned: anyone).

    For routes that name the model in their body (``POST /v1/deployments``), which the
    path-based :func:`check_access` cannot see.
    """
    if principal.role is not Role.ADMIN:
        await _check_owner(services, principal, model)


async def _check_deployment_owner(
    services: Services, principal: Principal, deployment: str
) -> None:
    try:
        found = await run_in_threadpool(services.deployments.get, deployment)
    except NotFound:
        return  # the route itself answers 404
    await _check_owner(services, principal, found.model)


async def _check_trigger_owner(services: Services, principal: Principal, trigger: str) -> None:
    try:
        found = await run_in_threadpool(services.triggers.get, trigger)
    except NotFound:
        return  # the route itself answers 404
    await _check_owner(services, principal, found.model)


async def get_principal(request: Request) -> Principal | None:
    """The authenticated caller (``KEEL_AUTH=on``), else None."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal


#: A route parameter holding the authenticated caller (None with auth off).
Caller = Annotated[Principal | None, Depends(get_principal)]


def check_owner_assignment(
    principal: Principal | None, owner: str, current: RegisteredModel | None
) -> None:
    """Raise :class:`Forbidden` unless ``principal`` may make ``owner`` a model's owner.

    ``current`` is the stored model, None while it is being created. An admin may set
    any owner; anyone else must be ``owner`` or a member of team ``owner``, and may not
    give an existing unowned model an owner: such a model is open to every editor, and
    claiming it would lock them all out, so that is an admin's decision. Changing the
    owner of an owned model also needs ownership of it, which :func:`check_access`
    checks before the route runs. With auth off (``principal`` None) anything goes.
    """
    if principal is None or principal.role is Role.ADMIN:
        return
    if current is not None and current.owner == owner:
        return  # unchanged
    if not principal.owns(owner):
        raise Forbidden(
            f"{principal.name!r} may not make {owner!r} an owner: only an admin or a member "
            f"of {owner!r} may",
            field="owner",
            owner=owner,
        )
    if current is not None and current.owner is None:
        raise Forbidden(
            f"model {current.name!r} has no owner; only an admin may give it one",
            field="owner",
            owner=owner,
        )


async def _check_owner(services: Services, principal: Principal, model: str) -> None:
    try:
        owner = (await run_in_threadpool(services.registry.get_model, model)).owner
    except NotFound:
        return  # the route itself answers 404
    if owner is not None and not principal.owns(owner):
        raise Forbidden(
            f"model {model!r} is owned by {owner!r}; only its owners or an admin may change it",
            field="name",
            owner=owner,
        )


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            return bearer_token(value)
    return None


def bearer_token(authorization: bytes) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))[:256]
    return None


class SecurityMiddleware:
    """Authenticate (when on) and audit every mutating call; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        services: Services | None = getattr(scope["app"].state, "services", None)
        if services is None:  # not started (no lifespan yet): nothing to check against
            await self.app(scope, receive, send)
            return
        admitted, actor = await self.admit(services, scope, receive, send)
        if not admitted:
            return
        method: str = scope["method"]
        if self.unaudited(method, scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ctx = RequestAudit(
            actor=actor,
            method=method,
            target=scope["path"],
            client=client[0] if client else None,
            route_of=lambda: getattr(scope.get("route"), "path", None),
        )
        reset = audit_context.set(ctx)

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not ctx.written:
                ctx.written = True
                entry = audit_entry(ctx, scope, message["status"])
                if entry is not None:
                    services.auth.record(entry)
            await send(message)

        try:
            await self.app(scope, receive, audited_send)
        finally:
            audit_context.reset(reset)

    async def admit(
        self, services: Services, scope: Scope, receive: Receive, send: Send
    ) -> tuple[bool, str | None]:
        """Authenticate the request when auth is on: ``(admitted, actor)``.

        A request that is not admitted has been answered (401, or 503 when the token
        store is unreachable) and its denial audited. Shared with the front door
        (:mod:`keel.api.frontdoor`), which serves unaudited routes only.
        """
        auth = services.auth
        state = scope.setdefault("state", {})
        if auth.enabled and scope["path"] not in PUBLIC_PATHS:
            try:
                principal = await self._authenticate(services, scope)
            except Unauthorized as error:
                await self._deny(services, scope, error, send)
                return False, None
            except KeelError as error:  # the token store is unreachable, say: 503, not 500
                from keel.api.errors import error_response

                await error_response(error)(scope, receive, send)
                return False, None
            state["user"], state["principal"] = principal.name, principal
            return True, principal.name
        if not auth.enabled:
            return True, _header(scope, b"x-keel-user")  # unverified hint: auth is off
        return True, None

    @staticmethod
    def unaudited(method: str, path: str) -> bool:
        """Whether a request is left out of the audit log (reads, and reads sent as POST)."""
        return method in READ_METHODS or _unaudited(method, path)

    @staticmethod
    async def _authenticate(services: Services, scope: Scope) -> Principal:
        token = _bearer(scope)
        if token is None:
            raise Unauthorized("an API token is required (Authorization: Bearer keel_...)")
        cached = services.auth.cached_principal(token)
        if cached is not None:
            return cached
        # argon2 and the token lookup block: keep them off the event loop
        # the client address has its own failure budget (#15.3)
        peer = scope.get("client")
        principal: Principal = await run_in_threadpool(
            services.auth.authenticate, token, peer[0] if peer else None
        )
        return principal

    @staticmethod
    async def _deny(services: Services, scope: Scope, error: KeelError, send: Send) -> None:
        from keel.api.errors import error_response

        response = error_response(error, headers={"www-authenticate": 'Bearer realm="keel"'})
        if scope["method"] not in READ_METHODS:
            client = scope.get("client")
            ctx = RequestAudit(
                actor=None,
                method=scope["method"],
                target=scope["path"],
                client=client[0] if client else None,
            )
            entry = audit_entry(ctx, scope, error.status)
            if entry is not None:
                services.auth.record(entry)

        async def _receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        await response(scope, _receive, send)


def _unaudited_patterns() -> dict[str, re.Pattern[str]]:
    templates: dict[str, list[str]] = {}
    for (method, template), rule in OVERRIDES.items():
        if not rule.audited:
            pattern = compile_path(template)[0].pattern
            # one alternation per method: the templates' group names would clash
            templates.setdefault(method, []).append(re.sub(r"\(\?P<\w+>", "(?:", pattern))
    return {method: re.compile("|".join(found)) for method, found in templates.items()}


_UNAUDITED = _unaudited_patterns()


def _unaudited(method: str, path: str) -> bool:
    """Whether ``path`` is a read sent as POST (predict, search): no audit entry to build.

    Known before routing, this spares the hottest routes the audit bookkeeping; the
    policy tests check that each such path is routed to the route of its template.
    """
    pattern = _UNAUDITED.get(method)
    return pattern is not None and pattern.match(path) is not None


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
