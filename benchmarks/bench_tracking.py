"""Tracking benchmark: keel against MLflow 3 (SQLite backend), same run, same machine.

    python benchmarks/bench_tracking.py            # full (about 15 minutes on 2 cores)
    python benchmarks/bench_tracking.py --quick    # smaller counts, a couple of minutes
    python benchmarks/bench_tracking.py --cases http,runs --runs 200

Cases
-----
http    1,000 ``log_metric`` calls, one at a time, through each SDK to each
        product's own server on 127.0.0.1 (1 worker each).
runs    1,000 runs x (5 params + 5 metrics), embedded / local SQLite, no server.
search  ``search_runs`` with a metric filter, a param filter and ``order_by`` a
        metric, over 100,000 (and 10,000) runs seeded into each product's SQLite.

keel runs in this interpreter; MLflow runs in ``benchmarks/.venv-mlflow``
(``bash benchmarks/setup_peers.sh``) through ``benchmarks/peers/mlflow_tracking.py``.
Every loop is bounded in count and time; servers bind 127.0.0.1 on free ports
and are always stopped. Results go to ``benchmarks/results/tracking.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

from _common import (  # noqa: E402
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_MAX_RESULTS,
    SEARCH_ORDER_BY,
    expected_matches,
    free_port,
    log,
    metric_value,
    search_rows,
    stop_server,
    summarize_ms,
    wait_http,
)

PEER_VENV = HERE / ".venv-mlflow"
PEER_SCRIPT = HERE / "peers" / "mlflow_tracking.py"
RESULTS = HERE / "results" / "tracking.json"
TARGETS = {"http": 10.0, "runs": 5.0}  # minimum mlflow/keel ratio
SEARCH_P50_TARGET_MS = 100.0


# --------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def keel_home(path: Path) -> Iterator[None]:
    """Point KEEL_HOME (read when a ``keel.Client`` is built) at a scratch dir."""
    old = os.environ.get("KEEL_HOME")
    os.environ["KEEL_HOME"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("KEEL_HOME", None)
        else:
            os.environ["KEEL_HOME"] = old


@contextlib.contextmanager
def working_dir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run_peer(case: str, workdir: Path, timeout_s: float, *extra: str) -> dict[str, Any]:
    """Run one MLflow sub-command in its venv; return its JSON line."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} missing: run `bash benchmarks/setup_peers.sh` first")
    cmd = [str(python), str(PEER_SCRIPT), case, "--workdir", str(workdir), *extra]
    log(f"mlflow {case}: {' '.join(cmd[2:])}")
    err_path = workdir.parent / f"mlflow-{case}-{workdir.name}.stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.run(
            cmd,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout_s,
            cwd=workdir.parent,
            start_new_session=True,
        )
    lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = err_path.read_text(errors="replace").splitlines()[-25:]
        raise RuntimeError(f"mlflow {case} failed ({proc.returncode}):\n" + "\n".join(tail))
    return json.loads(lines[-1])


def keel_cli() -> list[str]:
    exe = Path(sys.executable).parent / "keel"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("keel")
    if found:
        return [found]
    return [sys.executable, "-c", "from keel.cli.main import main; main()"]


# --------------------------------------------------------------------------- keel: http
def keel_http(work: Path, calls: int, warmup: int, budget_s: float) -> dict[str, Any]:
    import keel

    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "KEEL_HOME": str(work / "home")}
    server_log = open(work / "keel-server.log", "wb")  # noqa: SIM115
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*keel_cli(), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        cwd=work,
        stdout=server_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/readyz", proc, 120)
        startup_s = time.perf_counter() - t0
        log(f"keel server up on {url} in {startup_s:.1f} s")
        client = keel.Client(url)
        durations: list[float] = []
        with client.start_run(experiment="bench") as run:
            for i in range(warmup):
                run.log_metric("warmup", metric_value(i), step=i)
            deadline = time.monotonic() + budget_s
            for i in range(calls):
                v = metric_value(i)
                t = time.perf_counter()
                run.log_metric("loss", v, step=i)
                durations.append(time.perf_counter() - t)
                if time.monotonic() > deadline:
                    log(f"keel http: time budget hit after {i + 1} calls")
                    break
        stored = len(client.metric_history(run.id, "loss"))
        client.close()
        return {
            "product": "keel",
            "case": "http",
            "calls_requested": calls,
            "metrics_stored": stored,
            "truncated": len(durations) < calls,
            "server_startup_s": startup_s,
            **summarize_ms(durations),
        }
    finally:
        stop_server(proc)
        server_log.close()


