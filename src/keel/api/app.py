"""``create_app(settings)``: the FastAPI application behind ``keel server``."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.types import ASGIApp, Receive, Scope, Send

from keel import __version__
from keel.api.authz import SecurityMiddleware, app_dependencies
from keel.api.errors import ERROR_RESPONSES, AnsweredErrorsStop, install_error_handlers
from keel.api.fastlane import FastLane
from keel.api.frontdoor import FrontDoor
from keel.api.hitpath import HitPath
from keel.api.limits import BodySizeLimit
from keel.api.observability import RequestMetrics
from keel.api.routers import (
    admin,
    datasets,
    features,
    health,
    jobs,
    logs,
    models,
    monitoring,
    serving,
    tracking,
)
from keel.api.routers.decisions import router as decisions_router
from keel.api.routers.deploy_checks import router as deploy_checks_router
from keel.api.routers.deploy_report import router as deploy_report_router
from keel.api.routers.deployments import router as deployments_router
from keel.api.routers.exploration import router as exploration_router
from keel.api.routers.interleaving import router as interleaving_router
from keel.api.routers.signals import router as signals_router
from keel.api.routers.triggers import router as triggers_router
from keel.automation.worker import start_embedded_worker
from keel.config import Settings
from keel.services import Services, open_services
from keel.serving.startup import start_gateway

__all__ = ["KeelAPI", "create_app"]


class _AppState(State):
    """Starlette's ``State`` whose values are also plain attributes.

    ``State.__getattr__`` is a Python call (1.5 µs here) and a prediction reads the
    app's state three times; an instance attribute is read without any call.
    """

    def __setattr__(self, key: Any, value: Any) -> None:
        super().__setattr__(key, value)
        object.__setattr__(self, key, value)

    def __delattr__(self, key: Any) -> None:
        super().__delattr__(key)
        object.__delattr__(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.__setattr__(key, value)

    def __delitem__(self, key: str) -> None:
        self.__delattr__(key)


class KeelAPI(FastAPI):
    """FastAPI with keel's middlewares outside FastAPI's own error and telemetry layers.

    Order, outermost first: security, body size, request metrics, the fast lane, then
    FastAPI's stack (server errors, telemetry, exception handlers, router), whose re-raise
    of an unexpected exception already answered stops at :class:`AnsweredErrorsStop`. The fast lane
    answers its routes (predictions, metric logging) without entering FastAPI's layers,
    which cost a cached prediction about as much as the prediction itself; every other
    request goes on through them as before. Our middlewares answer their own errors.

    Predictions enter through :class:`~keel.api.frontdoor.FrontDoor`, which runs the same
    middlewares' steps in one frame instead of one ASGI layer each; a repeated cache hit
    is answered before it, serialised already (:class:`~keel.api.hitpath.HitPath`).

    FastAPI asks OpenTelemetry whether a tracer or meter provider is configured on
    every request (reading ``os.environ`` three times), a fifth of what a cached
    prediction costs; the answer is reused for ``TELEMETRY_RECHECK_S`` seconds, so a
    provider configured while the server runs is picked up within that time.
    """

    TELEMETRY_RECHECK_S = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = _AppState(dict(self.state._state))
        self._telemetry_on = False
        self._telemetry_checked = -math.inf
        self._front: FrontDoor | None = None  # set when the middleware stack is built
        self._hits: HitPath | None = None  # repeated cache hits, before the front door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not self.root_path
            and "fastapi.telemetry" not in scope
            and not self._telemetry_enabled()
        ):
            front = self._front
            if front is not None and scope["method"] == "POST":
                scope["app"] = self
                hits = self._hits
                if (hits is not None and await hits(scope, receive, send)) or await front(
                    scope, receive, send
                ):
                    return
            await Starlette.__call__(self, scope, receive, send)  # FastAPI's path when off
            return
        await super().__call__(scope, receive, send)

    def _telemetry_enabled(self) -> bool:
        """FastAPI's own answer, asked at most once per ``TELEMETRY_RECHECK_S``."""
        telemetry = getattr(self, "_native_telemetry", None)
        if telemetry is None:  # a FastAPI without native telemetry: nothing to ask
            return False
        now = time.monotonic()
        if now - self._telemetry_checked >= self.TELEMETRY_RECHECK_S:
            self._telemetry_on = bool(telemetry.enabled())
            self._telemetry_checked = now
        return self._telemetry_on

    def build_middleware_stack(self) -> ASGIApp:
        ours, self.user_middleware = self.user_middleware, []
        try:
            app: ASGIApp = AnsweredErrorsStop(super().build_middleware_stack())
        finally:
            self.user_middleware = ours
        built: dict[Any, Any] = {}  # middleware class → its instance
        for middleware in reversed(ours):
            app = built[middleware.cls] = middleware.cls(app, *middleware.args, **middleware.kwargs)
        parts = (SecurityMiddleware, BodySizeLimit, RequestMetrics, FastLane)
        if all(part in built for part in parts):
            self._front = FrontDoor(*(built[part] for part in parts))
            self._hits = HitPath(self._front)
        return app


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the API; the schema is upgraded at start unless ``services`` is given."""
    settings = settings or (services.settings if services else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or open_services(settings)
        svc = app.state.services
        # ready once warm; feature services naming a served model feed it online features
        app.state.gateway = await start_gateway(
            svc.settings,
            svc.registry,
            features=svc.features,
            deployments=svc.deployments,  # deployment routes (ARCHITECTURE.md flow 1)
        )
        # `keel server` (the app owns its services) runs a job consumer in-process unless
        # KEEL_WORKER=off; an app built around given services (embedding, tests) runs none.
        consumer = start_embedded_worker(svc.jobs, svc.settings) if owned else None
        try:
            yield
        finally:
            if consumer is not None:
                await run_in_threadpool(consumer.shutdown)
            await app.state.gateway.close()
            if owned:
                # The gateway's store reads run in the loop's worker threads (asyncio.to_thread)
                # and outlive its cancelled tasks: wait for them, or a read in flight keeps its
                # connection past the engine's dispose, open until garbage-collected.
                await asyncio.get_running_loop().shutdown_default_executor()
                app.state.services.close()

    app = KeelAPI(
        title="keel",
        version=__version__,
        description="Track, register, serve, monitor and retrain models: keel's REST API.",
        lifespan=lifespan,
        dependencies=app_dependencies(settings),  # every route, also those added later
        responses=ERROR_RESPONSES,
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    # the prediction hot path first
    routers = (serving, health, tracking, datasets, models, admin, features, monitoring, logs, jobs)
    for router in (r.router for r in routers):
        app.include_router(router)
    app.include_router(deployments_router)
    app.include_router(deploy_checks_router)
    app.include_router(interleaving_router)
    app.include_router(deploy_report_router)
    app.include_router(triggers_router)
    app.include_router(decisions_router)
    app.include_router(signals_router)
    app.include_router(exploration_router)
    app.add_middleware(FastLane, router=app.router)  # innermost: inside every check below
    app.add_middleware(RequestMetrics)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(SecurityMiddleware)  # outermost: 401 before a body is read
    return app
