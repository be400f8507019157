"""The authorization decision: may this caller call this route (role, then ownership)?

:func:`authorize` is an app-wide dependency when ``KEEL_AUTH=on``, so a route added
later is covered automatically; :func:`check_access` is the decision itself, shared
with the fast lane. The rules are data in :mod:`keel.api.authz.rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from keel.api.authz.rules import DECISION_MODEL, DEPLOYMENT_MODEL, TRIGGER_MODEL, rule_for
from keel.auth.models import Principal, Role
from keel.config import Settings
from keel.errors import Forbidden, NotFound, Unauthorized
from keel.registry.models import RegisteredModel
from keel.services import Services

__all__ = [
    "Caller",
    "app_dependencies",
    "authorize",
    "check_access",
    "check_model_owner",
    "check_owner_assignment",
    "get_principal",
]


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
        lookup = _MODEL_OF.get(rule.owned)
        if lookup is not None:  # a deployment, trigger or decision: the owner of its model
            name = path_params.get(rule.owned.split(":", 1)[1])
            if name is not None:
                await _check_owner_of(services, principal, lookup(services), str(name))
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


#: Routes owned through another entity: how to find that entity (by the path's ``name``),
#: whose ``model`` attribute names the model whose owners may change it.
_MODEL_OF: dict[str, Callable[[Services], Callable[[str], Any]]] = {
    DEPLOYMENT_MODEL: lambda services: services.deployments.get,
    TRIGGER_MODEL: lambda services: services.triggers.get,
    DECISION_MODEL: lambda services: lambda key: _decision(services, key),
}


def _decision(services: Services, key: str) -> Any:
    if not key.isdigit():
        raise NotFound(f"decision {key!r} not found")  # the route answers 404/422 itself
    return services.decisions.get(int(key))


async def _check_owner_of(
    services: Services, principal: Principal, get: Callable[[str], Any], name: str
) -> None:
    try:
        found = await run_in_threadpool(get, name)
    except NotFound:
        return  # the route itself answers 404
    await _check_owner(services, principal, found.model)


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
