"""Feature-store benchmark: keel against Feast 0.67 (local provider), same data, same machine.

    bash benchmarks/setup_peers.sh                 # once: benchmarks/.venv-feast
    python benchmarks/bench_features.py            # full: 1M entity rows, 1M-row materialisation
    python benchmarks/bench_features.py --quick    # 100k / 100k, for a smoke run

Cases
-----
historical   ``get_historical_features`` of 10 features (customer_account: 5, daily;
             customer_usage: 5, every 4 h) for 1,000,000 entity rows. keel vs Feast's
             file (dask) offline store and Feast's DuckDB offline store. keel is timed
             cold (its prepared-source cache cleared: Parquet read, de-duplicated and
             sorted inside the timer, as Feast does on every call) and warm (sources
             already prepared by the cold call), each ``--repeat`` times (median);
             ``ratio`` is Feast's one call against keel's cold median.
             Every result is checked cell by cell against ``pandas.merge_asof`` with
             the views' TTLs.
online       10 features of one entity, in-process, after materialising both views:
             keel on SQLite (and Redis when reachable) vs Feast's SQLite online store,
             plus a raw ``sqlite3`` primary-key read of keel's table as the floor.
materialize  1,000,000 rows (one per entity, 5 features) into the online store:
             keel SQLite (and Redis) vs Feast SQLite.

Feast runs in ``benchmarks/.venv-feast`` through ``benchmarks/peers/feast_features.py``;
``import feast`` (~6 s) is outside every timer. Results: ``benchmarks/results/features.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
PEER_PY = HERE / ".venv-feast" / "bin" / "python"
PEER = HERE / "peers" / "feast_features.py"
RESULTS = HERE / "results" / "features.json"
START = pd.Timestamp("2026-01-01", tz="UTC")
ACCOUNT = [
    "tenure_days",
    "plan_type",
    "payment_method",
    "monthly_revenue",
    "late_payment_count_30d",
]
USAGE = [
    "calls_last_30d",
    "data_usage_gb_last_30d",
    "support_tickets_last_30d",
    "login_count_last_7d",
    "features_used_count",
]
ACCOUNT_TTL_S, USAGE_TTL_S = 3 * 86400, 6 * 3600
TARGETS = {"historical": 10.0, "online": 5.0, "materialize": 5.0}
RACY_S = 2.5  # > keel.features.offline.RACY_S


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data
def make_data(root: Path, customers: int, days: int, entity_rows: int, bulk_rows: int) -> dict:
    rng = np.random.default_rng(42)
    n = customers * days
    day = np.repeat(np.arange(days), customers)
    account = pd.DataFrame(
        {
            "customer_id": np.tile(np.arange(customers, dtype=np.int64), days),
            "event_timestamp": START + pd.to_timedelta(day, unit="D"),
            "tenure_days": (day + rng.integers(0, 900, n)).astype(np.int64),
            "plan_type": rng.choice(["basic", "plus", "pro"], n),
            "payment_method": rng.choice(["card", "bank", "paypal"], n),
            "monthly_revenue": rng.gamma(2.0, 30.0, n).round(2),
            "late_payment_count_30d": rng.poisson(0.3, n).astype(np.int64),
        }
    )
    slots = days * 6  # every 4 hours
    m = customers * slots
    slot = np.repeat(np.arange(slots), customers)
    # jitter inside the slot so that usage rows do not share timestamps with entity rows
    jitter = rng.integers(0, 3600, m)
    usage = pd.DataFrame(
        {
            "customer_id": np.tile(np.arange(customers, dtype=np.int64), slots),
            "event_timestamp": START + pd.to_timedelta(slot * 4 * 3600 + jitter, unit="s"),
            "calls_last_30d": rng.gamma(3.0, 10.0, m),
            "data_usage_gb_last_30d": rng.gamma(2.0, 5.0, m),
            "support_tickets_last_30d": rng.poisson(0.5, m).astype(np.int64),
            "login_count_last_7d": rng.poisson(4, m).astype(np.int64),
            "features_used_count": rng.integers(0, 20, m).astype(np.int64),
        }
    )
    entity = pd.DataFrame(
        {
            "customer_id": rng.integers(0, int(customers * 1.05), entity_rows).astype(np.int64),
            "event_timestamp": START
            + pd.to_timedelta(rng.integers(-86400, days * 86400, entity_rows), unit="s"),
        }
    )
    entity["event_timestamp"] = entity["event_timestamp"].dt.as_unit("us")
    entity["row_id"] = np.arange(entity_rows, dtype=np.int64)
    bulk_end = START + pd.Timedelta(days=1)
    bulk = pd.DataFrame(
        {
            "customer_id": np.arange(bulk_rows, dtype=np.int64),
            "event_timestamp": START + pd.to_timedelta(rng.integers(0, 86400, bulk_rows), unit="s"),
            "calls_last_30d": rng.gamma(3.0, 10.0, bulk_rows),
            "data_usage_gb_last_30d": rng.gamma(2.0, 5.0, bulk_rows),
            "support_tickets_last_30d": rng.poisson(0.5, bulk_rows).astype(np.int64),
            "login_count_last_7d": rng.poisson(4, bulk_rows).astype(np.int64),
            "features_used_count": rng.integers(0, 20, bulk_rows).astype(np.int64),
        }
    )
    paths = {}
    for name, frame in (("account", account), ("usage", usage), ("entity", entity), ("bulk", bulk)):
        frame["event_timestamp"] = frame["event_timestamp"].dt.as_unit("us")
        paths[name] = str(root / f"{name}.parquet")
        frame.to_parquet(paths[name])
    online_now = START + pd.Timedelta(days=days) - pd.Timedelta(hours=1)
    return {
        **paths,
        "account_rows": len(account),
        "usage_rows": len(usage),
        "entity_rows": entity_rows,
        "bulk_rows": bulk_rows,
        "bulk_end": bulk_end.isoformat(),
        "online_now": online_now.isoformat(),
        "account_ttl_s": ACCOUNT_TTL_S,
        "usage_ttl_s": USAGE_TTL_S,
        "lookup_ids": [int(x) for x in rng.integers(0, customers, 5000)],
        "online_budget_s": 60,
        "work": str(root),
    }


def yaml_defs(cfg: dict) -> str:
    return f"""
