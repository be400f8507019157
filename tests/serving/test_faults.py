"""Faults: a model that raises, breaks its breaker, times out or fails to load; rate limits."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pandas as pd
from serving_faults import SWITCH, BrokenOnLoad, Raising, Slow, Switchable
from tests.serving.conftest import live_gateway, register, set_alias, unique

from keel.config import Settings

EXAMPLE = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.25, 0.0]})
ROW = {"a": 1.0, "b": 2.0}


def predict(
    url: str, path: str, rows: list[dict[str, float]] | None = None, **kw: object
) -> httpx.Response:
    return httpx.post(f"{url}{path}", json={"instances": rows or [ROW]}, timeout=30, **kw)  # type: ignore[arg-type]


def test_raising_model_is_502_with_its_error_class_and_counts_in_the_breaker(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_breaker_min_requests=50)
    name = unique("raising")
    register(settings, name, Raising(), EXAMPLE)
    with live_gateway(settings) as live:
        for i in range(3):
            response = predict(
                live.url, f"/v1/models/{name}/1/predict", [{"a": float(i), "b": 0.0}]
            )
            assert response.status_code == 502, response.text
            error = response.json()["error"]
            assert error["code"] == "model_error"
            assert error["detail"]["error_class"] == "RuntimeError"
            assert "exploded on purpose" in error["message"]
        breaker = live.gateway.status()["breakers"][f"{name}/1"]
        assert breaker == {"state": "closed", "calls_errors": [3, 3]}


def test_open_breaker_falls_back_to_the_previous_version_then_half_opens(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        serving_breaker_min_requests=4,
        serving_breaker_reset_s=0.5,
        serving_cache=False,
        serving_fallbacks={},
    )
    name = unique("flaky")
    settings = settings.model_copy(update={"serving_fallbacks": {name: "previous"}})
    register(settings, name, Switchable(), EXAMPLE)  # v1: the fallback
    register(settings, name, Switchable(), EXAMPLE)  # v2: will fail
    SWITCH["fail"] = True
    try:
        with live_gateway(settings) as live:
            # v1 is loaded by the fallback only; make v2 fail 4 times → open
            statuses = [
                predict(live.url, f"/v1/models/{name}/2/predict").status_code for _ in range(4)
            ]
            assert statuses == [502] * 4
            assert live.gateway.status()["breakers"][f"{name}/2"]["state"] == "open"
            SWITCH["fail"] = False
            answer = predict(live.url, f"/v1/models/{name}/2/predict").json()
            assert answer["fallback"] is True and answer["version"] == 1
            assert answer["predictions"] == [3.0]
            time.sleep(0.6)  # reset_s passed: the next call is a probe of v2
            probe = predict(live.url, f"/v1/models/{name}/2/predict").json()
            assert probe["fallback"] is False and probe["version"] == 2
            assert live.gateway.status()["breakers"][f"{name}/2"]["state"] == "closed"
            metrics = httpx.get(f"{live.url}/metrics").text
            assert f'keel_serving_fallbacks_total{{model="{name}",version="1"}} 1.0' in metrics
    finally:
        SWITCH["fail"] = False


def test_open_breaker_uses_a_constant_or_answers_503_with_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    constant, bare = unique("const"), unique("bare")
    settings = make_settings(
        serving_breaker_min_requests=2,
        serving_breaker_error_rate=0.5,
        serving_fallbacks={constant: "constant:0.5"},
    )
    register(settings, constant, Raising(), EXAMPLE)
    register(settings, bare, Raising(), EXAMPLE)
    with live_gateway(settings) as live:
        for name in (constant, bare):
            for _ in range(2):
                assert predict(live.url, f"/v1/models/{name}/1/predict").status_code == 502
        answer = predict(live.url, f"/v1/models/{constant}/1/predict", [ROW, ROW])
        assert answer.status_code == 200
        assert answer.json()["predictions"] == [0.5, 0.5] and answer.json()["fallback"] is True
        refused = predict(live.url, f"/v1/models/{bare}/1/predict")
        assert refused.status_code == 503
        assert 1 <= int(refused.headers["retry-after"]) <= 30


def test_slow_model_times_out_with_504(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(serving_timeout_s=0.3)
    name = unique("slow")
    register(settings, name, Slow(), EXAMPLE)
    with live_gateway(settings) as live:
        started = time.monotonic()
        response = predict(live.url, f"/v1/models/{name}/1/predict")
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "gateway_timeout"
        # answered at the timeout (plus the model's load on a busy machine), not after 5 s
        assert time.monotonic() - started < 4.0
        assert live.gateway.status()["breakers"][f"{name}/1"]["calls_errors"] == [1, 1]


def test_failing_load_is_503_and_the_previous_version_keeps_serving(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_alias_refresh_ms=100)
    name = unique("broken")
    register(settings, name, Switchable(), EXAMPLE)
    register(settings, name, BrokenOnLoad(), EXAMPLE)
    set_alias(settings, name, "champion", 1)
    with live_gateway(settings) as live:
        assert predict(live.url, f"/v1/models/{name}@champion/predict").json()["version"] == 1
        set_alias(settings, name, "champion", 2)
        explicit = predict(live.url, f"/v1/models/{name}/2/predict")
        assert explicit.status_code == 503, explicit.text
        assert explicit.json()["error"]["detail"]["error_class"] == "OSError"
        deadline = time.monotonic() + 5
        while live.gateway.status()["aliases"][f"{name}@champion"]["error"] is None:
            assert time.monotonic() < deadline, "the alias refresh never tried version 2"
            time.sleep(0.05)
        for _ in range(3):
            answer = predict(live.url, f"/v1/models/{name}@champion/predict")
            assert answer.status_code == 200 and answer.json()["version"] == 1
        alias = live.gateway.status()["aliases"][f"{name}@champion"]
        assert alias["serving"] == 1 and alias["target"] == 2


def test_rate_limit_is_per_client_key_with_retry_after(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(serving_rate_limit="3/minute")
    name = unique("limited")
    register(settings, name, Switchable(), EXAMPLE)
    with live_gateway(settings) as live:
        path = f"/v1/models/{name}/1/predict"
        alice = [predict(live.url, path, headers={"x-keel-client": "alice"}) for _ in range(4)]
        assert [r.status_code for r in alice] == [200, 200, 200, 429]
        limited = alice[-1]
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        assert predict(live.url, path, headers={"x-keel-client": "bob"}).status_code == 200
        # without a header, the client's address is the key
        by_ip = [predict(live.url, path).status_code for _ in range(4)]
        assert by_ip == [200, 200, 200, 429]
