"""Input limits over real HTTP: each configured limit answers a clear 4xx naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.config import Settings
from keel.services import open_services


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = Settings(
        home=tmp_path / "keel",
        max_request_bytes=32_768,
        max_upload_bytes=65_536,
        max_metrics_per_batch=5,
        max_filter_depth=2,
        max_filter_tokens=20,
    )
    services = open_services(settings)
    with serve_in_thread(create_app(services=services)) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    services.close()


def _run(http: httpx.Client) -> str:
    return str(http.post("/v1/runs", json={"experiment": "limits"}).json()["id"])


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert isinstance(body, dict)
    return body


def test_uploads_have_their_own_larger_limit(http: httpx.Client) -> None:
    run_id = _run(http)
    accepted = http.put(f"/v1/runs/{run_id}/artifacts/a.bin", content=b"x" * 40_000)
    assert accepted.status_code == 201  # above the JSON limit, below the upload limit
    too_big = _error(http.put(f"/v1/runs/{run_id}/artifacts/b.bin", content=b"x" * 70_000), 413)
    assert too_big["detail"] == {"limit": 65_536}
    json_body = {"name": "e", "description": "d" * 40_000}
    assert _error(http.post("/v1/experiments", json=json_body), 413)["detail"] == {"limit": 32_768}


def test_dataset_upload_uses_the_upload_limit(http: httpx.Client) -> None:
    response = http.post("/v1/datasets/d/versions?format=file", content=b"y" * 70_000)
    assert _error(response, 413)["field"] == "body"


def test_deep_filter_is_400_naming_filter(http: httpx.Client) -> None:
    _run(http)
    body = {"experiments": ["limits"], "filter": "(((metrics.a > 1)))"}
    error = _error(http.post("/v1/runs/search", json=body), 400)
    assert error["field"] == "filter" and "nested too deep" in str(error["message"])


def test_filter_token_limit_is_400(http: httpx.Client) -> None:
    _run(http)
    text = " or ".join(["metrics.a > 1"] * 6)
    error = _error(
        http.post("/v1/runs/search", json={"experiments": ["limits"], "filter": text}), 400
    )
    assert error["field"] == "filter" and "too many tokens" in str(error["message"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"params": {"p": "v" * 6001}}, "params.p"),
        ({"tags": {"t": "v" * 8001}}, "tags.t"),
        ({"metrics": [{"key": "k", "value": 1.0, "step": i} for i in range(6)]}, "metrics"),
        ({"metrics": [{"key": "k" * 251, "value": 1.0}]}, "metrics.0.key"),
        ({"metrics": [{"key": "k", "value": 1.0, "step": 2**64}]}, "metrics.0.step"),
    ],
    ids=["param-value", "tag-value", "batch-size", "metric-key", "step-range"],
)
def test_batch_limits_name_the_field(
    http: httpx.Client, body: dict[str, object], field: str
) -> None:
    run_id = _run(http)
    error = _error(http.post(f"/v1/runs/{run_id}/batch", json=body), 422)
    assert str(error["field"]).startswith(field)


def test_name_longer_than_limit_is_422(http: httpx.Client) -> None:
    error = _error(http.post("/v1/experiments", json={"name": "n" * 257}), 422)
    assert error["field"] == "name"


def test_huge_version_number_is_422_not_500(http: httpx.Client) -> None:
    response = http.get(f"/v1/models/m/versions/{2**70}")
    assert _error(response, 422)["field"] == "version"
