"""The REST API over real HTTP: status codes, error bodies, limits, health and the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from tests.conftest import serve_in_thread

import keel
from keel.api import create_app
from keel.config import Settings
from keel.registry.models import ModelVersion
from keel.services import Services, open_services

JSON = {"content-type": "application/json"}
LIMIT = 2048


@pytest.fixture
def http(live_server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        yield client


@pytest.fixture
def small_limit_url(tmp_path: Path) -> Iterator[str]:
    """A server whose request bodies are limited to LIMIT bytes."""
    limited = Settings(home=tmp_path / "limited", max_request_bytes=LIMIT, max_upload_bytes=LIMIT)
    services = open_services(limited)
    with serve_in_thread(create_app(services=services)) as url:
        yield url
    services.close()


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"code", "message", "field", "detail"}
    return body


def _run(http: httpx.Client, **fields: Any) -> str:
    response = http.post("/v1/runs", json={"experiment": "exp", **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _register_model(base_url: str, home: Path, name: str = "m") -> int:
    """Log and register a small LogisticRegression through the SDK; returns its version."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=200).fit(X.iloc[:, :4], y)
    with keel.Client(base_url, settings=Settings(home=home)) as client:
        with client.start_run(experiment="x") as run:
            version = run.log_model(model, registered_name=name, input_example=X.iloc[:5, :4])
    assert isinstance(version, ModelVersion)
    return version.version


# ---- experiments and lookups ----------------------------------------------------------------


def test_create_experiment_returns_201(http: httpx.Client) -> None:
    response = http.post("/v1/experiments", json={"name": "churn", "tags": {"team": "growth"}})
    assert response.status_code == 201
    assert response.json()["name"] == "churn" and response.json()["tags"] == {"team": "growth"}


def test_create_experiment_duplicate_is_409(http: httpx.Client) -> None:
    assert http.post("/v1/experiments", json={"name": "churn"}).status_code == 201
    body = _error(http.post("/v1/experiments", json={"name": "churn"}), 409)
    assert body["code"] == "conflict" and "churn" in body["message"]


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("/v1/runs/no-such-run", "no-such-run"),
        ("/v1/experiments/no-such-experiment", "no-such-experiment"),
        ("/v1/models/no-such-model", "no-such-model"),
        ("/v1/models/known/versions/7", "7"),
        ("/v1/models/known/aliases/champion", "champion"),
        ("/v1/datasets/no-such-data/versions/latest", "no-such-data"),
    ],
)
def test_get_unknown_thing_is_404_naming_it(http: httpx.Client, path: str, missing: str) -> None:
    assert http.post("/v1/models", json={"name": "known"}).status_code == 201
    body = _error(http.get(path), 404)
    assert body["code"] == "not_found"
    assert missing in body["message"]


def test_unknown_route_is_404_with_error_body(http: httpx.Client) -> None:
    body = _error(http.get("/v1/no-such-route"), 404)
    assert body["code"] == "not_found" and "/v1/no-such-route" in body["message"]


# ---- request validation ---------------------------------------------------------------------


def test_malformed_json_is_400_bad_request(http: httpx.Client) -> None:
    body = _error(http.post("/v1/experiments", content=b'{"name": ', headers=JSON), 400)
    assert body["code"] == "bad_request" and body["field"] == "body"


def test_missing_field_is_422_naming_it(http: httpx.Client) -> None:
    body = _error(http.post("/v1/experiments", json={"description": "no name"}), 422)
    assert body["code"] == "invalid_input" and body["field"] == "name"


def test_unknown_field_is_422_naming_it(http: httpx.Client) -> None:
    body = _error(http.post("/v1/experiments", json={"name": "e", "colour": "red"}), 422)
    assert body["field"] == "colour"


def test_metric_value_of_wrong_type_is_422_naming_value(http: httpx.Client) -> None:
    run_id = _run(http)
    response = http.post(f"/v1/runs/{run_id}/metrics", json={"key": "auc", "value": "abc"})
    body = _error(response, 422)
    assert body["field"] == "value" and "value" in body["message"]
    assert http.get(f"/v1/runs/{run_id}").json()["metrics"] == {}


# ---- NaN and infinities ---------------------------------------------------------------------

SPECIAL = ["NaN", "Infinity", "-Infinity"]


