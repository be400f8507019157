"""An alias move reaches the gateway at once: in process by the registry's listener,
across processes by a Redis event, instead of at the next poll (set to 10 minutes here)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from tests.serving.conftest import (
    Churn,
    Live,
    live_gateway,
    register,
    set_alias,
    test_settings,
    unique,
)

from keel.config import Settings
from keel.services import open_services

POLL_MS = 600_000  # the background re-read: far beyond the test's patience


def _served_version(live: Live, name: str, row: dict[str, object]) -> int:
    response = httpx.post(
        f"{live.url}/v1/models/{name}@champion/predict", json={"instances": [row]}, timeout=30
    )
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


def _wait_for_version(live: Live, name: str, row: dict[str, object], version: int) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 20:
        if _served_version(live, name, row) == version:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"still not serving version {version} after 20 s")


def _two_versions(churn: Churn, settings: Settings) -> str:
    name = unique("moves")
    example = churn.train[churn.features].head(5)
    register(settings, name, churn.small, example)
    register(settings, name, churn.large, example)
    set_alias(settings, name, "champion", 1)
    return name


def test_a_move_through_the_api_is_served_at_once(churn: Churn, tmp_path: Path) -> None:
    settings = test_settings(tmp_path, serving_alias_refresh_ms=POLL_MS)
    name = _two_versions(churn, settings)
    row = churn.test[churn.features].head(1).to_dict("records")[0]
    with live_gateway(settings) as live:
        assert _served_version(live, name, row) == 1
        moved = httpx.put(f"{live.url}/v1/models/{name}/aliases/champion", json={"version": 2})
        assert moved.status_code == 200, moved.text
        assert _wait_for_version(live, name, row, 2) < 10  # warm-up included
        deleted = httpx.delete(f"{live.url}/v1/models/{name}/aliases/champion")
        assert deleted.status_code in (200, 204), deleted.text
        started = time.monotonic()
        while time.monotonic() - started < 10:
            gone = httpx.post(
                f"{live.url}/v1/models/{name}@champion/predict", json={"instances": [row]}
            )
            if gone.status_code == 404:
                break
            time.sleep(0.05)
        assert gone.status_code == 404 and gone.json()["error"]["field"] == "alias"


def test_a_move_by_another_process_arrives_over_redis(
    churn: Churn, tmp_path: Path, redis_url: str
) -> None:
    settings = test_settings(tmp_path, serving_alias_refresh_ms=POLL_MS, redis_url=redis_url)
    name = _two_versions(churn, settings)
    row = churn.test[churn.features].head(1).to_dict("records")[0]
    with live_gateway(settings) as live:
        assert _served_version(live, name, row) == 1
        elsewhere = open_services(settings)  # its own registry: only Redis can tell the server
        try:
            assert elsewhere.registry is not live.app.state.services.registry
            elsewhere.registry.set_alias(name, "champion", 2)
        finally:
            elsewhere.close()
        assert _wait_for_version(live, name, row, 2) < 10
