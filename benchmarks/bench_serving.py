"""Serving benchmark: keel's gateway vs ``mlflow models serve`` and vs bare Starlette floors.

    bash benchmarks/setup_peers.sh                   # once: MLflow venv (+ lightgbm), wrk
    python benchmarks/bench_serving.py               # 20 s per target, about 4 minutes
    python benchmarks/bench_serving.py --duration 8  # quicker, noisier

One LightGBM churn classifier (300 trees, the demo's parameters) trained on the telco
churn table with its categorical columns as integer codes, so that every product takes
the same all-numeric JSON rows: MLflow's schema has no categorical type, and a LightGBM
booster refuses object columns. keel registers it; MLflow serves the very same booster
file (``benchmarks/peers/mlflow_serving.py``); the floor (``peers/starlette_floor.py``)
loads the same model directory with keel's ``load_model_dir`` and calls the same
``predict``.

Every server runs one uvicorn worker on 127.0.0.1 with ``OMP_NUM_THREADS=1`` (one-row
LightGBM calls are slower with more OpenMP threads on a busy 2-core machine; the same for
all). Load: ``wrk`` (2 threads, 16 connections, single-row POSTs cycling over 1,000 test
customers, 3 s warm-up, then ``--duration`` seconds); without wrk, an asyncio + httpx
client with 16 workers is used for every target alike. Results:
``benchmarks/results/serving.json``.

With ``taskset`` and two or more CPUs, every server is pinned to the last CPU and the load
generator to the others (``--no-pin`` turns it off). Unpinned, the scheduler put the
server now alone on a core, now beside a wrk thread: the same server's throughput moved
by a third between rounds here, which is noise, not a property of any product.

Targets
-------
keel ≥ 3x MLflow throughput and p99 ≤ 1/3 of MLflow's (prediction cache off);
keel throughput ≥ 80 % of the floor calling ``predict`` (overhead ≤ 20 %, cache off);
keel cache hits ≥ 80 % of the throughput of a floor route returning a constant (checked
on the median ratio of ``--rounds`` rounds with both servers up, taken in ABBA order so
that a drift of the machine's speed weighs on both alike; the sequential figures are
reported too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

from _common import free_port, log, percentile, stop_server, wait_http  # noqa: E402

PEER_VENV = HERE / ".venv-mlflow"
RESULTS = HERE / "results" / "serving.json"
CONCURRENCY = 16
MODEL = "churn"
LGBM_PARAMS = {
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 40,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
}


# --------------------------------------------------------------------------- model
def train_and_register(home: Path) -> tuple[Path, list[str], list[dict[str, float]], Any]:
    """Train the classifier, register it as churn@champion; return its dir, columns, rows."""
    from lightgbm import LGBMClassifier

    from keel.client import Client
    from keel.config import Settings
    from keel.demo.data import TARGET, load_churn, split
    from keel.services import open_services

    frame = load_churn()
    for column in frame.columns:
        if str(frame[column].dtype) == "category":
            frame[column] = frame[column].cat.codes.astype("float64")
    train, _valid, test = split(frame, 42)
    features = [c for c in train.columns if c not in (TARGET, "customer_id")]
    model = LGBMClassifier(**LGBM_PARAMS, random_state=42, verbose=-1)
    model.fit(train[features], train[TARGET])
    settings = Settings(home=home)
    client = Client(settings=settings)
    with client.start_run("bench-serving", capture_env=False) as run:
        version = run.log_model(model, registered_name=MODEL, input_example=train[features].head(5))
    client.set_alias(MODEL, "champion", version.version)  # type: ignore[union-attr]
    client.close()
    services = open_services(settings)
    model_dir = services.registry.model_dir(services.registry.resolve(f"{MODEL}@champion"))
    services.close()
    rows = [
        {k: float(v) for k, v in row.items()}
        for row in test[features].head(1000).to_dict("records")
    ]
    return model_dir, features, rows, model


# --------------------------------------------------------------------------- servers
@contextmanager
def server(
    cmd: list[str], ready_url: str, env: dict[str, str], timeout_s: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group (yielded); stop it and its workers afterwards."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        try:
            wait_http(ready_url, proc, timeout_s)
        except (RuntimeError, TimeoutError):
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{cmd[0]} did not start: {err}") from None
        yield proc
    finally:
        stop_server(proc)


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="1",
        **extra,
    )
    return env


@dataclass(frozen=True)
class Pinning:
    """CPU sets for servers and the load generator (empty prefixes: not pinned)."""

    server: tuple[str, ...] = ()
    load: tuple[str, ...] = ()
    load_cpus: frozenset[int] = frozenset()

    @classmethod
    def choose(cls, enabled: bool) -> Pinning:
        """Servers on the last CPU, load on the rest, when ``taskset`` and 2+ CPUs exist."""
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        rest = ",".join(map(str, cpus[:-1]))
        return cls(("taskset", "-c", str(cpus[-1])), ("taskset", "-c", rest), frozenset(cpus[:-1]))

    def describe(self) -> str:
        return f"servers {self.server[-1]}, load {self.load[-1]}" if self.server else "none"


# --------------------------------------------------------------------------- load
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT[unit]


def wrk_script(bodies: list[bytes], path: Path, paths: list[str] | None = None) -> Path:
    """A wrk Lua script that POSTs the bodies in turn (body i to ``paths[i]`` when given,
    else to the URL's own path)."""
    items = ",\n".join(f"[==[{b.decode()}]==]" for b in bodies)
    where = "nil"
    table = ""
    if paths is not None:
        table = "local paths = {\n" + ",\n".join(f'"{p}"' for p in paths) + "\n}\n"
        where = "paths[(i % #bodies) + 1]"
    path.write_text(
        f"local bodies = {{\n{items}\n}}\n{table}"
        "local i = 0\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n"
        "  i = i + 1\n"
        f"  return wrk.format(nil, {where}, nil, bodies[(i % #bodies) + 1])\n"
        "end\n"
    )
    return path


def run_wrk(
    url: str, script: Path, duration_s: int, *, warmup_s: int = 3, prefix: tuple[str, ...] = ()
) -> dict[str, float]:
    """Warm up ``warmup_s``, then measure; throughput, p50/p99 latency, error count.

    ``prefix`` runs wrk under another command (``taskset`` pinning it to some CPUs).
    """
    base = [*prefix, "wrk", "-t2", f"-c{CONCURRENCY}", "--latency", "-s", str(script)]
    if warmup_s:
        subprocess.run([*base, f"-d{warmup_s}s", url], capture_output=True, check=True, timeout=60)
    out = subprocess.run(
        [*base, f"-d{duration_s}s", "--timeout", "10s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # the distribution lines alone: "91.50%" in the stdev column must not match "50%"
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "requests": total, "errors": errors}


def run_python_load(
    url: str | list[str], bodies: list[bytes], duration_s: int, *, warmup_s: int = 3
) -> dict[str, float]:
    """The fallback load generator: 16 asyncio workers with httpx, same for every target
    (``url`` may be a list parallel to ``bodies``: body i goes to ``url[i]``)."""
    urls = [url] * len(bodies) if isinstance(url, str) else url
    import httpx

    async def main() -> dict[str, float]:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=CONCURRENCY)
        headers = {"content-type": "application/json"}
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def worker(offset: int, until: float, record: bool) -> None:
                nonlocal errors
                i = offset
                while time.perf_counter() < until:
                    started = time.perf_counter()
                    response = await client.post(
                        urls[i % len(bodies)], content=bodies[i % len(bodies)], headers=headers
                    )
                    if record:
                        latencies.append(time.perf_counter() - started)
                        errors += response.status_code != 200
                    i += CONCURRENCY

            for record, seconds in ((False, warmup_s), (True, duration_s)):
                until = time.perf_counter() + seconds
                began = time.perf_counter()
                await asyncio.gather(*(worker(k, until, record) for k in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
        ms = [s * 1000 for s in latencies]
        return {
            "rps": len(ms) / elapsed,
            "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99),
            "requests": len(ms),
            "errors": errors,
        }

    return asyncio.run(main())


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per target")
    parser.add_argument("--skip-mlflow", action="store_true", help="only keel and the floors")
    parser.add_argument(
        "--rounds",
        type=int,
        default=12,
        help="cache-hit / constant rounds in ABBA order, both servers up (0: none)",
    )
    parser.add_argument(
        "--round-seconds", type=int, default=4, help="measured seconds of each interleaved load"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="leave CPU placement to the scheduler"
    )
    args = parser.parse_args()
    pinning = Pinning.choose(not args.no_pin)
    use_wrk = shutil.which("wrk") is not None
    mlflow_bin = PEER_VENV / "bin" / "mlflow"
    if not args.skip_mlflow and not mlflow_bin.exists():
        sys.exit("benchmarks/.venv-mlflow is missing: run bash benchmarks/setup_peers.sh")
    scratch = Path(tempfile.mkdtemp(prefix="keel-bench-serving-"))
    results: dict[str, Any] = {}
    first: dict[str, float] = {}
    try:
        log("training and registering the churn model")
        model_dir, columns, rows, model = train_and_register(scratch / "keel")
        keel_bodies = [json.dumps({"instances": [r]}).encode() for r in rows]
        mlflow_bodies = [
            json.dumps(
                {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns]]}}
            ).encode()
            for r in rows
        ]
        hit_body = [keel_bodies[0]]
        keel_cmd = [
            *pinning.server,
            sys.executable,
            "-c",
            "from keel.cli.main import main; main()",
            "server",
            "--port",
        ]

        def load(
            url: str,
            bodies: list[bytes],
            name: str,
            duration: int | None = None,
            warmup: int = 3,
        ) -> dict[str, float]:
            seconds = duration or args.duration
            log(f"load: {name} ({'wrk' if use_wrk else 'python'}, {seconds} s)")
            if use_wrk:
                script = wrk_script(bodies, scratch / f"{name}.lua")
                return run_wrk(url, script, seconds, warmup_s=warmup, prefix=pinning.load)
            if not pinning.load_cpus:
                return run_python_load(url, bodies, seconds, warmup_s=warmup)
            own = os.sched_getaffinity(0)
            os.sched_setaffinity(0, pinning.load_cpus)  # this process is the load generator
            try:
                return run_python_load(url, bodies, seconds, warmup_s=warmup)
            finally:
                os.sched_setaffinity(0, own)

        # keel, cache off (model path), batching on and off; then cache hits
        for name, extra in (
            ("keel", {"KEEL_SERVING_CACHE": "false"}),
            ("keel_no_batching", {"KEEL_SERVING_CACHE": "false", "KEEL_SERVING_BATCHING": "false"}),
            ("keel_cache_hit", {}),
        ):
            port = free_port()
            env = base_env(
                KEEL_HOME=str(scratch / "keel"),
                KEEL_SERVING_PRELOAD=f"{MODEL}@champion",
                KEEL_SERVING_RATE_LIMIT="100000000/minute",
                **extra,
            )
            cmd = [*keel_cmd, str(port), "--workers", "1"]
            with server(cmd, f"http://127.0.0.1:{port}/readyz", env, 120):
                url = f"http://127.0.0.1:{port}/v1/models/{MODEL}@champion/predict"
                first_ms = check(url, keel_bodies[0], model, rows[0], columns, keel=True)
                if name == "keel":
                    first["warm_first_request_ms"] = first_ms
                    first.update({f"warm_{k}": v for k, v in warm_facts(port).items()})
                results[name] = load(
                    url, hit_body if name == "keel_cache_hit" else keel_bodies, name
                )

        # cold: no preload, so the first request loads the model
        port = free_port()
        env = base_env(KEEL_HOME=str(scratch / "keel"), KEEL_SERVING_CACHE="false")
        cmd = [*keel_cmd, str(port), "--workers", "1"]
        with server(cmd, f"http://127.0.0.1:{port}/readyz", env, 120):
            url = f"http://127.0.0.1:{port}/v1/models/{MODEL}@champion/predict"
            cold = check(url, keel_bodies[0], model, rows[0], columns, keel=True)
            second = check(url, keel_bodies[1], model, rows[1], columns, keel=True)
            first.update(cold_first_request_ms=cold, cold_second_request_ms=second)
            first.update({f"cold_{k}": v for k, v in warm_facts(port).items()})

        def floor_cmd(port: int) -> list[str]:
            script = str(HERE / "peers" / "starlette_floor.py")
            return [*pinning.server, sys.executable, script, str(model_dir), str(port)]

        port = free_port()
        with server(floor_cmd(port), f"http://127.0.0.1:{port}/ping", base_env(), 60):
            url = f"http://127.0.0.1:{port}"
            check(f"{url}/predict", keel_bodies[0], model, rows[0], columns, keel=False)
            results["floor_predict"] = load(f"{url}/predict", keel_bodies, "floor_predict")
            results["floor_constant"] = load(f"{url}/constant", hit_body, "floor_constant")

        # Cache hits against the constant route again, both servers up, in alternating
        # rounds: measured minutes apart (above), the two see different machine states
        # (the floor alone moved by ±25 % between runs here); alternating puts the noise
        # on both. The target is checked on the median of the per-round ratios.
        if args.rounds:
            keel_port, floor_port = free_port(), free_port()
            keel_env = base_env(
                KEEL_HOME=str(scratch / "keel"),
                KEEL_SERVING_PRELOAD=f"{MODEL}@champion",
                KEEL_SERVING_RATE_LIMIT="100000000/minute",
            )
            with (
                server(
                    [*keel_cmd, str(keel_port), "--workers", "1"],
                    f"http://127.0.0.1:{keel_port}/readyz",
                    keel_env,
                    120,
                ),
                server(
                    floor_cmd(floor_port), f"http://127.0.0.1:{floor_port}/ping", base_env(), 60
                ),
            ):
                hit_url = f"http://127.0.0.1:{keel_port}/v1/models/{MODEL}@champion/predict"
                check(hit_url, keel_bodies[0], model, rows[0], columns, keel=True)
                const_url = f"http://127.0.0.1:{floor_port}/constant"
                # both warm once; then each round loads them back to back, keel first in
                # odd rounds and the constant first in even ones (ABBA)
                load(hit_url, hit_body, "keel_cache_hit", 3, warmup=0)
                load(const_url, hit_body, "floor", 3, warmup=0)
                rounds: list[dict[str, float]] = []
                seconds = args.round_seconds
                for n in range(args.rounds):
                    log(f"interleaved round {n + 1}/{args.rounds} ({seconds} s each)")
                    order = ("hit", "constant") if n % 2 == 0 else ("constant", "hit")
                    got = {}
                    for which in order:
                        url = hit_url if which == "hit" else const_url
                        got[which] = load(url, hit_body, which, seconds, warmup=1)
                    rounds.append(
                        {
                            "keel_cache_hit_rps": got["hit"]["rps"],
                            "floor_constant_rps": got["constant"]["rps"],
                            "keel_cache_hit_p99_ms": got["hit"]["p99_ms"],
                            "floor_constant_p99_ms": got["constant"]["p99_ms"],
                            "keel_first": n % 2 == 0,
                        }
                    )
                results["interleaved"] = rounds

        if not args.skip_mlflow:
            mlflow_dir = scratch / "mlflow-model"
            subprocess.run(
                [
                    str(PEER_VENV / "bin" / "python"),
                    str(HERE / "peers" / "mlflow_serving.py"),
                    str(model_dir / "model.txt"),
                    str(mlflow_dir),
                ],
                check=True,
                env=base_env(),
                timeout=300,
            )
            port = free_port()
            env = base_env(PATH=f"{PEER_VENV / 'bin'}:{os.environ.get('PATH', '')}")
            cmd = [
                *pinning.server,
                str(mlflow_bin),
                "models",
                "serve",
                "-m",
                str(mlflow_dir),
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-w",
                "1",
            ]
            with server(cmd, f"http://127.0.0.1:{port}/ping", env, 180):
                url = f"http://127.0.0.1:{port}/invocations"
                results["mlflow"] = load(url, mlflow_bodies, "mlflow")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(results, first, args, use_wrk, pinning)