def test_metric_accepts_nan_and_infinity_as_strings(http: httpx.Client) -> None:
    run_id = _run(http)
    for step, value in enumerate(SPECIAL):
        body = {"key": "loss", "value": value, "step": step}
        assert http.post(f"/v1/runs/{run_id}/metrics", json=body).status_code == 204
    history = http.get(f"/v1/runs/{run_id}/metrics/loss/history").json()
    assert [m["value"] for m in history] == SPECIAL


def test_metric_accepts_bare_json_nan_tokens(http: httpx.Client) -> None:
    run_id = _run(http)
    for step, token in enumerate(SPECIAL):
        raw = f'{{"key": "loss", "value": {token}, "step": {step}}}'.encode()
        response = http.post(f"/v1/runs/{run_id}/metrics", content=raw, headers=JSON)
        assert response.status_code == 204, response.text
    history = http.get(f"/v1/runs/{run_id}/metrics/loss/history").json()
    assert [m["value"] for m in history] == SPECIAL
    assert http.get(f"/v1/runs/{run_id}").json()["metrics"] == {"loss": "-Infinity"}


def test_batch_accepts_nan_tokens_and_returns_strings(http: httpx.Client) -> None:
    run_id = _run(http)
    raw = b'{"metrics": [{"key": "a", "value": NaN}, {"key": "b", "value": "Infinity"}]}'
    assert http.post(f"/v1/runs/{run_id}/batch", content=raw, headers=JSON).status_code == 204
    assert http.get(f"/v1/runs/{run_id}").json()["metrics"] == {"a": "NaN", "b": "Infinity"}


# ---- body size limit ------------------------------------------------------------------------


def _assert_too_large(response: httpx.Response) -> None:
    body = _error(response, 413)
    assert body["code"] == "payload_too_large" and body["field"] == "body"
    assert str(LIMIT) in body["message"] and body["detail"] == {"limit": LIMIT}


def test_body_over_limit_with_content_length_is_413(small_limit_url: str) -> None:
    with httpx.Client(base_url=small_limit_url) as http:
        response = http.post("/v1/experiments", json={"name": "x", "description": "d" * LIMIT})
        assert "content-length" in response.request.headers
        _assert_too_large(response)
        assert http.get("/v1/experiments").json()["items"] == []


