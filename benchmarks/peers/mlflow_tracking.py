"""MLflow side of ``benchmarks/bench_tracking.py``.

Runs inside ``benchmarks/.venv-mlflow`` (see ``setup_peers.sh``), never in
keel's environment. Each sub-command prints one JSON line on stdout; progress
goes to stderr. Every loop is bounded by a count and a time budget.

    python peers/mlflow_tracking.py http   --workdir D [--calls 1000]
    python peers/mlflow_tracking.py runs   --workdir D [--runs 1000]
    python peers/mlflow_tracking.py search --workdir D [--runs 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_MAX_RESULTS,
    SEARCH_ORDER_BY,
    emit,
    free_port,
    log,
    metric_value,
    search_rows,
    stop_server,
    summarize_ms,
    wait_http,
)

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}
os.environ.update(QUIET_ENV)

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


# --------------------------------------------------------------------------- http
def cmd_http(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    cmd = [
        str(mlflow_bin),
        "server",
        "--backend-store-uri",
        f"sqlite:///{work / 'mlflow.db'}",
        "--default-artifact-root",
        str(work / "art"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {**os.environ, **QUIET_ENV}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    server_log = open(work / "mlflow-server.log", "wb")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=work, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/health", proc, args.start_timeout_s)
        startup_s = time.perf_counter() - t0
        log(f"mlflow server up on {url} in {startup_s:.1f} s")
        client = MlflowClient(tracking_uri=url)
        exp_id = client.create_experiment("bench")
        run = client.create_run(exp_id)
        run_id = run.info.run_id
        for i in range(args.warmup):
            client.log_metric(run_id, "warmup", metric_value(i), step=i)
        durations: list[float] = []
        deadline = time.monotonic() + args.budget_s
        for i in range(args.calls):
            v = metric_value(i)
            t = time.perf_counter()
            client.log_metric(run_id, "loss", v, step=i)
            durations.append(time.perf_counter() - t)
            if time.monotonic() > deadline:
                log(f"time budget hit after {i + 1} calls")
                break
        client.set_terminated(run_id)
        logged = len(client.get_metric_history(run_id, "loss"))
        emit(
            {
                "product": "mlflow",
                "mlflow_version": mlflow.__version__,
                "case": "http",
                "calls_requested": args.calls,
                "metrics_stored": logged,
                "truncated": len(durations) < args.calls,
                "server_startup_s": startup_s,
                **summarize_ms(durations),
            }
        )
    finally:
        stop_server(proc)
        server_log.close()


# --------------------------------------------------------------------------- runs
def _one_run(i: int) -> None:
    with mlflow.start_run():
        mlflow.log_params({f"p{k}": f"v{k}-{i % 7}" for k in range(5)})
        mlflow.log_metrics({f"m{k}": (i * 0.001 + k) for k in range(5)})


def cmd_runs(args: argparse.Namespace) -> None:
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # any default ./mlruns artefact folder lands in the scratch dir
    t0 = time.perf_counter()
    mlflow.set_tracking_uri(f"sqlite:///{work / 'm.db'}")
    mlflow.set_experiment("bench")
    for i in range(args.warmup):
        _one_run(-1 - i)
    setup_s = time.perf_counter() - t0
    log(f"mlflow sqlite store ready in {setup_s:.1f} s; logging {args.runs} runs")
    durations: list[float] = []
    deadline = time.monotonic() + args.budget_s
    for i in range(args.runs):
        t = time.perf_counter()
        _one_run(i)
        durations.append(time.perf_counter() - t)
        if time.monotonic() > deadline:
            log(f"time budget hit after {i + 1} runs")
            break
    emit(
        {
            "product": "mlflow",
            "mlflow_version": mlflow.__version__,
            "case": "runs",
            "runs_requested": args.runs,
            "truncated": len(durations) < args.runs,
            "setup_s": setup_s,
            **summarize_ms(durations),
        }
    )


# --------------------------------------------------------------------------- search
def _seed(
    store, exp_id: str, art_root: str, n: int, chunk: int, budget_s: float, fallback: int
) -> tuple[int, float, str]:
    """Bulk-insert ``n`` runs straight into MLflow's SQL tables (SqlAlchemyStore's engine).

    If the first chunk projects past ``budget_s`` the seeding stops at ``fallback``
    runs. Returns (runs seeded, seconds, note).
    """
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun

    run_t, param_t = SqlRun.__table__, SqlParam.__table__
    metric_t, latest_t = SqlMetric.__table__, SqlLatestMetric.__table__
    t0 = time.perf_counter()
    target, seeded, note = n, 0, ""
    rows = search_rows(n)
    while seeded < target:
        runs, params, metrics = [], [], []
        for _ in range(min(chunk, target - seeded)):
            r = next(rows)
            rid = uuid.uuid4().hex
            runs.append(
                {
                    "run_uuid": rid,
                    "name": f"run-{r.index}",
                    "source_type": "LOCAL",
                    "source_name": "",
                    "entry_point_name": "",
                    "user_id": "bench",
                    "status": "FINISHED",
                    "start_time": r.start_time_ms,
                    "end_time": r.start_time_ms + 1,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": f"{art_root}/{exp_id}/{rid}/artifacts",
                    "experiment_id": int(exp_id),
                }
            )
            params.append({"key": "model", "value": r.model, "run_uuid": rid})
            for key, value in (("auc", r.auc), ("loss", r.loss)):
                metrics.append(
                    {
                        "key": key,
                        "value": value,
                        "timestamp": r.start_time_ms,
                        "step": 0,
                        "is_nan": False,
                        "run_uuid": rid,
                    }
                )
        with store.engine.begin() as conn:
            conn.execute(run_t.insert(), runs)
            conn.execute(param_t.insert(), params)
            conn.execute(metric_t.insert(), metrics)
            conn.execute(latest_t.insert(), metrics)
        seeded += len(runs)
        elapsed = time.perf_counter() - t0
        if seeded == len(runs) and target > fallback:
            projected = elapsed / seeded * target
            if projected > budget_s:
                target = max(fallback, seeded)
                note = (
                    f"seeding {n} runs projected {projected:.0f} s > {budget_s:.0f} s; "
                    f"seeded {target} instead"
                )
                log(note)
        if seeded % (chunk * 5) == 0:
            log(f"seeded {seeded}/{target} runs in {elapsed:.1f} s")
    return seeded, time.perf_counter() - t0, note


def cmd_search(args: argparse.Namespace) -> None:
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    uri = f"sqlite:///{work / 'search.db'}"
    art_root = str(work / "art")
    t0 = time.perf_counter()
    store = SqlAlchemyStore(uri, art_root)
    exp_id = store.create_experiment(SEARCH_EXPERIMENT)
    setup_s = time.perf_counter() - t0
    seeded, seed_s, note = _seed(
        store, exp_id, art_root, args.runs, args.chunk, args.seed_budget_s, args.fallback_runs
    )
    log(f"mlflow: seeded {seeded} runs in {seed_s:.1f} s (store setup {setup_s:.1f} s)")
    client = MlflowClient(tracking_uri=uri)

    def search():
        return client.search_runs(
            [exp_id],
            filter_string=SEARCH_FILTER,
            order_by=SEARCH_ORDER_BY,
            max_results=SEARCH_MAX_RESULTS,
        )

    def timed(warmup: int) -> tuple[list[float], object]:
        for _ in range(warmup):
            search()
        durations: list[float] = []
        result = None
        deadline = time.monotonic() + args.budget_s
        for i in range(args.repeat):
            t = time.perf_counter()
            result = search()
            durations.append(time.perf_counter() - t)
            if time.monotonic() > deadline:
                log(f"time budget hit after {i + 1} searches")
                break
        return durations, result

    durations, result = timed(args.warmup)
    analyzed: dict[str, object] = {}
    if args.analyze_too:
        # MLflow never runs ANALYZE; without statistics SQLite 3.40 scans the
        # materialised ORDER BY subquery once per matching run. Time the same
        # search again with statistics, to show how much of the gap is that plan.
        t = time.perf_counter()
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        analyze_s = time.perf_counter() - t
        after, _ = timed(2)
        analyzed = {"analyze_s": analyze_s, **summarize_ms(after)}
        log(f"mlflow: after ANALYZE p50 {analyzed['p50_ms']:.0f} ms")
    top = [r.data.metrics["auc"] for r in (result or [])]
    emit(
        {
            "product": "mlflow",
            "mlflow_version": mlflow.__version__,
            "case": "search",
            "runs_requested": args.runs,
            "runs_seeded": seeded,
            "seed_s": seed_s,
            "seed_note": note,
            "repeat_requested": args.repeat,
            "results": len(top),
            "top_auc": top[:10],
            "ordered_desc": all(a >= b for a, b in zip(top, top[1:], strict=False)),
            "all_lgbm": all(r.data.params.get("model") == "lgbm" for r in (result or [])),
            "after_analyze": analyzed,
            **summarize_ms(durations),
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    h = sub.add_parser("http", help="log_metric one call at a time against `mlflow server`")
    h.add_argument("--workdir", required=True)
    h.add_argument("--calls", type=int, default=1000)
    h.add_argument("--warmup", type=int, default=20)
    h.add_argument("--budget-s", type=float, default=300.0)
    h.add_argument("--start-timeout-s", type=float, default=180.0)
    h.set_defaults(fn=cmd_http)

    r = sub.add_parser("runs", help="N runs x 5 params + 5 metrics, local SQLite")
    r.add_argument("--workdir", required=True)
    r.add_argument("--runs", type=int, default=1000)
    r.add_argument("--warmup", type=int, default=5)
    r.add_argument("--budget-s", type=float, default=300.0)
    r.set_defaults(fn=cmd_runs)

    s = sub.add_parser("search", help="search_runs over N seeded runs")
    s.add_argument("--workdir", required=True)
    s.add_argument("--runs", type=int, default=100_000)
    s.add_argument("--repeat", type=int, default=50)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--chunk", type=int, default=10_000)
    s.add_argument("--seed-budget-s", type=float, default=300.0)
    s.add_argument("--fallback-runs", type=int, default=10_000)
    s.add_argument("--budget-s", type=float, default=300.0)
    s.add_argument(
        "--analyze-too",
        action="store_true",
        help="after the timed searches, run ANALYZE and time them again",
    )
    s.set_defaults(fn=cmd_search)

    args = p.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
