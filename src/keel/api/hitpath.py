"""The hit path: a repeated prediction answered from its serialised cache hit, in one frame.

The front door (:mod:`keel.api.frontdoor`) already runs the middlewares' steps for a
prediction without their ASGI layers; a cache hit still went through a dozen frames
(route match, admission, body guard, the lane's error scope, the handler, the gateway,
the response dict, serialisation) for an answer that, for a repeated request body, is
known byte for byte but for its request id. On two cores under load those frames were
most of what separated a hit from a bare Starlette endpoint returning a constant
(measured with ``benchmarks/bench_serving.py``; see docs/benchmarks.md).

:class:`HitPath` serves exactly that case and nothing else:

- the path is one of the fast lane's predict routes (the matched route, its parameters
  and target are remembered per path);
- authentication is off, or the bearer token's principal is in the token cache and its
  role may predict (a route that checks ownership is left to the front door);
- the body came whole in one message within the body limit;
- :meth:`Gateway.answer_cached <keel.serving.gateway.Gateway.answer_cached>` has the
  answer (it returns None before counting anything otherwise).

The rate limit, the cache counters, the per-model series, the prediction log and the
request series under the route template are the same as on the front door's path;
a rate-limited request gets the same 429. Whenever a condition fails the request goes
on to the front door as if the hit path were not there (with the body replayed when it
was already read), which then answers it in full.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from keel.api.authz import bearer_token, rule_for
from keel.api.errors import error_response
from keel.api.fastlane import place_route, predict_target, replay_message
from keel.api.frontdoor import FrontDoor
from keel.auth.models import Role
from keel.errors import KeelError
from keel.services import Services
from keel.serving.gateway import Gateway, Target
from keel.serving.ratelimit import client_key

__all__ = ["HitPath"]

#: Paths remembered with their route (a few per served model; cleared past this).
_MAX_PATHS = 4096
_JSON = (b"content-type", b"application/json")


class _Spot:
    """A predict path resolved once: its route, path parameters, target and role rule."""

    __slots__ = ("route", "params", "target", "checks_owner", "role", "ok")

    def __init__(
        self, route: Route, params: dict[str, Any], target: Target, ok: tuple[Any, Any]
    ) -> None:
        self.route, self.params, self.target = route, params, target
        self.ok = ok  # the request series of a 200 on this route
        rule = rule_for("POST", route.path)
        # Who may be served here when auth is on: the role it needs (None: anyone
        # authenticated); a route that checks model ownership needs the registry, so
        # the front door decides each request of it.
        self.role: Role | None = None if rule is None else rule.role
        self.checks_owner = rule is not None and rule.owned is not None


class HitPath:
    """Answers repeated cache hits before the front door (see the module docstring)."""

    def __init__(self, front: FrontDoor) -> None:
        self.front = front
        self._spots: dict[str, _Spot | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a request (True) or leave it to the front door untouched (False).

        ``scope`` is an HTTP POST whose ``scope["app"]`` is set. When the body was read
        and the answer is not a cached one, the front door gets the request with the
        body replayed and True is returned.
        """
        path: str = scope["path"]
        spot = self._spots.get(path)
        if spot is None:
            if path in self._spots:  # known not to be a predict route
                return False
            spot = self._resolve(path)
            if spot is None:
                return False
        state = scope["app"].state
        services: Services | None = getattr(state, "services", None)
        gateway: Gateway | None = getattr(state, "gateway", None)
        if services is None or gateway is None or not gateway.ready:
            return False
        started = time.perf_counter()
        declared = client_header = authorization = None
        customer = gateway.limiter.key_header
        for key, value in scope["headers"]:  # one pass for the three headers used here
            if key == b"content-length":
                declared = value
            elif key == customer:
                client_header = value
            elif key == b"authorization":
                authorization = value
        user = None
        if services.auth.enabled:
            user = self._admit(services, scope, spot, authorization)
            if user is None:
                return False
        if declared is None or not declared.isdigit():
            return False  # streamed: the front door counts it as it comes
        if int(declared) > gateway.settings.serving_max_body_bytes:
            return False  # the front door refuses it (413)
        message = await receive()
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.front(scope, replay_message(message, receive), send)
            return True
        body: bytes = message.get("body", b"")
        client = client_key(user, client_header, scope.get("client"))
        try:
            answer = gateway.answer_cached(spot.target, body, client_key=client)
        except KeelError as error:  # the rate limit: the same 429 as the front door's
            place_route(scope, spot.route, spot.params)
            try:
                await error_response(error)(scope, receive, send)
            finally:
                self.front.metrics.record(scope, error.status, started)
            return True
        if answer is None:
            await self.front(scope, replay_message(message, receive), send)
            return True
        place_route(scope, spot.route, spot.params)
        payload = answer.payload
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    _JSON,
                    (b"content-length", b"%d" % len(payload)),
                    (b"server-timing", answer.timing.encode("latin-1")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        requests, latency = spot.ok
        requests.inc()
        latency.observe(time.perf_counter() - started)
        return True

    def _resolve(self, path: str) -> _Spot | None:
        """The predict route serving ``path`` (None: not one), remembered for the path."""
        spot = None
        if path.endswith("/predict"):
            found = self.front.lane.match(path, self.front.routes())
            if found is not None:
                route, _, params = found
                target = predict_target(params, route.path)
                if target is not None:
                    spot = _Spot(
                        route, params, target, self.front.metrics.series("POST", route.path, 200)
                    )
        if len(self._spots) >= _MAX_PATHS:
            self._spots.clear()
        self._spots[path] = spot
        return spot

    @staticmethod
    def _admit(
        services: Services, scope: Scope, spot: _Spot, authorization: bytes | None
    ) -> str | None:
        """With auth on: the user of a cached principal that may predict here, else None."""
        if spot.checks_owner or authorization is None:
            return None
        token = bearer_token(authorization)
        if token is None:
            return None
        principal = services.auth.cached_principal(token)
        if principal is None:
            return None
        if spot.role is not None and not principal.role.allows(spot.role):
            return None
        state = scope.setdefault("state", {})
        state["user"], state["principal"] = principal.name, principal
        return principal.name
