"""The feature store through ``keel.Client``: the same answers and errors embedded and over HTTP.

``client`` (tests/conftest.py) runs every test twice: on the embedded transport
and against a real uvicorn server.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest
from tests.features.conftest import ACCOUNT, START, USAGE, Seed
from tests.features.test_offline import assert_same, entity_rows, reference

from keel import Client
from keel.errors import InvalidInput, NotFound


@pytest.fixture
def fclient(client: Client, seed: Seed) -> Client:
    plan = client.apply_features(seed.defs)
    assert {item.action for item in plan.items} == {"add"}
    return client


def test_apply_is_planned_and_listed(fclient: Client, seed: Seed) -> None:
    assert not fclient.plan_features(seed.defs).has_changes  # applied already: nothing to do
    views = fclient.list_feature_views()
    assert sorted(v.name for v in views) == ["customer_account", "customer_usage"]
    assert views[0].source.path.endswith(".parquet")
    kinds = {d.kind for d in fclient.list_feature_definitions()}
    assert kinds == {"entity", "feature_view", "feature_service"}


def test_historical_is_point_in_time_correct(fclient: Client, seed: Seed) -> None:
    entity = entity_rows(500, 50)
    entity.index = pd.RangeIndex(1000, 1500)  # kept as given, as the embedded store does
    result = fclient.get_historical_features(entity, ["customer_account:*", "customer_usage:*"])
    assert isinstance(result, pd.DataFrame)
    pd.testing.assert_frame_equal(result[entity.columns], entity)
    assert_same(result, reference(entity, seed.account, ["customer_id"], ACCOUNT, 3 * 86400))
    assert_same(result, reference(entity, seed.usage, ["customer_id"], USAGE, 6 * 3600))
    assert result["tenure_days"].notna().sum() > 200
    assert result["plan_type"].dtype == "str"


def test_historical_by_service_as_arrow(fclient: Client) -> None:
    entity = pa.Table.from_pandas(entity_rows(50, 50), preserve_index=False)
    result = fclient.get_historical_features(entity, "churn_v1", as_arrow=True)
    assert isinstance(result, pa.Table)
    assert result.column_names == [
        "customer_id",
        "event_timestamp",
        *ACCOUNT,
        "calls_last_30d",
    ]
    assert result.schema.field("tenure_days").type == pa.int64()


def test_unknown_features_are_named(fclient: Client) -> None:
    with pytest.raises(NotFound) as caught:
        fclient.get_historical_features(entity_rows(5, 5), ["customer_usage:nope", "x:y"])
    assert str(caught.value) == "unknown features: customer_usage:nope, x:y"
    assert caught.value.field == "features"
    assert caught.value.detail["unknown"] == ["customer_usage:nope", "x:y"]
    with pytest.raises(NotFound, match="unknown features: x:y"):
        fclient.get_online_features([{"customer_id": 1}], ["x:y"])


def test_missing_timestamp_column_is_named(fclient: Client) -> None:
    entity = entity_rows(5, 5).rename(columns={"event_timestamp": "ts"})
    with pytest.raises(InvalidInput) as caught:
        fclient.get_historical_features(entity, ["customer_usage:calls_last_30d"])
    assert caught.value.field == "event_timestamp"
    assert str(caught.value) == (
        "entity rows have no timestamp column 'event_timestamp' (columns: customer_id, ts)"
    )
    # Named explicitly, it works the same way on both transports.
    result = fclient.get_historical_features(
        entity, ["customer_usage:calls_last_30d"], timestamp_column="ts"
    )
    assert len(result) == 5


def test_missing_join_key_and_bad_engine(fclient: Client) -> None:
    entity = pd.DataFrame({"event_timestamp": [START]})
    with pytest.raises(InvalidInput) as caught:
        fclient.get_historical_features(entity, ["customer_usage:calls_last_30d"])
    assert caught.value.field == "customer_id"
    with pytest.raises(InvalidInput) as caught:
        fclient.get_historical_features(
            entity_rows(5, 5),
            ["customer_usage:calls_last_30d"],
            engine="spark",  # type: ignore[arg-type]
        )
    assert caught.value.field == "engine"
    assert str(caught.value) == "unknown retrieval engine 'spark': use one of local, ray"


def test_push_then_online(fclient: Client) -> None:
    now = pd.Timestamp.now(tz="UTC").floor("s")
    rows = pd.DataFrame(
        {
            "customer_id": [4, 5],
            "event_timestamp": [now, now],
            "calls_last_30d": [2.5, float("nan")],
            "data_usage_gb_last_30d": [1.0, 2.0],
            "support_tickets_last_30d": [0, 1],
            "login_count_last_7d": [3, 4],
            "features_used_count": [4, 5],
        }
    )
    assert fclient.push_features("customer_usage", rows) == 2
    got = fclient.get_online_features(
        [{"customer_id": 4}, {"customer_id": 5}, {"customer_id": 999}],
        ["customer_usage:calls_last_30d", "customer_usage:support_tickets_last_30d"],
    )
    assert got[0] == {"customer_id": 4, "calls_last_30d": 2.5, "support_tickets_last_30d": 0}
    assert got[1]["support_tickets_last_30d"] == 1 and got[1]["calls_last_30d"] is None
    assert got[2] == {"customer_id": 999, "calls_last_30d": None, "support_tickets_last_30d": None}
    with pytest.raises(NotFound, match="unknown feature view 'nope'"):
        fclient.push_features("nope", rows)


def test_materialize_then_online(fclient: Client, seed: Seed) -> None:
    written = fclient.materialize_features("2026-01-01", "2026-01-06", ["customer_account"])
    assert written == {"customer_account": 50}
    last = seed.account[seed.account.event_timestamp == seed.account.event_timestamp.max()]
    expected = int(last[last.customer_id == 3]["tenure_days"].iloc[0])
    # The online value is the latest one; the TTL (3 d) counts from now, so look only at
    # whether the value read back is the stored one when it is still fresh enough.
    stored = fclient.get_online_features([{"customer_id": 3}], ["customer_account:tenure_days"])
    assert stored[0]["tenure_days"] in (expected, None)
    again = fclient.materialize_features_incremental("2026-01-06", ["customer_account"])
    assert again == {"customer_account": 0}
    with pytest.raises(InvalidInput) as caught:
        fclient.materialize_features("2026-01-06", "2026-01-01")
    assert caught.value.field == "start"
