"""The queue under the jobs: Redis when configured, and the consumer `keel server` runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from huey import PriorityRedisHuey, SqliteHuey
from tests.automation.conftest import drain, wait_status
from tests.conftest import server_process
from tests.features.conftest import redis_url  # noqa: F401

from keel.automation.queue import make_huey
from keel.config import Settings
from keel.services import Services, open_services

HERE = Path(__file__).resolve().parent


def test_queue_is_sqlite_in_home_by_default(tmp_path: Path) -> None:
    huey = make_huey(Settings(home=tmp_path))
    assert isinstance(huey, SqliteHuey) and huey.storage.filename == str(tmp_path / "jobs-queue.db")


def test_jobs_run_over_redis_queue(tmp_path: Path, redis_url: str) -> None:  # noqa: F811
    settings = Settings(home=tmp_path, redis_url=redis_url)
    services = open_services(settings)
    try:
        huey = services.jobs.queue.huey
        assert isinstance(huey, PriorityRedisHuey)
        huey.storage.flush_queue()
        job = services.jobs.enqueue("test.count", {"path": str(tmp_path / "out")})
        assert drain(services.jobs) == 1
        assert services.jobs.get(job.id).status == "succeeded"
    finally:
        services.close()


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("worker", ["on", "off"])
def test_keel_server_runs_jobs_in_process_unless_off(
    services: Services, tmp_path: Path, worker: str
) -> None:
    env = {
        "KEEL_HOME": str(services.settings.home),
        "KEEL_WORKER": worker,
        "KEEL_JOBS_IMPORTS": "jobkinds",
        "PYTHONPATH": str(HERE),
    }
    with server_process(tmp_path, **env):
        job = services.jobs.enqueue("test.count", {"path": str(tmp_path / uuid.uuid4().hex)})
        if worker == "on":
            assert wait_status(services.jobs, job.id, {"succeeded"}).attempts == 1
        else:
            time.sleep(3)  # an in-process consumer polls at least every 2 s
            assert services.jobs.get(job.id).status == "queued"