# --------------------------------------------------------------------------- keel: runs
def _keel_one_run(client: Any, i: int, capture_env: bool) -> None:
    with client.start_run(experiment="bench", capture_env=capture_env) as run:
        run.log_params({f"p{k}": f"v{k}-{i % 7}" for k in range(5)})
        run.log_metrics({f"m{k}": (i * 0.001 + k) for k in range(5)})


def resultuns(
    work: Path, runs: int, warmup: int, budget_s: float, capture_env: bool = True
) -> dict[str, Any]:
    import keel

    work.mkdir(parents=True, exist_ok=True)
    # Same as the MLflow side: the process runs in a scratch dir (no git work tree).
    with keel_home(work / "home"), working_dir(work):
        t0 = time.perf_counter()
        client = keel.Client()
        for i in range(warmup):
            _keel_one_run(client, -1 - i, capture_env)
        setup_s = time.perf_counter() - t0
        durations: list[float] = []
        deadline = time.monotonic() + budget_s
        for i in range(runs):
            t = time.perf_counter()
            _keel_one_run(client, i, capture_env)
            durations.append(time.perf_counter() - t)
            if time.monotonic() > deadline:
                log(f"keel runs: time budget hit after {i + 1} runs")
                break
        client.close()
    return {
        "product": "keel",
        "case": "runs",
        "runs_requested": runs,
        "capture_env": capture_env,
        "truncated": len(durations) < runs,
        "setup_s": setup_s,
        **summarize_ms(durations),
    }


# --------------------------------------------------------------------------- keel: search
def _seed_keel_sdk(client: Any, rows: list[Any]) -> None:
    """The public path: one run per row through the SDK (environment capture off)."""
    for r in rows:
        with client.start_run(
            experiment=SEARCH_EXPERIMENT,
            name=f"run-{r.index}",
            params={"model": r.model},
            capture_env=False,
        ) as run:
            run.log_metrics({"auc": r.auc, "loss": r.loss})


def _seed_keel_bulk(
    db_path: Path, experiment_id: str, rows: Iterator[Any], n: int, chunk: int = 20_000
) -> None:
    """Bulk path: rows straight into keel's SQLite tables, one transaction per chunk.

    keel has no bulk-import API yet, so this writes the same rows the SDK path
    writes (``runs``, ``params``, ``metrics``, ``latest_metrics``), as the MLflow
    side does with its own tables. Checked against keel's schema below.
    """
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        done = 0
        while done < n:
            runs, params, metrics = [], [], []
            for _ in range(min(chunk, n - done)):
                r = next(rows)
                rid = uuid.uuid4().hex
                runs.append(
                    (
                        rid,
                        experiment_id,
                        f"run-{r.index}",
                        "FINISHED",
                        r.start_time_ms,
                        r.start_time_ms + 1,
                        "bench",
                        "{}",
                    )
                )
                params.append((rid, "model", r.model))
                for key, value in (("auc", r.auc), ("loss", r.loss)):
                    metrics.append((rid, key, value, r.start_time_ms))
            with conn:
                conn.executemany(
                    "INSERT INTO runs (id, experiment_id, name, status, start_time_ms,"
                    " end_time_ms, user, environment) VALUES (?,?,?,?,?,?,?,?)",
                    runs,
                )
                conn.executemany("INSERT INTO params (run_id, key, value) VALUES (?,?,?)", params)
                conn.executemany(
                    "INSERT INTO metrics (run_id, key, value, is_nan, step, timestamp_ms)"
                    " VALUES (?,?,?,0,0,?)",
                    metrics,
                )
                conn.executemany(
                    "INSERT INTO latest_metrics (run_id, key, experiment_id, value, is_nan, step,"
                    " timestamp_ms) VALUES (?,?,?,?,0,0,?)",
                    [(m[0], m[1], experiment_id, m[2], m[3]) for m in metrics],
                )
            done += len(runs)
            log(f"keel: bulk-seeded {done}/{n}")
    finally:
        conn.close()


