"""Helpers of the job tests: drain the queue in this process, wait for a job's status."""

from __future__ import annotations

import time

import pytest
import tests.automation.jobkinds  # noqa: F401  (registers test.count and test.flaky)
from tests.automation.replay import (  # noqa: F401  (fixtures of the acceptance replays)
    replay,
    replay_rows,
    replay_template,
)
from tests.automation.triggerdata import (  # noqa: F401  (fixtures of the trigger tests)
    churn_rows,
    trigger_env,
    trigger_template,
)

from keel.automation.job_models import Job
from keel.automation.jobs import JobService


@pytest.fixture(autouse=True)
def _inline_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retraining fits run in the test's own process (KEEL_EXECUTOR defaults to process):
    the train functions live under ``tests.``, which a spawned process cannot import (a
    site-packages ``tests`` package shadows it). test_executors*.py covers the backends."""
    monkeypatch.setenv("KEEL_EXECUTOR", "inline")


def drain(jobs: JobService) -> int:
    """Execute every message the queue holds, and scheduled ones now due, like a consumer
    in burst mode; the number executed."""
    huey = jobs.queue.huey
    done = 0
    while True:
        for task in huey.read_schedule(huey._get_timestamp()):
            huey.enqueue(task)
        task = huey.dequeue()
        if task is None:
            return done
        huey.execute(task)
        done += 1


def wait_status(jobs: JobService, job_id: str, statuses: set[str], timeout_s: float = 60.0) -> Job:
    """Poll until the job is in one of ``statuses``; fail with its state otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = jobs.get(job_id)
        if job.status in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job still {job.status}: {job}")
        time.sleep(0.05)
