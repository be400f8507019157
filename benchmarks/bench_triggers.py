"""Trigger evaluation over 1M logged predictions with labels.

Builds a home with churn v1 @champion (logistic regression on the telco churn table, its
training data logged as the reference), a week of N predictions resampled from the
table's production rows and scored by the model (Parquet segments as the gateway lays
them out, one per hour), and a label for every prediction (feedback segments). Then
times ``TriggerService.evaluate`` of:

- seed 004's churn set: AUC < 0.78, PSI drift on 3+ features, monthly, > 10,000 new labels
  (every condition over the whole week: 1M predictions, 1M labels);
- a seed-001-style set on the churn features: accuracy drop 0.05 over 7d vs the week
  before, PSI 0.2 on two listed features, output shift 0.1 over 24h.

Neither set fires here (no shift), so the figure is the evaluation itself; a firing adds
the diagnosis of the window (SHAP on 300 rows). Usage:
python benchmarks/bench_triggers.py [--rows 1000000] [--repeat 3] [--out F]

Each figure is the median of ``--repeat`` calls, wall and CPU (``process_time``: every
thread); the floor is measured in the same run and the ratios printed. Results go to
``benchmarks/results/triggers.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from sklearn.linear_model import LogisticRegression

from keel import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn, split
from keel.monitoring.feedback import FEEDBACK_SCHEMA
from keel.services import open_services
from keel.serving._segments import BASE_SCHEMA, partition_dir, write_segment
from keel.serving.predlog import log_root

RESULTS = Path(__file__).resolve().parent / "results" / "triggers.json"
FEATURES = ["tenure", "monthly_charges", "total_charges", "senior_citizen", "paperless_billing"]
HOUR_MS = 3_600_000
# apply() checks the retrain section; neither set fires here, so the function never runs
# (the script's directory is on sys.path when it is run as documented).
RETRAIN = {"train": "bench_triggers:train", "label": "churn"}
SEED_004 = {
    "name": "seed-004",
    "model": "churn",
    "any": [
        {"metric": "auc", "below": 0.78},
        {"metric": "drift_score", "threshold": 0.01, "min_features": 3},
        {"metric": "schedule", "cron": "@monthly"},
        {"metric": "new_labels", "threshold": 10_000_000},  # counts all 1M, does not fire
    ],
    "retrain": RETRAIN,
}
SEED_001 = {
    "name": "seed-001",
    "model": "churn",
    "triggers": [
        {"metric": "accuracy", "threshold": 0.05, "window": "3d", "baseline": "3d"},
        {"metric": "feature_drift_psi", "threshold": 0.2, "features": ["tenure", "total_charges"]},
        {"metric": "prediction_distribution_shift", "threshold": 0.1, "window": "24h"},
    ],
    "retrain": RETRAIN,
}


def train(frame: pd.DataFrame, params: dict[str, Any]) -> LogisticRegression:
    """The retrain section's train function (never called: neither set fires)."""
    return LogisticRegression(max_iter=2_000).fit(frame[FEATURES], frame[TARGET])


