"""Helpers shared by the keel side and the peer scripts (standard library only).

The peer scripts run in their own virtualenv (``benchmarks/.venv-mlflow``), so
this module must not import anything outside the standard library.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

SEARCH_EXPERIMENT = "bench-search"
SEARCH_FILTER = "metrics.auc > 0.8 and params.model = 'lgbm'"
SEARCH_ORDER_BY = ["metrics.auc DESC"]
SEARCH_MAX_RESULTS = 100
MODELS = ("lgbm", "xgb", "rf")
BASE_TIME_MS = 1_700_000_000_000


@dataclass(frozen=True)
class SearchRow:
    """One synthetic run of the search benchmark."""

    index: int
    model: str
    auc: float
    loss: float
    start_time_ms: int


def search_rows(n: int, *, seed: int = 7, start: int = 0) -> Iterator[SearchRow]:
    """Yield the same ``n`` synthetic runs for every product (deterministic)."""
    rng = random.Random(seed)
    for i in range(n):
        model = MODELS[rng.randrange(3)]
        auc = rng.uniform(0.5, 0.95)
        loss = rng.uniform(0.05, 1.0)
        if i >= start:
            yield SearchRow(i, model, auc, loss, BASE_TIME_MS + i)


def expected_matches(n: int, *, seed: int = 7) -> tuple[int, list[float]]:
    """Count of runs the search filter matches and their top AUCs (descending)."""
    aucs = [r.auc for r in search_rows(n, seed=seed) if r.model == "lgbm" and r.auc > 0.8]
    aucs.sort(reverse=True)
    return len(aucs), aucs[:SEARCH_MAX_RESULTS]


def metric_value(i: int) -> float:
    """Value logged at step ``i`` in the per-call metric benchmark."""
    return 1.0 / (1.0 + i) + 0.001 * math.sin(i)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound by nobody once this returns)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[k]


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Per-call statistics in milliseconds for a list of durations in seconds."""
    ms = [s * 1000.0 for s in seconds]
    if not ms:
        return {
            "n": 0,
            "total_s": 0.0,
            "mean_ms": float("nan"),
            "p50_ms": float("nan"),
            "p99_ms": float("nan"),
            "max_ms": float("nan"),
        }
    return {
        "n": len(ms),
        "total_s": sum(seconds),
        "mean_ms": sum(ms) / len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
    }


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early if the server process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's own process group (servers fork workers), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def log(msg: str) -> None:
    """Progress on stderr (stdout carries only the JSON result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(result: dict[str, object]) -> None:
    """Print the result as one JSON line on stdout."""
    print(json.dumps(result), flush=True)
