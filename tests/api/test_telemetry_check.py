"""FastAPI's OpenTelemetry check is reused for a second, and still honoured when it turns on."""

from __future__ import annotations

from typing import Any

import httpx
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.services import Services


class FakeTelemetry:
    """Stands in for FastAPI's NativeTelemetry: counts checks, records what it wraps."""

    def __init__(self) -> None:
        self.on = False
        self.checks = 0
        self.wrapped: list[str] = []

    def enabled(self) -> bool:
        self.checks += 1
        return self.on

    async def __call__(self, *, app: Any, scope: Any, receive: Any, send: Any, **_: Any) -> None:
        self.wrapped.append(scope["path"])
        await app(scope, receive, send)


def test_telemetry_is_asked_once_per_interval_and_used_once_on(services: Services) -> None:
    app = create_app(services=services)
    fake = FakeTelemetry()
    app._native_telemetry = fake  # type: ignore[attr-defined]
    app.TELEMETRY_RECHECK_S = 3600.0  # type: ignore[attr-defined]
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        for _ in range(30):
            assert http.get("/healthz").status_code == 200
        assert fake.checks == 1 and fake.wrapped == []

        fake.on = True
        app.TELEMETRY_RECHECK_S = 0.0  # type: ignore[attr-defined]
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/experiments").status_code == 200

    assert fake.wrapped == ["/healthz", "/v1/experiments"]