def test_body_over_limit_streamed_chunked_is_413(small_limit_url: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "x", "description": "'
        for _ in range(4):
            yield b"d" * 1024
        yield b'"}'

    with httpx.Client(base_url=small_limit_url) as http:
        response = http.post("/v1/experiments", content=chunks(), headers=JSON)
        assert response.request.headers.get("transfer-encoding") == "chunked"
        _assert_too_large(response)
        assert http.get("/v1/experiments").json()["items"] == []


def test_artifact_upload_over_limit_streamed_is_413(small_limit_url: str) -> None:
    with httpx.Client(base_url=small_limit_url) as http:
        run_id = http.post("/v1/runs", json={"experiment": "e"}).json()["id"]
        data = iter([b"x" * 1024] * 3)
        _assert_too_large(http.put(f"/v1/runs/{run_id}/artifacts/big.bin", content=data))
        assert http.get(f"/v1/runs/{run_id}/artifacts").json() == []


def test_body_under_limit_is_accepted(small_limit_url: str) -> None:
    with httpx.Client(base_url=small_limit_url) as http:
        body = {"name": "x", "description": "d" * (LIMIT - 100)}
        assert http.post("/v1/experiments", json=body).status_code == 201


# ---- search, artifacts ----------------------------------------------------------------------


def test_search_with_invalid_filter_is_400_naming_token(http: httpx.Client) -> None:
    _run(http)
    body = {"experiments": ["exp"], "filter": "metrics.auc >> 0.5"}
    error = _error(http.post("/v1/runs/search", json=body), 400)
    assert error["code"] == "bad_request" and error["field"] == "filter"
    assert error["detail"]["token"] == ">" and isinstance(error["detail"]["position"], int)


@pytest.mark.parametrize("path", ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%2F..%2F..%2Fb"])
def test_artifact_upload_outside_run_is_422(http: httpx.Client, path: str) -> None:
    run_id = _run(http)
    response = http.put(f"/v1/runs/{run_id}/artifacts/{path}", content=b"root:x:0:0")
    assert path in response.request.url.raw_path.decode()  # sent encoded, not normalised
    body = _error(response, 422)
    assert body["field"] == "path"
    assert http.get(f"/v1/runs/{run_id}/artifacts").json() == []


def test_artifact_upload_and_download_round_trip(http: httpx.Client) -> None:
    run_id = _run(http)
    stored = http.put(f"/v1/runs/{run_id}/artifacts/plots/roc.txt", content=b"auc")
    assert stored.status_code == 201 and stored.json()["path"] == "plots/roc.txt"
    fetched = http.get(f"/v1/runs/{run_id}/artifacts/plots/roc.txt")
    assert fetched.content == b"auc" and fetched.headers["x-keel-sha256"] == stored.json()["sha256"]


# ---- health, metrics, docs ------------------------------------------------------------------


def test_healthz_is_200(http: httpx.Client) -> None:
    response = http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_200_with_checks(http: httpx.Client, backend: str) -> None:
    response = http.get("/readyz")
    assert response.status_code == 200
    # the SQLite database's volume is measured here; a PostgreSQL server's is not
    volumes = {"database_disk": "ok"} if backend == "sqlite" else {}
    assert response.json() == {
        "status": "ok",
        "checks": {
            "serving": "ok",
            "database": "ok",
            "schema": "ok",
            **volumes,
            "jobs_queue_disk": "ok",
            "artifacts": "ok",
        },
    }


def test_readyz_is_503_until_the_gateway_has_warmed_up(services: Services) -> None:
    # Without the lifespan (which preloads and warms the models) the gateway is not ready.
    app = create_app(services=services)

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.get("/readyz")

    response = asyncio.run(ask())
    assert response.status_code == 503
    assert response.json()["checks"]["serving"] == "warming up"


def test_metrics_exposes_request_counter(http: httpx.Client) -> None:
    http.get("/healthz")
    response = http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/")
    assert "keel_http_requests_total" in response.text
    assert 'route="/healthz"' in response.text


def test_openapi_lists_v1_paths(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]
    for path in [
        "/v1/experiments",
        "/v1/runs",
        "/v1/runs/search",
        "/v1/runs/{run_id}/batch",
        "/v1/models/{name}/aliases/{alias}",
        "/v1/datasets/{name}/versions",
    ]:
        assert path in paths


def test_docs_page_is_html(http: httpx.Client) -> None:
    response = http.get("/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")


# ---- registry over raw HTTP -----------------------------------------------------------------


def test_alias_put_then_get_returns_the_version(
    http: httpx.Client, live_server: str, tmp_path: Path
) -> None:
    version = _register_model(live_server, tmp_path)
    moved = http.put("/v1/models/m/aliases/champion", json={"version": version, "reason": "best"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["to_version"] == version and moved.json()["reason"] == "best"
    got = http.get("/v1/models/m/aliases/champion")
    assert got.status_code == 200
    assert (got.json()["name"], got.json()["version"]) == ("m", version)
    assert got.json()["aliases"] == ["champion"]


def test_alias_to_missing_version_is_404(
    http: httpx.Client, live_server: str, tmp_path: Path
) -> None:
    _register_model(live_server, tmp_path)
    body = _error(http.put("/v1/models/m/aliases/champion", json={"version": 99}), 404)
    assert "99" in body["message"]
    _error(http.get("/v1/models/m/aliases/champion"), 404)


def test_alias_with_invalid_name_is_422_naming_alias(
    http: httpx.Client, live_server: str, tmp_path: Path
) -> None:
    version = _register_model(live_server, tmp_path)
    body = _error(http.put("/v1/models/m/aliases/1bad", json={"version": version}), 422)
    assert body["code"] == "invalid_input" and body["field"] == "alias"


def test_archived_version_cannot_take_alias(
    http: httpx.Client, live_server: str, tmp_path: Path
) -> None:
    version = _register_model(live_server, tmp_path)
    archived = http.patch(f"/v1/models/m/versions/{version}", json={"status": "ARCHIVED"})
    assert archived.status_code == 200 and archived.json()["status"] == "ARCHIVED"
    body = _error(http.put("/v1/models/m/aliases/champion", json={"version": version}), 409)
    assert body["code"] == "conflict" and body["field"] == "version"
    assert http.get("/v1/models/m").json()["aliases"] == {}


def test_a_content_length_below_the_body_cannot_smuggle_it_past_the_limit(
    small_limit_url: str,
) -> None:
    """A declared length within the limit is trusted (the server frames the body by it):
    the bytes beyond it never reach the route as body."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(small_limit_url)
    payload = b'{"name": "smuggled", "description": "' + b"d" * (LIMIT * 2) + b'"}'
    head = (
        b"POST /v1/experiments HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: 20\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head + payload)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    assert 400 <= status < 500, reply[:300]
    with httpx.Client(base_url=small_limit_url) as http:
        assert http.get("/v1/experiments").json()["items"] == []
