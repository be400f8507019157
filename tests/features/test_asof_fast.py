"""The fast paths of point-in-time retrieval give the plain paths' answers.

Direct-address key ranks are checked against Arrow's hash ranks, the bucket
index against ``np.searchsorted``, whole lookups (both readers, and the
positions-then-gather path the Ray engine uses) against ``pandas.merge_asof``
with integer keys dense, sparse, negative and absent, string and two-column
keys, nulls in every feature type, TTLs from one microsecond to beyond int64,
empty sources and times wide enough for the rank form; and the pyarrow
Parquet reader against DuckDB's, file by file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.config import Settings
from keel.features import (
    Entity,
    FeatureStore,
    FeatureView,
    FileSource,
    _asof,
    _parquet,
    _sources,
    offline,
)
from keel.features.models import ValueType

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    _sources.clear_cache()
    yield
    _sources.clear_cache()


# --------------------------------------------------------------------------- key ranks
def _hash_ranks(values: pa.Array) -> tuple[list[Any], list[int]]:
    distinct = pc.unique(values)
    distinct = distinct.take(pc.sort_indices(distinct))
    return distinct.to_pylist(), pc.index_in(values, value_set=distinct).to_pylist()


int64s = st.integers(INT64_MIN, INT64_MAX)
dense_columns = st.builds(
    lambda base, offsets: [base + o for o in offsets],
    st.integers(-(2**62), 2**62),
    st.lists(st.integers(-40, 40), min_size=1, max_size=60),
)
any_columns = st.one_of(
    dense_columns,
    st.lists(st.integers(0, 100), min_size=1, max_size=60),  # ids from 0: no shifted copy
    st.lists(int64s, min_size=1, max_size=30),
    st.lists(st.sampled_from([INT64_MIN, INT64_MAX, INT64_MIN + 1, 0, -1]), min_size=1),
)


@settings(max_examples=200, deadline=None)
@given(values=any_columns, probes=st.lists(int64s | st.integers(-50, 50), max_size=40))
def test_ranks_equal_hash_ranks(values: list[int], probes: list[int]) -> None:
    column = pa.chunked_array([pa.array(values, pa.int64())])
    distinct, codes = _asof._distinct(column)
    expected_distinct, expected_codes = _hash_ranks(column.combine_chunks())
    assert distinct.to_pylist() == expected_distinct
    assert codes.tolist() == expected_codes
    probe = pa.array(probes + values[:5], pa.int64())
    ranked = _asof._rank(probe, distinct)
    found = pc.index_in(probe, value_set=distinct).fill_null(-1)
    assert ranked.tolist() == found.to_pylist()


def test_dense_ranks_take_the_direct_path() -> None:
    values = np.array([7, -3, 7, 12, -3, 2**40 - 2**40], dtype=np.int64)
    dense = _asof._dense_ranks(values)
    assert dense is not None  # what the property above compares with the hash path
    distinct, codes = dense
    assert distinct.tolist() == [-3, 0, 7, 12] and codes.tolist() == [2, 0, 2, 3, 0, 1]
    ranked = _asof._dense_rank(np.array([INT64_MIN, -3, 5, 12, INT64_MAX]), distinct)
    assert ranked is not None and ranked.tolist() == [-1, 0, -1, 3, -1]
    # Values spread far apart, or touching int64's ends, go through hashing instead.
    assert _asof._dense_ranks(np.array([0, 2**40], dtype=np.int64)) is None
    assert _asof._dense_rank(np.array([1]), np.array([1, INT64_MAX])) is None


# --------------------------------------------------------------------------- buckets
clustered = st.builds(
    lambda centre, offsets, outliers: [centre + o for o in offsets] + outliers,
    st.integers(1, 2**61),
    st.lists(st.integers(0, 30), min_size=1, max_size=80),  # crowded buckets
    st.lists(st.integers(1, 2**62 - 1), max_size=3),  # stretch the range
)
search_values = st.one_of(st.lists(st.integers(1, 2**62 - 1), min_size=1, max_size=80), clustered)


@settings(max_examples=300, deadline=None)
@given(values=search_values, needles=st.lists(st.integers(-(2**62), 2**62), max_size=60))
def test_bucket_floor_equals_searchsorted(values: list[int], needles: list[int]) -> None:
    search = np.array([INT64_MIN, *sorted(values)], dtype=np.int64)
    buckets = _asof._Buckets.build(search, np.empty(len(values), dtype=np.int64))
    wanted = np.array(sorted(needles + values[:10] + [v - 1 for v in values[:10]]), np.int64)
    found, value = buckets.floor(search, wanted)
    expected = np.searchsorted(search, wanted, side="right") - 1
    assert found.tolist() == expected.tolist()
    assert value.tolist() == search[expected].tolist()


# --------------------------------------------------------------------------- lookups
FEATURES = {"x": pa.int64(), "y": pa.float64(), "s": pa.string(), "b": pa.bool_()}
KEY_POOLS = {
    "dense": list(range(6)),
    "negative": list(range(-9, -3)),
    "sparse": [INT64_MIN, -(10**15), 0, 10**12, 2**62, INT64_MAX],
}
TIMES = {
    "narrow": (0, 60),  # many exact and equal times
    "far": (4 * 10**18, 4 * 10**18 + 60),  # near int64's end: the offsets' clipping
    # Keys × range past 2^62: offsets become time ranks. (Entity times reach a tenth
    # further: every age stays below 2^63, where pandas' tolerance check would wrap.)
    "wide": (-(2**61), 2**61),
}


@st.composite
def lookup_cases(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["dense", "negative", "sparse", "string", "two"]))
    low, high = TIMES[draw(st.sampled_from(list(TIMES)))]
    pool: list[Any] = KEY_POOLS.get(mode, ["a", "b", "ç", "d"])
    known = draw(st.integers(1, len(pool) - 1))  # the last keys: only entity rows have them

    def keys(n: int, choices: list[Any]) -> dict[str, list[Any]]:
        out = {"k": [draw(st.sampled_from(choices)) for _ in range(n)]}
        if mode == "two":
            out["j"] = [draw(st.integers(-1, 2)) for _ in range(n)]
        return out

    n_source, n_entity = draw(st.integers(0, 30)), draw(st.integers(0, 30))
    nullable = st.none() | st.integers(-9, 9)
    source = {
        **keys(n_source, pool[:known]),
        "t": [draw(st.integers(low, high)) for _ in range(n_source)],
        "x": [draw(nullable) for _ in range(n_source)],
        "y": [draw(st.none() | st.integers(-9, 9).map(lambda v: v / 4)) for _ in range(n_source)],
        "s": [draw(st.none() | st.sampled_from(["p", "q", "ř"])) for _ in range(n_source)],
        "b": [draw(st.none() | st.booleans()) for _ in range(n_source)],
    }
    margin = max(1, (high - low) // 10)
    entity = {
        **keys(n_entity, pool),
        "t": [draw(st.integers(low - margin, high + margin)) for _ in range(n_entity)],
    }
    ttl = draw(st.sampled_from([0, 1, 7, 10**19]))
    return {"mode": mode, "source": source, "entity": entity, "ttl": ttl}


def _key_names(mode: str) -> list[str]:
    return ["k", "j"] if mode == "two" else ["k"]


def _key_type(mode: str) -> pa.DataType:
    return pa.string() if mode in ("string", "two") else pa.int64()


def _merge_asof(case: dict[str, Any]) -> dict[str, list[Any]]:
    """The point-in-time rule by pandas.merge_asof (stable sorts: the last tied row wins)."""
    keys = _key_names(case["mode"])
    right = pd.DataFrame({c: pd.Series(v, dtype=object) for c, v in case["source"].items()})
    right["t"] = np.asarray(case["source"]["t"], dtype=np.int64)
    left = pd.DataFrame({k: pd.Series(case["entity"][k], dtype=object) for k in keys})
    left["t"] = np.asarray(case["entity"]["t"], dtype=np.int64)
    left["row"] = np.arange(len(left))
    if "j" in keys:  # merge_asof wants the same dtype on both sides
        left["j"], right["j"] = left["j"].astype(np.int64), right["j"].astype(np.int64)
    ttl = case["ttl"]
    merged = pd.merge_asof(
        left.sort_values("t", kind="stable"),
        right.sort_values("t", kind="stable"),
        on="t",
        by=keys,
        tolerance=ttl if 0 < ttl <= INT64_MAX else None,
        allow_exact_matches=True,
        direction="backward",
    ).sort_values("row")

    def plain(value: Any) -> Any:
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    return {f: [plain(v) for v in merged[f]] for f in FEATURES}


def _engine(case: dict[str, Any], reader_bytes: int) -> list[dict[str, list[Any]]]:
    """``fetch`` and ``positions`` + ``gather`` for the case, columns as Python lists."""
    keys = _key_names(case["mode"])
    kinds = {"k": _key_type(case["mode"]), "j": pa.int64(), "t": pa.int64(), **FEATURES}
    source = pa.table({c: pa.array(v, kinds[c]) for c, v in case["source"].items()})
    source = source.rename_columns(["__fts" if c == "t" else c for c in source.column_names])
    prepared = _asof.prepare(source, keys, list(FEATURES))
    entity_keys = {k: pa.chunked_array([pa.array(case["entity"][k], kinds[k])]) for k in keys}
    times = np.asarray(case["entity"]["t"], dtype=np.int64)
    ttl = case["ttl"]
    lookup = _asof.Lookup(tuple(keys), prepared, ttl)
    with mock.patch.object(_asof, "_CACHED_BYTES", reader_bytes):
        orders = _asof.sort_all([lookup.keys], entity_keys, times)
        fetched = _asof.fetch([lookup], [list(FEATURES)], entity_keys, orders)[0]
    at = _asof.positions([lookup], entity_keys, times, threads=1)[0]
    gathered = prepared.gather(at, list(FEATURES))
    out = []
    for arrays in (fetched, gathered):
        assert [a.type for a in arrays] == list(FEATURES.values())
        out.append({f: a.to_pylist() for f, a in zip(FEATURES, arrays, strict=True)})
    return out


@settings(max_examples=250, deadline=None)
@given(case=lookup_cases(), reader_bytes=st.sampled_from([0, 1 << 30]))
def test_lookups_equal_merge_asof(case: dict[str, Any], reader_bytes: int) -> None:
    expected = _merge_asof(case)
    for got in _engine(case, reader_bytes):
        assert got == expected


def test_lookup_cases_reach_every_form() -> None:
    """The property above is not vacuous: the rank form and the TTL paths do run."""
    case = {
        "mode": "sparse",
        "source": {"k": [0, 0, 2**62], "t": [-(2**62), 5, 2**62], "x": [1, 2, 3]},
        "entity": {"k": [0, 0, 2**62, 7], "t": [4, 2**62, 2**62, 0]},
        "ttl": 10**19,
    }
    for feature in ("y", "s", "b"):
        case["source"][feature] = [None] * 3
    table = pa.table({"k": case["source"]["k"], "__fts": case["source"]["t"]})
    assert _asof.prepare(table, ["k"], []).stamps is not None  # the rank form
    expected = _merge_asof(case)
    assert expected["x"] == [1, 2, 3, None]
    for got in _engine(case, 0):
        assert got == expected
    case["ttl"] = 2**62 - 5  # ages 2^62 - 1 and 0 → only the second row is young enough
    assert _merge_asof(case)["x"] == [None, 2, 3, None]
    for got in _engine(case, 1 << 30):
        assert got["x"] == [None, 2, 3, None]


def test_sort_entities_with_times_wider_than_int64() -> None:
    keys = pa.chunked_array([pa.array([3, 1, 3, 1], pa.int64())])
    times = np.array([INT64_MAX - 1, INT64_MIN + 1, 0, 5], dtype=np.int64)
    entity = _asof.sort_entities([keys], times)
    assert sorted(entity.order.tolist()) == [0, 1, 2, 3]
    assert entity.codes.tolist() == [0, 0, 1, 1]  # keys in order, codes still right
    assert entity.times.tolist() == times[entity.order].tolist()


# --------------------------------------------------------------------------- Parquet
def _view(path: Path, features: dict[str, str], key_type: str = "int64") -> tuple[Any, Any]:
    entities = {"k": Entity(name="k", join_keys=["k"], value_type=ValueType(key_type))}
    view = FeatureView(
        name="v",
        entities=["k"],
        source=FileSource(path=str(path)),
        features=[{"name": n, "dtype": t} for n, t in features.items()],
    )
    return view, entities


def _rows_both_ways(tmp_path: Path, view: Any, entities: Any) -> tuple[pa.Table, pa.Table, bool]:
    """``view_rows`` as it runs, and with DuckDB reading; whether pyarrow read the first."""
    con = offline.connect("1GB", tmp_path / "duck")
    reads: list[int] = []
    real = _parquet._micros
    try:
        with mock.patch.object(_parquet, "_micros", lambda *a: reads.append(1) or real(*a)):
            fast = offline.view_rows(con, view, entities, resolve_ties=False)
        with mock.patch.object(offline, "_parquet_rows", return_value=None):
            slow = offline.view_rows(con, view, entities, resolve_ties=False)
    finally:
        con.close()
    return _plain(fast), _plain(slow), bool(reads)


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns decoded, rows in one order: tables to compare."""
    columns = [
        c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns
    ]
    table = pa.Table.from_arrays(columns, names=table.column_names)
    return table.sort_by([(c, "ascending") for c in table.column_names]).combine_chunks()