def check(
    url: str, body: bytes, model: Any, row: dict[str, float], columns: list[str], *, keel: bool
) -> float:
    """One request before the load: the server answers the model's own prediction.

    Returns the request's latency in ms (the first request a fresh server answers).
    """
    import httpx
    import pandas as pd

    started = time.perf_counter()
    response = httpx.post(
        url, content=body, headers={"content-type": "application/json"}, timeout=60
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    expected = model.predict(pd.DataFrame([row], columns=columns)).tolist()
    got = response.json()["predictions"]
    if got != expected:
        raise SystemExit(f"{url} answered {got}, the model says {expected}")
    return elapsed_ms


def warm_facts(port: int) -> dict[str, float]:
    """Load and warm-up times the keel server reports for the served version."""
    import httpx

    status = httpx.get(f"http://127.0.0.1:{port}/v1/serving/status", timeout=30).json()
    [entry] = [m for m in status["models"] if m["model"] == MODEL]
    return {
        "load_ms": entry["load_ms"],
        "warmup_ms": entry["warmup_ms"] or 0.0,
        "first_request_in_gateway_ms": entry["first_request_ms"],
    }


def report(
    results: dict[str, Any],
    first: dict[str, float],
    args: argparse.Namespace,
    use_wrk: bool,
    pinning: Pinning,
) -> None:
    keel, floor = results["keel"], results["floor_predict"]
    ratios: dict[str, float] = {
        "keel_vs_floor_rps": keel["rps"] / floor["rps"],
        "cache_hit_vs_constant_rps": results["keel_cache_hit"]["rps"]
        / results["floor_constant"]["rps"],
        "batching_gain_rps": keel["rps"] / results["keel_no_batching"]["rps"],
    }
    hit_ratio = ratios["cache_hit_vs_constant_rps"]
    if results.get("interleaved"):
        per_round = [
            r["keel_cache_hit_rps"] / r["floor_constant_rps"] for r in results["interleaved"]
        ]
        ratios["cache_hit_vs_constant_rps_interleaved"] = hit_ratio = statistics.median(per_round)
        if len(per_round) >= 4:
            quartiles = statistics.quantiles(per_round, n=4)
            ratios["cache_hit_vs_constant_rps_interleaved_q1"] = quartiles[0]
            ratios["cache_hit_vs_constant_rps_interleaved_q3"] = quartiles[2]
    targets = {
        "keel_vs_floor_rps >= 0.8": ratios["keel_vs_floor_rps"] >= 0.8,
        "cache_hit_vs_constant_rps >= 0.8": hit_ratio >= 0.8,
    }
    if "mlflow" in results:
        mlflow = results["mlflow"]
        ratios["keel_vs_mlflow_rps"] = keel["rps"] / mlflow["rps"]
        ratios["mlflow_vs_keel_p99"] = mlflow["p99_ms"] / keel["p99_ms"]
        targets["keel_vs_mlflow_rps >= 3"] = ratios["keel_vs_mlflow_rps"] >= 3
        targets["mlflow_vs_keel_p99 >= 3"] = ratios["mlflow_vs_keel_p99"] >= 3
    payload = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg": os.getloadavg(),
        },
        "load_generator": "wrk -t2 -c16" if use_wrk else "python asyncio+httpx, 16 workers",
        "cpu_pinning": pinning.describe(),
        "duration_s": args.duration,
        "round_seconds": args.round_seconds,
        "results": results,
        "first_request": first,
        "ratios": ratios,
        "targets_met": targets,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"serving, {payload['load_generator']}, {args.duration} s each, "
        f"pinned: {payload['cpu_pinning']}"
    )
    for column in ("target", "req/s", "p50 ms", "p99 ms", "requests", "errors"):
        table.add_column(column, justify="right" if column != "target" else "left")
    for name, r in results.items():
        if name == "interleaved":
            continue
        table.add_row(
            name,
            f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            str(r["requests"]),
            str(r["errors"]),
        )
    console = Console()
    console.print(table)
    for n, r in enumerate(results.get("interleaved") or (), 1):
        console.print(
            f"interleaved round {n}: cache hit {r['keel_cache_hit_rps']:.0f} req/s, "
            f"constant {r['floor_constant_rps']:.0f} req/s "
            f"({r['keel_cache_hit_rps'] / r['floor_constant_rps']:.0%})"
        )
    for name, value in {**first, **ratios}.items():
        console.print(f"{name}: {value:.2f}")
    for name, met in targets.items():
        console.print(f"{'✓' if met else '✗'} {name}")
    console.print(f"written to {RESULTS.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
