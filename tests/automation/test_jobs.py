"""The job service on SQLite and PostgreSQL: idempotency, retries, cancel, re-delivery."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.automation.conftest import drain

from keel.errors import Conflict, InvalidInput, NotFound
from keel.services import Services


def test_enqueue_same_key_returns_existing_job(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    args = {"path": str(tmp_path / "out")}
    first = jobs.enqueue("test.count", args, key="nightly-2026-01-01")
    again = jobs.enqueue("test.count", args, key="nightly-2026-01-01")
    assert again.id == first.id and jobs.queue.pending() == 1
    assert drain(jobs) == 1
    assert jobs.enqueue("test.count", args, key="nightly-2026-01-01").status == "succeeded"
    assert (tmp_path / "out").read_text().count("\n") == 1


def test_job_success_stores_result_and_logs(services: Services, tmp_path: Path) -> None:
    job = services.jobs.enqueue("test.count", {"path": str(tmp_path / "out")}, actor="ann")
    drain(services.jobs)
    done = services.jobs.get(job.id)
    assert done.status == "succeeded" and done.attempts == 1 and done.actor == "ann"
    assert done.result == {"pid": done.result["pid"]} and done.finished_at_ms
    messages = [line.message for line in done.logs]
    assert any(m.startswith("counting into") for m in messages)  # the job's own logging
    assert messages[-1] == "succeeded"


def test_failed_job_retries_with_backoff_then_fails(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    args = {"path": str(tmp_path / "calls"), "succeed_after": 99}
    job = jobs.enqueue("test.flaky", args, max_retries=2, backoff_s=0.2)
    drain(jobs)
    first = jobs.get(job.id)
    assert first.status == "retrying" and first.attempts == 1
    assert first.run_at_ms - first.started_at_ms >= 200  # backoff_s * 2**0
    assert "RuntimeError: flaky failure 1" in (first.traceback or "")
    time.sleep(0.3)
    drain(jobs)
    second = jobs.get(job.id)
    assert second.status == "retrying" and second.attempts == 2
    assert second.run_at_ms - second.started_at_ms >= 400  # doubled
    time.sleep(0.5)
    drain(jobs)
    last = jobs.get(job.id)
    assert last.status == "failed" and last.attempts == 3
    assert last.error == "RuntimeError: flaky failure 3"
    assert 'raise RuntimeError(f"flaky failure {calls}")' in (last.traceback or "")
    assert last.logs[-1].message.endswith("no retries left")


def test_bad_input_fails_at_once_without_retries(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    calls = tmp_path / "calls"
    job = jobs.enqueue("test.refuse", {"path": str(calls)}, max_retries=3, backoff_s=0.05)
    drain(jobs)
    time.sleep(0.1)
    drain(jobs)
    done = jobs.get(job.id)
    assert (done.status, done.attempts) == ("failed", 1)
    assert done.error == "InvalidInput: limit: expected a number"
    assert done.logs[-1].message.endswith("not retried: the same input fails every time")
    assert calls.read_text() == "x\n"  # ran once


def test_retry_succeeds_after_transient_failure(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    job = jobs.enqueue(
        "test.flaky", {"path": str(tmp_path / "calls"), "succeed_after": 1}, backoff_s=0.05
    )
    drain(jobs)
    time.sleep(0.1)
    drain(jobs)
    done = jobs.get(job.id)
    assert (done.status, done.attempts, done.result) == ("succeeded", 2, "ok")


def test_cancel_queued_job_never_runs(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    job = jobs.enqueue("test.count", {"path": str(tmp_path / "out")})
    assert jobs.cancel(job.id, actor="bob").status == "cancelled"
    drain(jobs)
    assert jobs.get(job.id).status == "cancelled"
    assert not (tmp_path / "out").exists()
    with pytest.raises(Conflict, match="already cancelled"):
        jobs.cancel(job.id)
    with pytest.raises(NotFound):
        jobs.cancel("nope")


def test_expired_lease_is_redelivered_once(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    job = jobs.enqueue("test.count", {"path": str(tmp_path / "out")})
    huey = jobs.queue.huey
    huey.dequeue()  # a worker took the message ...
    now = jobs.clock()
    assert jobs.store.claim(job.id, "dead-worker", now, now + 200)  # ... and died running it
    assert jobs.reap(now) == 0  # while the lease is valid
    time.sleep(0.3)
    assert jobs.reap() == 1
    assert jobs.reap() == 0  # already back in the queue
    drain(jobs)
    done = jobs.get(job.id)
    assert done.status == "succeeded" and done.attempts == 2
    assert any("lease expired on dead-worker" in line.message for line in done.logs)
    assert (tmp_path / "out").read_text().count("\n") == 1


def test_duplicate_message_runs_job_once(services: Services, tmp_path: Path) -> None:
    jobs = services.jobs
    job = jobs.enqueue("test.count", {"path": str(tmp_path / "out")})
    jobs.queue.submit(job.id)  # e.g. a re-send racing the original
    assert drain(jobs) == 2
    assert (tmp_path / "out").read_text().count("\n") == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "nope"}, "kind"),
        ({"kind": "test.count", "args": {"x": object()}}, "args"),
        ({"kind": "test.count", "key": ""}, "key"),
        ({"kind": "test.count", "max_retries": -1}, "max_retries"),
        ({"kind": "monitor.run", "args": {}}, "args.monitor"),
    ],
)
def test_enqueue_bad_input_names_field(services: Services, kwargs: dict, field: str) -> None:
    options = dict(kwargs)
    kind, args = options.pop("kind"), options.pop("args", {"path": "x"})
    with pytest.raises(InvalidInput) as error:
        services.jobs.enqueue(kind, args, **options)
    assert error.value.field == field
    assert services.jobs.list_jobs() == []  # no partial record