entities:
  - name: customer
    join_keys: [customer_id]
feature_views:
  - name: customer_account
    entities: [customer]
    source: {{type: file, path: {cfg["account"]}}}
    ttl: {ACCOUNT_TTL_S}
    cadence: daily
    features: {{tenure_days: int64, plan_type: string, payment_method: string,
               monthly_revenue: float64, late_payment_count_30d: int64}}
  - name: customer_usage
    entities: [customer]
    source: {{type: file, path: {cfg["usage"]}}}
    ttl: {USAGE_TTL_S}
    cadence: hourly
    features: {{calls_last_30d: float64, data_usage_gb_last_30d: float64,
               support_tickets_last_30d: int64, login_count_last_7d: int64,
               features_used_count: int64}}
  - name: bulk
    entities: [customer]
    source: {{type: file, path: {cfg["bulk"]}}}
    features: {{calls_last_30d: float64, data_usage_gb_last_30d: float64,
               support_tickets_last_30d: int64, login_count_last_7d: int64,
               features_used_count: int64}}
"""


FEATURES = [f"customer_account:{f}" for f in ACCOUNT] + [f"customer_usage:{f}" for f in USAGE]


# --------------------------------------------------------------------------- checks
def reference(entity: pd.DataFrame, source: pd.DataFrame, features: list[str], ttl_s: int):
    left = entity[["customer_id", "event_timestamp", "row_id"]].sort_values(
        "event_timestamp", kind="stable"
    )
    right = source[["customer_id", "event_timestamp", *features]].sort_values(
        "event_timestamp", kind="stable"
    )
    merged = pd.merge_asof(
        left,
        right,
        on="event_timestamp",
        by="customer_id",
        tolerance=pd.Timedelta(seconds=ttl_s),
        allow_exact_matches=True,
    )
    return merged.sort_values("row_id").reset_index(drop=True)


def mismatches(result: pd.DataFrame, expected: pd.DataFrame, features: list[str]) -> int:
    """Cells that differ from the reference; a missing entity row counts all its cells."""
    got = result.drop_duplicates("row_id").set_index("row_id")
    missing = len(expected) - int(expected["row_id"].isin(got.index).sum())
    got = got.reindex(expected["row_id"]).reset_index()
    bad = missing * len(features)
    for feature in features:
        a, b = got[feature], expected[feature]
        same_null = a.isna().to_numpy() == b.isna().to_numpy()
        both = ~a.isna().to_numpy() & ~b.isna().to_numpy()
        equal = np.zeros(len(a), dtype=bool)
        equal[both] = a.to_numpy()[both] == b.to_numpy()[both]
        bad += int((~same_null | (both & ~equal)).sum())
    return bad


# --------------------------------------------------------------------------- peers
def run_feast(cfg_path: Path, case: str, timeout_s: int) -> dict[str, Any]:
    if not PEER_PY.exists():
        return {"error": "benchmarks/.venv-feast missing: bash benchmarks/setup_peers.sh"}
    log(f"feast {case} …")
    try:
        done = subprocess.run(
            [str(PEER_PY), str(PEER), str(cfg_path), case],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "FEAST_USAGE": "False", "DO_NOT_TRACK": "1"},
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s} s"}
    if done.returncode != 0:
        # A negative code is a signal: -9 is usually the kernel's OOM killer (see dmesg).
        return {"error": done.stderr[-2000:], "returncode": done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def lookups(get: Any, ids: list[int], budget_s: float) -> list[float]:
    for cid in ids[:50]:
        get(cid)
    times = []
    deadline = time.monotonic() + budget_s
    for cid in ids:
        started = time.perf_counter()
        get(cid)
        times.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline:
            break
    return times


def summary(times: list[float]) -> dict[str, float]:
    return {
        "n": len(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "mean_ms": statistics.fmean(times),
    }


def drop_redis(home: Path, url: str) -> None:
    """Delete the benchmark's keys from the (shared) Redis."""
    from keel.config import Settings
    from keel.features import FeatureStore
    from keel.features._materialize import layout

    store = FeatureStore(Settings(home=home, redis_url=url))
    for view in store.catalog().views.values():
        store.online.drop(layout(view, store.catalog().entities))
    store.close()


