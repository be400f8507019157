"""A bad input is worded alike over plain HTTP and by the embedded SDK: same field, same message.

The HTTP 422 for a request body that FastAPI refused (a monitor, a replay request), for a
body a route validated itself (a trigger, a deployment policy) and the embedded client's
InvalidInput all come from :func:`keel._models.invalid_errors` / ``error_reason``: no
``Value error,`` prefix, an unknown key named, list items as ``versions[1]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import keel
from keel.config import Settings

_ARMS = [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}]
_POLICY: dict[str, Any] = {"name": "d", "model": "m", "strategy": "canary", "arms": _ARMS}
_TRIGGER: dict[str, Any] = {"name": "t", "model": "m", "any": [{"metric": "manual"}]}
_GRAMMAR = "expected a duration like 90s, 30m, 6h, 7d or 1w, got '3 days'"
_NEGATIVE = "expected a whole, non-negative number of seconds or a duration like"

Call = Callable[[keel.Client], object]

#: (id, HTTP path, JSON body, the same input through the embedded SDK, field, message start)
CASES: list[tuple[str, str, dict[str, Any], Call, str, str]] = [
    (
        "monitor-window",
        "/v1/monitors",
        {"name": "mon", "model": "m", "window": "3 days"},
        lambda c: c.create_monitor("mon", "m", window="3 days"),
        "window",
        f"window: {_GRAMMAR}",
    ),
    (
        "monitor-unknown-key",
        "/v1/monitors",
        {"name": "mon", "model": "m", "colour": "red"},
        lambda c: c.create_monitor("mon", "m", colour="red"),
        "colour",
        "colour: unknown key 'colour'",
    ),
    (
        "trigger-baseline",
        "/v1/triggers",
        {**_TRIGGER, "any": [{"metric": "accuracy", "below": 0.8, "baseline": "3 days"}]},
        lambda c: c.apply_trigger(
            {**_TRIGGER, "any": [{"metric": "accuracy", "below": 0.8, "baseline": "3 days"}]}
        ),
        "any[0].baseline",
        f"any[0].baseline: {_GRAMMAR}",
    ),
    (
        "policy-negative-for",
        "/v1/deployments",
        {**_POLICY, "guardrails": {"error_rate": {"for": -5}}},
        lambda c: c.create_deployment({**_POLICY, "guardrails": {"error_rate": {"for": -5}}}),
        "guardrails.error_rate.for",
        f"guardrails.error_rate.for: {_NEGATIVE}",
    ),
    (
        "policy-unknown-key",
        "/v1/deployments",
        {**_POLICY, "guardrails": {"error_rate": {"max_inc": 0.1}}},
        lambda c: c.create_deployment({**_POLICY, "guardrails": {"error_rate": {"max_inc": 0.1}}}),
        "guardrails.error_rate.max_inc",
        "guardrails.error_rate.max_inc: unknown key 'max_inc'",
    ),
    (
        "replay-list-item",
        "/v1/deployments/d/replay",
        {"versions": [1, "two"]},
        lambda c: c.replay_deployment("d", [1, "two"]),
        "versions[1]",
        "versions[1]: Input should be a valid integer",
    ),
]


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def embedded(settings: Settings) -> Iterator[keel.Client]:
    with keel.Client(settings=settings) as client:
        yield client


@pytest.mark.parametrize(
    "path, body, call, field, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_http_and_embedded_word_a_bad_input_alike(
    http: httpx.Client,
    embedded: keel.Client,
    path: str,
    body: dict[str, Any],
    call: Call,
    field: str,
    message: str,
) -> None:
    response = http.post(path, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("invalid_input", field)
    assert error["message"].startswith(message) and "Value error" not in error["message"]
    with pytest.raises(keel.InvalidInput) as caught:
        call(embedded)
    assert (caught.value.field, caught.value.message) == (error["field"], error["message"])
    assert caught.value.detail == error["detail"]


def test_every_listed_error_is_worded_the_same_way(http: httpx.Client) -> None:
    body = {"name": "mon", "model": "m", "window": "3 days", "colour": "red"}
    error = http.post("/v1/monitors", json=body).json()["error"]
    assert error["detail"]["errors"] == [
        {"field": "window", "message": _GRAMMAR},
        {"field": "colour", "message": "unknown key 'colour'"},
    ]


def test_a_query_parameter_is_named_without_its_source(http: httpx.Client) -> None:
    error = http.get("/v1/monitors/mon/runs", params={"limit": 0}).json()["error"]
    assert error["field"] == "limit"
    assert error["message"] == "limit: Input should be greater than or equal to 1"


def test_a_field_called_path_inside_a_body_keeps_its_name(http: httpx.Client) -> None:
    # the old wording dropped every location part named body/query/path/header
    body = {"name": "mon", "model": "m", "path": "x"}
    error = http.post("/v1/monitors", json=body).json()["error"]
    assert (error["field"], error["message"]) == ("path", "path: unknown key 'path'")


def test_a_missing_body_is_named_body(http: httpx.Client) -> None:
    error = http.post("/v1/monitors").json()["error"]
    assert (error["field"], error["message"]) == ("body", "body: Field required")