def build(home: Path, rows: int, now_ms: int) -> None:
    services = open_services(Settings(home=home))
    frame = load_churn().dropna(subset=FEATURES)
    train, _, production = split(frame, seed=1, fractions=(0.6, 0.1))
    model = LogisticRegression(max_iter=2_000).fit(train[FEATURES], train[TARGET])
    with Client(settings=services.settings) as client:
        with client.start_run("bench-triggers") as run:
            run.log_input(train[[*FEATURES, TARGET]], name="churn-train")
            version = run.log_model(
                model, registered_name="churn", input_example=train[FEATURES][:5]
            )
        client.set_alias("churn", "champion", version.version)  # type: ignore[union-attr]
    rng = np.random.default_rng(7)
    sample = production.iloc[rng.integers(0, len(production), rows)].reset_index(drop=True)
    proba = model.predict_proba(sample[FEATURES])[:, 1]
    start = now_ms - 7 * 24 * HOUR_MS
    ts = np.sort(rng.integers(start, now_ms - 60_000, rows))
    ids = np.array([f"r{i}" for i in range(rows)])
    root = log_root(services.settings)
    # One segment per clock hour, in that hour's partition (as the gateway writes them):
    # readers prune partitions by their hour, so a segment must not spill into the next.
    hours = ts // HOUR_MS
    for hour in np.unique(hours):
        part = hours == hour
        n = int(part.sum())
        columns = {
            "ts": pa.array(ts[part], pa.int64()).cast(BASE_SCHEMA.field("ts").type),
            "request_id": pa.array(ids[part]),
            "deployment": pa.nulls(n, pa.string()),
            "arm": pa.nulls(n, pa.string()),
            "entity_key": pa.nulls(n, pa.string()),
            "probabilities": pa.array([[1 - p, p] for p in proba[part]], pa.list_(pa.float64())),
            "latency_ms": pa.array(np.ones(n)),
            "cached": pa.array(np.zeros(n, bool)),
            "fallback": pa.array(np.zeros(n, bool)),
            "extra": pa.nulls(n, pa.string()),
            "output": pa.array((proba[part] >= 0.5).astype(np.int64)),
            **{f"f_{c}": pa.array(sample[c].to_numpy()[part]) for c in FEATURES},
        }
        at = int(hour * HOUR_MS)
        write_segment(pa.table(columns), partition_dir(root, "churn", 1, at), "part-0.parquet")
    labels = sample[TARGET].to_numpy()
    received = pa.array(np.full(rows, now_ms + 120_000), pa.int64()).cast(
        FEEDBACK_SCHEMA.field("received_ts").type
    )
    feedback = pa.table(
        {
            "request_id": pa.array(ids),
            "entity_key": pa.nulls(rows, pa.string()),
            "event_ts": pa.nulls(rows, FEEDBACK_SCHEMA.field("event_ts").type),
            "label": pa.array(labels.astype(str)),
            "label_value": pa.array(labels.astype(float)),
            "model": pa.array(["churn"] * rows),
            "received_ts": received,
        },
        schema=FEEDBACK_SCHEMA,
    )
    write_segment(feedback, root.parent / "feedback" / "date=2026-01-01", "part-bench.parquet")
    services.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    now_ms = int(time.time() * 1000)
    record: dict[str, Any] = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "cores": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "keel"
        began = time.perf_counter()
        build(home, args.rows, now_ms)
        print(f"built {args.rows:,} predictions + labels in {time.perf_counter() - began:.1f}s")
        # labels arrive 2 minutes after the last prediction, after the model's registration;
        # the triggers look 3 minutes after it (the week's window loses its first 3 minutes)
        now_ms += 180_000
        services = open_services(Settings(home=home))
        for spec in (SEED_004, SEED_001):
            services.triggers.apply(spec)
            services.triggers.evaluate(spec["name"], now_ms)  # warm: reference profile cached
            times, cpu = [], []
            for _ in range(args.repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                result = services.triggers.evaluate(spec["name"], now_ms)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            numbers = ", ".join(
                f"{c.metric}={c.value if c.value is None else round(c.value, 4)} (n={c.n})"
                for c in result.conditions
            )
            print(
                f"{spec['name']}: median {statistics.median(times):.3f}s wall, "
                f"{statistics.median(cpu):.3f}s CPU (min {min(times):.3f}s) "
                f"fired={result.fired}; {numbers}"
            )
            record["sets"][spec["name"]] = {
                "wall_s": _rounded(times),
                "cpu_s": _rounded(cpu),
                "median_wall_s": round(statistics.median(times), 3),
                "median_cpu_s": round(statistics.median(cpu), 3),
                "fired": result.fired,
                "conditions": numbers,
            }
        services.close()
        record["floor"] = floor(home, args.repeat)
    low = record["floor"]
    for name, figures in record["sets"].items():
        figures["x_floor_wall"] = round(figures["median_wall_s"] / low["median_wall_s"], 2)
        figures["x_floor_cpu"] = round(figures["median_cpu_s"] / low["median_cpu_s"], 2)
        wall, cpu = figures["x_floor_wall"], figures["x_floor_cpu"]
        print(f"{name}: {wall}x the floor (wall), {cpu}x (CPU)")
    record["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


def _rounded(values: list[float]) -> list[float]:
    return [round(v, 3) for v in values]


def floor(home: Path, repeat: int) -> dict[str, Any]:
    """One DuckDB query joining every logged prediction with its label: the least any
    evaluation over the labels must read."""
    root = log_root(Settings(home=home))
    logged = [str(p) for p in root.glob("model=churn/**/*.parquet")]
    labels = [str(p) for p in (root.parent / "feedback").glob("**/*.parquet")]
    sql = (
        "SELECT p.ts, p.output, p.probabilities[-1] AS score, f.label_value, f.received_ts "
        "FROM read_parquet($p) p JOIN (SELECT request_id, arg_max(label_value, received_ts) "
        "AS label_value, max(received_ts) AS received_ts FROM read_parquet($f) "
        "GROUP BY request_id) f USING (request_id)"
    )
    times, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        with duckdb.connect() as con:
            con.execute(sql, {"p": logged, "f": labels}).fetchnumpy()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    print(
        f"floor (bare join): median {statistics.median(times):.3f}s wall, "
        f"{statistics.median(cpu):.3f}s CPU"
    )
    return {
        "wall_s": _rounded(times),
        "cpu_s": _rounded(cpu),
        "median_wall_s": round(statistics.median(times), 3),
        "median_cpu_s": round(statistics.median(cpu), 3),
    }


if __name__ == "__main__":
    main()
