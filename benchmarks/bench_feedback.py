"""Feedback submission benchmark: 10k new labels in one call on top of 1M stored (#15.27).

    python benchmarks/bench_feedback.py                       # 1M stored, about 1 minute
    python benchmarks/bench_feedback.py --stored 100000       # quick
    python benchmarks/bench_feedback.py --baseline-rev 0973099 --stored 200000
        # the same calls through keel/monitoring/feedback.py as it was at that commit

Set-up (untimed): a prediction log of ``--stored`` + 4 × ``--batch`` logged predictions
spread over 30 days of hour partitions (one compacted file per hour, as the log's
compactor leaves closed hours), and ``--stored`` labels for the first ``--stored`` of
them as feedback segments of 10k labels each (what ``--stored / 10k`` daily label jobs
leave).

Cases
-----
first    the first call after the upgrade: one label that is already stored (a
         duplicate); the current code builds its index of stored labels and logged
         request ids here, once.
submit   ``FeedbackStore.submit`` of ``--batch`` new labels for logged predictions,
         each batch a fresh set; median of 3 calls.
floor    what any submission has to do: probe the batch's label keys and request ids
         in in-memory sorted arrays of the stored ones (numpy ``searchsorted``, arrays
         built untimed) and write the batch as one fsynced Parquet segment; median of 3.

Results go to ``benchmarks/results/feedback.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from keel.monitoring.feedback import FEEDBACK_SCHEMA
from keel.serving.predlog import BASE_SCHEMA, partition_dir, write_segment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results" / "feedback.json"
START = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
SEGMENT = 10_000
console = Console()


def request_id(i: int) -> str:
    return hashlib.blake2b(i.to_bytes(8, "little"), digest_size=16).hexdigest()


def log_predictions(root: Path, n: int) -> None:
    """``n`` predictions of churn v1 over 30 days, one compacted file per hour."""
    hours = 30 * 24
    per_hour = -(-n // hours)
    rng = np.random.default_rng(0)
    for h in range(hours):
        lo, hi = h * per_hour, min(n, (h + 1) * per_hour)
        if lo >= hi:
            break
        begins_ms = int((START + dt.timedelta(hours=h)).timestamp() * 1000)
        ts = begins_ms + np.sort(rng.integers(0, 3_600_000, hi - lo))
        table = pa.table(
            {
                "ts": pa.array(ts, pa.int64()).cast(BASE_SCHEMA.field("ts").type),
                "request_id": [request_id(i) for i in range(lo, hi)],
                "entity_key": [f"cust-{i % 50_000}" for i in range(lo, hi)],
                "latency_ms": rng.random(hi - lo),
                "output": rng.integers(0, 2, hi - lo),
                "f_tenure": rng.random(hi - lo) * 72,
            }
        )
        where = partition_dir(root, "churn", 1, begins_ms)
        write_segment(table, where, f"compact-{h:05d}.parquet", fsync=False)


def store_labels(root: Path, n: int) -> None:
    """``n`` labels by request id, 10k per segment, one day of segments after another."""
    for s, lo in enumerate(range(0, n, SEGMENT)):
        hi = min(n, lo + SEGMENT)
        received = START + dt.timedelta(days=31 + s // 10, minutes=s)
        table = pa.table(
            {
                "request_id": [request_id(i) for i in range(lo, hi)],
                "entity_key": [None] * (hi - lo),
                "event_ts": [None] * (hi - lo),
                "label": [str(i % 2) for i in range(lo, hi)],
                "label_value": [float(i % 2) for i in range(lo, hi)],
                "model": ["churn"] * (hi - lo),
                "received_ts": [received] * (hi - lo),
            },
            schema=FEEDBACK_SCHEMA,
        )
        write_segment(table, root / f"date={received:%Y-%m-%d}", f"part-{s:06d}.parquet")


def load_store_class(rev: str | None) -> Any:
    """``FeedbackStore`` of the working tree, or of ``feedback.py`` at a git revision."""
    if rev is None:
        from keel.monitoring.feedback import FeedbackStore

        return FeedbackStore
    source = subprocess.run(
        ["git", "show", f"{rev}:src/keel/monitoring/feedback.py"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "feedback_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("feedback_baseline", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.FeedbackStore


def timed(call: Any) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``call()`` (CPU of all the process's threads), and its result."""
    began, cpu = time.perf_counter(), time.process_time()
    out = call()
    return time.perf_counter() - began, time.process_time() - cpu, out


