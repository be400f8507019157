"""One metric validator for every transport (issue #15 item 9).

``POST /v1/runs/{id}/metrics {"value": true}`` answered 204 over HTTP (pydantic's lax
parsing, in the route and in the fast lane) while the embedded path refused booleans.
Every bad value below goes through the embedded service, both REST routes (the fast
lane answers ``/metrics``) and the SDK on both transports, and must fail the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keel.client import Client
from keel.errors import InvalidInput
from keel.services import Services

_BIG = 2**63
_BAD: dict[str, Any] = {
    "value true": {"key": "m", "value": True},
    "value false": {"key": "m", "value": False},
    "value null": {"key": "m", "value": None},
    "value missing": {"key": "m"},
    "value text": {"key": "m", "value": "abc"},
    "value numeric text": {"key": "m", "value": "1.5"},
    "value lowercase nan": {"key": "m", "value": "nan"},
    "value inf text": {"key": "m", "value": "inf"},
    "value padded Infinity": {"key": "m", "value": " Infinity"},
    "value array": {"key": "m", "value": [1.0]},
    "value object": {"key": "m", "value": {"v": 1}},
    "value beyond float": {"key": "m", "value": 10**400},
    "step true": {"key": "m", "value": 1, "step": True},
    "step float": {"key": "m", "value": 1, "step": 1.5},
    "step integral float": {"key": "m", "value": 1, "step": 2.0},
    "step text": {"key": "m", "value": 1, "step": "3"},
    "step inf": {"key": "m", "value": 1, "step": math.inf},
    "step huge": {"key": "m", "value": 1, "step": _BIG},
    "step huge negative": {"key": "m", "value": 1, "step": -_BIG},
    "step nested": {"key": "m", "value": 1, "step": [1]},
    "timestamp negative": {"key": "m", "value": 1, "timestamp_ms": -1},
    "timestamp huge": {"key": "m", "value": 1, "timestamp_ms": _BIG},
    "timestamp true": {"key": "m", "value": 1, "timestamp_ms": True},
    "timestamp text": {"key": "m", "value": 1, "timestamp_ms": "1700000000000"},
    "timestamp float": {"key": "m", "value": 1, "timestamp_ms": 1.5},
    "key missing": {"value": 1},
    "key null": {"key": None, "value": 1},
    "key number": {"key": 5, "value": 1},
    "key empty": {"key": "", "value": 1},
    "key too long": {"key": "k" * 251, "value": 1},
    "key traversal": {"key": "../m", "value": 1},
    "key bad characters": {"key": "m!", "value": 1},
    "unknown field": {"key": "m", "value": 1, "unit": "s"},
    "metric array": [1, 2],
    "metric text": "m=1",
    "metric number": 1,
    "metric null": None,
}


def _post(http: httpx.Client, url: str, body: object) -> httpx.Response:
    # json.dumps, not httpx's encoder: NaN/Infinity tokens and huge integers as written
    content = json.dumps(body).encode()
    return http.post(url, content=content, headers={"content-type": "application/json"})


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:  # one keep-alive connection for every call
        yield client


def _error(response: httpx.Response) -> tuple[int, str, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"], error["field"]


@pytest.fixture
def run_id(services: Services) -> str:
    return services.tracking.create_run("metric-checks").id


def test_bad_metrics_fail_the_same_on_every_transport(
    services: Services, live_server: str, run_id: str, http: httpx.Client
) -> None:
    # one server for every case (a server per case cost ~1.5 s each); mismatches listed
    wrong = []
    base = f"{live_server}/v1/runs/{run_id}"
    for case, raw in _BAD.items():
        # one metric (errors name its fields) and a batch (``metrics.0.<field>``)
        for route, body, log in (
            ("metrics", raw, lambda r=raw: services.tracking.log_metric_body(run_id, r)),
            (
                "batch",
                {"metrics": [raw]},
                lambda r=raw: services.tracking.log_batch(run_id, metrics=[r]),
            ),
        ):
            with pytest.raises(InvalidInput) as embedded:
                log()
            expected = (422, "invalid_input", embedded.value.message, embedded.value.field)
            got = _error(_post(http, f"{base}/{route}", body))
            if got != expected:
                wrong.append(f"{case} via /{route}: {got} instead of {expected}")
            elif route == "batch" and not str(got[3]).startswith("metrics"):
                wrong.append(f"{case} via /{route}: field {got[3]!r}")
    assert wrong == []
    assert services.tracking.get_run(run_id).metrics == {}


_SDK_BAD = [(True, 0), (None, 0), ("abc", 0), ("inf", 0), ([1.0], 0), (10**400, 0)] + [
    (1.0, True),
    (1.0, 1.5),
    (1.0, "3"),
    (1.0, _BIG),
]


def test_sdk_refuses_the_same_values_embedded_and_remote(
    services: Services, live_server: str, run_id: str
) -> None:
    wrong = []
    with Client(settings=services.settings) as local, Client(live_server) as remote:
        for value, step in _SDK_BAD:
            errors = []
            for client in (local, remote):
                with pytest.raises(InvalidInput) as caught:
                    client.log_metric(run_id, "m", value, step=step)  # type: ignore[arg-type]
                errors.append((caught.value.message, caught.value.field))
            if errors[0] != errors[1]:
                wrong.append(f"value={value!r} step={step!r}: {errors}")
    assert wrong == []
    assert services.tracking.get_run(run_id).metrics == {}


_GOOD: list[dict[str, Any]] = [
    {"key": "m", "value": "NaN"},
    {"key": "m", "value": "-Infinity", "step": -3, "timestamp_ms": 0},
    {"key": "m", "value": 7, "step": None, "timestamp_ms": None},
    {"key": "m", "value": 0.25, "step": _BIG - 1, "timestamp_ms": _BIG - 1},
]


def test_good_metrics_are_stored_alike_on_both_transports(
    services: Services, live_server: str, http: httpx.Client
) -> None:
    for raw in _GOOD:
        embedded, remote = (services.tracking.create_run("metric-checks").id for _ in range(2))
        services.tracking.log_batch(embedded, metrics=[raw])
        assert _post(http, f"{live_server}/v1/runs/{remote}/metrics", raw).status_code == 204

        def stored(run: str, raw: dict[str, Any] = raw) -> list[tuple[str, int, int | None]]:
            history = services.tracking.metric_history(run, "m")
            kept = raw.get("timestamp_ms") is not None
            return [(repr(m.value), m.step, m.timestamp_ms if kept else None) for m in history]

        assert stored(embedded) == stored(remote) != [], raw
