"""The in-memory as-of engine: multi-column and string keys, the rank fallback, source caching.

Every result is checked against ``pandas.merge_asof`` and against DuckDB's
``ASOF JOIN`` (``write_historical_features`` runs that engine).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tests.features.test_offline import assert_same, reference

from keel.config import Settings
from keel.features import Entity, FeatureStore, FeatureView, FileSource, _sources, offline
from keel.features._asof import entity_order, prepare

BASE = pd.Timestamp("2026-03-01", tz="UTC")


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _sources.clear_cache()
    yield
    _sources.clear_cache()


def _store(tmp_path: Path, frame: pd.DataFrame, keys: dict[str, str], ttl: int = 0) -> FeatureStore:
    path = tmp_path / "source.parquet"
    frame.to_parquet(path)
    features = [c for c in frame.columns if c not in keys and c != "event_timestamp"]
    dtypes = {"int64": "int64", "float64": "float64", "bool": "bool"}
    store = FeatureStore(Settings(home=tmp_path / "keel"))
    store.apply(
        [
            *(Entity(name=k, join_keys=[k], value_type=t) for k, t in keys.items()),
            FeatureView(
                name="v",
                entities=list(keys),
                ttl=ttl,
                source=FileSource(path=str(path)),
                features=[
                    {"name": f, "dtype": dtypes.get(str(frame[f].dtype), "string")}
                    for f in features
                ],
            ),
        ]
    )
    return store


def _duckdb_engine(store: FeatureStore, entity: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    entity_path, out = tmp_path / "entity.parquet", tmp_path / "out.parquet"
    entity.to_parquet(entity_path)
    store.write_historical_features(entity_path, ["v:*"], out)
    return pd.read_parquet(out)


def test_two_keys_one_a_string(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    n = 3_000
    shops = np.array(["north", "south", "east", "wést"])
    source = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 40, n),
            "shop": rng.choice(shops, n),
            "event_timestamp": BASE + pd.to_timedelta(rng.integers(0, 50_000, n) * 10, unit="s"),
            "spend": rng.gamma(2.0, 3.0, n),
            "visits": rng.integers(0, 9, n),
            "tier": rng.choice(["a", "b", None], n),
        }
    ).drop_duplicates(["customer_id", "shop", "event_timestamp"])
    entity = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 45, 2_000),  # some customers the source never saw
            "shop": rng.choice([*shops, "west"], 2_000),  # and a shop it never saw
            "event_timestamp": BASE
            + pd.to_timedelta(rng.integers(-1_000, 510_000, 2_000), unit="s"),
        }
    )
    store = _store(tmp_path, source, {"customer_id": "int64", "shop": "string"}, ttl=20_000)
    result = store.get_historical_features(entity, ["v:*"])
    expected = reference(
        entity, source, ["customer_id", "shop"], ["spend", "visits", "tier"], 20_000
    )
    assert_same(result, expected)
    assert result["spend"].notna().sum() > 500  # not vacuous: most rows found a value
    assert_same(_duckdb_engine(store, entity, tmp_path), expected)
    store.close()


def _utc_us(seconds_after_1700: np.ndarray) -> pd.Series:
    """UTC times from 1700 on, in µs (nanoseconds end in 2262)."""
    start = np.datetime64("1700-01-01T00:00:00", "us")
    return pd.Series(start + seconds_after_1700.astype("timedelta64[s]")).dt.tz_localize("UTC")


def test_many_keys_over_centuries_use_time_ranks(tmp_path: Path) -> None:
    # 400 keys × 500 years of microseconds overflow key * width: times become ranks.
    rng = np.random.default_rng(9)
    n = 4_000
    years = rng.integers(0, 500, n)
    source = pd.DataFrame(
        {
            "k": rng.integers(0, 400, n),
            "event_timestamp": _utc_us(years * 365 * 86_400 + rng.integers(0, 10**6, n)),
            "x": rng.integers(-50, 50, n),
        }
    ).drop_duplicates(["k", "event_timestamp"])
    rows = pa.Table.from_pandas(source, preserve_index=False)
    times = pa.compute.cast(rows.column("event_timestamp"), pa.int64())
    prepared = prepare(rows.append_column("__fts", times), ["k"], ["x"])
    assert prepared.stamps is not None  # the fallback is what this test exercises
    entity = pd.DataFrame(
        {
            "k": rng.integers(0, 410, 3_000),
            "event_timestamp": _utc_us(rng.integers(-10, 510, 3_000) * 365 * 86_400),
        }
    )
    store = _store(tmp_path, source, {"k": "int64"})
    result = store.get_historical_features(entity, ["v:x"])
    assert_same(result, reference(entity, source, ["k"], ["x"], 0))
    assert result["x"].notna().sum() > 1_000


def test_empty_source_gives_nulls_of_the_declared_type(tmp_path: Path) -> None:
    source = pd.DataFrame(
        {
            "k": pd.Series([], dtype="int64"),
            "event_timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
            "x": pd.Series([], dtype="int64"),
            "flag": pd.Series([], dtype="bool"),
        }
    )
    store = _store(tmp_path, source, {"k": "int64"})
    entity = pa.table({"k": [1, 2], "event_timestamp": pa.array([BASE, BASE], pa.timestamp("us"))})
    result = store.get_historical_features(entity, ["v:*"], as_arrow=True)
    assert result.column("x").null_count == 2 and result.schema.field("x").type == pa.int64()
    assert result.schema.field("flag").type == pa.bool_()
    store.close()


def test_empty_entity_rows(tmp_path: Path) -> None:
    source = pd.DataFrame({"k": [1], "event_timestamp": [BASE], "x": [4]})
    store = _store(tmp_path, source, {"k": "int64"})
    entity = pd.DataFrame({"k": pd.Series([], dtype="int64"), "event_timestamp": []})
    entity["event_timestamp"] = pd.to_datetime(entity["event_timestamp"], utc=True)
    assert len(store.get_historical_features(entity, ["v:x"])) == 0
    store.close()


def test_settled_source_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = pd.DataFrame({"k": [1, 2], "event_timestamp": [BASE, BASE], "x": [4, 5]})
    store = _store(tmp_path, source, {"k": "int64"})
    monkeypatch.setattr(offline, "RACY_S", 0.0)  # as if the file were written long ago
    reads = []
    real = _sources.view_rows
    monkeypatch.setattr(_sources, "view_rows", lambda *a, **k: reads.append(1) or real(*a, **k))
    entity = pd.DataFrame({"k": [2, 1], "event_timestamp": [BASE, BASE]})
    for _ in range(3):
        assert store.get_historical_features(entity, ["v:x"])["x"].tolist() == [5, 4]
    assert len(reads) == 1
    # A rewrite (new size and mtime) is a new version: read again, new values.
    pd.DataFrame({"k": [1, 2, 3], "event_timestamp": [BASE] * 3, "x": [7, 8, 9]}).to_parquet(
        tmp_path / "source.parquet"
    )
    assert store.get_historical_features(entity, ["v:x"])["x"].tolist() == [8, 7]
    assert len(reads) == 2
    store.close()


def test_rewrite_keeping_size_and_mtime_is_seen(tmp_path: Path) -> None:
    """A file written moments ago is not cached: its mtime tick may hide a second write."""
    path = tmp_path / "source.parquet"
    store = _store(
        tmp_path, pd.DataFrame({"k": [1], "event_timestamp": [BASE], "x": [4]}), {"k": "int64"}
    )
    stat = path.stat()
    entity = pd.DataFrame({"k": [1], "event_timestamp": [BASE]})
    assert store.get_historical_features(entity, ["v:x"])["x"].tolist() == [4]
    pd.DataFrame({"k": [1], "event_timestamp": [BASE], "x": [6]}).to_parquet(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size  # same size, same mtime: only content differs
    assert store.get_historical_features(entity, ["v:x"])["x"].tolist() == [6]
    store.close()


def test_entity_order_sorts_by_key_then_time() -> None:
    rng = np.random.default_rng(1)
    keys = pa.chunked_array([rng.choice(["b", "a", "c"], 5_000)])
    times = rng.integers(-(10**15), 10**15, 5_000)  # wide: time is coarsened to fit
    order = entity_order([keys], times)
    assert sorted(order.tolist()) == list(range(5_000))  # a permutation
    ordered = np.asarray(keys.to_numpy(zero_copy_only=False))[order]
    assert (ordered[:-1] <= ordered[1:]).all()
    within = times[order][ordered == "a"]
    # 13 row bits + 2 key bits leave 48 for a 51-bit time span: buckets of 2^3 µs,
    # so times within a key are out of order by less than 8 µs.
    assert (np.diff(within) > -8).all()


def test_empty_source_with_two_keys() -> None:
    empty = pa.table(
        {
            "a": pa.array([], pa.int64()),
            "b": pa.array([], pa.string()),
            "__fts": pa.array([], pa.int64()),
            "x": pa.array([], pa.float64()),
        }
    )
    prepared = prepare(empty, ["a", "b"], ["x"])
    codes = prepared.keys.codes([pa.array([1, 2]), pa.array(["p", "q"])])
    assert codes.tolist() == [-1, -1]
    found = prepared.lookup(codes, np.array([5, 6]), 0)
    assert prepared.gather(found, ["x"])[0].null_count == 2
