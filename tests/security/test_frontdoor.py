"""The front door answers predictions exactly as the middleware stack does, on a live server.

Each request goes to two servers over the same services: one with the front door, one
with it switched off (the stack alone). Status, error body, headers that matter,
audit entries and Prometheus series must be the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.conftest import serve_in_thread
from tests.security.conftest import AuthServer

from keel.api import create_app
from keel.api.frontdoor import FrontDoor
from keel.auth.models import AuditQuery
from keel.config import Settings


@dataclass
class Pair:
    front: str  # URL of the server with the front door
    stack: str  # URL of the server without it
    calls: list[bool]  # what the front door returned, per call


def _register(settings: Settings) -> None:
    """``fd`` v1: a logistic regression on one column ``x0``, with its signature."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from keel.client import Client

    X = pd.DataFrame({"x0": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    with Client(settings=settings) as client, client.start_run(experiment="fd") as run:
        run.log_model(model, "m", registered_name="fd", input_example=X.head(2))


@pytest.fixture
def pair(auth_server: AuthServer, auth_settings: Settings) -> Iterator[Pair]:
    _register(auth_settings)
    calls: list[bool] = []
    with_front = create_app(services=auth_server.services)
    without = create_app(services=auth_server.services)
    real_build = without.build_middleware_stack

    def build_without_front() -> Any:
        stack = real_build()
        without._front = None  # type: ignore[attr-defined]
        return stack

    without.build_middleware_stack = build_without_front  # type: ignore[method-assign]
    original = FrontDoor.__call__

    async def spy(self: FrontDoor, *args: Any) -> bool:
        answered = await original(self, *args)
        calls.append(answered)
        return answered

    FrontDoor.__call__ = spy  # type: ignore[method-assign]
    try:
        with serve_in_thread(with_front) as front, serve_in_thread(without) as stack:
            yield Pair(front, stack, calls)
    finally:
        FrontDoor.__call__ = original  # type: ignore[method-assign]


def _metrics(url: str, route: str) -> dict[str, float]:
    """keel_http_requests_total of one POST route, by status."""
    prefix = f'keel_http_requests_total{{method="POST",route="{route}",status="'
    found: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(prefix):
            status, _, value = line[len(prefix) :].partition('"} ')
            found[status] = float(value)
    return found


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    body = response.json()
    if isinstance(body, dict):
        body.pop("request_id", None)
    return response.status_code, body, response.headers.get("www-authenticate")


CASES = [
    ("viewer", "/v1/models/fd@champion/predict", {"instances": [{"x0": 1.0}]}),  # no alias yet
    ("viewer", "/v1/models/fd/1/predict", {"instances": [{"x0": 2.5}]}),
    ("viewer", "/v1/models/fd/1/predict", {"instances": [{"x0": 2.5}], "probabilities": True}),
    ("viewer", "/v1/models/fd/1/predict", {"instances": [{"x0": "many"}]}),
    ("viewer", "/v1/models/fd/1/predict", {"rows": []}),
    ("viewer", "/v1/models/fd/9/predict", {"instances": [{"x0": 1.0}]}),
    ("viewer", "/v1/models/fd/latest/predict", {"instances": [{"x0": 1.0}]}),
    (None, "/v1/models/fd/1/predict", {"instances": [{"x0": 1.0}]}),
]


@pytest.mark.parametrize(("who", "path", "body"), CASES)
def test_front_door_answers_as_the_stack(
    pair: Pair, auth_server: AuthServer, who: str | None, path: str, body: Any
) -> None:
    answers = [
        _answer(httpx.post(url + path, json=body, headers=auth_server.headers(who), timeout=30))
        for url in (pair.front, pair.stack)
    ]
    assert answers[0] == answers[1]
    if "latest" not in path:
        assert pair.calls[-1] is True  # answered by the front door, not passed on


def test_front_door_counts_audits_and_denies_like_the_stack(
    pair: Pair, auth_server: AuthServer
) -> None:
    route = "/v1/models/{name}/{version}/predict"
    body = {"instances": [{"x0": 1.0}]}
    counted: list[dict[str, float]] = []
    for url in (pair.front, pair.stack):
        before = _metrics(url, route)
        for who in ("viewer", "viewer", None):
            httpx.post(
                f"{url}/v1/models/fd/1/predict",
                json=body,
                headers=auth_server.headers(who),
                timeout=30,
            )
        after = _metrics(url, route)
        counted.append({k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k)})
    # the same series move by the same amounts; denials are not counted on either path
    assert counted[0] == counted[1] == {"200": 2.0}
    denials = auth_server.services.auth.audit(AuditQuery(action="predict", limit=100))
    assert [(e.status, e.actor) for e in denials] == [(401, None), (401, None)]
    assert all(e.target == "/v1/models/fd/1/predict" for e in denials)
    assert pair.calls.count(True) == 3


def test_front_door_leaves_other_posts_to_the_stack(pair: Pair, auth_server: AuthServer) -> None:
    response = httpx.post(
        f"{pair.front}/v1/experiments",
        json={"name": "fd-exp"},
        headers=auth_server.headers("editor"),
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert pair.calls == [False]
    entries = auth_server.services.auth.audit(AuditQuery(action="POST /v1/experiments"))
    assert [(e.actor, e.status) for e in entries] == [("editor", 201)]
