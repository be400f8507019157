"""Bodies no parser can read (too deep, not UTF-8) are 400 ``bad_request`` on every path.

Issue 15 item 8: JSON nested 100,000 deep was a 500 (RecursionError) on predict, and
non-UTF-8 or deep bodies on the other routes a 400 with ``"code": "internal"``. Each
body goes to the fast lane (predict, metrics), the front door and hit path (predict
by alias and version, also after a cache hit of a good body) and FastAPI's routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.conftest import serve_in_thread

from keel.api import create_app
from keel.client import Client
from keel.config import Settings
from keel.services import open_services

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_IN_OBJECT = b'{"instances": [{"x0": ' + b"[" * 5_000 + b"]" * 5_000 + b"}]}"
DEEP_WITH_NAN = b'{"instances": [{"x0": NaN, "y": ' + b"[" * 5_000 + b"]" * 5_000 + b"}]}"
NOT_UTF8 = b'{"name": "caf\xe9 \xff\xfe"}'
GOOD = b'{"instances": [{"x0": 1.0}]}'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A live server with ``fd`` v1 (alias ``prod``) and a run; yields (url, run id)."""
    home: Path = tmp_path_factory.mktemp("malformed")
    settings = Settings(home=home / "keel", serving_rate_limit="")
    X = pd.DataFrame({"x0": [0.0, 1.0, 2.0, 3.0]})
    with Client(settings=settings) as client, client.start_run(experiment="bad") as run:
        run.log_model(
            LogisticRegression().fit(X, [0, 0, 1, 1]), "m", registered_name="fd", input_example=X
        )
        run_id = run.info.id
    with Client(settings=settings) as client:
        client.set_alias("fd", "prod", 1)
    services = open_services(settings)
    try:
        with serve_in_thread(create_app(services=services)) as url:
            yield url, run_id
    finally:
        services.close()


def _paths(run_id: str) -> list[tuple[str, str]]:
    return [
        ("POST", "/v1/models/fd@prod/predict"),  # hit path → front door → fast lane
        ("POST", "/v1/models/fd/1/predict"),
        ("POST", "/v1/models/fd/v1/predict"),  # not a version: FastAPI's route
        ("POST", f"/v1/runs/{run_id}/metrics"),  # fast lane, falls through to the route
        ("POST", "/v1/experiments"),
        ("POST", "/v1/cache/invalidate"),
        ("PATCH", "/v1/models/fd/versions/1"),
    ]


@pytest.mark.parametrize("body", [DEEP, DEEP_IN_OBJECT, DEEP_WITH_NAN, NOT_UTF8])
def test_unparsable_body_is_400_bad_request_on_every_route(
    server: tuple[str, str], body: bytes
) -> None:
    url, run_id = server
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("/v1/models/fd@prod/predict", content=GOOD).status_code == 200
        assert http.post("/v1/models/fd@prod/predict", content=GOOD).json()["cached"]
        for method, path in _paths(run_id):
            response = http.request(
                method, path, content=body, headers={"content-type": "application/json"}
            )
            if path.endswith("/v1/predict") and response.status_code == 422:
                continue  # the path's version is checked before the body is read
            assert response.status_code == 400, (path, response.text)
            error = response.json()["error"]
            assert error["code"] == "bad_request", (path, error)
            assert error["field"] == "body", (path, error)
            assert "malformed JSON" in error["message"], (path, error)
