"""A refused body's 413 reaches plain clients: the server reads the rest before answering.

Issue 15 item 10: a body over the limit was refused by closing the connection while the
client was still sending, so urllib (which sends the whole body, then reads) saw
"connection reset by peer". Each case posts with urllib to a real uvicorn server.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.config import Settings
from keel.services import open_services

BIG = 16 * 1024 * 1024  # far above what loopback socket buffers absorb
REQUEST_LIMIT = BIG + 1024 * 1024  # the predict and upload limits are met first


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home: Path = tmp_path_factory.mktemp("linger")
    settings = Settings(
        home=home / "keel",
        max_request_bytes=REQUEST_LIMIT,
        max_upload_bytes=2_000_000,
        serving_max_body_bytes=16_384,
        serving_rate_limit="",
    )
    services = open_services(settings)
    try:
        with serve_in_thread(create_app(services=services)) as base:
            yield base
    finally:
        services.close()


def _post(url: str, data: Any, method: str = "POST", **headers: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _chunks(total: int) -> Iterator[bytes]:
    for _ in range(total // 65_536):
        yield b"x" * 65_536


@pytest.mark.parametrize(
    ("method", "path", "limit"),
    [
        ("POST", "/v1/experiments", REQUEST_LIMIT),  # the request limit, by Content-Length
        ("POST", "/v1/models/m/1/predict", 16_384),  # the predict limit (fast lane)
        ("POST", "/v1/models/m@prod/predict", 16_384),  # hit path → front door
        ("PUT", "/v1/runs/r/artifacts/a.bin", 2_000_000),  # the upload limit
    ],
)
def test_body_over_the_limit_is_a_413_urllib_can_read(
    url: str, method: str, path: str, limit: int
) -> None:
    size = BIG if limit < BIG else REQUEST_LIMIT + BIG
    status, body = _post(url + path, b"x" * size, method=method)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["detail"]["limit"] == limit


@pytest.mark.parametrize("path", ["/v1/experiments", "/v1/models/m/1/predict"])
def test_streamed_body_over_the_limit_is_a_413_urllib_can_read(url: str, path: str) -> None:
    chunks = _chunks(REQUEST_LIMIT + BIG)
    status, body = _post(url + path, chunks, **{"Transfer-Encoding": "chunked"})
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_expect_continue_is_refused_before_the_body_is_sent(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.putrequest("POST", "/v1/experiments")
        connection.putheader("Content-Length", str(REQUEST_LIMIT + BIG))
        connection.putheader("Expect", "100-continue")
        connection.endheaders()  # no body: the server must not wait for it
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["detail"] == {"limit": REQUEST_LIMIT}
    finally:
        connection.close()
