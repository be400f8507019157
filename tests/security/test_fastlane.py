"""The fast lane answers its routes exactly as the FastAPI routes would, on a live server.

It must keep authentication, authorization, audit entries, Prometheus series and error
bodies; what it declines falls through to the route with the body intact.
"""

from __future__ import annotations

import math

import httpx
import pytest
from tests.security.conftest import AuthServer

from keel.auth.models import AuditQuery


@pytest.fixture
def run_id(auth_server: AuthServer) -> str:
    return auth_server.services.tracking.create_run("lane").id


def _metric(
    auth_server: AuthServer, run_id: str, body: object, who: str = "editor"
) -> httpx.Response:
    return httpx.post(
        f"{auth_server.url}/v1/runs/{run_id}/metrics",
        json=body,
        headers=auth_server.headers(who),
        timeout=30,
    )


def _count(auth_server: AuthServer, route: str, status: str) -> float:
    """keel_http_requests_total of one POST route and status, scraped from /metrics."""
    series = f'keel_http_requests_total{{method="POST",route="{route}",status="{status}"}} '
    for line in httpx.get(f"{auth_server.url}/metrics").text.splitlines():
        if line.startswith(series):
            return float(line[len(series) :])
    return 0.0


def test_metric_through_the_lane_is_stored_audited_and_counted(
    auth_server: AuthServer, run_id: str
) -> None:
    before = _count(auth_server, "/v1/runs/{run_id}/metrics", "204")
    for step, value in enumerate([0.5, "NaN", "Infinity"]):
        response = _metric(auth_server, run_id, {"key": "loss", "value": value, "step": step})
        assert response.status_code == 204, response.text
    history = auth_server.services.tracking.metric_history(run_id, "loss")
    assert history[0].value == 0.5 and math.isnan(history[1].value) and history[2].value == math.inf
    entries = auth_server.services.auth.audit(AuditQuery(action="POST /v1/runs/{run_id}/metrics"))
    assert len(entries) == 3
    assert {(e.actor, e.status, e.route) for e in entries} == {
        ("editor", 204, "/v1/runs/{run_id}/metrics")
    }
    assert entries[0].target == f"/v1/runs/{run_id}/metrics"
    assert _count(auth_server, "/v1/runs/{run_id}/metrics", "204") - before == 3


def test_metric_authorization_is_the_policy(auth_server: AuthServer, run_id: str) -> None:
    body = {"key": "loss", "value": 1.0}
    assert _metric(auth_server, run_id, body, who="viewer").status_code == 403
    denied = httpx.post(f"{auth_server.url}/v1/runs/{run_id}/metrics", json=body, timeout=30)
    assert denied.status_code == 401
    assert denied.headers["www-authenticate"].startswith("Bearer")
    assert auth_server.services.tracking.metric_history(run_id, "loss") == []


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"value": 1.0}, 422, "key"),
        ({"key": "", "value": 1.0}, 422, "key"),
        ({"key": "k", "value": "much"}, 422, "value"),
        ({"key": "k", "value": 1.0, "step": 2**70}, 422, "step"),
        ({"key": "k", "value": 1.0, "colour": "red"}, 422, "colour"),
        ([1, 2], 422, None),
    ],
)
def test_bad_metric_bodies_get_the_routes_own_errors(
    auth_server: AuthServer, run_id: str, body: object, status: int, field: str | None
) -> None:
    response = _metric(auth_server, run_id, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if field is not None:
        assert error["field"] == field
    assert auth_server.services.tracking.metric_history(run_id, "k") == []


def test_malformed_json_and_unknown_run(auth_server: AuthServer, run_id: str) -> None:
    response = httpx.post(
        f"{auth_server.url}/v1/runs/{run_id}/metrics",
        content=b'{"key": "k", "value": ',
        headers={**auth_server.headers("editor"), "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"
    missing = _metric(auth_server, "no-such-run", {"key": "k", "value": 1.0})
    assert missing.status_code == 404
    assert "no-such-run" in missing.json()["error"]["message"]
    # the entry written with the metric rolled back with it; the failure is recorded once
    entries = auth_server.services.auth.audit(AuditQuery(action="metrics", limit=100))
    assert [(e.status, e.target) for e in entries if "no-such-run" in e.target] == [
        (404, "/v1/runs/no-such-run/metrics")
    ]


def test_predict_routes_decline_to_the_route_for_bad_versions(auth_server: AuthServer) -> None:
    headers = auth_server.headers("viewer")
    body = {"instances": [{"x": 1.0}]}
    bad = httpx.post(
        f"{auth_server.url}/v1/models/m/latest/predict", json=body, headers=headers, timeout=30
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "version"
    huge = httpx.post(
        f"{auth_server.url}/v1/models/m/{2**70}/predict", json=body, headers=headers, timeout=30
    )
    assert huge.status_code == 422, huge.text  # found by schemathesis: was a 500
    unknown = httpx.post(
        f"{auth_server.url}/v1/models/nope@champion/predict", json=body, headers=headers
    )
    assert unknown.status_code == 404 and "nope" in unknown.json()["error"]["message"]
    assert (
        httpx.post(f"{auth_server.url}/v1/models/nope@champion/predict", json=body).status_code
        == 401
    )
    # predictions are reads sent as POST: not audited (a denied call without a token is)
    entries = auth_server.services.auth.audit(AuditQuery(action="predict", limit=100))
    assert [(e.actor, e.status) for e in entries] == [(None, 401)]
