"""The second half of ``keel demo``: serve the champion, watch it, explain what went wrong.

Held-out customers are scored one request at a time through the in-process
gateway (micro-batched, cached, logged), their churn labels arrive as
feedback, and a monitor checks the window: all quiet. Then a price change
hits — month-to-month customers pay 35% more and more of them churn — and
the same monitor raises an alert, names the drifted features, and the
diagnosis says which cause explains the bad window best.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from keel.client import Client
from keel.demo.data import TARGET
from keel.services import Services
from keel.serving.gateway import Gateway, Target
from keel.serving.predlog import PredictionLog, log_root

__all__ = ["serve_and_monitor"]

CONCURRENCY = 16
MONITOR = "telco-churn-live"


async def _serve(services: Services, model: str, rows: pd.DataFrame) -> dict[str, Any]:
    """Send each row as its own request, ``CONCURRENCY`` in flight; returns ids and timings."""
    log = PredictionLog(log_root(services.settings), flush_interval_s=0.2)
    gateway = Gateway(services.settings, services.registry, prediction_log=log)
    await gateway.start()
    await gateway.preload(f"{model}@champion")
    target = Target(model, alias="champion")
    records = rows.to_dict("records")
    latencies: list[float] = []
    ids: list[str] = []

    async def one(i: int, row: dict[str, Any]) -> None:
        body = json.dumps({"instances": [row], "probabilities": True}, default=_plain).encode()
        started = time.perf_counter()
        result = await gateway.predict(target, body, client_key=f"customer-{i}")
        latencies.append(time.perf_counter() - started)
        ids.append(result.body["request_id"])

    started = time.perf_counter()
    try:
        for chunk in range(0, len(records), CONCURRENCY):
            await asyncio.gather(
                *(one(chunk + j, r) for j, r in enumerate(records[chunk : chunk + CONCURRENCY]))
            )
        # The same 50 customers again: answered from the prediction cache.
        for i, row in enumerate(records[:50]):
            await one(i, row)
        status = gateway.status()
    finally:
        await gateway.close()  # flushes the prediction log
    batches: dict[str, int] = next(iter(status["batch_rows"].values()), {})
    coalesced = sum(int(size) * count for size, count in batches.items() if int(size) > 1)
    return {
        "request_ids": ids[: len(records)],
        "seconds": time.perf_counter() - started,
        "p50_ms": float(np.median(latencies)) * 1000,
        "p99_ms": float(np.quantile(latencies, 0.99)) * 1000,
        "cache_hits": sum(status["cache"]["hits"].values()),
        "batched_rows": coalesced,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _window(seconds: float) -> str:
    return f"{max(2, math.ceil(seconds) + 1)}s"


def serve_and_monitor(
    client: Client, services: Services, console: Console, model: str, test: pd.DataFrame
) -> dict[str, Any]:
    """Steps 6-9 of the demo; returns the figures printed."""
    features = [c for c in test.columns if c not in (TARGET, "customer_id")]
    half = len(test) // 2
    before, after = test.iloc[:half], test.iloc[half:].copy()

    console.print(
        f"6. serve {model}@champion: {half} customers, one request each, {CONCURRENCY} in flight"
    )
    served = asyncio.run(_serve(services, model, before[features]))
    console.print(
        f"  {served['seconds']:.1f} s, p50 {served['p50_ms']:.1f} ms, "
        f"p99 {served['p99_ms']:.1f} ms; "
        f"{served['batched_rows']} rows answered in micro-batches; "
        f"50 repeats → {served['cache_hits']} cache hits"
    )

    console.print("7. their churn labels arrive as feedback; a monitor checks the window")
    client.log_feedback(
        {"request_id": r, "label": int(y)}
        for r, y in zip(served["request_ids"], before[TARGET], strict=True)
    )
    spec: dict[str, Any] = {
        "task": "classification",
        "label_column": TARGET,
        "slices": ["contract"],
    }
    client.create_monitor(MONITOR, model, window=_window(served["seconds"]), **spec)
    quiet = client.run_monitor(MONITOR)
    _print_run(console, quiet)

    console.print("8. a price change: month-to-month customers pay 35% more, more of them leave")
    monthly = after["contract"].astype(str) == "Month-to-month"
    after.loc[monthly, "monthly_charges"] *= 1.35
    after.loc[monthly, "total_charges"] *= 1.35
    flip = np.random.default_rng(7).random(len(after)) < 0.25
    after.loc[monthly & flip, TARGET] = 1
    time.sleep(1.1)  # the next window starts after the first one ends
    served_after = asyncio.run(_serve(services, model, after[features]))
    client.log_feedback(
        {"request_id": r, "label": int(y)}
        for r, y in zip(served_after["request_ids"], after[TARGET], strict=True)
    )
    client.create_monitor(MONITOR, model, window=_window(served_after["seconds"]), **spec)
    alert = client.run_monitor(MONITOR)
    _print_run(console, alert)

    console.print("9. diagnosis of the alerting window")
    diagnosis = services.monitors.diagnose(MONITOR, alert.id, slice_by=["contract"])
    scores = ", ".join(
        f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in diagnosis.scores.items()
    )
    console.print(f"  verdict: [bold]{diagnosis.verdict}[/] ({scores})")
    for line in diagnosis.evidence[:4]:
        console.print(f"  · {line}")
    if diagnosis.attributions:
        top = diagnosis.attributions[0]
        console.print(
            f"  SHAP: {top.feature} moved most "
            f"(mean |SHAP| {top.reference:.3f} → {top.current:.3f})"
        )
    return {
        "served": served,
        "quiet_status": quiet.status,
        "alert_status": alert.status,
        "drifted": alert.summary.get("drifted", []),
        "verdict": diagnosis.verdict,
        "report_html": client.monitor_report(MONITOR, alert.id),
    }


def _print_run(console: Console, run: Any) -> None:
    style = {"ok": "green", "alert": "bold red"}.get(run.status, "yellow")
    performance = run.results.get("performance") or {}
    estimated = run.results.get("estimated") or {}
    console.print(
        f"  monitor: [{style}]{run.status}[/] — {run.n_current} predictions, "
        f"{run.n_labelled} labelled, drifted: {', '.join(run.summary.get('drifted', [])) or 'none'}"
    )
    if run.summary.get("performance"):
        console.print(f"  performance: {', '.join(run.summary['performance'])}")
    grid = Table(show_header=True, title_justify="left")
    for column in ("metric", "realised (labels)", "estimated (scores only)"):
        grid.add_column(column)
    for metric in ("accuracy", "roc_auc", "f1"):
        real, est = performance.get(metric), estimated.get(metric)
        grid.add_row(
            metric,
            "-" if real is None else f"{real:.3f}",
            "-" if est is None else f"{est:.3f}",
        )
    console.print(grid)
