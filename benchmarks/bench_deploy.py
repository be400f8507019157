"""Controller evaluation over 1M logged predictions vs a bare DuckDB query of the same data.

Writes a prediction log of N rows (two arms of one deployment, two versions, two hours,
Parquet segments as the gateway's writer lays them out) and labels for a share of them,
then times:

- floor: one DuckDB ``GROUP BY arm`` (count, errors, p99) straight over the files;
- guardrails: :func:`keel.deploy.armstats.read_arm_stats` without a metric (what a
  policy with error-rate and p99 guardrails reads each tick);
- with metric: the same plus ROC AUC per arm from the labels (joined by request id);
- judged: the same with R-DEP-15's two 10-minute burn-in cuts and a 30-minute attribution
  window (labels arriving 0-60 minutes after their prediction: about half are late);
- segments: the judged read with the per-segment numbers of the same window, as a
  controller tick reads them (:func:`keel.deploy.segments.read_with_segments`: one view,
  one label join) over the log's inputs ``plan`` (3 values), ``region`` (4), ``flag``
  (boolean), ``x`` (continuous): ``analysis.segments`` naming the first three, or left to
  its default (those three by value and ``x`` by quartiles).

Usage: python benchmarks/bench_deploy.py [--rows 1000000] [--labelled 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from keel.deploy.armstats import ArmWindow, read_arm_stats
from keel.deploy.segments import read_with_segments
from keel.serving._segments import BASE_SCHEMA, partition_dir, write_segment
from keel.serving.predquery import segment_files

START_MS = 1_900_000_000_000
HOUR_MS = 3_600_000


def write_log(root: Path, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """N rows over two hours; 10 % canary (v2), 90 % primary (v1). Returns id/label pairs."""
    ts = np.sort(rng.integers(START_MS, START_MS + 2 * HOUR_MS, rows))
    canary = rng.random(rows) < 0.1
    p1 = rng.random(rows)
    labels = (rng.random(rows) < p1).astype(int)
    ids = np.array([f"r{i}" for i in range(rows)])
    for version, mask in ((1, ~canary), (2, canary)):
        for hour in (0, 1):
            start = START_MS + hour * HOUR_MS
            part = mask & (ts >= start) & (ts < start + HOUR_MS)
            n = int(part.sum())
            table = pa.table(
                {
                    "ts": pa.array(ts[part], pa.int64()).cast(BASE_SCHEMA.field("ts").type),
                    "request_id": pa.array(ids[part]),
                    "deployment": pa.array(["bench"] * n),
                    "arm": pa.array(["canary" if version == 2 else "primary"] * n),
                    "entity_key": pa.nulls(n, pa.string()),
                    "probabilities": pa.array(
                        [[1 - p, p] for p in p1[part]], pa.list_(pa.float64())
                    ),
                    "latency_ms": pa.array(rng.gamma(2.0, 3.0, n)),
                    "cached": pa.array(np.zeros(n, bool)),
                    "fallback": pa.array(rng.random(n) < 0.001),
                    "extra": pa.nulls(n, pa.string()),
                    "output": pa.array((p1[part] >= 0.5).astype(np.int64)),
                    "f_x": pa.array(rng.normal(size=n)),
                    "f_plan": pa.array(rng.choice(["basic", "plus", "pro"], n)),
                    "f_region": pa.array(rng.choice(["n", "e", "s", "w"], n)),
                    "f_flag": pa.array(rng.random(n) < 0.3),
                }
            )
            write_segment(table, partition_dir(root, "m", version, start), "part-0.parquet")
    return pd.DataFrame({"request_id": ids, "label": labels.astype(str)})


def timed(fn: object, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append(time.perf_counter() - began)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--labelled", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "predictions"
        began = time.perf_counter()
        pairs = write_log(root, args.rows, rng)
        keep = pairs.sample(frac=args.labelled, random_state=1)
        labels = pd.DataFrame(
            {
                "request_id": keep["request_id"],
                "label": keep["label"],
                "label_value": keep["label"].astype(float),
                "received_ts": pd.Timestamp(START_MS + 3 * HOUR_MS, unit="ms", tz="UTC"),
            }
        )
        took = time.perf_counter() - began
        print(f"wrote {args.rows:,} rows, {len(labels):,} labels in {took:.1f}s")
        end = START_MS + 2 * HOUR_MS
        window = ArmWindow(START_MS, START_MS + HOUR_MS, end - 600_000, end)
        files = [str(f) for f in segment_files(root)]

        def floor() -> None:
            with duckdb.connect() as con:
                con.execute(
                    "SELECT arm, count(*), count(*) FILTER (WHERE fallback), "
                    "quantile_cont(latency_ms, 0.99) FROM read_parquet($f) "
                    "WHERE deployment = 'bench' GROUP BY arm",
                    {"f": files},
                ).fetchall()

        def guards() -> None:
            read_arm_stats(
                root, None, "m", "bench", ["primary", "canary"], window, primary="primary"
            )

        # Requests r0.. are in time order over the two hours (write_log sorts ts).
        position = keep["request_id"].str[1:].astype(int).to_numpy() / args.rows
        delay = rng.integers(0, HOUR_MS, len(keep))
        delayed = labels.assign(
            received_ts=pd.to_datetime(
                START_MS + (position * 2 * HOUR_MS).astype(np.int64) + delay, unit="ms", utc=True
            )
        )
        cuts = ((START_MS, START_MS + 600_000), (START_MS + HOUR_MS, START_MS + HOUR_MS + 600_000))
        judged_window = dataclasses.replace(window, burn_in=cuts, attribution_s=1800)

        def judged() -> None:
            stats = read_arm_stats(
                root,
                lambda: delayed,
                "m",
                "bench",
                ["primary", "canary"],
                judged_window,
                primary="primary",
                metrics=["roc_auc"],
            )
            assert stats["canary"].metric is not None and stats["canary"].pending > 0

        def with_metric() -> None:
            stats = read_arm_stats(
                root,
                lambda: labels,
                "m",
                "bench",
                ["primary", "canary"],
                window,
                primary="primary",
                metrics=["roc_auc"],
            )
            assert stats["canary"].metric is not None

        def segments(columns: list[str] | None) -> None:
            # what a controller tick reads: the judged arm numbers and the segments together
            stats, found = read_with_segments(
                root,
                lambda: delayed,
                "m",
                "bench",
                judged_window,
                columns,
                arms=["primary", "canary"],
                segment_arms=["primary", "canary"],
                primary="primary",
                metrics=["roc_auc"],
            )
            assert stats["canary"].metric is not None
            assert found and all(t["values"] for t in found.values())
            if columns is None:  # the default: plan, region, flag by value, x by quartiles
                assert list(found) == ["flag", "plan", "region", "x"], list(found)

        for name, fn in (
            ("bare DuckDB (floor)", floor),
            ("guardrails", guards),
            ("guardrails + roc_auc", with_metric),
            ("+ burn-in, attribution", judged),
            ("+ segments plan,region,flag", lambda: segments(["plan", "region", "flag"])),
            ("+ default segments", lambda: segments(None)),
        ):
            runs = timed(fn, args.repeat)
            print(f"{name:24s} median {statistics.median(runs):.3f}s  best {min(runs):.3f}s")


if __name__ == "__main__":
    main()
