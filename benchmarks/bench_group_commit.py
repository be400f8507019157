"""What group commit costs: keel serving with a 0.5 s prediction-log window vs waiting for it.

    python benchmarks/bench_group_commit.py       # 3 rounds x 6 loads x (1 + 2) s: 54 s of load
    python benchmarks/bench_group_commit.py --rounds 2 --round-seconds 4

The churn classifier and servers of ``bench_serving.py`` (one uvicorn worker, pinned to
the last CPU, the load generator on the others): six keel servers up at once, the
prediction log at ``KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0.5`` (``window``) or ``0``
(``group``: each answer waits for its fsync'd write; ``group_nofsync``: the same with
``KEEL_PREDICTION_LOG_FSYNC=false``, which survives a killed process but not a power
loss), each with the prediction cache off (``model``: every request calls LightGBM) or on
and one repeated body (``hit``). Each round loads all six, the modes in an order rotated
from round to round so a drift of the machine's speed weighs on all alike; the figures are
medians over rounds.

First, the log alone (``--log-only`` stops there): ``PredictionLog(flush_interval_s=0)``
in this process, 1, 8 and 32 asyncio tasks each appending 100 one-row requests and
awaiting each durable write, fsync on and off: requests/s and writes (segments) made,
i.e. how far group commit shares one write among concurrent requests. Results:
``benchmarks/results/group_commit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench_serving import (
    MODEL,
    Pinning,
    base_env,
    check,
    free_port,
    log,
    run_python_load,
    run_wrk,
    server,
    train_and_register,
    wrk_script,
)

RESULTS = Path(__file__).resolve().parent / "results" / "group_commit.json"
MODES = {
    "window": {"KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S": "0.5"},
    "group": {"KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S": "0"},
    "group_nofsync": {
        "KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S": "0",
        "KEEL_PREDICTION_LOG_FSYNC": "false",
    },
}
PATHS = {"model": {"KEEL_SERVING_CACHE": "false"}, "hit": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (modes' order rotated)")
    parser.add_argument("--round-seconds", type=int, default=2, help="measured s per load")
    parser.add_argument("--no-pin", action="store_true", help="leave CPUs to the scheduler")
    parser.add_argument("--log-only", action="store_true", help="only the in-process log case")
    args = parser.parse_args()
    log_alone = log_only()
    if args.log_only:
        print(json.dumps(log_alone, indent=2))
        return
    pinning = Pinning.choose(not args.no_pin)
    use_wrk = shutil.which("wrk") is not None
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-commit-"))
    runs: dict[str, list[dict[str, float]]] = {}
    try:
        log("training and registering the churn model")
        _model_dir, columns, rows, model = train_and_register(scratch / "keel")
        bodies = [json.dumps({"instances": [r]}).encode() for r in rows]
        with ExitStack() as stack:
            urls: dict[str, str] = {}
            for mode, settings in MODES.items():
                for path, extra in PATHS.items():
                    port = free_port()
                    env = base_env(
                        KEEL_HOME=str(scratch / "keel"),
                        KEEL_SERVING_PRELOAD=f"{MODEL}@champion",
                        KEEL_SERVING_RATE_LIMIT="100000000/minute",
                        **settings,
                        **extra,
                    )
                    cmd = [*pinning.server, *keel_server(port)]
                    stack.enter_context(server(cmd, f"http://127.0.0.1:{port}/readyz", env, 180))
                    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}@champion/predict"
                    check(url, bodies[0], model, rows[0], columns, keel=True)
                    urls[f"{path}_{mode}"] = url
            for n in range(args.rounds):
                modes = list(MODES)
                order = modes[n % len(modes) :] + modes[: n % len(modes)]
                for path in PATHS:
                    for mode in order:
                        name = f"{path}_{mode}"
                        log(f"round {n + 1}/{args.rounds}: {name} ({args.round_seconds} s)")
                        load = bodies if path == "model" else bodies[:1]
                        result = measure(
                            urls[name], load, args.round_seconds, use_wrk, pinning, scratch
                        )
                        runs.setdefault(name, []).append(result)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(runs, log_alone, args, use_wrk, pinning)


def log_only(requests: int = 100) -> dict[str, dict[str, float]]:
    """Group commit throughput of the log alone, by concurrency and fsync."""
    import asyncio

    from keel.serving import PredictionLog
    from keel.serving.records import ServedRequest

    def one(i: int) -> ServedRequest:
        at_ms = int(time.time() * 1000)
        return ServedRequest(
            f"r{i}", at_ms, "m", 1, ("a", "b"), [(1.0, 2.0)], [1], None, [False], False, 0.5
        )

    async def drive(log: PredictionLog, tasks: int) -> float:
        async def task(k: int) -> None:
            for i in range(requests):
                assert await log.append_durable(one(k * requests + i)).wait_async()

        started = time.perf_counter()
        await asyncio.gather(*(task(k) for k in range(tasks)))
        return tasks * requests / (time.perf_counter() - started)

    results: dict[str, dict[str, float]] = {}
    for fsync in (True, False):
        for tasks in (1, 8, 32):
            root = Path(tempfile.mkdtemp(prefix="keel-bench-commit-log-"))
            log(f"log alone: {tasks} tasks, fsync {fsync}")
            with PredictionLog(root, flush_interval_s=0, fsync=fsync) as plog:
                plog.append_durable(one(-1)).wait(30)  # warm: imports, first directory
                rate = asyncio.run(drive(plog, tasks))
                writes = plog.stats.segments - 1
            shutil.rmtree(root, ignore_errors=True)
            results[f"tasks_{tasks}_fsync_{str(fsync).lower()}"] = {
                "requests_per_s": rate,
                "writes": writes,
                "requests_per_write": tasks * requests / writes,
            }
    return results


def keel_server(port: int) -> list[str]:
    import sys

    return [
        sys.executable,
        "-c",
        "from keel.cli.main import main; main()",
        "server",
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def measure(
    url: str, bodies: list[bytes], seconds: int, use_wrk: bool, pinning: Pinning, scratch: Path
) -> dict[str, float]:
    """One load of ``seconds`` after a 1 s warm-up, from the load generator's CPUs."""
    if use_wrk:
        script = wrk_script(bodies, scratch / "load.lua")
        return run_wrk(url, script, seconds, warmup_s=1, prefix=pinning.load)
    if not pinning.load_cpus:
        return run_python_load(url, bodies, seconds, warmup_s=1)
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, pinning.load_cpus)
    try:
        return run_python_load(url, bodies, seconds, warmup_s=1)
    finally:
        os.sched_setaffinity(0, own)


def report(
    runs: dict[str, list[dict[str, float]]],
    log_alone: dict[str, dict[str, float]],
    args: argparse.Namespace,
    use_wrk: bool,
    pinning: Pinning,
) -> None:
    medians = {
        name: {k: statistics.median(r[k] for r in results) for k in ("rps", "p50_ms", "p99_ms")}
        | {"errors": sum(r["errors"] for r in results)}
        for name, results in runs.items()
    }
    ratios = {
        f"{path}_{mode}_vs_window_rps": statistics.median(
            g["rps"] / w["rps"]
            for g, w in zip(runs[f"{path}_{mode}"], runs[f"{path}_window"], strict=True)
        )
        for path in PATHS
        for mode in MODES
        if mode != "window"
    }
    payload: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg": os.getloadavg(),
        },
        "load_generator": "wrk -t2 -c16" if use_wrk else "python asyncio+httpx, 16 workers",
        "cpu_pinning": pinning.describe(),
        "rounds": args.rounds,
        "round_seconds": args.round_seconds,
        "log_alone": log_alone,
        "medians": medians,
        "ratios": ratios,
        "runs": runs,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({"log_alone": log_alone, "medians": medians, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
