"""The front door: predictions answered before the ASGI middleware stack, with its checks.

A prediction passes, on the normal path, through the app's entry, the security, body
size and request-metrics middlewares and the fast lane: one ASGI layer each, with a
wrapped ``send`` or ``receive`` and a coroutine frame apiece. For a cached prediction
that layering cost about a third of the whole request (measured with
``benchmarks/bench_serving.py``), so :class:`FrontDoor` runs the same steps in one
frame, calling each middleware's own code for its step:

1. :meth:`SecurityMiddleware.admit <keel.api.authz.SecurityMiddleware.admit>`:
   authentication and the audited denial, exactly as the middleware does;
2. :meth:`BodySizeLimit.guard <keel.api.limits.BodySizeLimit.guard>`: the 413;
3. :meth:`RequestMetrics.record <keel.api.observability.RequestMetrics.record>`: the
   Prometheus series, under the same route template;
4. :meth:`FastLane.serve <keel.api.fastlane.FastLane.serve>`: authorization,
   the handler, errors, and the fall-through to FastAPI's route.

Only the predict routes come this way, and only because they are not audited (reads
sent as POST): an audited route needs the security middleware's audit around the whole
request, so it keeps the stack. Anything else returns ``False`` untouched.
"""

from __future__ import annotations

import time

from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from keel.api.authz import SecurityMiddleware
from keel.api.fastlane import FastLane, Handler
from keel.api.limits import BodySizeLimit
from keel.api.observability import RequestMetrics
from keel.services import Services

__all__ = ["FrontDoor"]


class FrontDoor:
    """Serves the fast lane's predict routes with the middlewares' own steps (see above)."""

    def __init__(
        self,
        security: SecurityMiddleware,
        body_limit: BodySizeLimit,
        metrics: RequestMetrics,
        lane: FastLane,
    ) -> None:
        self.security = security
        self.body_limit = body_limit
        self.metrics = metrics
        self.lane = lane
        self._routes: list[tuple[Route, Handler]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a predict request (True), or leave the request untouched (False).

        ``scope`` is an HTTP POST whose ``scope["app"]`` is set.
        """
        path: str = scope["path"]
        if not path.endswith("/predict"):
            return False
        found = self.lane.match(path, self.routes())
        if found is None:
            return False
        services: Services | None = getattr(scope["app"].state, "services", None)
        if services is None:  # not started: the stack answers as it does before startup
            return False
        admitted, _ = await self.security.admit(services, scope, receive, send)
        if not admitted:
            return True
        guarded = await self.body_limit.guard(scope, receive, send)
        if guarded is None:
            return True
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.lane.serve(scope, guarded, record_status, *found)
        finally:
            self.metrics.record(scope, status, started)
        return True

    def routes(self) -> list[tuple[Route, Handler]]:
        """The predict routes the front door serves (those the audit log leaves out)."""
        routes = self._routes
        if routes is None:
            routes = self._routes = self._unaudited(self.lane.predict_routes())
        return routes

    def _unaudited(self, routes: list[tuple[Route, Handler]]) -> list[tuple[Route, Handler]]:
        """The routes the audit log leaves out: the only ones the front door may serve."""
        return [(route, handler) for route, handler in routes if self._is_unaudited(route)]

    def _is_unaudited(self, route: Route) -> bool:
        # The policy decides by path; a concrete path of the template stands in for it.
        sample = route.path_format.format(**{name: "x" for name in route.param_convertors})
        return self.security.unaudited("POST", sample)
