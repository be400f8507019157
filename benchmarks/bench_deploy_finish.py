"""Wall time of the promote and rollback calls of a deployment with N labelled rows logged.

A stateful canary deployment (segments on ``tenure``, the usual roc_auc guardrail) of two
real churn classifiers; N rows logged as its arms served them (real predictions, the
gateway's writer) with their labels, then one call timed: ``DeploymentService.rollback``
of one deployment and ``DeploymentService.promote`` of a second one, each over its own N
rows. What ending a deployment starts afterwards (the report archive, the contamination
count) is timed separately by running the job queue dry once the call returned.

Usage: python benchmarks/bench_deploy_finish.py [--rows 100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from keel import Client
from keel.config import Settings
from keel.demo.data import TARGET, load_churn
from keel.services import Services, open_services
from keel.serving.predlog import PredictionLog, log_root
from keel.serving.records import PredictionRecord

FEATURES = ["tenure", "monthly_charges", "total_charges"]


def policy(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "model": "churn",
        "strategy": "canary",
        "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "canary"}],
        "steps": [5, 25, 50, 100],
        "min_samples_per_step": 200,
        "min_dwell": "10m",
        "guardrails": {"metric": {"name": "roc_auc", "min_improvement": 0.02}},
        "analysis": {"segments": ["tenure"]},
        "stateful": True,
    }


def log_rows(services: Services, models: dict[int, Any], name: str, rows: int) -> None:
    """``rows`` predictions of deployment ``name`` (25 % canary) ending now, labelled."""
    frame = load_churn().dropna(subset=FEATURES)
    rng = np.random.default_rng(rows)
    picked = frame.iloc[rng.integers(0, len(frame), rows)]
    canary = rng.random(rows) < 0.25
    positive = {v: m.predict_proba(picked[FEATURES])[:, 1] for v, m in models.items()}
    created = services.deployments.get(name).created_at_ms
    end = services.deployments.clock()
    times = np.linspace(created + 1, end - 1, rows).astype(np.int64)
    features = picked[FEATURES].to_numpy(float)
    labels = picked[TARGET].to_numpy(int)
    sent = []
    with PredictionLog(log_root(services.settings), flush_interval_s=0.5, fsync=False) as log:
        for i in range(rows):
            version = 2 if canary[i] else 1
            p1 = float(positive[version][i])
            request_id = f"{name}-{i}"
            log.append(
                PredictionRecord(
                    request_id=request_id,
                    at_ms=int(times[i]),
                    model="churn",
                    version=version,
                    features=dict(zip(FEATURES, features[i].tolist(), strict=True)),
                    output=int(p1 >= 0.5),
                    probabilities=[1 - p1, p1],
                    latency_ms=5.0,
                    deployment=name,
                    arm="canary" if canary[i] else "primary",
                )
            )
            sent.append({"request_id": request_id, "label": int(labels[i])})
        assert log.flush()
    services.feedback.submit(sent)


def drain(services: Services) -> int:
    """Run every queued job message in this process (a consumer in burst mode)."""
    huey = services.jobs.queue.huey
    done = 0
    while (task := huey.dequeue()) is not None:
        huey.execute(task)
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"rollback": [], "promote": [], "jobs_after": []}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "keel")
        services = open_services(settings)
        frame = load_churn().dropna(subset=FEATURES)
        good = LogisticRegression(max_iter=2_000).fit(frame[FEATURES], frame[TARGET])
        alone = frame[FEATURES].assign(tenure=0.0, total_charges=0.0)
        weak = LogisticRegression(max_iter=2_000).fit(alone, frame[TARGET])
        client = Client(settings=settings)
        with client.start_run("bench") as run:
            for model in (good, weak):
                run.log_model(model, registered_name="churn", input_example=frame[FEATURES][:5])
        client.set_alias("churn", "champion", 1)
        client.close()
        models = {1: good, 2: weak}
        for i in range(args.rounds):
            for action in ("rollback", "promote"):
                name = f"bench-{action}-{i}"
                services.deployments.create(policy(name), actor="bench")
                time.sleep(0.01)
                log_rows(services, models, name, args.rows)
                began = time.perf_counter()
                if action == "rollback":
                    services.deployments.rollback(name, reason="bench", actor="bench")
                else:
                    services.deployments.promote(name, actor="bench")
                    services.registry.set_alias("churn", "champion", 1)  # next round's CAS
                took = time.perf_counter() - began
                times[action].append(took)
                began = time.perf_counter()
                jobs = drain(services)
                after = time.perf_counter() - began
                times["jobs_after"].append(after)
                print(f"{action} {name}: call {took:.3f}s, then {jobs} job(s) {after:.3f}s")
        services.close()
    summary = {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in times.items()}
    summary["rows"] = args.rows  # type: ignore[assignment]
    print(json.dumps(summary, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
