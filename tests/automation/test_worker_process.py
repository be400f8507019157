"""Real `keel worker` processes: a job survives kill -9, a schedule fires once per period
with two workers on one queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tests.automation.conftest import wait_status

from keel.automation.job_models import Schedule
from keel.services import Services

HERE = Path(__file__).resolve().parent


@contextmanager
def worker(services: Services, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m keel worker` on the same home and database as ``services``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_HOME=str(services.settings.home),
        KEEL_JOBS_LEASE_S="2",
        # this folder on the path, not the repository: a `tests` package installed by some
        # library would shadow the repository's namespace package
        KEEL_JOBS_IMPORTS="jobkinds",
        PYTHONPATH=str(HERE),
    )
    if services.settings.database_url:
        env["KEEL_DATABASE_URL"] = services.settings.database_url
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "keel", "worker", "--verbose"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # graceful: running jobs finish
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_job_survives_worker_kill_9(services: Services, tmp_path: Path) -> None:
    out, log = tmp_path / "side-effect", tmp_path / "worker.log"
    job = services.jobs.enqueue("test.count", {"path": str(out), "seconds": 4, "tag": "a"})
    with worker(services, log) as first:
        running = wait_status(services.jobs, job.id, {"running"})
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    assert services.jobs.get(job.id).status == "running" and not out.exists()
    # the dead worker's lease runs out; a new worker's first tick re-delivers the job
    time.sleep(max(0.0, (running.lease_until_ms or 0) / 1000 - time.time()) + 2.5)
    with worker(services, log):
        done = wait_status(services.jobs, job.id, {"succeeded", "failed"}, timeout_s=90)
    assert done.status == "succeeded", log.read_text()[-3000:]
    assert done.attempts == 2
    assert out.read_text().count("\n") == 1  # exactly once
    assert any("lease expired" in line.message for line in done.logs)


def test_two_workers_fire_a_schedule_once_per_period(services: Services, tmp_path: Path) -> None:
    out, log = tmp_path / "fired", tmp_path / "workers.log"
    now = services.jobs.clock()
    services.jobs.store.save_schedule(  # existed before this minute began
        Schedule(
            name="every-minute",
            kind="test.count",
            cron="* * * * *",
            args={"path": str(out)},
            created_at_ms=now - 120_000,
            updated_at_ms=now - 120_000,
        )
    )
    with worker(services, log) as first, worker(services, log) as second:
        deadline = time.monotonic() + 90
        while not out.exists() and time.monotonic() < deadline:
            assert first.poll() is None and second.poll() is None, log.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(3)  # both workers' start-up and scheduler ticks have run by now
    jobs = services.jobs.list_jobs(kind="test.count")
    assert jobs, log.read_text()[-3000:]
    per_key = Counter(j.key for j in jobs)
    assert set(per_key.values()) == {1}  # one job per period, whatever the number of ticks
    assert {j.status for j in jobs} == {"succeeded"}
    assert out.read_text().count("\n") == len(jobs)  # each period's work done once
    assert all(k.startswith("schedule:every-minute:") for k in per_key)
