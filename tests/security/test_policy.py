"""Roles × endpoints: every route of the app gets the outcome the policy predicts.

The matrix is generated from ``app.routes``, so a route added later is checked
without editing this file.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute
from tests.security.conftest import AuthServer, register_versions

from keel.api import create_app
from keel.api.authz import (
    OVERRIDES,
    PENDING_ROUTES,
    PUBLIC_PATHS,
    flat_routes,
    iter_routes,
    rule_for,
)
from keel.auth.models import Role
from keel.config import Settings

PRINCIPALS: list[str | None] = [None, "viewer", "editor", "deployer", "admin"]


def _routes(app_settings: Settings) -> list[tuple[str, str]]:
    return [(m, served) for m, served, _ in iter_routes(create_app(app_settings).routes)]


def _concrete(template: str) -> str:
    def value(match: re.Match[str]) -> str:
        return "1" if match.group(1) == "version" else "x"

    return re.sub(r"\{(\w+)(?::path)?\}", value, template)


def _expected(method: str, template: str, who: str | None) -> str:
    rule = rule_for(method, template)
    if rule is None or template in PUBLIC_PATHS:
        return "allowed"
    if who is None:
        return "401"
    return "allowed" if Role(who).allows(rule.role) else "403"


def _outcome(status: int) -> str:
    return str(status) if status in (401, 403) else "allowed"


def test_role_matrix_matches_policy_on_live_server(auth_server: AuthServer) -> None:
    routes = _routes(auth_server.services.settings)
    assert len(routes) > 25
    wrong = []
    with httpx.Client(base_url=auth_server.url, timeout=30) as http:
        for method, template in routes:
            for who in PRINCIPALS:
                body = {} if method in ("POST", "PUT", "PATCH") else None
                response = http.request(
                    method, _concrete(template), json=body, headers=auth_server.headers(who)
                )
                expected, got = _expected(method, template, who), _outcome(response.status_code)
                if expected != got or response.status_code >= 500:
                    wrong.append(
                        f"{who} {method} {template}: expected {expected}, got "
                        f"{response.status_code} {response.text[:120]}"
                    )
    assert wrong == []


def test_every_override_names_an_existing_route(sqlite_settings: Settings) -> None:
    existing = set(_routes(sqlite_settings))
    missing = sorted(set(OVERRIDES) - existing - PENDING_ROUTES)
    assert missing == [], f"OVERRIDES name routes that do not exist: {missing}"


def test_pending_routes_are_overrides(sqlite_settings: Settings) -> None:
    assert PENDING_ROUTES <= set(OVERRIDES)


@pytest.mark.parametrize(
    ("method", "template", "role"),
    [
        ("GET", "/v1/runs/{run_id}", Role.VIEWER),
        ("POST", "/v1/runs", Role.EDITOR),
        ("POST", "/v1/runs/search", Role.VIEWER),
        ("PUT", "/v1/models/{name}/aliases/{alias}", Role.DEPLOYER),
        ("DELETE", "/v1/models/{name}/aliases/{alias}", Role.DEPLOYER),
        ("POST", "/v1/deployments/{name}/rollback", Role.DEPLOYER),
        ("POST", "/v1/models/{name}@{alias}/predict", Role.VIEWER),
        ("POST", "/v1/features/online", Role.VIEWER),
        ("GET", "/v1/audit", Role.ADMIN),
        ("POST", "/v1/users/{name}/tokens", Role.ADMIN),
        ("GET", "/v1/some/future/route", Role.VIEWER),
        ("DELETE", "/v1/some/future/route", Role.EDITOR),
    ],
)
def test_rule_for_defaults_and_overrides(method: str, template: str, role: Role) -> None:
    rule = rule_for(method, template)
    assert rule is not None and rule.role is role


def test_route_added_after_create_app_is_enforced(auth_services) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import serve_in_thread

    app = create_app(services=auth_services)

    @app.post("/v1/late-addition")
    def late() -> dict[str, str]:
        return {"ok": "yes"}

    auth_services.auth.create_user("v", Role.VIEWER)
    auth_services.auth.create_user("e", Role.EDITOR)
    viewer, editor = (auth_services.auth.create_token(n).token for n in ("v", "e"))
    with serve_in_thread(app) as url:

        def post(token: str) -> httpx.Response:
            headers = {"authorization": f"Bearer {token}"}
            return httpx.post(f"{url}/v1/late-addition", headers=headers)

        assert post(viewer).status_code == 403
        assert post(editor).status_code == 200
        assert httpx.post(f"{url}/v1/late-addition").status_code == 401


def test_public_paths_need_no_token(auth_server: AuthServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert httpx.get(auth_server.url + path).status_code == 200, path


def test_model_owner_gates_alias_moves(auth_server: AuthServer) -> None:
    register_versions(auth_server.services.settings, "owned", 1, owner="team-growth")
    services = auth_server.services
    services.auth.create_user("grower", Role.DEPLOYER, teams=["team-growth"])
    grower = services.auth.create_token("grower").token
    url = f"{auth_server.url}/v1/models/owned/aliases/champion"
    body = {"version": 1}
    stranger = httpx.put(url, json=body, headers=auth_server.headers("deployer"))
    assert stranger.status_code == 403 and "owned by 'team-growth'" in stranger.text
    assert (
        httpx.put(url, json=body, headers={"authorization": f"Bearer {grower}"}).status_code == 200
    )
    assert httpx.delete(url, headers=auth_server.headers("admin")).status_code == 200
    patch = httpx.patch(
        f"{auth_server.url}/v1/models/owned",
        json={"owner": "editor"},
        headers=auth_server.headers("editor"),
    )
    assert patch.status_code == 403


def test_unauthorized_carries_www_authenticate(auth_server: AuthServer) -> None:
    response = httpx.get(f"{auth_server.url}/v1/models", headers={"authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthorized"


def test_no_token_route_does_not_leak_whether_a_route_exists(auth_server: AuthServer) -> None:
    assert httpx.get(f"{auth_server.url}/v1/no-such-thing").status_code == 401


def test_policy_keys_are_the_served_paths(sqlite_settings: Settings) -> None:
    # authorize() reads route.path; a router included with a prefix would serve
    # other paths than the policy sees, so no router may be included that way
    routes = list(iter_routes(create_app(sqlite_settings).routes))
    assert [(m, s) for m, s, own in routes if s != own] == []


def test_no_mounted_sub_apps_escape_authorize(sqlite_settings: Settings) -> None:
    app = create_app(sqlite_settings)
    mounted = [r for r in app.routes if not hasattr(r, "original_router")]
    assert all(isinstance(r, APIRoute) or getattr(r, "methods", None) for r in mounted)


def _served_by(app: object, method: str, path: str) -> str | None:
    """The template of the route Starlette picks for ``method path`` (first full match)."""
    from starlette.routing import Match

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    for _, route in flat_routes(app.router.routes):  # type: ignore[attr-defined]
        match, _ = route.matches(scope)  # type: ignore[attr-defined]
        if match is Match.FULL:
            return str(route.path)  # type: ignore[attr-defined]
    return None


def test_paths_decided_before_routing_reach_their_routes(sqlite_settings: Settings) -> None:
    """The audit skip and the fast lane match paths before FastAPI routes them: each
    such path must be served by the very route whose template they matched."""
    from keel.api.authz.rules import is_unaudited as _unaudited
    from keel.api.fastlane import FAST_ROUTES

    app = create_app(sqlite_settings)
    unaudited = [(m, t) for (m, t), rule in OVERRIDES.items() if not rule.audited]
    for method, template in [*unaudited, *FAST_ROUTES]:
        if (method, template) in PENDING_ROUTES:
            continue
        path = _concrete(template)
        assert _served_by(app, method, path) == template, (method, template)
    for method, template in unaudited:
        assert _unaudited(method, _concrete(template))
    # near misses stay audited
    assert not _unaudited("POST", "/v1/runs/x/metrics")
    assert not _unaudited("POST", "/v1/models/x/1/predict/extra")
    assert not _unaudited("PUT", "/v1/models/x@y/predict")
