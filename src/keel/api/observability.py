"""Prometheus request metrics for the API."""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel._metrics import HotCounter, HotHistogram

__all__ = ["RequestMetrics"]

# Updated on every request: lock-free series (keel._metrics), same samples as Counter/Histogram.
REQUESTS = HotCounter(
    "keel_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
LATENCY = HotHistogram(
    "keel_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


_Series = tuple[Any, Any]


class RequestMetrics:
    """Count requests and time them per route template (never per raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # label children per (method, route, status): labels() takes a lock and builds a
        # key on every call, a tenth of what a cached prediction costs
        self._series: dict[tuple[str, str, int], _Series] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.record(scope, status, started)

    def record(self, scope: Scope, status: int, started: float) -> None:
        """Count one answered request and its latency under its route template."""
        route = scope.get("route")
        template = getattr(route, "path", "unmatched")
        series = self.series(scope.get("method", "GET"), template, status)
        series[0].inc()
        series[1].observe(time.perf_counter() - started)

    def series(self, method: str, template: str, status: int) -> _Series:
        """The request counter and latency histogram of one (method, route, status)."""
        key = (method, template, status)
        series = self._series.get(key)
        if series is None:
            series = (
                REQUESTS.labels(method, template, str(status)),
                LATENCY.labels(method, template),
            )
            if len(self._series) < 10_000:  # templates x methods x statuses: small
                self._series[key] = series
        return series