def floor_s(stored: int, batches: list[list[dict[str, Any]]], scratch: Path) -> tuple[float, float]:
    """Median wall and CPU time to probe a batch in sorted in-memory arrays and write it."""

    def key(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")

    total = stored + 4 * len(batches[0])
    predicted = np.sort(np.array([key(request_id(i)) for i in range(total)], np.uint64))
    labelled = np.sort(np.array([key(request_id(i) + "|0") for i in range(stored)], np.uint64))
    times, cpus = [], []
    for n, batch in enumerate(batches):
        began, cpu = time.perf_counter(), time.process_time()
        ids = np.array([key(item["request_id"]) for item in batch], np.uint64)
        keys = np.array([key(f"{item['request_id']}|{item['label']}") for item in batch], np.uint64)
        known = predicted[np.minimum(np.searchsorted(predicted, ids), total - 1)] == ids
        stored_already = labelled[np.minimum(np.searchsorted(labelled, keys), stored - 1)] == keys
        fresh = [item for item, dup in zip(batch, stored_already, strict=True) if not dup]
        table = pa.table(
            {
                "request_id": [i["request_id"] for i in fresh],
                "label": [json.dumps(i["label"]) for i in fresh],
            }
        )
        write_segment(table, scratch / "floor", f"part-{n}.parquet")
        times.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu)
        assert known.all() and len(fresh) == len(batch)
    return statistics.median(times), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--baseline-rev", help="time feedback.py of this git revision instead")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    store_class = load_store_class(args.baseline_rev)
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-feedback-"))
    try:
        began = time.perf_counter()
        log_predictions(scratch / "predictions", args.stored + 4 * args.batch)
        store_labels(scratch / "feedback", args.stored)
        console.print(f"set-up: {time.perf_counter() - began:.1f} s")
        store = store_class(scratch / "feedback", scratch / "predictions")
        first_s, first_cpu, result = timed(
            lambda: store.submit([{"request_id": request_id(0), "label": 0}])
        )
        assert (result.accepted, result.duplicates) == (0, 1), result
        batches = [
            [
                {"request_id": request_id(i), "label": i % 2, "model": "churn"}
                for i in range(args.stored + b * args.batch, args.stored + (b + 1) * args.batch)
            ]
            for b in range(4)
        ]
        submits, submit_cpus = [], []
        for batch in batches[:3]:
            seconds, cpu, result = timed(lambda batch=batch: store.submit(batch))
            assert (result.accepted, result.unknown) == (len(batch), 0), result
            submits.append(seconds)
            submit_cpus.append(cpu)
        submit_s, submit_cpu = statistics.median(submits), statistics.median(submit_cpus)
        floor, floor_cpu = floor_s(args.stored, batches[:3], scratch)
        index_bytes = sum(p.stat().st_size for p in (scratch / "feedback").glob("index.sqlite3*"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = Table(title=f"{args.batch:,} new labels on {args.stored:,} stored")
    for column in ("case", "wall s", "× floor", "CPU s", "× floor CPU"):
        table.add_column(column, justify="right")
    for case, wall, cpu in (
        ("first call (index build)", first_s, first_cpu),
        ("submit (median of 3)", submit_s, submit_cpu),
        ("floor", floor, floor_cpu),
    ):
        table.add_row(
            case, f"{wall:.3f}", f"{wall / floor:.1f}", f"{cpu:.3f}", f"{cpu / floor_cpu:.1f}"
        )
    console.print(f"index files: {index_bytes / 1e6:.1f} MB")
    console.print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    console.print(table)
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "code": args.baseline_rev or "working tree",
        "stored": args.stored,
        "batch": args.batch,
        "first_s": first_s,
        "first_cpu_s": first_cpu,
        "submit_s": submits,
        "submit_cpu_s": submit_cpus,
        "floor_s": floor,
        "floor_cpu_s": floor_cpu,
        "index_bytes": index_bytes,
        "load_average": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
