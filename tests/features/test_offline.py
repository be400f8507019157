"""Point-in-time retrieval equals pandas.merge_asof (with TTL), and bad input is named."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.features.conftest import ACCOUNT, START, USAGE, Seed

from keel.config import Settings
from keel.errors import InvalidInput, NotFound
from keel.features import Entity, FeatureStore, FeatureView, FileSource
from keel.services import open_services


def reference(
    entity: pd.DataFrame,
    source: pd.DataFrame,
    keys: Sequence[str],
    features: Sequence[str],
    ttl_s: int,
    ts: str = "event_timestamp",
) -> pd.DataFrame:
    """The point-in-time rule written with pandas.merge_asof (stable sorts keep file order)."""
    left = entity[list(keys)].copy()
    left["__row"] = np.arange(len(entity))
    left["__t"] = pd.to_datetime(entity[ts], utc=True).dt.as_unit("us").to_numpy()
    right = source[list(keys) + list(features)].copy()
    right["__t"] = pd.to_datetime(source[ts], utc=True).dt.as_unit("us").to_numpy()
    merged = pd.merge_asof(
        left.sort_values("__t", kind="stable"),
        right.sort_values("__t", kind="stable"),
        on="__t",
        by=list(keys),
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(seconds=ttl_s) if ttl_s else None,
    )
    return merged.sort_values("__row")[list(features)].reset_index(drop=True)


def assert_same(result: pd.DataFrame, expected: pd.DataFrame) -> None:
    got = result[list(expected.columns)].reset_index(drop=True)
    for column in expected.columns:
        left, right = got[column], expected[column]
        assert (left.isna() == right.isna()).all(), column
        mask = ~right.isna()
        assert (left[mask].to_numpy() == right[mask].to_numpy()).all(), column


def entity_rows(n: int, customers: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, customers + 5, n).astype(np.int64),
            "event_timestamp": START + pd.to_timedelta(rng.integers(-3600, 6 * 86400, n), unit="s"),
        }
    )


def test_historical_matches_merge_asof_on_seed(fs: FeatureStore, seed: Seed) -> None:
    entity = entity_rows(2_000, 50)
    result = fs.get_historical_features(
        entity, ["customer_account:*", "customer_usage:*"], timestamp_column="event_timestamp"
    )
    assert list(result.columns[:2]) == ["customer_id", "event_timestamp"]
    pd.testing.assert_frame_equal(result[entity.columns], entity)  # entity rows unchanged
    assert_same(result, reference(entity, seed.account, ["customer_id"], ACCOUNT, 3 * 86400))
    assert_same(result, reference(entity, seed.usage, ["customer_id"], USAGE, 6 * 3600))
    assert result["tenure_days"].notna().sum() > 1000


def test_historical_has_no_value_from_the_future(lite_fs: FeatureStore, seed: Seed) -> None:
    entity = pd.DataFrame(
        {"customer_id": [7, 7], "event_timestamp": [START - pd.Timedelta("1s"), START]}
    )
    result = lite_fs.get_historical_features(entity, ["customer_account:tenure_days"])
    first = seed.account[(seed.account.customer_id == 7) & (seed.account.event_timestamp == START)]
    assert pd.isna(result["tenure_days"][0])  # one second before the first row: nothing
    assert result["tenure_days"][1] == first["tenure_days"].iloc[0]  # exactly at: visible


def test_historical_ttl_gives_null(lite_fs: FeatureStore) -> None:
    entity = pd.DataFrame(
        {
            "customer_id": [1, 1],
            # last usage row is at START + 119h; TTL 6h
            "event_timestamp": [START + pd.Timedelta("125h"), START + pd.Timedelta("125h1s")],
        }
    )
    result = lite_fs.get_historical_features(entity, ["customer_usage:calls_last_30d"])
    assert result["calls_last_30d"].notna().tolist() == [True, False]


def test_historical_arrow_in_arrow_out(lite_fs: FeatureStore) -> None:
    entity = pa.Table.from_pandas(entity_rows(50, 50), preserve_index=False)
    result = lite_fs.get_historical_features(entity, "churn_v1", as_arrow=True)
    assert isinstance(result, pa.Table)
    assert result.schema.field("tenure_days").type == pa.int64()
    assert result.column_names[-1] == "calls_last_30d"


def test_historical_naive_times_are_utc(lite_fs: FeatureStore) -> None:
    aware = entity_rows(200, 50)
    naive = aware.assign(event_timestamp=aware.event_timestamp.dt.tz_localize(None))
    berlin = aware.assign(event_timestamp=aware.event_timestamp.dt.tz_convert("Europe/Berlin"))
    results = [
        lite_fs.get_historical_features(frame, ["customer_usage:*"])[USAGE]
        for frame in (aware, naive, berlin)
    ]
    pd.testing.assert_frame_equal(results[0], results[1])
    pd.testing.assert_frame_equal(results[0], results[2])


def test_historical_rejects_mixed_naive_and_aware(lite_fs: FeatureStore) -> None:
    entity = pd.DataFrame(
        {
            "customer_id": [1, 2],
            "event_timestamp": pd.Series(
                [pd.Timestamp("2026-01-02"), pd.Timestamp("2026-01-02", tz="UTC")], dtype=object
            ),
        }
    )
    with pytest.raises(InvalidInput, match="mixes timezone-aware and naive") as info:
        lite_fs.get_historical_features(entity, ["customer_usage:calls_last_30d"])
    assert info.value.field == "event_timestamp"


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (pd.DataFrame({"customer_id": [1]}), "event_timestamp"),
        (pd.DataFrame({"customer_id": [1], "event_timestamp": [pd.NaT]}), "event_timestamp"),
        (pd.DataFrame({"event_timestamp": [START]}), "customer_id"),
        (pd.DataFrame({"customer_id": ["x"], "event_timestamp": [START]}), "customer_id"),
    ],
    ids=["no-timestamp-column", "null-timestamp", "no-key", "key-wrong-type"],
)
def test_historical_rejects_bad_entity_rows(
    lite_fs: FeatureStore, frame: pd.DataFrame, field: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        lite_fs.get_historical_features(frame, ["customer_usage:calls_last_30d"])
    assert info.value.field == field


def test_historical_unknown_features_named(lite_fs: FeatureStore) -> None:
    with pytest.raises(NotFound) as info:
        lite_fs.get_historical_features(
            entity_rows(3, 5), ["customer_usage:nope", "ghost:x", "customer_usage:calls_last_30d"]
        )
    assert info.value.detail["unknown"] == ["customer_usage:nope", "ghost:x"]
    assert "customer_usage:nope" in info.value.message


def test_historical_missing_source_file(lite_fs: FeatureStore, seed: Seed) -> None:
    seed.usage_path.unlink()
    with pytest.raises(InvalidInput, match="is missing") as info:
        lite_fs.get_historical_features(entity_rows(3, 5), ["customer_usage:calls_last_30d"])
    assert info.value.field == "customer_usage.source.path"


def test_historical_changed_source_schema(lite_fs: FeatureStore, seed: Seed) -> None:
    seed.usage.drop(columns=["login_count_last_7d"]).to_parquet(seed.usage_path)
    with pytest.raises(InvalidInput, match="login_count_last_7d") as info:
        lite_fs.get_historical_features(entity_rows(3, 5), ["customer_usage:calls_last_30d"])
    assert info.value.field == "customer_usage.login_count_last_7d"
    seed.usage.assign(login_count_last_7d="many").to_parquet(seed.usage_path)
    with pytest.raises(InvalidInput, match="VARCHAR, the definition says int64"):
        lite_fs.get_historical_features(entity_rows(3, 5), ["customer_usage:calls_last_30d"])


def _tie_store(tmp_path: Path, frame: pd.DataFrame, fmt: str, created: bool) -> FeatureStore:
    path = tmp_path / f"ties.{fmt}"
    frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
    store = FeatureStore(Settings(home=tmp_path / "keel"))
    source = FileSource(
        path=str(path), format=fmt, created_timestamp_field="created" if created else None
    )
    store.apply(
        [
            Entity(name="customer", join_keys=["customer_id"]),
            FeatureView(
                name="v",
                entities=["customer"],
                source=source,
                features=[{"name": "x", "dtype": "int64"}],
            ),
        ]
    )
    return store


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_tie_rule_last_row_in_source_wins(tmp_path: Path, fmt: str) -> None:
    at = pd.Timestamp("2026-01-01T00:00:00Z")
    frame = pd.DataFrame({"customer_id": [1, 1, 1], "event_timestamp": [at] * 3, "x": [10, 30, 20]})
    store = _tie_store(tmp_path, frame, fmt, created=False)
    result = store.get_historical_features(
        pd.DataFrame({"customer_id": [1], "event_timestamp": [at]}), ["v:x"]
    )
    store.close()
    assert result["x"].tolist() == [20]  # same keys and time: the last row of the file


def test_tie_rule_created_timestamp_wins(tmp_path: Path) -> None:
    at = pd.Timestamp("2026-01-01T00:00:00Z")
    frame = pd.DataFrame(
        {
            "customer_id": [1, 1],
            "event_timestamp": [at, at],
            "created": [at + pd.Timedelta("2h"), at + pd.Timedelta("1h")],
            "x": [10, 20],
        }
    )
    store = _tie_store(tmp_path, frame, "parquet", created=True)
    result = store.get_historical_features(
        pd.DataFrame({"customer_id": [1], "event_timestamp": [at]}), ["v:x"]
    )
    store.close()
    assert result["x"].tolist() == [10]  # the later created timestamp, not file order


@pytest.fixture
def pit_store(tmp_path: Path) -> Iterator[tuple[FeatureStore, Path]]:
    path = tmp_path / "pit.parquet"
    services = open_services(Settings(home=tmp_path / "keel"))
    store = FeatureStore(services)
    entity = Entity(name="k", join_keys=["k"])
    views = [
        FeatureView(
            name=f"v{ttl}",
            entities=["k"],
            ttl=ttl,
            source=FileSource(path=str(path)),
            features=[{"name": "x", "dtype": "int64"}, {"name": "y", "dtype": "float64"}],
        )
        for ttl in (0, 300, 1200)
    ]
    store.apply([entity, *views])
    yield store, path
    store.close()
    services.close()


rows = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 60), st.integers(-5, 5)), min_size=1, max_size=40
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(source=rows, entities=rows, ttl=st.sampled_from([0, 300, 1200]))
def test_historical_equals_merge_asof_property(
    pit_store: tuple[FeatureStore, Path],
    source: list[tuple[int, int, int]],
    entities: list[tuple[int, int, int]],
    ttl: int,
) -> None:
    store, path = pit_store
    base = pd.Timestamp("2026-03-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "k": [k for k, _, _ in source],
            "event_timestamp": [base + pd.Timedelta(minutes=m) for _, m, _ in source],
            "x": [v for _, _, v in source],
            "y": [v / 4 for _, _, v in source],
        }
    )
    frame.to_parquet(path)
    entity = pd.DataFrame(
        {
            "k": [k for k, _, _ in entities],
            "event_timestamp": [base + pd.Timedelta(minutes=m, seconds=s) for _, m, s in entities],
        }
    )
    result = store.get_historical_features(entity, [f"v{ttl}:x", f"v{ttl}:y"])
    assert_same(result, reference(entity, frame, ["k"], ["x", "y"], ttl))


def test_csv_glob_source_skips_rows_without_event_time(tmp_path: Path) -> None:
    at = pd.Timestamp("2026-01-01T00:00:00Z")
    pd.DataFrame({"customer_id": [1, 1], "event_timestamp": [at, None], "x": [5, 9]}).to_csv(
        tmp_path / "part_1.csv", index=False
    )
    pd.DataFrame({"customer_id": [2], "event_timestamp": [at], "x": [7]}).to_csv(
        tmp_path / "part_2.csv", index=False
    )
    store = FeatureStore(Settings(home=tmp_path / "keel"))
    store.apply(
        [
            Entity(name="customer", join_keys=["customer_id"]),
            FeatureView(
                name="v",
                entities=["customer"],
                source=FileSource(path=str(tmp_path / "part_*.csv"), format="csv"),
                features=[{"name": "x", "dtype": "int64"}],
            ),
        ]
    )
    entity = pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [at, at]})
    result = store.get_historical_features(entity, ["v:x"])
    store.close()
    assert result["x"].tolist() == [5, 7]


def test_write_historical_features_parquet_to_parquet(
    lite_fs: FeatureStore, tmp_path: Path
) -> None:
    entity = entity_rows(500, 50).assign(label=np.arange(500) % 2)
    entity.to_parquet(tmp_path / "entity.parquet")
    written = lite_fs.write_historical_features(
        tmp_path / "entity.parquet", "churn_v1", tmp_path / "out" / "train.parquet"
    )
    assert written == 500
    streamed = pd.read_parquet(tmp_path / "out" / "train.parquet")
    in_memory = lite_fs.get_historical_features(entity, "churn_v1")
    assert list(streamed.columns) == list(in_memory.columns)
    assert_same(streamed, in_memory[ACCOUNT + ["calls_last_30d"]])
    assert streamed["label"].tolist() == entity["label"].tolist()


def test_write_historical_features_rejects_null_times(
    lite_fs: FeatureStore, tmp_path: Path
) -> None:
    pd.DataFrame({"customer_id": [1, 2], "event_timestamp": [START, pd.NaT]}).to_parquet(
        tmp_path / "e.parquet"
    )
    with pytest.raises(InvalidInput, match="1 entity rows have no 'event_timestamp'"):
        lite_fs.write_historical_features(tmp_path / "e.parquet", "churn_v1", tmp_path / "o.pq")
    assert not (tmp_path / "o.pq").exists()