def _frame(unit: str, tz: str | None, n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # Around 1970 in nanoseconds: sub-microsecond parts on both sides of the epoch.
    stamps = rng.integers(-(10**12), 10**12, n) if unit == "ns" else rng.integers(0, 10**6, n)
    times = pd.Series(pd.to_datetime(stamps, unit=unit if unit == "ns" else "s"))
    times = times.dt.as_unit(unit)
    if tz:
        times = times.dt.tz_localize(tz)
    frame = pd.DataFrame(
        {
            "k": pd.array(rng.integers(0, 20, n), dtype="Int64"),
            "event_timestamp": times,
            "x": pd.array(rng.integers(-5, 5, n), dtype="Int64"),
            "y": rng.random(n),
            "s": pd.Series(rng.choice(["p", "q", "ř"], n), dtype=object),
            "b": pd.array(rng.random(n) < 0.5, dtype="boolean"),
        }
    )
    frame.loc[::7, "k"] = pd.NA  # rows without a key or a time are dropped
    frame.loc[3::11, "event_timestamp"] = pd.NaT
    frame.loc[5::13, ["x", "s", "b"]] = pd.NA
    frame.loc[2::17, "y"] = np.nan
    return frame


FEATURE_TYPES = {"x": "int64", "y": "float64", "s": "string", "b": "bool"}


@pytest.mark.parametrize(
    ("unit", "tz"),
    [("us", "UTC"), ("us", None), ("ns", None), ("ns", "UTC"), ("ms", "Europe/Paris"), ("s", None)],
)
def test_parquet_reader_equals_duckdb(tmp_path: Path, unit: str, tz: str | None) -> None:
    path = tmp_path / "source.parquet"
    frame = _frame(unit, tz)
    frame.to_parquet(path)
    fast, slow, direct = _rows_both_ways(tmp_path, *_view(path, FEATURE_TYPES))
    assert direct  # pyarrow read it
    assert fast.schema == slow.schema
    assert fast.equals(slow)
    assert 0 < fast.num_rows < len(frame)  # rows without keys or times are gone


def test_parquet_reader_strings_keys_and_several_files(tmp_path: Path) -> None:
    for part in range(3):  # row groups and files each with their own dictionaries
        frame = _frame("us", "UTC", seed=part).dropna(subset=["k"])
        frame["k"] = frame["k"].astype(str) + "é"
        frame["s"] = frame["s"].astype("str")  # pandas' str: Parquet large strings
        frame.to_parquet(tmp_path / f"part-{part}.parquet", row_group_size=100)
    view, entities = _view(tmp_path / "part-*.parquet", FEATURE_TYPES, key_type="string")
    fast, slow, direct = _rows_both_ways(tmp_path, view, entities)
    assert direct
    assert fast.schema.field("k").type == pa.string() == fast.schema.field("s").type
    assert fast.equals(slow)


def test_parquet_reader_takes_category_strings(tmp_path: Path) -> None:
    path = tmp_path / "source.parquet"
    frame = _frame("us", "UTC")
    frame["s"] = frame["s"].astype("category")  # int8 dictionary indices in the file
    frame.to_parquet(path)
    fast, slow, direct = _rows_both_ways(tmp_path, *_view(path, FEATURE_TYPES))
    assert direct
    assert fast.equals(slow)


@pytest.mark.parametrize(
    "change",
    ["int32 feature", "float32 feature", "far future", "two schemas", "hive folders", "date"],
)
def test_parquet_reader_leaves_other_files_to_duckdb(tmp_path: Path, change: str) -> None:
    frame = _frame("us", None).dropna(subset=["k", "event_timestamp"])
    path = tmp_path / "source.parquet"
    if change == "int32 feature":
        frame["x"] = frame["x"].astype("Int32")  # DuckDB casts it
    elif change == "float32 feature":
        frame["y"] = frame["y"].astype("float32")
    elif change == "far future":
        frame.loc[frame.index[0], "event_timestamp"] = pd.Timestamp("2400-01-01")
    elif change == "two schemas":
        frame.iloc[:10].assign(extra=1).to_parquet(tmp_path / "source-2.parquet")
        path = tmp_path / "source*.parquet"
    elif change == "hive folders":
        (tmp_path / "day=1").mkdir()
        path = tmp_path / "day=1" / "source.parquet"
    elif change == "date":
        frame["event_timestamp"] = frame["event_timestamp"].dt.date
    frame.to_parquet(tmp_path / "source.parquet" if "*" in str(path) else path)
    view, entities = _view(path, FEATURE_TYPES)
    if change == "far future":
        # DuckDB refuses times past 2262 (it converts through nanoseconds): unchanged.
        con = offline.connect("1GB", tmp_path / "duck")
        with pytest.raises(duckdb.ConversionException):
            offline.view_rows(con, view, entities, resolve_ties=False)
        con.close()
        return
    fast, slow, direct = _rows_both_ways(tmp_path, view, entities)
    assert not direct
    assert fast.equals(slow)


def test_aware_nanosecond_parquet_times_are_read(tmp_path: Path) -> None:
    """DuckDB reads them as TIMESTAMPTZ_NS, which keel once rejected as "not a timestamp"."""
    path = tmp_path / "source.parquet"
    at = pd.Timestamp("2026-01-01", tz="UTC").as_unit("ns")
    pd.DataFrame(
        {"k": [1, 1], "event_timestamp": [at, at + pd.Timedelta(days=1)], "x": [4, 5]}
    ).to_parquet(path)
    store = FeatureStore(Settings(home=tmp_path / "keel"))
    view, entities = _view(path, {"x": "int64"})
    store.apply([*entities.values(), view])
    entity = pd.DataFrame({"k": [1, 1], "event_timestamp": [at, at + pd.Timedelta(hours=30)]})
    assert store.get_historical_features(entity, ["v:x"])["x"].tolist() == [4, 5]
    # Parquet → Parquet runs DuckDB's own join on the same column.
    entity.to_parquet(tmp_path / "entity.parquet")
    store.write_historical_features(tmp_path / "entity.parquet", ["v:x"], tmp_path / "out.pq")
    assert pd.read_parquet(tmp_path / "out.pq")["x"].tolist() == [4, 5]
    store.close()


def test_retrieval_matches_merge_asof_through_the_parquet_reader(tmp_path: Path) -> None:
    """End to end: nulls in keys, times and features, a TTL, keys the source never saw."""
    path = tmp_path / "source.parquet"
    frame = _frame("us", "UTC", n=2_000)
    frame.to_parquet(path)
    store = FeatureStore(Settings(home=tmp_path / "keel"))
    view, entities = _view(path, FEATURE_TYPES)
    view = view.model_copy(update={"ttl": 200_000})
    store.apply([*entities.values(), view])
    rng = np.random.default_rng(4)
    entity = pd.DataFrame(
        {
            "k": rng.integers(0, 25, 3_000),
            "event_timestamp": pd.to_datetime(rng.integers(-10, 10**6 + 10, 3_000), unit="s"),
        }
    )
    entity["event_timestamp"] = entity["event_timestamp"].dt.tz_localize("UTC")
    result = store.get_historical_features(entity, ["v:*"], as_arrow=True)
    clean = frame.dropna(subset=["k", "event_timestamp"])
    case = {
        "mode": "dense",
        "source": {
            "k": clean["k"].astype(int).tolist(),
            "t": (clean["event_timestamp"].astype("int64") // 1000).tolist(),
            **{f: clean[f].astype(object).where(clean[f].notna(), None).tolist() for f in "xysb"},
        },
        "entity": {
            "k": entity["k"].tolist(),
            "t": (entity["event_timestamp"].astype("int64") // 1000).tolist(),
        },
        "ttl": 200_000 * 1_000_000,
    }
    expected = _merge_asof(case)
    got = {f: result.column(f).to_pylist() for f in "xysb"}
    assert got == {f: expected[f] for f in "xysb"}
    assert sum(v is not None for v in got["x"]) > 1_000  # not vacuous
    store.close()
