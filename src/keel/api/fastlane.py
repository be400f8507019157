"""The fast lane: raw-ASGI handlers for the two hottest routes, in front of FastAPI's router.

``POST /v1/models/{name}@{alias}/predict`` (and ``/{version}/predict``) serves production
traffic, and ``POST /v1/runs/{run_id}/metrics`` is called once per logged value by
training loops. Through FastAPI each pays for routing over every route, dependency
solving, request and response objects: about 100-150 µs, more than a cached prediction
itself costs (measured with ``benchmarks/bench_serving.py`` and ``bench_tracking.py``).

The lane keeps every guarantee of the normal path:

- it sits *inside* the security, body-size and request-metrics middlewares, so
  authentication, audit entries, 413s and Prometheus series are unchanged;
- it applies the same authorization (:func:`keel.api.authz.check_access`) and sets
  ``scope["route"]`` to the very route it stands in for, so audit entries and metrics
  carry the same route template;
- errors are answered with the same JSON and headers (:func:`keel.api.errors.error_response`);
- whatever it does not handle itself (a metric body that does not validate, a version that
  is not a number) falls through to the FastAPI route with the body replayed, so those
  answers are the route's own, word for word.

The FastAPI routes stay declared: they document the API (OpenAPI) and answer what falls
through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel._models import MAX_VERSION
from keel.api.authz import audit_entry, check_access, flat_routes
from keel.api.errors import error_response, unexpected_error
from keel.api.limits import BodyTooLarge
from keel.api.routers.serving import client_key_of, predict_payload, read_body
from keel.errors import KeelError, PayloadTooLarge
from keel.services import Services
from keel.serving.gateway import Gateway, Target
from keel.store.sql import WriteBusy
from keel.store.sql.auth import audit_context
from keel.tracking.validation import parse_metric

__all__ = [
    "FAST_ROUTES",
    "FastLane",
    "place_route",
    "predict_target",
    "replay_message",
]

log = logging.getLogger("keel.api")

_PREDICT_ALIAS = "/v1/models/{name}@{alias}/predict"
_PREDICT_VERSION = "/v1/models/{name}/{version}/predict"
_PREDICT_DEPLOYMENT = "/v1/deployments/{name}/predict"
_LOG_METRIC = "/v1/runs/{run_id}/metrics"

#: The (method, route template) pairs the lane answers itself.
FAST_ROUTES: tuple[tuple[str, str], ...] = (
    ("POST", _PREDICT_ALIAS),
    ("POST", _PREDICT_VERSION),
    ("POST", _PREDICT_DEPLOYMENT),
    ("POST", _LOG_METRIC),
)


Handler = Callable[[Scope, Receive, Send, dict[str, Any]], Awaitable[None]]


class _FallThrough(Exception):
    """The lane declines a request it has already read: replay its body to the router."""

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body


class FastLane:
    """ASGI middleware answering :data:`FAST_ROUTES`; every other request passes through."""

    def __init__(self, app: ASGIApp, router: Any) -> None:
        self.app = app
        self.router = router  # the FastAPI router: its routes are looked up on first use
        self._routes: list[tuple[Route, Handler]] | None = None
        self._targets: dict[tuple[str, str | None, str | None, str], Target] = {}
        self._handlers: dict[str, Handler] = {
            _PREDICT_ALIAS: self._predict,
            _PREDICT_VERSION: self._predict,
            _PREDICT_DEPLOYMENT: self._predict,
            _LOG_METRIC: self._log_metric,
        }

    def routes(self) -> list[tuple[Route, Handler]]:
        """The declared routes the lane stands in for, with their handlers."""
        if self._routes is None:
            found: list[tuple[Route, Handler]] = []
            for method, template in FAST_ROUTES:
                route = _declared(self.router.routes, method, template)
                if route is not None:
                    found.append((route, self._handlers[template]))
            self._routes = found
        return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        found = self.match(scope["path"], self.routes())
        if found is None:
            await self.app(scope, receive, send)
        else:
            await self.serve(scope, receive, send, *found)

    def predict_routes(self) -> list[tuple[Route, Handler]]:
        """The routes of :meth:`routes` that serve predictions."""
        return [(route, handler) for route, handler in self.routes() if handler == self._predict]

    @staticmethod
    def match(
        path: str, routes: list[tuple[Route, Handler]]
    ) -> tuple[Route, Handler, dict[str, Any]] | None:
        """The first of ``routes`` matching ``path``, its handler and path parameters."""
        for route, handler in routes:
            found = route.path_regex.match(path)
            if found is not None:
                return route, handler, found.groupdict()
        return None

    async def serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: Route,
        handler: Handler,
        params: dict[str, Any],
    ) -> None:
        """Answer a request :meth:`match` gave to ``handler`` (or fall through to FastAPI)."""
        place_route(scope, route, params)
        try:
            await self._guarded(handler, scope, receive, send, params)
        except _FallThrough as declined:
            await self.app(scope, _replay(declined.body, receive), send)

    async def _guarded(
        self, handler: Handler, scope: Scope, receive: Receive, send: Send, params: dict[str, Any]
    ) -> None:
        try:
            services: Services = scope["app"].state.services
            if services.auth.enabled:
                template = scope["route"].path
                principal = scope.get("state", {}).get("principal")
                await check_access(services, "POST", template, principal, params)
            await handler(scope, receive, send, params)
        except KeelError as error:
            await error_response(error)(scope, receive, send)
        except BodyTooLarge as exc:
            too_large = PayloadTooLarge(str(exc.detail), field="body", limit=exc.limit)
            await error_response(too_large)(scope, receive, send)
        except _FallThrough:
            raise
        except Exception as exc:  # the same answer as the app's catch-all handler
            internal = unexpected_error(exc)
            if internal.status == 500:
                log.exception("unhandled error on POST %s", scope["path"])
            await error_response(internal)(scope, receive, send)

    # ---- handlers --------------------------------------------------------------------------
    async def _predict(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, Any]
    ) -> None:
        gateway: Gateway | None = getattr(scope["app"].state, "gateway", None)
        target = self._target(params, scope["route"].path)
        if target is None:
            raise _FallThrough(await read_body(scope, receive, None))  # the route's own 422
        if gateway is None:
            raise _FallThrough(await read_body(scope, receive, None))  # the route's own 503
        body = await read_body(scope, receive, gateway.settings.serving_max_body_bytes)
        result = await gateway.predict(target, body, client_key=client_key_of(scope))
        payload, timing = predict_payload(result)
        await _send(send, 200, payload, [(b"server-timing", timing.encode("latin-1"))])

    def _target(self, params: dict[str, Any], template: str) -> Target | None:
        """:func:`predict_target`, remembered per path parameters: building one costs ~1 µs."""
        key = (params["name"], params.get("version"), params.get("alias"), template)
        target = self._targets.get(key)
        if target is None:
            target = predict_target(params, template)
            if target is not None:
                if len(self._targets) >= 4096:  # paths name a few models each: rarely reached
                    self._targets.clear()
                self._targets[key] = target
        return target

    async def _log_metric(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, Any]
    ) -> None:
        body = await read_body(scope, receive, None)
        try:
            # the same check as the route and the embedded SDK (issue #15 item 9)
            metric = parse_metric(json.loads(body))
        except (ValueError, RecursionError):  # bad JSON, InvalidInput (a ValueError too)
            raise _FallThrough(body) from None  # the route words the 400/422 itself
        services: Services = scope["app"].state.services
        run_id: str = params["run_id"]
        # The request's audit entry commits with the metric, instead of through the
        # batched audit writer, whose separate transactions contend for SQLite's lock
        # with every call (0.2-1 ms per call measured). On failure it rolls back with
        # the write and the security middleware records the error as usual.
        request = audit_context.get()
        entry = audit_entry(request, scope, 204) if request and not request.written else None

        def write(nowait: bool = False) -> None:
            services.tracking.log_metric_body(run_id, metric, nowait=nowait, audit=entry)

        if services.store.inline_writes:
            # One metric into a local SQLite file takes ~0.3 ms; handing it to a worker
            # thread and back cost 0.6-0.9 ms more per call on an idle machine (two
            # thread wake-ups). So it runs here, but never waits for the write lock:
            # if another writer holds it, the waiting happens on a thread as before.
            try:
                write(nowait=True)
            except WriteBusy:
                await anyio.to_thread.run_sync(write)
        else:
            await anyio.to_thread.run_sync(write)
        if request is not None and entry is not None:
            request.written = True
        await _send(send, 204, b"", [])


def predict_target(params: dict[str, Any], template: str) -> Target | None:
    """The target of a predict route's path parameters; None for a version that is not a
    plain 32-bit number (the route words that 422 itself)."""
    if template == _PREDICT_DEPLOYMENT:
        return Target(params["name"], deployment=True)
    if "version" in params:
        raw = params["version"]
        if not raw.isdigit() or int(raw) > MAX_VERSION:
            return None
        return Target(params["name"], version=int(raw))
    return Target(params["name"], alias=params.get("alias"))


def place_route(scope: Scope, route: Route, params: dict[str, Any]) -> None:
    """Mark ``scope`` with the declared route it is served as (audit and metrics read it)."""
    scope["route"], scope["path_params"] = route, params
    scope["endpoint"] = getattr(route, "endpoint", None)


def _declared(routes: Iterable[Any], method: str, template: str) -> Route | None:
    """The route declared for ``method`` on ``template``, included routers searched too."""
    for _, route in flat_routes(routes):
        if getattr(route, "path", None) == template and method in (
            getattr(route, "methods", None) or ()
        ):
            return route  # type: ignore[no-any-return]
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already-read body over once, then the client's events."""
    return replay_message({"type": "http.request", "body": body, "more_body": False}, receive)


def replay_message(message: Message, receive: Receive) -> Receive:
    """A ``receive`` that hands ``message`` (already received) over once, then the client's."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return message
        return await receive()

    return again


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    if status != 204:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode("latin-1")),
            *headers,
        ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
