"""The prediction cache and its four invalidations: TTL, version, event (pub/sub), manual."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import numpy as np
import pytest
from tests.serving.conftest import Churn, Live, live_gateway, register, set_alias, unique
from typer.testing import CliRunner

from keel.cli.main import app as cli_app
from keel.config import Settings
from keel.serving.events import publish_invalidation

runner = CliRunner()


def ask(live: Live, path: str, rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{live.url}{path}", json={"instances": rows, **extra}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def churn_model(churn: Churn, make_settings: Callable[..., Settings]) -> Iterator[Any]:
    """A factory: settings overrides → (settings, model name) with v1 small and v2 large."""

    def build(**overrides: Any) -> tuple[Settings, str]:
        settings = make_settings(**overrides)
        name = unique("cached")
        example = churn.train[churn.features].head(5)
        register(settings, name, churn.small, example)
        register(settings, name, churn.large, example)
        set_alias(settings, name, "champion", 1)
        return settings, name

    yield build


def test_ttl_expires_entries_per_model(churn: Churn, churn_model: Any) -> None:
    settings, name = churn_model(serving_cache_ttl_s=3600)
    settings = settings.model_copy(update={"serving_cache_ttl_by_model": {name: 0.4}})
    with live_gateway(settings) as live:
        rows = churn.rows(1)
        assert ask(live, f"/v1/models/{name}/1/predict", rows)["cached"] is False
        assert ask(live, f"/v1/models/{name}/1/predict", rows)["cached"] is True
        time.sleep(0.5)
        assert ask(live, f"/v1/models/{name}/1/predict", rows)["cached"] is False


def test_alias_move_never_serves_the_old_versions_entries(churn: Churn, churn_model: Any) -> None:
    settings, name = churn_model(serving_alias_refresh_ms=0)
    rows = churn.rows(2, start=5)
    frame = churn.test[churn.features].iloc[5:7]
    with live_gateway(settings) as live:
        path = f"/v1/models/{name}@champion/predict"
        ask(live, path, rows)
        assert ask(live, path, rows) | {"request_id": None} == {
            "predictions": churn.small.predict(frame).tolist(),
            "model": name,
            "version": 1,
            "request_id": None,
            "cached": True,
            "fallback": False,
        }
        set_alias(settings, name, "champion", 2)
        seen = []
        deadline = time.monotonic() + 10
        while not seen or seen[-1]["version"] != 2:
            assert time.monotonic() < deadline, "the alias move was never served"
            seen.append(ask(live, path, rows))
        # until the switch, answers came from v1 and said so; the first v2 answer is computed
        assert all(a["version"] == 1 for a in seen[:-1])
        assert seen[-1]["cached"] is False
        expected = churn.large.predict_proba(frame)
        answer = ask(live, path, rows, probabilities=True)
        assert answer["version"] == 2
        np.testing.assert_allclose(answer["probabilities"], expected, rtol=1e-9)
        assert live.gateway.status()["aliases"][f"{name}@champion"]["serving"] == 2


def test_manual_invalidation_over_the_api_and_the_cli(churn: Churn, churn_model: Any) -> None:
    settings, name = churn_model()
    rows = churn.rows(1, start=20)
    with live_gateway(settings) as live:
        v1, v2 = f"/v1/models/{name}/1/predict", f"/v1/models/{name}/2/predict"

        def fill() -> None:
            ask(live, v1, rows)
            ask(live, v2, rows)
            assert ask(live, v1, rows)["cached"] and ask(live, v2, rows)["cached"]

        fill()
        dropped = httpx.post(
            f"{live.url}/v1/cache/invalidate", json={"model": name, "version": 2}
        ).json()
        assert dropped == {"dropped": 1}
        assert ask(live, v1, rows)["cached"] is True
        assert ask(live, v2, rows)["cached"] is False
        fill()
        result = runner.invoke(cli_app, ["cache", "invalidate", name, "--server", live.url])
        assert result.exit_code == 0, result.output
        assert "2 cached prediction(s) dropped" in result.output
        assert ask(live, v1, rows)["cached"] is False
        fill()
        everything = runner.invoke(
            cli_app, ["cache", "invalidate", "--all", "--json", "--server", live.url]
        )
        assert everything.exit_code == 0 and '"dropped": 2' in everything.output
        bad = httpx.post(f"{live.url}/v1/cache/invalidate", json={"version": 2})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "model"
        unknown = httpx.post(f"{live.url}/v1/cache/invalidate", json={"models": "x"})
        assert unknown.status_code == 422
        assert unknown.json()["error"]["field"] == "models"
        # #15.24: like predict, the body is JSON whatever the Content-Type (curl -d).
        fill()
        form = httpx.post(
            f"{live.url}/v1/cache/invalidate",
            content=b'{"model": "%s", "version": 2}' % name.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 200 and form.json() == {"dropped": 1}, form.text
        broken = httpx.post(f"{live.url}/v1/cache/invalidate", content=b"model=x")
        assert broken.status_code == 400, broken.text  # not JSON: as on every route (#15.8)
        assert broken.json()["error"] == {**broken.json()["error"], "code": "bad_request"}
        assert broken.json()["error"]["field"] == "body"
    mixed = runner.invoke(cli_app, ["cache", "invalidate", name, "--all"])
    assert mixed.exit_code == 2 and "all" in mixed.output


def _wait_for_events(live: Live, count: int) -> None:
    deadline = time.monotonic() + 5
    while live.gateway.status()["events_applied"] < count:
        assert time.monotonic() < deadline, "the invalidation event never arrived"
        time.sleep(0.02)


@pytest.mark.redis
def test_entity_event_reaches_every_replica_over_pubsub(
    churn: Churn, churn_model: Any, redis_url: str
) -> None:
    # in-process caches on two gateways; Redis only carries the events
    settings, name = churn_model(redis_url=redis_url, serving_cache_backend="memory")
    rows = churn.rows(2, start=30)
    path = f"/v1/models/{name}/1/predict"
    with ExitStack() as stack:
        replicas = [stack.enter_context(live_gateway(settings)) for _ in range(2)]
        for live in replicas:
            ask(live, path, rows[:1], entity_keys=["alice"])
            ask(live, path, rows[1:], entity_keys=["bob"])
        publish_invalidation(redis_url, model=name, entity="alice")
        for live in replicas:
            _wait_for_events(live, 1)
            assert ask(live, path, rows[:1])["cached"] is False
            assert ask(live, path, rows[1:])["cached"] is True
        # a manual invalidation on one replica is applied by the other
        dropped = httpx.post(f"{replicas[0].url}/v1/cache/invalidate", json={"model": name})
        assert dropped.json()["dropped"] == 2
        _wait_for_events(replicas[1], 2)
        assert ask(replicas[1], path, rows[1:])["cached"] is False
        # and the CLI without a server publishes straight to Redis
        ask(replicas[0], path, rows[1:])
        env = {"KEEL_REDIS_URL": redis_url, "KEEL_HOME": str(settings.home)}
        result = runner.invoke(cli_app, ["cache", "invalidate", "--all"], env=env)
        assert result.exit_code == 0, result.output
        _wait_for_events(replicas[0], 1)
        assert ask(replicas[0], path, rows[1:])["cached"] is False


@pytest.mark.redis
def test_redis_cache_is_shared_and_invalidated_once_for_all(
    churn: Churn, churn_model: Any, redis_url: str
) -> None:
    settings, name = churn_model(redis_url=redis_url)
    rows = churn.rows(2, start=40)
    path = f"/v1/models/{name}/1/predict"
    with ExitStack() as stack:
        first, second = (stack.enter_context(live_gateway(settings)) for _ in range(2))
        assert first.gateway.status()["cache"]["backend"] == "RedisCache"
        computed = ask(first, path, rows, entity_keys=["carol", "dave"], probabilities=True)
        shared = ask(second, path, rows, probabilities=True)
        assert computed["cached"] is False and shared["cached"] is True
        assert shared["probabilities"] == computed["probabilities"]
        publish_invalidation(redis_url, model=name, entity="carol")
        answers = [ask(second, path, [row]) for row in rows]
        assert [a["cached"] for a in answers] == [False, True]
        time.sleep(0.05)
        httpx.post(f"{second.url}/v1/cache/invalidate", json={"model": name, "version": 1})
        assert ask(first, path, rows[1:])["cached"] is False


@pytest.mark.redis
def test_rate_limit_counters_are_shared_through_redis(
    churn: Churn, churn_model: Any, redis_url: str
) -> None:
    settings, name = churn_model(redis_url=redis_url, serving_rate_limit="3/minute")
    client = {"x-keel-client": unique("shared-client")}
    path = f"/v1/models/{name}/1/predict"
    body = {"instances": churn.rows(1)}
    with ExitStack() as stack:
        first, second = (stack.enter_context(live_gateway(settings)) for _ in range(2))
        codes = [
            httpx.post(f"{live.url}{path}", json=body, headers=client, timeout=30).status_code
            for live in (first, second, first, second)
        ]
    assert codes == [200, 200, 200, 429]


@pytest.mark.redis
def test_alias_event_switches_replicas_without_waiting_for_the_refresh(
    churn: Churn, churn_model: Any, redis_url: str
) -> None:
    settings, name = churn_model(redis_url=redis_url, serving_alias_refresh_ms=600_000)
    settings = settings.model_copy(update={"serving_preload": f"{name}@champion"})
    with live_gateway(settings) as live:
        set_alias(settings, name, "champion", 2)
        publish_invalidation(redis_url, model=name, alias="champion")
        deadline = time.monotonic() + 10
        while live.gateway.status()["aliases"][f"{name}@champion"]["serving"] != 2:
            assert time.monotonic() < deadline, "the alias event did not move the replica"
            time.sleep(0.05)
        answer = ask(live, f"/v1/models/{name}@champion/predict", churn.rows(1))
        assert answer["version"] == 2 and answer["cached"] is False