def keel_search(
    work: Path, n: int, repeat: int, warmup: int, budget_s: float, sdk_runs: int
) -> dict[str, Any]:
    import keel

    work.mkdir(parents=True, exist_ok=True)
    with keel_home(work / "home"), working_dir(work):
        client = keel.Client()
        db_url = client.settings.resolved_database_url
        exp = client.create_experiment(SEARCH_EXPERIMENT)
        sdk_runs = min(sdk_runs, n)
        rows = search_rows(n)
        t0 = time.perf_counter()
        _seed_keel_sdk(client, [next(rows) for _ in range(sdk_runs)])
        sdk_s = time.perf_counter() - t0
        log(
            f"keel: {sdk_runs} runs through the SDK in {sdk_s:.1f} s "
            f"({sdk_s / max(sdk_runs, 1) * 1000:.1f} ms/run)"
        )
        db_path = Path(db_url.removeprefix("sqlite:///"))
        t1 = time.perf_counter()
        _seed_keel_bulk(db_path, exp.id, rows, n - sdk_runs)
        bulk_s = time.perf_counter() - t1

        def search() -> Any:
            return client.search_runs(
                SEARCH_EXPERIMENT,
                filter=SEARCH_FILTER,
                order_by=SEARCH_ORDER_BY,
                max_results=SEARCH_MAX_RESULTS,
            )

        for _ in range(warmup):
            search()
        durations: list[float] = []
        page = None
        deadline = time.monotonic() + budget_s
        for i in range(repeat):
            t = time.perf_counter()
            page = search()
            durations.append(time.perf_counter() - t)
            if time.monotonic() > deadline:
                log(f"keel search: time budget hit after {i + 1} searches")
                break
        items = list(page.items) if page is not None else []
        client.close()
    top = [r.metrics["auc"] for r in items]
    return {
        "product": "keel",
        "case": "search",
        "runs_requested": n,
        "runs_seeded": n,
        "seed_sdk_runs": sdk_runs,
        "seed_sdk_s": sdk_s,
        "seed_sdk_ms_per_run": sdk_s / max(sdk_runs, 1) * 1000,
        "seed_bulk_s": bulk_s,
        "repeat_requested": repeat,
        "results": len(top),
        "top_auc": top[:10],
        "ordered_desc": all(a >= b for a, b in zip(top, top[1:], strict=False)),
        "all_lgbm": all(r.params.get("model") == "lgbm" for r in items),
        **summarize_ms(durations),
    }


# --------------------------------------------------------------------------- report
def ratio(mlflow: float | None, keel: float | None) -> float | None:
    if not mlflow or not keel:
        return None
    return mlflow / keel


def fmt(x: float | None, unit: str = "") -> str:
    if x is None or x != x:  # None or NaN
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}{unit}"
    if abs(x) >= 10:
        return f"{x:.1f}{unit}"
    return f"{x:.2f}{unit}"


def check_search(result: dict[str, Any], n: int) -> list[str]:
    """Compare a search result against the expected top AUCs (both products)."""
    _, top = expected_matches(n)
    problems = []
    got = result.get("top_auc", [])
    if result.get("results") != min(SEARCH_MAX_RESULTS, len(top)) or any(
        abs(a - b) > 1e-12 for a, b in zip(got, top[:10], strict=False)
    ):
        problems.append(f"{result['product']} search result differs from the expected top AUCs")
    if not result.get("ordered_desc") or not result.get("all_lgbm"):
        problems.append(f"{result['product']} search result not ordered or not filtered")
    return problems


