"""Deployment route benchmark: two arms vs the plain alias route, and the cost of a shadow arm.

    python benchmarks/bench_deploy_route.py                 # about 5 minutes
    python benchmarks/bench_deploy_route.py --rounds 6      # steadier, longer
    python benchmarks/bench_deploy_route.py --decompose     # + two_versions (own server)

One keel server (one uvicorn worker, pinned as in ``bench_serving.py``: the server on the
last CPU, the load generator on the others) serves two LightGBM churn classifiers (300
trees, ``bench_serving``'s parameters, two seeds) registered as ``churn`` v1 (champion)
and v2, and two deployments over copies of them:

- ``churn-ab``: an A/B split 50/50, sticky by ``routing_key``;
- ``churn-canary``: the same two versions split 95/5 (a canary's usual first step; an
  A/B policy with those weights, so no controller moves them during the run);
- ``churn-shadow``: v1 answers everything, v2 gets a copy of every request as a shadow;
- ``two_versions`` (no deployment; ``--decompose`` only, with ``alias`` and ``two_arms``
  on a server of its own): the very requests ``churn-ab`` sends to each arm go to that
  arm's version through its plain version route (``/v1/models/churn/{1,2}/predict``), so
  the same two models serve the same rows. Against it, the two-arm route's ratio is the
  cost of the deployment layer alone; against the alias route, the ratio is the cost of
  serving two models (two calls of half the rows) instead of one.

Every request body carries a ``routing_key`` (one per test customer), so the alias route
(which ignores it), the two-arm deployment and the shadow deployment get the very same
bodies. Two workloads, each on a fresh server: ``model`` (prediction cache off: every
request runs a model) and ``hit`` (16 repeated bodies: cache hits, the cheapest path,
where the routing's own cost weighs most). Per workload the four routes are loaded in
rounds, in ABCD then DCBA order (``bench_serving``'s interleaving), two ways:

- **saturated**: 16 concurrent clients (``wrk``, else ``bench_serving``'s python
  workers), each sending its next request when the last is answered. Throughput is the
  server's capacity; latency is mostly concurrency / throughput.
- **fixed rate**: an open loop (``fixed_rate.py``) offering 60 % of the alias route's
  median saturated throughput to every route, latency counted from when each request was
  due. This is the p99 a server with headroom gives, and where shadow copies are served.

The targets are checked on the median of the per-round ratios: two arms vs alias
throughput ≥ 90 % (saturated), p99 ≤ 1.1x; the shadow deployment's (primary's) p99
≤ 1.2x the alias route's. The p99 targets are reported for both loads, named so.

On a machine shared with other work the throughput of one 2 s load moves by a third
from one round to the next whatever the route, so each load also records the server
process's CPU time per request (user + system, all its threads, from ``/proc``): on a
saturated server throughput is its inverse, and it moves far less with the neighbours.
Its two-arms / alias ratio is reported beside the targets (``*_cpu_per_request``).

Results: ``benchmarks/results/deploy_route.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "peers"))

from _common import free_port, log  # noqa: E402
from _deploy_route_report import DECOMPOSED, RATE_SHARE, ROUTES, report  # noqa: E402
from bench_serving import (  # noqa: E402
    LGBM_PARAMS,
    Pinning,
    base_env,
    run_python_load,
    run_wrk,
    server,
    wrk_script,
)
from fixed_rate import run_fixed_rate  # noqa: E402

_TICK_S = 1 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` (all its threads), or None off Linux."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15)


def train_and_register(home: Path) -> list[dict[str, float]]:
    """Two classifiers as ``churn``, ``churn-c`` and ``churn-s`` v1 (champion), v2; test rows."""
    from lightgbm import LGBMClassifier

    from keel.client import Client
    from keel.config import Settings
    from keel.demo.data import TARGET, load_churn, split

    frame = load_churn()
    for column in frame.columns:
        if str(frame[column].dtype) == "category":
            frame[column] = frame[column].cat.codes.astype("float64")
    train, _valid, test = split(frame, 42)
    features = [c for c in train.columns if c not in (TARGET, "customer_id")]
    models = [
        LGBMClassifier(**LGBM_PARAMS, random_state=seed, verbose=-1).fit(
            train[features], train[TARGET]
        )
        for seed in (42, 7)
    ]
    client = Client(settings=Settings(home=home))
    with client.start_run("bench-deploy-route", capture_env=False) as run:
        for name in ("churn", "churn-c", "churn-s"):
            for model in models:
                run.log_model(model, registered_name=name, input_example=train[features].head(5))
            client.set_alias(name, "champion", 1)
    client.close()
    return [
        {k: float(v) for k, v in row.items()}
        for row in test[features].head(1000).to_dict("records")
    ]


def create_deployments(base: str) -> None:
    """The A/B and the shadow deployment, through the REST API (once per home)."""
    import httpx

    policies = [
        {
            "name": "churn-ab",
            "model": "churn",
            "strategy": "ab",
            "arms": [
                {"version": 1, "role": "primary", "weight": 50},
                {"version": 2, "role": "challenger", "weight": 50},
            ],
        },
        {
            "name": "churn-canary",
            "model": "churn-c",
            "strategy": "ab",
            "arms": [
                {"version": 1, "role": "primary", "weight": 95},
                {"version": 2, "role": "challenger", "weight": 5},
            ],
        },
        {
            "name": "churn-shadow",
            "model": "churn-s",
            "strategy": "shadow",
            "arms": [{"version": 1, "role": "primary"}, {"version": 2, "role": "shadow"}],
        },
    ]
    for policy in policies:
        response = httpx.post(f"{base}/v1/deployments", json=policy, timeout=60)
        if response.status_code != 409:  # 409: created for the previous workload's server
            response.raise_for_status()


def ab_paths(n: int) -> list[str]:
    """The version route of the arm ``churn-ab`` gives each of the ``n`` bodies (their
    ``routing_key`` is ``customer-{i}``), by the router the gateway builds for it."""
    from keel.deploy.routing import Router

    router = Router.build("churn-ab", [("primary", 50.0), ("challenger", 50.0)], sticky=True)
    version = {"primary": 1, "challenger": 2}
    return [f"/v1/models/churn/{version[router.choose(f'customer-{i}')]}/predict" for i in range(n)]


def check_split(base: str, bodies: list[bytes]) -> None:
    """The deployment answers the first bodies from the versions ``ab_paths`` sends them to
    (else the ``two_versions`` route would not serve the same rows as ``two_arms``)."""
    import httpx

    expected = ab_paths(len(bodies))
    for i, body in enumerate(bodies[:40]):
        response = httpx.post(
            f"{base}/v1/deployments/churn-ab/predict",
            content=body,
            headers={"content-type": "application/json"},
            timeout=30,
        )
        response.raise_for_status()
        version = response.json()["version"]
        if expected[i] != f"/v1/models/churn/{version}/predict":
            raise RuntimeError(f"body {i}: churn-ab answered with v{version}, not {expected[i]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="ABC/CBA rounds per workload")
    parser.add_argument("--round-seconds", type=int, default=2, help="measured s per load")
    parser.add_argument("--rate-rounds", type=int, default=4, help="fixed-rate rounds (0: none)")
    parser.add_argument("--rate-seconds", type=int, default=3, help="measured s per fixed load")
    parser.add_argument("--no-pin", action="store_true", help="leave CPU placement alone")
    parser.add_argument(
        "--decompose",
        action="store_true",
        help="also a model-path pass of alias, two_arms and two_versions on its own server",
    )
    args = parser.parse_args()
    pinning = Pinning.choose(not args.no_pin)
    use_wrk = shutil.which("wrk") is not None
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-deploy-"))
    results: dict[str, Any] = {}
    try:
        log("training and registering two churn models")
        rows = train_and_register(scratch / "keel")
        bodies = [
            json.dumps({"instances": [r], "routing_key": f"customer-{i}"}).encode()
            for i, r in enumerate(rows)
        ]
        passes: list[tuple[str, dict[str, str], tuple[str, ...]]] = [
            ("model", {"KEEL_SERVING_CACHE": "false"}, ROUTES),
            ("hit", {}, ROUTES),
        ]
        if args.decompose:
            passes.append(("decomposed", {"KEEL_SERVING_CACHE": "false"}, DECOMPOSED))
        for workload, extra, routes in passes:
            results[workload] = run_workload(
                scratch,
                workload,
                extra,
                bodies[:16] if workload == "hit" else bodies,
                args,
                pinning,
                use_wrk,
                routes,
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(results, args, pinning.describe(), use_wrk)


def run_workload(
    scratch: Path,
    workload: str,
    extra: dict[str, str],
    bodies: list[bytes],
    args: argparse.Namespace,
    pinning: Pinning,
    use_wrk: bool,
    routes: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Rounds of ``routes`` on one fresh server; per round, each route's figures."""
    port = free_port()
    env = base_env(
        KEEL_HOME=str(scratch / "keel"),
        KEEL_SERVING_PRELOAD="churn@champion,churn-c@champion,churn-s@champion",
        KEEL_SERVING_RATE_LIMIT="100000000/minute",
        # No in-process job worker: its every-minute deploy.evaluate reads the whole log
        # the load is writing (DuckDB, in this server process), so whichever route was
        # measured at the minute paid for it (the alias route of each fourth round at a
        # third of its rate; fixed-rate p99 spikes of 0.4-2 s). The controller's own cost
        # is bench_deploy.py's.
        KEEL_WORKER="off",
        **extra,
    )
    cmd = [
        *pinning.server,
        sys.executable,
        "-c",
        "from keel.cli.main import main; main()",
        "server",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    base = f"http://127.0.0.1:{port}"
    urls: dict[str, str | list[str]] = {
        "alias": f"{base}/v1/models/churn@champion/predict",
        "two_arms": f"{base}/v1/deployments/churn-ab/predict",
        "canary": f"{base}/v1/deployments/churn-canary/predict",
        "shadow": f"{base}/v1/deployments/churn-shadow/predict",
        "two_versions": [f"{base}{path}" for path in ab_paths(len(bodies))],
    }

    pid = 0

    def load(route: str, seconds: int, warmup: int) -> dict[str, float]:
        if use_wrk:
            target = urls[route]
            paths = None if isinstance(target, str) else [urlsplit(u).path for u in target]
            script = wrk_script(bodies, scratch / f"{workload}-{route}.lua", paths)
            url = target if isinstance(target, str) else target[0]
            if warmup:
                run_wrk(url, script, warmup, warmup_s=0, prefix=pinning.load)
            before = cpu_seconds(pid)
            figures = run_wrk(url, script, seconds, warmup_s=0, prefix=pinning.load)
        else:
            own = os.sched_getaffinity(0)
            if pinning.load_cpus:
                os.sched_setaffinity(0, pinning.load_cpus)
            try:
                if warmup:
                    run_python_load(urls[route], bodies, warmup, warmup_s=0)
                before = cpu_seconds(pid)
                figures = run_python_load(urls[route], bodies, seconds, warmup_s=0)
            finally:
                os.sched_setaffinity(0, own)
        after = cpu_seconds(pid)
        requests = figures.get("requests") or figures["rps"] * seconds
        if before is not None and after is not None and requests:
            figures["cpu_us_per_request"] = (after - before) / requests * 1e6
        return figures

    def fixed(route: str, rate: float, seconds: int) -> dict[str, Any]:
        own = os.sched_getaffinity(0)
        if pinning.load_cpus:
            os.sched_setaffinity(0, pinning.load_cpus)
        try:
            run_fixed_rate(urls[route], bodies, rate, 1)  # warm-up at the same rate
            before = cpu_seconds(pid)
            figures = run_fixed_rate(urls[route], bodies, rate, seconds)
            after = cpu_seconds(pid)
        finally:
            os.sched_setaffinity(0, own)
        if before is not None and after is not None and figures["requests"]:
            figures["cpu_us_per_request"] = (after - before) / figures["requests"] * 1e6
        return figures

    import httpx

    def shadow_counts() -> dict[str, Any]:
        status = httpx.get(f"{base}/v1/serving/status", timeout=30).json()
        return dict(status["deployments"]["shadows"])

    def measured(route: str, figures: dict[str, Any]) -> dict[str, Any]:
        """``figures``, once the shadow copies queued by ``route``'s load are answered:
        the backlog runs when the server is idle, which the next route's load is not."""
        deadline = time.monotonic() + 30
        while route == "shadow" and time.monotonic() < deadline:
            if not any(lane["queued"] for lane in shadow_counts().values()):
                break
            time.sleep(0.1)
        return figures

    rounds: list[dict[str, Any]] = []
    with server(cmd, f"{base}/readyz", env, 120) as proc:
        pid = proc.pid
        create_deployments(base)
        check_split(base, bodies)
        for route in routes:  # every arm loaded and warm before anything is measured
            measured(route, load(route, 1, 0))
        for n in range(args.rounds):
            log(f"{workload}: round {n + 1}/{args.rounds} ({args.round_seconds} s per route)")
            order = routes if n % 2 == 0 else routes[::-1]
            rounds.append(
                {route: measured(route, load(route, args.round_seconds, 1)) for route in order}
            )
        rounds.append({"shadow_counts": shadow_counts()})
        if args.rate_rounds:
            alias_rps = statistics.median(r["alias"]["rps"] for r in rounds if "alias" in r)
            rate = round(RATE_SHARE * alias_rps)
            for n in range(args.rate_rounds):
                log(f"{workload}: fixed rate {rate}/s, round {n + 1}/{args.rate_rounds}")
                order = routes if n % 2 == 0 else routes[::-1]
                loads = {
                    route: measured(route, fixed(route, rate, args.rate_seconds)) for route in order
                }
                rounds.append({"fixed_rate": loads})
            rounds.append({"shadow_counts_after_fixed_rate": shadow_counts()})
    return rounds


if __name__ == "__main__":
    main()
