"""Two real ``keel server`` processes sharing PostgreSQL and Redis serve one deployment:
the same arm per routing key in both, a rollback made through one reaches the other within
a second, and the deployment's status counts both replicas (R-DEP-06)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from tests.serving.conftest import Churn, register, unique
from tests.serving.test_predlog_durability import keel_server

from keel.config import Settings
from keel.services import open_services

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_two_servers_agree_on_arms_and_a_rollback_reaches_both_within_a_second(
    tmp_path: Path, churn: Churn, postgres_schema_url: str, redis_url: str
) -> None:
    settings = Settings(
        home=tmp_path / "keel", database_url=postgres_schema_url, redis_url=redis_url
    )
    model, name = unique("dep"), unique("live")
    example = churn.train[churn.features][:5]
    register(settings, model, churn.small, example)
    register(settings, model, churn.large, example)
    services = open_services(settings)
    try:
        services.deployments.create(
            {
                "name": name,
                "model": model,
                "strategy": "ab",
                "arms": [
                    {"version": 1, "role": "primary", "weight": 50},
                    {"version": 2, "role": "challenger", "weight": 50},
                ],
            }
        )
    finally:
        services.close()
    env = {"KEEL_DATABASE_URL": postgres_schema_url, "KEEL_REDIS_URL": redis_url}
    rows = churn.rows(1)
    keys = [f"customer-{i}" for i in range(60)]

    def arms(http: httpx.Client) -> list[str]:
        path = f"/v1/deployments/{name}/predict"
        return [
            http.post(path, json={"instances": rows, "routing_key": k}).json()["arm"] for k in keys
        ]

    with (
        keel_server(settings.home, tmp_path / "a.log", **env) as (port_a, _),
        keel_server(settings.home, tmp_path / "b.log", **env) as (port_b, _),
        httpx.Client(base_url=f"http://127.0.0.1:{port_a}", timeout=10) as a,
        httpx.Client(base_url=f"http://127.0.0.1:{port_b}", timeout=10) as b,
    ):
        on_a = arms(a)
        assert set(on_a) == {"primary", "challenger"}
        assert arms(b) == on_a  # same key, same arm, in another process
        status = a.get(f"/v1/deployments/{name}").json()
        assert len(status["replicas"]) == 2 and status["complete"] is True
        moved = keys[on_a.index("challenger")]  # a key the rollback takes off the challenger
        body = {"instances": rows, "routing_key": moved}
        assert a.post(f"/v1/deployments/{name}/rollback", json={}).status_code == 200
        rolled_at = time.monotonic()
        while b.post(f"/v1/deployments/{name}/predict", json=body).json()["arm"] != "primary":
            assert time.monotonic() - rolled_at < 1.0, "replica b still on the challenger"
        assert set(arms(b)) == {"primary"} and set(arms(a)) == {"primary"}
        deadline = time.monotonic() + 5
        while True:  # both replicas report the rolled-back state (R-DEP-06)
            status = b.get(f"/v1/deployments/{name}").json()
            versions = {r["state_version"] for r in status["replicas"]}
            if status["complete"] and versions == {status["version"]}:
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        served = a.get("/v1/serving/status").json()["deployments"]["routes"][name]
        assert served["arms"] == {"primary": {"role": "primary", "version": 1, "weight": 100.0}}
