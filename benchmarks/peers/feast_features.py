"""Feast 0.67 side of the feature-store benchmark (runs in benchmarks/.venv-feast).

    python feast_features.py CONFIG.json CASE

CONFIG.json (written by bench_features.py) names the Parquet files and a scratch
directory. CASE is one of ``historical-file``, ``historical-duckdb``,
``materialize``, ``online``. Prints one JSON object on the last stdout line.
``import feast`` (about 6 s) happens before any timer starts.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64, String

ACCOUNT = [
    ("tenure_days", Int64),
    ("plan_type", String),
    ("payment_method", String),
    ("monthly_revenue", Float64),
    ("late_payment_count_30d", Int64),
]
USAGE = [
    ("calls_last_30d", Float64),
    ("data_usage_gb_last_30d", Float64),
    ("support_tickets_last_30d", Int64),
    ("login_count_last_7d", Int64),
    ("features_used_count", Int64),
]


def _store(cfg: dict, work: Path, offline: str) -> tuple[FeatureStore, dict[str, FeatureView]]:
    work.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(
        project="bench",
        registry=str(work / "registry.db"),
        provider="local",
        online_store={"type": "sqlite", "path": str(work / "online.db")},
        offline_store={"type": offline},
        entity_key_serialization_version=3,
        repo_path=str(work),
    )
    store = FeatureStore(config=config)
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    views = {
        "customer_account": FeatureView(
            name="customer_account",
            entities=[customer],
            ttl=timedelta(seconds=cfg["account_ttl_s"]),
            schema=[Field(name=n, dtype=t) for n, t in ACCOUNT],
            source=FileSource(path=cfg["account"], timestamp_field="event_timestamp"),
            online=True,
        ),
        "customer_usage": FeatureView(
            name="customer_usage",
            entities=[customer],
            ttl=timedelta(seconds=cfg["usage_ttl_s"]),
            schema=[Field(name=n, dtype=t) for n, t in USAGE],
            source=FileSource(path=cfg["usage"], timestamp_field="event_timestamp"),
            online=True,
        ),
        "bulk": FeatureView(
            name="bulk",
            entities=[customer],
            ttl=timedelta(days=3650),
            schema=[Field(name=n, dtype=t) for n, t in USAGE],
            source=FileSource(path=cfg["bulk"], timestamp_field="event_timestamp"),
            online=True,
        ),
    }
    store.apply([customer, *views.values()])
    return store, views


FEATURES = [f"customer_account:{n}" for n, _ in ACCOUNT] + [f"customer_usage:{n}" for n, _ in USAGE]


def historical(cfg: dict, offline: str) -> dict:
    store, _ = _store(cfg, Path(cfg["work"]) / f"feast-{offline}", offline)
    entity = pd.read_parquet(cfg["entity"])
    started = time.perf_counter()
    result = store.get_historical_features(entity_df=entity, features=FEATURES).to_df()
    seconds = time.perf_counter() - started
    out = Path(cfg["work"]) / f"feast-{offline}-result.parquet"
    result.to_parquet(out)
    return {"seconds": seconds, "rows": len(result), "result": str(out)}


def materialize(cfg: dict) -> dict:
    store, _ = _store(cfg, Path(cfg["work"]) / "feast-mat", "dask")
    end = datetime.fromisoformat(cfg["bulk_end"])
    started = time.perf_counter()
    store.materialize(end - timedelta(days=3650), end, feature_views=["bulk"])
    return {"seconds": time.perf_counter() - started, "rows": cfg["bulk_rows"]}


def online(cfg: dict) -> dict:
    store, _ = _store(cfg, Path(cfg["work"]) / "feast-online", "dask")
    end = datetime.fromisoformat(cfg["online_now"])
    store.materialize(end - timedelta(days=60), end, ["customer_account", "customer_usage"])
    ids = cfg["lookup_ids"]
    for cid in ids[:50]:  # warm-up
        store.get_online_features(features=FEATURES, entity_rows=[{"customer_id": cid}])
    times = []
    sample = None
    deadline = time.monotonic() + cfg["online_budget_s"]
    for cid in ids:
        started = time.perf_counter()
        response = store.get_online_features(features=FEATURES, entity_rows=[{"customer_id": cid}])
        values = response.to_dict()
        times.append((time.perf_counter() - started) * 1000)
        sample = sample or {k: v[0] for k, v in values.items()}
        if time.monotonic() > deadline:
            break
    return {"latencies_ms": times, "sample": {k: str(v) for k, v in (sample or {}).items()}}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    case = sys.argv[2]
    if case.startswith("historical-"):
        result = historical(cfg, "dask" if case == "historical-file" else "duckdb")
    elif case == "materialize":
        result = materialize(cfg)
    elif case == "online":
        result = online(cfg)
    else:
        raise SystemExit(f"unknown case {case}")
    result["peak_rss_mb"] = peak_rss_mb()
    import feast

    result["feast"] = feast.__version__
    print(json.dumps(result))


if __name__ == "__main__":
    main()