def redis_url() -> str | None:
    url = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url).ping()
        return url
    except Exception:
        return None


def online_worker(cfg_path: Path, home: Path, url: str | None) -> dict[str, Any]:
    """Run :func:`online_lookups` in a fresh interpreter; its JSON summary."""
    command = [sys.executable, __file__, "--online-worker", str(cfg_path), str(home), url or ""]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        # A negative code is a signal: -9 is usually the kernel's OOM killer (see dmesg).
        return {"error": done.stderr[-2000:], "returncode": done.returncode}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def online_lookups(cfg_path: Path, home: Path, url: str) -> dict[str, Any]:
    """keel's in-process lookups (10 features, one entity) plus the raw sqlite3 floor."""
    from keel.config import Settings
    from keel.features import FeatureStore
    from keel.features._materialize import layout

    cfg = json.loads(cfg_path.read_text())
    now = pd.Timestamp(cfg["online_now"]).timestamp()
    store = FeatureStore(Settings(home=home, redis_url=url or None), clock=lambda: now)
    ids = cfg["lookup_ids"]
    times = lookups(lambda c: store.get_online_features([{"customer_id": c}], FEATURES), ids, 60)
    result: dict[str, Any] = summary(times)
    sample = store.get_online_features([{"customer_id": ids[0]}], FEATURES)[0]
    result["non_null"] = sum(v is not None for v in sample.values()) - 1
    if not url:
        view = store.get_view("customer_usage")
        table = layout(view, store.catalog().entities).table_name
        raw = sqlite3.connect(home / "features" / "online.db")
        sql = f'SELECT * FROM "{table}" WHERE customer_id = ?'
        result["raw_sqlite3"] = summary(
            lookups(lambda c: raw.execute(sql, (c,)).fetchone(), ids, 30)
        )
        raw.close()
    store.close()
    return result


