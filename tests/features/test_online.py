"""Online store: materialisation, lookups, pushes, freshness, on SQLite and real Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from tests.features.conftest import ACCOUNT, START, Seed

from keel.config import Settings
from keel.errors import InvalidInput, NotFound
from keel.features import FeatureStore
from keel.features.online import RedisOnlineStore, SqliteOnlineStore
from keel.services import Services, open_services

NOW = (START + pd.Timedelta("4D12h")).timestamp()  # 2026-01-05 12:00 UTC


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def online(services: Services, seed: Seed, clock: Clock) -> Iterator[FeatureStore]:
    store = FeatureStore(services, clock=clock)
    store.apply(seed.defs)
    yield store
    store.close()


def latest(frame: pd.DataFrame, customer: int, until: pd.Timestamp) -> pd.Series:
    rows = frame[(frame.customer_id == customer) & (frame.event_timestamp <= until)]
    return rows.sort_values("event_timestamp").iloc[-1]


def test_materialize_then_lookup(online: FeatureStore, seed: Seed) -> None:
    end = START + pd.Timedelta("4D12h")
    written = online.materialize(START.to_pydatetime(), end.to_pydatetime())
    assert written == {"customer_account": 50, "customer_usage": 50}
    rows = online.get_online_features([{"customer_id": 3}, {"customer_id": 999}], "churn_v1")
    expected = latest(seed.account, 3, end)
    assert rows[0]["customer_id"] == 3
    assert [rows[0][f] for f in ACCOUNT] == [
        expected[f].item() if hasattr(expected[f], "item") else expected[f] for f in ACCOUNT
    ]
    assert rows[0]["calls_last_30d"] == latest(seed.usage, 3, end)["calls_last_30d"]
    assert set(rows[1].values()) == {999, None}


def test_materialize_window_excludes_later_rows(online: FeatureStore, seed: Seed) -> None:
    online.materialize("2026-01-01T00:00:00", "2026-01-02T00:00:00", ["customer_account"])
    (row,) = online.get_online_features([{"customer_id": 5}], ["customer_account:tenure_days"])
    assert row["tenure_days"] is None  # Jan 2 value is older than the 3d TTL at "now" (Jan 5 12h)
    online.clock.now = (START + pd.Timedelta("1D1h")).timestamp()  # type: ignore[attr-defined]
    (row,) = online.get_online_features([{"customer_id": 5}], ["customer_account:tenure_days"])
    assert row["tenure_days"] == latest(seed.account, 5, START + pd.Timedelta("1D"))["tenure_days"]


def test_online_ttl_expires_values(online: FeatureStore, clock: Clock) -> None:
    online.materialize("2026-01-01", "2026-01-05T12:00:00", ["customer_usage"])
    ref = ["customer_usage:login_count_last_7d"]
    assert (
        online.get_online_features([{"customer_id": 1}], ref)[0]["login_count_last_7d"] is not None
    )
    clock.now += 6 * 3600 + 1  # newest row is at 12:00, TTL 6h
    assert online.get_online_features([{"customer_id": 1}], ref)[0]["login_count_last_7d"] is None


def test_materialize_incremental_continues(online: FeatureStore) -> None:
    first = online.materialize_incremental("2026-01-03T00:00:00")
    assert first == {"customer_account": 50, "customer_usage": 50}
    (state,) = [f for f in online.freshness() if f.view == "customer_usage"]
    assert state.materialized_until_ms == int(
        pd.Timestamp("2026-01-03", tz="UTC").timestamp() * 1000
    )
    online.materialize_incremental("2026-01-05T12:00:00")
    (state,) = [f for f in online.freshness() if f.view == "customer_usage"]
    assert state.rows_written == 100
    assert state.age_s == 0 and state.is_stale is False


def test_freshness_stale_against_sla(online: FeatureStore, clock: Clock) -> None:
    assert {f.view: f.is_stale for f in online.freshness()} == {
        "customer_account": True,
        "customer_usage": True,  # never materialised
    }
    online.materialize("2026-01-05", "2026-01-05T12:00:00")
    clock.now += 3 * 3600
    fresh = {f.view: f for f in online.freshness()}
    assert fresh["customer_usage"].is_stale is True  # SLA 2h
    assert fresh["customer_account"].is_stale is False  # SLA 1d
    assert fresh["customer_usage"].age_s == pytest.approx(3 * 3600)


def test_push_updates_and_calls_invalidation(online: FeatureStore, clock: Clock) -> None:
    seen: list[tuple[str, list[dict[str, Any]]]] = []
    online.add_invalidation_callback(lambda view, keys: seen.append((view, keys)))
    at = pd.Timestamp(clock.now, unit="s", tz="UTC")
    row = {
        "customer_id": 8,
        "event_timestamp": at,
        "calls_last_30d": 1.5,
        "data_usage_gb_last_30d": 2.0,
        "support_tickets_last_30d": 3,
        "login_count_last_7d": 4,
        "features_used_count": 5,
    }
    assert online.push("customer_usage", pd.DataFrame([row])) == 1
    assert seen == [("customer_usage", [{"customer_id": 8}])]
    older = dict(row, event_timestamp=at - pd.Timedelta("1h"), calls_last_30d=99.0)
    online.push("customer_usage", pd.DataFrame([older]))  # older event time: ignored
    (got,) = online.get_online_features([{"customer_id": 8}], ["customer_usage:*"])
    assert got["calls_last_30d"] == 1.5 and got["features_used_count"] == 5
    assert next(f for f in online.freshness() if f.view == "customer_usage").last_push_at_ms


def test_push_bad_rows_write_nothing(online: FeatureStore, clock: Clock) -> None:
    at = pd.Timestamp(clock.now, unit="s", tz="UTC")
    good = {
        "customer_id": 9,
        "event_timestamp": at,
        "calls_last_30d": 1.0,
        "data_usage_gb_last_30d": 2.0,
        "support_tickets_last_30d": 3,
        "login_count_last_7d": 4,
        "features_used_count": 5,
    }
    bad = dict(good, customer_id=10, login_count_last_7d="four")
    with pytest.raises(InvalidInput, match="login_count_last_7d"):
        online.push("customer_usage", pd.DataFrame([good, bad]))
    with pytest.raises(InvalidInput, match="lack columns: features_used_count"):
        online.push(
            "customer_usage",
            pd.DataFrame([{k: v for k, v in good.items() if k != "features_used_count"}]),
        )
    with pytest.raises(InvalidInput, match="no timestamp"):
        online.push("customer_usage", pd.DataFrame([dict(good, event_timestamp=None)]))
    with pytest.raises(NotFound):
        online.push("nope", pd.DataFrame([good]))
    (got,) = online.get_online_features([{"customer_id": 9}], ["customer_usage:calls_last_30d"])
    assert got["calls_last_30d"] is None


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([{"id": 1}], "entity_rows[0].customer_id"),
        ([{"customer_id": "1"}], "entity_rows[0].customer_id"),
    ],
)
def test_online_bad_entity_rows(
    online: FeatureStore, rows: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        online.get_online_features(rows, ["customer_usage:calls_last_30d"])
    assert info.value.field == field


def test_online_unknown_features_not_found(online: FeatureStore) -> None:
    with pytest.raises(NotFound, match="customer_usage:x, y:z"):
        online.get_online_features([{"customer_id": 1}], ["customer_usage:x", "y:z"])


def test_online_usage_recorded_on_close(services: Services, seed: Seed, clock: Clock) -> None:
    store = FeatureStore(services, clock=clock)
    store.apply(seed.defs)
    store.get_online_features([{"customer_id": 1}], ["customer_usage:calls_last_30d"])
    store.close()
    usage = {(u.view, u.feature): u for u in store.sql.usage()}
    assert usage[("customer_usage", "calls_last_30d")].last_online_ms == int(clock.now * 1000)
    assert usage[("customer_usage", "features_used_count")].last_online_ms is None


def test_sqlite_store_newer_wins_and_nan_is_null(tmp_path: Any) -> None:
    from keel.features.models import ValueType
    from keel.features.online import OnlineTable

    table = OnlineTable(
        "v", (("k", ValueType.STRING),), (("x", ValueType.FLOAT64), ("b", ValueType.BOOL))
    )
    store = SqliteOnlineStore(tmp_path / "o.db")
    store.write(table, [(("a",), 10, (float("nan"), True))], 0)
    store.write(table, [(("a",), 5, (1.0, False))], 0)
    assert store.read(table, [("a",), ("b",)]) == [(10, (None, True)), None]
    store.close()


@pytest.mark.redis
def test_redis_online_store_end_to_end(redis_settings: Settings, seed: Seed) -> None:
    services = open_services(redis_settings)
    assert isinstance(services.features.online, RedisOnlineStore)  # KEEL_REDIS_URL → Redis
    # A key prefix of its own: the Redis server is shared with other tests.
    online = RedisOnlineStore(
        redis_settings.redis_url or "", prefix=f"keel:test:{uuid.uuid4().hex}"
    )
    store = FeatureStore(services, online=online, clock=Clock())
    store.apply(seed.defs)
    store.materialize("2026-01-01", "2026-01-05T12:00:00")
    rows = store.get_online_features([{"customer_id": c} for c in (3, 4, 999)], "churn_v1")
    end = START + pd.Timedelta("4D12h")
    assert rows[0]["plan_type"] == latest(seed.account, 3, end)["plan_type"]
    assert rows[1]["calls_last_30d"] == latest(seed.usage, 4, end)["calls_last_30d"]
    assert rows[1]["tenure_days"] == latest(seed.account, 4, end)["tenure_days"]
    assert rows[2]["tenure_days"] is None
    at = end + pd.Timedelta("1min")
    row = {
        "customer_id": 3,
        "event_timestamp": at,
        "calls_last_30d": 7.25,
        "data_usage_gb_last_30d": 0.0,
        "support_tickets_last_30d": 0,
        "login_count_last_7d": 1,
        "features_used_count": 2,
    }
    store.push("customer_usage", pd.DataFrame([row]))
    store.push("customer_usage", pd.DataFrame([dict(row, event_timestamp=end, calls_last_30d=1.0)]))
    (got,) = store.get_online_features([{"customer_id": 3}], ["customer_usage:calls_last_30d"])
    assert got["calls_last_30d"] == 7.25
    from keel.features._materialize import layout

    for view in store.catalog().views.values():
        online.drop(layout(view, store.catalog().entities))
    online.close()
    store.close()
    services.close()


@pytest.mark.redis
@pytest.mark.parametrize("opened", ["services", "standalone"])
def test_push_publishes_serving_invalidation(
    redis_settings: Settings, seed: Seed, opened: str
) -> None:
    """The composition root wires the callback for the shared store; a standalone
    ``FeatureStore(settings)`` (``keel features push``) wires the same one itself."""
    import redis

    from keel.serving.events import CHANNEL

    services = open_services(redis_settings) if opened == "services" else None
    store = services.features if services else FeatureStore(redis_settings)
    store.apply(seed.defs)
    subscriber = redis.Redis.from_url(redis_settings.redis_url or "").pubsub()
    subscriber.subscribe(CHANNEL)
    assert subscriber.get_message(timeout=5)["type"] == "subscribe"
    row = {
        "customer_id": 42,
        "event_timestamp": START,
        "calls_last_30d": 1.0,
        "data_usage_gb_last_30d": 2.0,
        "support_tickets_last_30d": 3,
        "login_count_last_7d": 4,
        "features_used_count": 5,
    }
    store.push("customer_usage", pd.DataFrame([row]))
    ours = None
    deadline = time.monotonic() + 10
    while ours is None and time.monotonic() < deadline:  # other tests publish here too
        message = subscriber.get_message(timeout=1)
        if message and message["type"] == "message":
            event = json.loads(message["data"])
            if event.get("kind") == "entity" and event.get("entity") == "42":
                ours = event
    subscriber.close()
    (services or store).close()
    assert ours is not None and ours.get("model") is None  # every model's cache for entity 42
