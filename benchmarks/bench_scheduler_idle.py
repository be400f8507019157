"""CPU an idle ``keel worker`` (Huey consumer + periodic scheduler) costs, as a fraction of
one core.

Starts ``python -m keel worker`` on a fresh ``KEEL_HOME`` (the SQLite queue; the Redis
queue with ``--redis-url``) with no jobs, waits until it is up and past its start-up
(imports, migrations, the startup tick), then reads its CPU time (user + system, every
thread and child process, from ``/proc``) at the start and end of ``--seconds`` of idling.
The default 120 s spans two of the scheduler's minute ticks, which run each minute on an
idle worker too. Usage:
python benchmarks/bench_scheduler_idle.py [--seconds 120] [--redis-url redis://…] [--out F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scheduler_idle.json"
TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 0.01  # the "< 1% of a core"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads) and of its live descendants."""
    total = 0.0
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            # Fields after the command name (which may hold spaces): utime, stime are 14, 15.
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def wait_ready(proc: subprocess.Popen[str], timeout_s: float) -> None:
    """Until the worker prints its banner (it is then consuming)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "keel worker on the" in line:
            return
        if proc.poll() is not None:
            raise SystemExit(f"keel worker exited with {proc.returncode}")
    raise SystemExit("keel worker did not start")


def measure(seconds: float, settle_s: float, redis_url: str | None) -> dict[str, float | str]:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "KEEL_HOME": home, "PYTHONUNBUFFERED": "1"}
        env.pop("KEEL_REDIS_URL", None)
        if redis_url:
            env["KEEL_REDIS_URL"] = redis_url
        proc = subprocess.Popen(
            [sys.executable, "-m", "keel", "worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            began = time.monotonic()
            wait_ready(proc, 120)
            time.sleep(settle_s)  # past the startup tick
            startup_cpu = cpu_seconds(proc.pid)
            startup_wall = time.monotonic() - began
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            if proc.poll() is not None:
                raise SystemExit(f"keel worker exited with {proc.returncode} while idle")
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    idle_cpu, wall = cpu1 - cpu0, t1 - t0
    return {
        "queue": "redis" if redis_url else "sqlite",
        "idle_wall_s": round(wall, 2),
        "idle_cpu_s": round(idle_cpu, 3),
        "core_fraction": round(idle_cpu / wall, 5),
        "startup_wall_s": round(startup_wall, 2),
        "startup_cpu_s": round(startup_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after start-up")
    parser.add_argument("--redis-url", default=None, help="measure the Redis queue instead")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = measure(args.seconds, args.settle, args.redis_url)
    fraction = float(result["core_fraction"])
    verdict = "met" if fraction < TARGET else "NOT met"
    print(
        f"idle keel worker ({result['queue']} queue): {result['idle_cpu_s']} s CPU in "
        f"{result['idle_wall_s']} s = {fraction:.3%} of one core ({verdict}: < {TARGET:.0%})"
    )
    record = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "target_core_fraction": TARGET,
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