# --------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k entity rows / bulk rows")
    parser.add_argument("--cases", default="historical,online,materialize")
    parser.add_argument("--no-feast", action="store_true", help="keel only")
    parser.add_argument(
        "--feast-offline", default="duckdb,file", help="Feast offline stores to run: duckdb,file"
    )
    parser.add_argument("--output", default=None, help="results file name in benchmarks/results")
    parser.add_argument("--repeat", type=int, default=3, help="keel timings per figure")
    parser.add_argument(
        "--engine", default="local", choices=["local", "ray"], help="keel's retrieval engine"
    )
    parser.add_argument("--online-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.online_worker:
        cfg_file, home, url = args.online_worker
        print(json.dumps(online_lookups(Path(cfg_file), Path(home), url)))
        return 0
    cases = set(args.cases.split(","))
    entity_rows = 100_000 if args.quick else 1_000_000
    bulk_rows = 100_000 if args.quick else 1_000_000
    from keel.config import Settings
    from keel.features import FeatureStore

    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "load_avg": os.getloadavg(),
        },
        "entity_rows": entity_rows,
        "cases": {},
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="keel-features-bench-") as scratch:
        root = Path(scratch)
        log("generating data …")
        cfg = make_data(
            root, customers=10_000, days=30, entity_rows=entity_rows, bulk_rows=bulk_rows
        )
        cfg_path = root / "config.json"
        cfg_path.write_text(json.dumps(cfg))
        out["data"] = {k: cfg[k] for k in ("account_rows", "usage_rows", "bulk_rows")}
        defs = root / "features.yaml"
        defs.write_text(yaml_defs(cfg))
        store = FeatureStore(Settings(home=root / "keel", redis_url=None))
        store.apply(defs)

        if "historical" in cases:
            from keel.features._sources import clear_cache

            entity = pd.read_parquet(cfg["entity"])
            # Sources written in the last RACY_S seconds are never cached: let them settle
            # so that the warm figure below is the cached one.
            time.sleep(RACY_S)
            engine = args.engine
            store.get_historical_features(entity.head(1000), FEATURES, engine=engine)  # imports
            # Each call is timed `--repeat` times and the median reported: a call lasts under
            # a second, so one burst of other work on the machine can double a single timing.
            cold_times, warm_times = [], []
            for _ in range(args.repeat):
                clear_cache()
                started = time.perf_counter()
                cold = store.get_historical_features(entity, FEATURES, engine=engine)
                cold_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = store.get_historical_features(entity, FEATURES, engine=engine)
                warm_times.append(time.perf_counter() - started)
            keel_s, warm_s = statistics.median(cold_times), statistics.median(warm_times)
            log(f"keel historical cold {cold_times}, warm {warm_times}; checking …")
            account = pd.read_parquet(cfg["account"])
            usage = pd.read_parquet(cfg["usage"])
            expected_a = reference(entity, account, ACCOUNT, ACCOUNT_TTL_S)
            expected_u = reference(entity, usage, USAGE, USAGE_TTL_S)

            def check(frame: pd.DataFrame) -> int:
                return mismatches(frame, expected_a, ACCOUNT) + mismatches(frame, expected_u, USAGE)

            keel_bad = check(result) + check(cold)  # both calls must be exact
            del cold
            filled = int(result[ACCOUNT[0]].notna().sum())
            case: dict[str, Any] = {
                "keel": {
                    "engine": engine,
                    "seconds": keel_s,
                    "seconds_warm": warm_s,
                    "seconds_cold_runs": cold_times,
                    "seconds_warm_runs": warm_times,
                    "mismatches": keel_bad,
                    "non_null_rows": filled,
                    "peak_rss_mb_process": peak_rss_mb(),
                },
            }
            failed |= keel_bad != 0
            del result
            if not args.no_feast:
                for peer in [f"historical-{o}" for o in args.feast_offline.split(",") if o]:
                    got = run_feast(cfg_path, peer, timeout_s=1800)
                    if "result" in got:
                        frame = pd.read_parquet(got.pop("result"))
                        got["rows_returned"] = len(frame)
                        got["mismatches"] = check(frame)
                        got["ratio"] = got["seconds"] / keel_s
                        got["ratio_warm"] = got["seconds"] / warm_s
                    case[f"feast-{peer.split('-')[1]}"] = got
            out["cases"]["historical"] = case

        if "online" in cases:
            log("keel online …")
            now = pd.Timestamp(cfg["online_now"])
            views = ["customer_account", "customer_usage"]
            store.materialize(now - pd.Timedelta(days=60), now, views)
            # Lookups run in a fresh interpreter, like Feast's: this process holds
            # millions of objects from the other cases, and its GC pauses are not keel's.
            case = {"keel-sqlite": online_worker(cfg_path, root / "keel", None)}
            url = redis_url()
            if url:
                rstore = FeatureStore(Settings(home=root / "keel-redis", redis_url=url))
                rstore.apply(defs)
                rstore.materialize(now - pd.Timedelta(days=60), now, views)
                rstore.close()
                case["keel-redis"] = online_worker(cfg_path, root / "keel-redis", url)
                drop_redis(root / "keel-redis", url)
            if not args.no_feast:
                got = run_feast(cfg_path, "online", timeout_s=1800)
                if "latencies_ms" in got:
                    feast = case["feast-sqlite"] = {**summary(got.pop("latencies_ms")), **got}
                    keel = case["keel-sqlite"]
                    case["ratio_p99"] = feast["p99_ms"] / keel["p99_ms"]
                    case["ratio_p50"] = feast["p50_ms"] / keel["p50_ms"]
                else:
                    case["feast-sqlite"] = got
            out["cases"]["online"] = case

        if "materialize" in cases:
            log("keel materialize …")
            end = pd.Timestamp(cfg["bulk_end"])
            started = time.perf_counter()
            written = store.materialize(end - pd.Timedelta(days=3650), end, ["bulk"])
            keel_s = time.perf_counter() - started
            case = {"keel-sqlite": {"seconds": keel_s, "rows": written["bulk"]}}
            url = redis_url()
            if url:
                rstore = FeatureStore(Settings(home=root / "keel-redis2", redis_url=url))
                rstore.apply(defs)
                started = time.perf_counter()
                written = rstore.materialize(end - pd.Timedelta(days=3650), end, ["bulk"])
                case["keel-redis"] = {
                    "seconds": time.perf_counter() - started,
                    "rows": written["bulk"],
                }
                rstore.close()
                drop_redis(root / "keel-redis2", url)
            if not args.no_feast:
                got = run_feast(cfg_path, "materialize", timeout_s=3600)
                if "seconds" in got:
                    got["ratio"] = got["seconds"] / keel_s
                case["feast-sqlite"] = got
            out["cases"]["materialize"] = case
        store.close()

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    name = args.output or ("features-quick.json" if args.quick else "features.json")
    (RESULTS.parent / name).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps(out["cases"], indent=2, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
