"""What authentication, authorization and audit cost on the request path.

Two measurements, both in one process on one machine (read the ratios):

1. ``log_metric`` over real HTTP (uvicorn in a thread, one kept-alive client),
   five interleaved rounds of four apps: the app without the security layer
   (``SecurityMiddleware`` and the ``authorize`` dependency removed), with
   ``KEEL_AUTH=off`` but the audit write stubbed, with ``KEEL_AUTH=off``, and
   with ``KEEL_AUTH=on`` and a cached token.
2. The security layer alone, called directly on a trivial ASGI endpoint
   (the audit write stubbed out, it runs on its own thread), per request.

Run: ``python benchmarks/bench_auth.py``; results in ``benchmarks/results/auth.json``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.requests import Request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import serve_in_thread  # noqa: E402
from keel.api import create_app  # noqa: E402
from keel.api.authz import SecurityMiddleware, authorize  # noqa: E402
from keel.config import Settings  # noqa: E402
from keel.services import Services, open_services  # noqa: E402

ROUNDS, CALLS = 5, 600


def _app(services: Services, bare: bool) -> FastAPI:
    if not bare:
        return create_app(services=services)
    add, init = FastAPI.add_middleware, FastAPI.__init__

    def add_without_security(self: FastAPI, cls: Any, *args: Any, **kwargs: Any) -> None:
        if cls is not SecurityMiddleware:
            add(self, cls, *args, **kwargs)

    def init_without_authorize(self: FastAPI, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("dependencies", None)
        init(self, *args, **kwargs)

    FastAPI.add_middleware, FastAPI.__init__ = add_without_security, init_without_authorize  # type: ignore[method-assign]
    try:
        return create_app(services=services)
    finally:
        FastAPI.add_middleware, FastAPI.__init__ = add, init  # type: ignore[method-assign]


def _http_median_ms(variant: str) -> float:
    home = Path(tempfile.mkdtemp()) / "keel"
    services = open_services(Settings(home=home, auth="on" if variant == "on" else "off"))
    if variant == "off_no_audit":  # the security layer without the audit write
        services.auth.record = lambda entry: None  # type: ignore[method-assign]
    headers = {}
    if variant == "on":
        headers["authorization"] = f"Bearer {services.auth.create_admin('bench').token}"
    run_id = services.tracking.create_run("bench").id
    samples = []
    with serve_in_thread(_app(services, bare=variant == "bare")) as url:
        with httpx.Client(base_url=url, headers=headers) as http:
            for i in range(CALLS + 100):
                body = {"key": "loss", "value": i / 7, "step": i}
                started = time.perf_counter()
                http.post(f"/v1/runs/{run_id}/metrics", json=body).raise_for_status()
                if i >= 100:  # warm-up excluded
                    samples.append(time.perf_counter() - started)
    services.close()
    return statistics.median(samples) * 1000


def _layer_us(auth: str, method: str) -> float:
    home = Path(tempfile.mkdtemp()) / "keel"
    services = open_services(Settings(home=home, auth=auth))
    headers = []
    if auth == "on":
        token = services.auth.create_admin("bench").token
        services.auth.authenticate(token)  # cached, as after the first call
        headers = [(b"authorization", f"Bearer {token}".encode())]
    services.auth.record = lambda entry: None  # type: ignore[method-assign]
    route = SimpleNamespace(path="/v1/runs/{run_id}/metrics")
    app = SimpleNamespace(state=SimpleNamespace(services=services))

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = route
        if scope.get("secured"):
            await authorize(Request(scope, receive))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    async def per_call(secured: bool, n: int = 20_000) -> float:
        target = SecurityMiddleware(endpoint) if secured else endpoint
        started = time.perf_counter()
        for _ in range(n):
            scope = {
                "type": "http",
                "method": method,
                "path": "/v1/runs/r/metrics",
                "headers": headers,
                "client": ("127.0.0.1", 1),
                "app": app,
                "path_params": {"run_id": "r"},
                "query_string": b"",
                "secured": secured,
            }
            await target(scope, receive, send)
        return (time.perf_counter() - started) / n * 1e6

    async def main() -> float:
        bare = min([await per_call(False) for _ in range(3)])
        secured = min([await per_call(True) for _ in range(3)])
        return secured - bare

    try:
        return asyncio.run(main())
    finally:
        services.close()


def main() -> None:
    http: dict[str, list[float]] = {"bare": [], "off_no_audit": [], "off": [], "on": []}
    for _ in range(ROUNDS):
        for variant in http:
            http[variant].append(_http_median_ms(variant))
    # interleaved rounds; the median of the per-round medians damps the ±40% swings
    best = {k: statistics.median(v) for k, v in http.items()}
    layer = {f"{a}_{m}": _layer_us(a, m) for a in ("off", "on") for m in ("GET", "POST")}
    result = {
        "log_metric_http_median_ms": best,
        "ratio_off_no_audit_vs_bare": best["off_no_audit"] / best["bare"],
        "ratio_off_vs_bare": best["off"] / best["bare"],
        "ratio_on_vs_bare": best["on"] / best["bare"],
        "security_layer_us_per_call": layer,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "auth.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
