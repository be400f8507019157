"""kill -9 the server: every write it acknowledged must be in the database afterwards.

A real ``uvicorn`` subprocess on SQLite (WAL, synchronous=NORMAL) takes
acknowledged writes, gets SIGKILL, and the same KEEL_HOME is reopened.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.conftest import server_process

from keel.config import Settings
from keel.errors import NotFound
from keel.services import Services, open_services

pytestmark = pytest.mark.slow

EXPERIMENT = "durability"


@dataclass(frozen=True)
class Write:
    """One write the server answered 2xx to, and what it must have stored."""

    run_id: str
    params: tuple[tuple[str, str], ...] = ()
    metric: tuple[str, int, float] | None = None  # key, step, value


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    home: Path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """``uvicorn keel.api.app:create_app`` in its own process on a SQLite KEEL_HOME."""
    home = tmp_path / "keel"
    with server_process(tmp_path, KEEL_HOME=str(home)) as (url, process):
        yield Server(url, process, home)


def _write(http: httpx.Client, i: int, runs: list[str], tag: str) -> Write:
    """Write number ``i`` of a mix: a new run with params, a metric, or a batch with a param."""
    if i % 3 == 0 or not runs:
        params = {"origin": f"{tag}-{i}", "seed": str(i)}
        body = {"experiment": EXPERIMENT, "name": f"{tag}-{i}", "params": params}
        response = http.post("/v1/runs", json=body)
        response.raise_for_status()
        runs.append(response.json()["id"])
        return Write(runs[-1], params=tuple(params.items()))
    if i % 3 == 1:
        run_id, value = runs[-1], i / 7
        body = {"key": "loss", "value": value, "step": i}
        http.post(f"/v1/runs/{run_id}/metrics", json=body).raise_for_status()
        return Write(run_id, metric=("loss", i, value))
    run_id, value = runs[i % len(runs)], float(i)
    body = {"metrics": [{"key": "acc", "value": value, "step": i}], "params": {f"p{i}": i}}
    http.post(f"/v1/runs/{run_id}/batch", json=body).raise_for_status()
    return Write(run_id, params=((f"p{i}", str(i)),), metric=("acc", i, value))


def _is_stored(services: Services, write: Write) -> bool:
    try:
        run = services.tracking.get_run(write.run_id)
    except NotFound:
        return False
    if any(run.params.get(k) != v for k, v in write.params):
        return False
    if write.metric is None:
        return True
    key, step, value = write.metric
    return (step, value) in [
        (m.step, m.value) for m in services.tracking.metric_history(run.id, key)
    ]


def _assert_no_half_written_runs(services: Services) -> int:
    """Every stored run carries exactly the params its creating request sent."""
    runs = services.tracking.search_runs([EXPERIMENT], max_results=10_000).items
    for run in runs:
        assert run.name is not None
        assert run.params.get("origin") == run.name
        assert run.params.get("seed") == run.name.rsplit("-", 1)[1]
    return len(runs)


def _reopen(home: Path, acked: list[Write]) -> tuple[int, int]:
    """Open the killed server's home; (acknowledged writes found, runs stored)."""
    services = open_services(Settings(home=home))
    try:
        found = sum(_is_stored(services, write) for write in acked)
        return found, _assert_no_half_written_runs(services)
    finally:
        services.close()


def test_durability_sequential_acknowledged_writes_survive_kill_9(server: Server) -> None:
    acked: list[Write] = []
    runs: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for i in range(300):
            acked.append(_write(http, i, runs, "seq"))
    server.process.kill()  # SIGKILL right after the last acknowledgement
    assert server.process.wait(timeout=10) == -9
    found, stored_runs = _reopen(server.home, acked)
    print(f"\nsequential: {len(acked)} acknowledged, {found} found after kill -9")
    assert (found, stored_runs) == (300, len(runs))


def _writer(url: str, tag: str, acked: list[Write], cut: list[str], stop: threading.Event) -> None:
    runs: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for i in itertools.count():
            if stop.is_set():
                return
            try:
                acked.append(_write(http, i, runs, tag))
            except httpx.TransportError as exc:
                cut.append(type(exc).__name__)  # never acknowledged: may or may not be stored
                return


def test_durability_concurrent_writes_survive_kill_9_mid_burst(server: Server) -> None:
    stop = threading.Event()
    per_thread: list[list[Write]] = [[] for _ in range(4)]
    cut: list[str] = []
    threads = [
        threading.Thread(target=_writer, args=(server.url, f"t{n}", acked, cut, stop))
        for n, acked in enumerate(per_thread)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 15
    while sum(map(len, per_thread)) < 400 and time.monotonic() < deadline:
        time.sleep(0.005)
    server.process.kill()  # the four writers are mid-request
    server.process.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    acked = [write for part in per_thread for write in part]
    found, stored_runs = _reopen(server.home, acked)
    acked_runs = sum(1 for write in acked if write.metric is None)
    print(
        f"\nconcurrent: {len(acked)} acknowledged, {found} found after kill -9, "
        f"{stored_runs} runs stored ({acked_runs} acknowledged), requests cut: {cut}"
    )
    assert len(acked) >= 100 and found == len(acked)
    assert any(name != "ConnectError" for name in cut)  # killed with requests in flight
    assert acked_runs <= stored_runs <= acked_runs + len(threads)
