"""``create_app(settings)``: the FastAPI application behind ``keel server``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from keel import __version__
from keel.api.errors import install_error_handlers
from keel.api.limits import BodySizeLimit
from keel.api.observability import RequestMetrics
from keel.api.routers import datasets, health, models, tracking
from keel.config import Settings
from keel.services import Services, open_services

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the API; the schema is upgraded at start unless ``services`` is given."""
    settings = settings or (services.settings if services else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services or open_services(settings)
        try:
            yield
        finally:
            if owned:
                app.state.services.close()

    app = FastAPI(
        title="keel",
        version=__version__,
        description="Track, register, serve, monitor and retrain models: keel's REST API.",
        lifespan=lifespan,
    )
    if services is not None:
        app.state.services = services
    install_error_handlers(app)
    for router in (health.router, tracking.router, datasets.router, models.router):
        app.include_router(router)
    app.add_middleware(RequestMetrics)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app
