"""kill -9 a real ``keel server`` under load: what the prediction log kept (#15.11).

With group commit (``KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S=0``) every answered request is
in the log once the process is gone (what a restarted server reads); with a flush window,
only answers of the last window (plus the write in progress) may be missing.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from tests.conftest import free_port
from tests.serving.conftest import register, unique

from keel.config import Settings
from keel.serving import PredictionLog, predictions
from keel.serving.predlog import log_root
from keel.serving.records import ServedRequest

pytestmark = pytest.mark.slow

WORKERS = 8
LOAD_S = 1.0


@contextmanager
def keel_server(home: Path, log: Path, **env: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``keel server`` in its own process on ``home``; yields its port once ready."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    environ.update(KEEL_HOME=str(home), KEEL_SERVING_RATE_LIMIT="", **env)
    command = [sys.executable, "-c", "from keel.cli.main import main; main()", "server"]
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)], env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90  # imports take seconds on a busy machine
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)
        yield port, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def load(port: int, path: str, answered: list[tuple[str, float]], stop: threading.Event) -> None:
    """Keep-alive predictions until the server goes away: distinct bodies (the model path)
    and one repeated body (cache hits), each answered id with the time it arrived."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    i = 0
    try:
        while not stop.is_set() and i < 50_000:
            row = {"a": float(i % 7), "b": 0.5} if i % 2 else {"a": float(i), "b": i / 3}
            body = json.dumps({"instances": [row]})
            connection.request("POST", path, body, {"content-type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status == 200:
                answered.append((json.loads(payload)["request_id"], time.time()))
            i += 1
    except (OSError, http.client.HTTPException):
        pass  # killed
    finally:
        connection.close()


def kill_under_load(
    port: int, path: str, process: subprocess.Popen[bytes]
) -> tuple[list[tuple[str, float]], float]:
    answered: list[tuple[str, float]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=load, args=(port, path, answered, stop)) for _ in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(LOAD_S)
    killed_at = time.time()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=20)
    return answered, killed_at


def served_request(name: str, request_id: str) -> ServedRequest:
    return ServedRequest(
        request_id,
        int(time.time() * 1000),
        name,
        1,
        ("a", "b"),
        [(9.0, 1.0)],
        [1],
        None,
        [False],
        False,
        1.0,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("flush_interval_s", [0.0, 0.5])
def test_kill_9_under_load_loses_nothing_with_group_commit_and_at_most_the_window_without(
    tmp_path: Path, flush_interval_s: float
) -> None:
    settings = Settings(home=tmp_path / "keel")
    name = unique("durable")
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    register(settings, name, LogisticRegression().fit(frame, [0, 0, 1, 1]), frame)
    path = f"/v1/models/{name}/1/predict"
    env = {
        "KEEL_PREDICTION_LOG_FLUSH_INTERVAL_S": str(flush_interval_s),
        "KEEL_SERVING_PRELOAD": f"{name}/1",
    }
    with keel_server(settings.home, tmp_path / "server.log", **env) as (port, process):
        answered, killed_at = kill_under_load(port, path, process)

    root = log_root(settings)
    logged = set(predictions(name, 1, root=root).column("request_id").to_pylist())
    missing = [(rid, at) for rid, at in answered if rid not in logged]
    assert len(answered) > 50, f"only {len(answered)} answers before the kill"
    oldest = min((at for _, at in missing), default=killed_at)
    print(
        f"flush {flush_interval_s} s: {len(answered)} answered, {len(missing)} not logged, "
        f"the oldest answered {killed_at - oldest:.3f} s before the kill"
    )
    if flush_interval_s == 0:
        assert missing == []
        # a restarted server's log writes beside the killed one's files and loses none
        with PredictionLog.from_settings(settings) as reopened:
            reopened.append_served(served_request(name, "after-restart"))
        logged = set(predictions(name, 1, root=root).column("request_id").to_pylist())
        assert {rid for rid, _ in answered} | {"after-restart"} <= logged
    else:
        # lost: only answers of the last flush interval plus the write in progress
        assert oldest >= killed_at - flush_interval_s - 1.0, f"lost {len(missing)} answers"