def build_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "http" in results:
        k, m = results["http"]["keel"], results["http"]["mlflow"]
        for stat in ("mean_ms", "p50_ms", "p99_ms"):
            rows.append(
                {
                    "case": f"log_metric over HTTP, {k['n']:,} calls",
                    "stat": stat,
                    "keel": k[stat],
                    "mlflow": m[stat],
                    "ratio": ratio(m[stat], k[stat]),
                    "target": f"≥{TARGETS['http']:.0f}×" if stat == "mean_ms" else "",
                }
            )
    if "runs" in results:
        k, m = results["runs"]["keel"], results["runs"]["mlflow"]
        label = f"{k['n']:,} runs × (5 params + 5 metrics), local"
        rows.append(
            {
                "case": label,
                "stat": "total_s",
                "keel": k["total_s"],
                "mlflow": m["total_s"],
                "ratio": ratio(m["total_s"], k["total_s"]),
                "target": f"≥{TARGETS['runs']:.0f}×",
            }
        )
        for stat in ("p50_ms", "p99_ms"):
            rows.append(
                {
                    "case": label,
                    "stat": f"{stat} per run",
                    "keel": k[stat],
                    "mlflow": m[stat],
                    "ratio": ratio(m[stat], k[stat]),
                    "target": "",
                }
            )
        nc = results["runs"].get("keel_no_env")
        if nc:
            rows.append(
                {
                    "case": label,
                    "stat": "total_s, keel with capture_env=False",
                    "keel": nc["total_s"],
                    "mlflow": m["total_s"],
                    "ratio": ratio(m["total_s"], nc["total_s"]),
                    "target": "(info)",
                }
            )
    for size, pair in sorted(results.get("search", {}).items(), key=lambda kv: int(kv[0])):
        k, m = pair["keel"], pair.get("mlflow")
        seeded = m.get("runs_seeded") if m else None
        note = "" if not m or seeded == int(size) else f" (MLflow: {seeded:,} runs)"
        label = f"search_runs over {int(size):,} runs{note}"
        for stat in ("p50_ms", "p99_ms"):
            rows.append(
                {
                    "case": label,
                    "stat": f"{stat} ({k['n']}/{m['n'] if m else 0} calls)",
                    "keel": k[stat],
                    "mlflow": m[stat] if m else None,
                    "ratio": ratio(m[stat], k[stat]) if m and seeded == int(size) else None,
                    "target": (
                        f"keel p50 ≤{SEARCH_P50_TARGET_MS:.0f} ms" if stat == "p50_ms" else ""
                    ),
                }
            )
        after = (m or {}).get("after_analyze") or {}
        if after.get("n"):
            rows.append(
                {
                    "case": label,
                    "stat": f"p50_ms, MLflow DB after ANALYZE ({after['n']} calls)",
                    "keel": k["p50_ms"],
                    "mlflow": after["p50_ms"],
                    "ratio": ratio(after["p50_ms"], k["p50_ms"]) if seeded == int(size) else None,
                    "target": "(info: not MLflow's default)",
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (
        ("case", "left"),
        ("stat", "left"),
        ("keel", "right"),
        ("MLflow 3", "right"),
        ("MLflow / keel", "right"),
        ("target", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        unit = " s" if r["stat"].startswith("total_s") else " ms"
        table.add_row(
            r["case"],
            r["stat"],
            fmt(r["keel"], unit),
            fmt(r["mlflow"], unit),
            fmt(r["ratio"], "×"),
            r["target"],
        )
    Console(width=160).print(table)


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    import keel  # noqa: F401

    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "keelml": version("keelml"),
        "loadavg_at_end": list(os.getloadavg()),
    }


def mlflow_version(results: dict[str, Any]) -> str | None:
    pairs = [results.get("http"), results.get("runs"), *results.get("search", {}).values()]
    return next((p["mlflow"].get("mlflow_version") for p in pairs if p), None)


# --------------------------------------------------------------------------- main
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small counts for a quick check")
    p.add_argument("--cases", default="http,runs,search")
    p.add_argument("--calls", type=int, help="log_metric calls over HTTP (default 1000)")
    p.add_argument("--runs", type=int, help="runs in the runs case (default 1000)")
    p.add_argument("--search-sizes", help="comma-separated run counts (default 10000,100000)")
    p.add_argument("--search-repeat", type=int, help="timed searches per size (default 50)")
    p.add_argument(
        "--sdk-seed-runs",
        type=int,
        default=1000,
        help="runs seeded through keel's SDK before the bulk path (rate is reported)",
    )
    p.add_argument(
        "--mlflow-search-budget-s",
        type=float,
        default=200.0,
        help="time budget of MLflow's timed searches per size (its calls are slow)",
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    quick = args.quick
    calls = args.calls or (200 if quick else 1000)
    runs = args.runs or (100 if quick else 1000)
    sizes = [
        int(s) for s in (args.search_sizes or ("10000" if quick else "10000,100000")).split(",")
    ]
    repeat = args.search_repeat or (20 if quick else 50)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]

    results: dict[str, Any] = {}
    problems: list[str] = []
    started = time.time()
    load_at_start = list(os.getloadavg())
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-tracking-"))
    try:
        if "http" in cases:
            results["http"] = {
                "keel": keel_http(scratch / "keel-http", calls, 20, 300),
                "mlflow": run_peer(
                    "http", scratch / "mlflow-http", 900, "--calls", str(calls), "--warmup", "20"
                ),
            }
            for side in results["http"].values():
                if side["metrics_stored"] != side["n"]:
                    problems.append(
                        f"{side['product']} stored {side['metrics_stored']} of {side['n']} metrics"
                    )
        if "runs" in cases:
            results["runs"] = {
                "keel": resultuns(scratch / "keel-runs", runs, 5, 600),
                "keel_no_env": resultuns(
                    scratch / "keel-runs-noenv", runs, 5, 600, capture_env=False
                ),
                "mlflow": run_peer(
                    "runs",
                    scratch / "mlflow-runs",
                    900,
                    "--runs",
                    str(runs),
                    "--warmup",
                    "5",
                    "--budget-s",
                    "600",
                ),
            }
        if "search" in cases:
            results["search"] = {}
            for n in sizes:
                k = keel_search(scratch / f"keel-search-{n}", n, repeat, 2, 120, args.sdk_seed_runs)
                problems += check_search(k, n)
                big = n > 20_000
                m = run_peer(
                    "search",
                    scratch / f"mlflow-search-{n}",
                    args.mlflow_search_budget_s + 900,
                    "--runs",
                    str(n),
                    "--repeat",
                    str(repeat),
                    "--warmup",
                    "0" if big else "2",
                    "--budget-s",
                    str(args.mlflow_search_budget_s),
                    "--analyze-too",
                )
                if m.get("runs_seeded") == n:
                    problems += check_search(m, n)
                results["search"][str(n)] = {"keel": k, "mlflow": m}
                count, _ = expected_matches(n)
                results["search"][str(n)]["matching_runs"] = count
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows = build_rows(results)
    title = f"keel vs MLflow 3 tracking — {os.cpu_count()} cores, {'quick' if quick else 'full'}"
    print_table(rows, title)
    for size, pair in results.get("search", {}).items():
        m = pair["mlflow"]
        if m.get("seed_note"):
            print(f"note: search {size}: {m['seed_note']}")
        if m["n"] < repeat:
            print(
                f"note: MLflow search over {int(size):,} runs: {m['n']} timed call(s) within "
                f"its {args.mlflow_search_budget_s:.0f} s budget (of {repeat} requested)"
            )
        print(
            f"seeding {int(size):,} runs: keel SDK {pair['keel']['seed_sdk_ms_per_run']:.1f} "
            f"ms/run for the first {pair['keel']['seed_sdk_runs']:,}, then bulk "
            f"{pair['keel']['seed_bulk_s']:.1f} s; MLflow bulk {m['seed_s']:.1f} s"
        )
    for prob in problems:
        print(f"PROBLEM: {prob}")

    report = {
        "benchmark": "tracking",
        "mode": "quick" if quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "loadavg_at_start": load_at_start,
        "duration_s": time.time() - started,
        "machine": machine(),
        "mlflow_version": mlflow_version(results),
        "rows": rows,
        "raw": results,
        "problems": problems,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
