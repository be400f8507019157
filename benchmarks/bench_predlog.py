"""Prediction-log benchmark: append cost on the caller, writer throughput, DuckDB window queries.

    python benchmarks/bench_predlog.py                 # 1M rows, about 8 minutes on 2 cores
    python benchmarks/bench_predlog.py --rows 100000 --append-records 50000   # ~1 minute

Cases
-----
append   ``PredictionLog.append`` timed call by call (perf_counter_ns) against the floor,
         a bare ``queue.Queue.put`` of the same record objects; p50/p99 in µs.
writer   records/s from the first append until ``close()`` returned (all on disk,
         fsync on), one producer thread, churn-like records (19 features).
query    one hour holding ``--rows`` predictions of one model version, written as the
         gateway would at a steady rate (``--segment-rows`` rows per segment, i.e. one
         segment per 0.5 s flush at 1M rows/hour), queried three ways: the raw segments;
         the hour as the log's compactor leaves it while open (small segments merged every
         5 minutes: 12 files); the closed hour compacted into one file. Queries: the full
         window as a table, one feature column, category counts of one feature; median
         of 5 runs after a warm-up (one run on the raw segments, which is slow).

Everything runs in a scratch directory; results go to ``benchmarks/results/predlog.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import queue
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from keel.serving import PredictionLog, PredictionRecord, compact, predictions
from keel.serving.predquery import segment_files

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "predlog.json"
HOUR_START = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
CONTRACTS = ["Month-to-month", "One year", "Two year"]
SERVICES = ["DSL", "Fiber optic", "No"]
console = Console()


def make_records(n: int, start_ms: int, span_ms: int, seed: int = 0) -> list[PredictionRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        features: dict[str, Any] = {f"num_{k}": rng.random() * 100 for k in range(12)}
        features.update({f"flag_{k}": float(rng.random() < 0.5) for k in range(4)})
        features["contract"] = rng.choice(CONTRACTS)
        features["internet_service"] = rng.choice(SERVICES)
        features["payment_method"] = rng.choice(SERVICES)
        p = rng.random()
        out.append(
            PredictionRecord(
                request_id=f"req-{i:08d}",
                at_ms=start_ms + (i * span_ms) // n,
                model="churn",
                version=3,
                features=features,
                output=int(p > 0.5),
                latency_ms=rng.random() * 2,
                probabilities=[1 - p, p],
                deployment="churn-prod",
                arm="champion",
                entity_key=str(i % 5000),
            )
        )
    return out


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "p50_us": ordered[len(ordered) // 2] / 1000,
        "p99_us": ordered[int(len(ordered) * 0.99)] / 1000,
        "mean_us": statistics.fmean(ordered) / 1000,
    }


def bench_append(records: list[PredictionRecord], scratch: Path) -> dict[str, Any]:
    floor: queue.Queue[PredictionRecord] = queue.Queue(maxsize=len(records) + 1)
    timer = time.perf_counter_ns
    floor_ns = []
    for item in records:
        started = timer()
        floor.put(item)
        floor_ns.append(timer() - started)
    log = PredictionLog(scratch / "append", max_queue=max(len(records) + 1, 10_000))
    append_ns = []
    started_all = time.perf_counter()
    for item in records:
        started = timer()
        log.append(item)
        append_ns.append(timer() - started)
    appended_s = time.perf_counter() - started_all
    log.close()
    drained_s = time.perf_counter() - started_all
    stats = log.stats
    assert stats.written == len(records), stats
    return {
        "records": len(records),
        "queue_put": percentiles(floor_ns),
        "append": percentiles(append_ns),
        "append_rate_per_s": len(records) / appended_s,
        "written_rate_per_s": len(records) / drained_s,
        "segments": stats.segments,
    }


def median_s(call: Any, runs: int = 5) -> tuple[float, Any]:
    if runs > 1:
        call()  # warm-up (file cache, DuckDB)
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def _link_new_parts(source: Path, target: Path, linked: set[str]) -> None:
    for path in sorted(source.rglob("part-*.parquet")):
        if path.name not in linked:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, destination)
            linked.add(path.name)


def _queries(window: dict[str, Any], rows: int, runs: int) -> dict[str, Any]:
    full_s, table = median_s(lambda: predictions(**window), runs)
    assert table.num_rows == rows, table.num_rows
    one_s, _ = median_s(lambda: predictions(**window, columns=["ts", "f_num_0"]), runs)
    agg_s, _ = median_s(
        lambda: (
            predictions(**window, columns=["f_contract"])
            .group_by("f_contract")
            .aggregate([("f_contract", "count")])
        ),
        runs,
    )
    return {
        "files": len(segment_files(window["root"], "churn", 3)),
        "full_window_s": full_s,
        "one_feature_s": one_s,
        "category_counts_s": agg_s,
    }


def bench_query(rows: int, segment_rows: int, scratch: Path) -> dict[str, Any]:
    """Three copies of one hour: raw segments, compacted every 5 min (open), compacted once."""
    raw, periodic = scratch / "raw", scratch / "periodic"
    start_ms = int(HOUR_START.timestamp() * 1000)
    records = make_records(rows, start_ms, 3_600_000, seed=1)
    per_5_min = max(1, rows // 12)
    linked: set[str] = set()
    periodic_s = 0.0
    started = time.perf_counter()
    # fsync off for the fill only: the writer's own throughput is measured above.
    with PredictionLog(raw, max_batch=segment_rows, max_queue=rows + 1, fsync=False) as log:
        for i in range(0, rows, segment_rows):
            for item in records[i : i + segment_rows]:
                log.append(item)
            log.flush()  # one segment per chunk, as steady traffic at 0.5 s flushes makes
            end = i + segment_rows
            if end // per_5_min != i // per_5_min or end >= rows:
                # What the log's compactor does every 5 minutes in the open hour.
                log.flush()
                _link_new_parts(raw, periodic, linked)
                at = HOUR_START + dt.timedelta(milliseconds=(end * 3_600_000) // rows)
                tick = time.perf_counter()
                compact(
                    periodic, include_open=True, now=min(at, HOUR_START + dt.timedelta(minutes=59))
                )
                periodic_s += time.perf_counter() - tick
    fill_s = time.perf_counter() - started - periodic_s
    del records
    window: dict[str, Any] = {
        "model": "churn",
        "version": 3,
        "start": HOUR_START,
        "end": HOUR_START + dt.timedelta(hours=1),
    }
    results: dict[str, Any] = {"rows": rows, "segment_rows": segment_rows, "fill_s": fill_s}
    results["segments"] = _queries({**window, "root": raw}, rows, runs=1)  # slow: once
    results["periodic_compaction_s"] = periodic_s
    results["every_5_min"] = _queries({**window, "root": periodic}, rows, runs=5)
    started = time.perf_counter()
    report = compact(raw, now=HOUR_START + dt.timedelta(days=1), fsync=True)
    results["compact_s"] = time.perf_counter() - started
    results["compact_bytes"] = [report.bytes_in, report.bytes_out]
    results["compacted"] = _queries({**window, "root": raw}, rows, runs=5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the queried hour")
    parser.add_argument("--segment-rows", type=int, default=139, help="rows per segment")
    parser.add_argument("--append-records", type=int, default=200_000)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-predlog-"))
    try:
        now_ms = int(time.time() * 1000)
        append = bench_append(make_records(args.append_records, now_ms, 60_000), scratch)
        query = bench_query(args.rows, args.segment_rows, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    grid = Table(title="prediction log", title_justify="left")
    for column in ("case", "figure"):
        grid.add_column(column)
    a, f = append["append"], append["queue_put"]
    grid.add_row("append() on the caller", f"p50 {a['p50_us']:.2f} µs, p99 {a['p99_us']:.2f} µs")
    grid.add_row("floor: queue.Queue.put", f"p50 {f['p50_us']:.2f} µs, p99 {f['p99_us']:.2f} µs")
    grid.add_row("append rate (caller)", f"{append['append_rate_per_s']:,.0f} records/s")
    grid.add_row(
        "written to disk (fsync)",
        f"{append['written_rate_per_s']:,.0f} records/s in {append['segments']} segments",
    )
    for stage in ("segments", "every_5_min", "compacted"):
        s = query[stage]
        grid.add_row(
            f"1h window, {query['rows']:,} rows, {s['files']} files",
            f"full {s['full_window_s']:.3f} s, one feature {s['one_feature_s']:.3f} s, "
            f"category counts {s['category_counts_s']:.3f} s",
        )
    grid.add_row("compaction every 5 min (total)", f"{query['periodic_compaction_s']:.1f} s")
    grid.add_row(
        "compaction of the closed hour",
        f"{query['compact_s']:.1f} s, bytes {query['compact_bytes'][0]:,} → "
        f"{query['compact_bytes'][1]:,}",
    )
    console.print(grid)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "loadavg": list(os.getloadavg()),
                },
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "append": append,
                "query": query,
            },
            indent=2,
        )
    )
    console.print(f"results: {RESULTS}")


if __name__ == "__main__":
    main()
