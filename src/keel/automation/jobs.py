"""Jobs: enqueue idempotently by key, run with a lease, retry with backoff, cancel, and
fire periodic schedules exactly once per period.

The jobs table is the truth; Huey (:mod:`keel.automation.queue`) only carries
``run_job(job_id)`` messages. A worker claims a job with a compare-and-set and renews a
lease while it runs; a worker killed mid-job stops renewing, and the next tick (every
minute on every consumer, and at each consumer's start) puts the job back in the queue.
Delivery is therefore at least once, and a job kind must be idempotent; every firing of a
schedule gets the key ``schedule:<name>:<time>``, so any number of consumers fire it once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from keel._models import now_ms
from keel.automation.cron import latest_fire, next_fire
from keel.automation.job_models import (
    FINAL_STATUSES,
    Job,
    JobLog,
    Schedule,
    ScheduleSpec,
    is_permanent,
)
from keel.automation.kinds import get_kind
from keel.automation.lease import heartbeat
from keel.automation.queue import JobQueue
from keel.errors import InvalidInput
from keel.executors import cancel_scope
from keel.store.sql.jobs import JobSql

__all__ = ["JobService", "monitor_schedule_name"]

log = logging.getLogger("keel.jobs")

#: Times a job may be re-delivered after its worker died, beyond its retries.
MAX_REDELIVERIES = 3
#: Most log lines kept per attempt.
MAX_LOG_LINES = 500
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "retrying")


def monitor_schedule_name(monitor: str) -> str:
    """The schedule that runs monitor ``monitor`` (R-MON-14)."""
    return f"monitor:{monitor}"


class _Capture(logging.Handler):
    """Collects the log records one thread emits under ``keel`` while a job runs."""

    def __init__(self, thread_id: int) -> None:
        super().__init__(logging.INFO)
        self.thread_id = thread_id
        self.lines: list[JobLog] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id and len(self.lines) < MAX_LOG_LINES:
            message = record.getMessage()
            self.lines.append(
                JobLog(time_ms=int(record.created * 1000), level=record.levelname, message=message)
            )


class JobService:
    """Use cases of jobs and schedules; ``services`` (attached by the composition root) is
    what job kinds receive."""

    def __init__(
        self,
        store: JobSql,
        queue: JobQueue,
        *,
        lease_s: float = 60.0,
        misfire_grace_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 10.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.queue = queue
        self.lease_ms = int(lease_s * 1000)
        self.misfire_grace_s = misfire_grace_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.clock = clock
        self.services: Any = None
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        #: job id → the cancel event of its attempt running in this process
        self._running: dict[str, threading.Event] = {}
        queue.bind(self)

    def attach(self, services: Any) -> None:
        """Give job kinds the services they run against."""
        self.services = services

    # ---- enqueue, read, cancel -------------------------------------------------------------
    def enqueue(
        self,
        kind: str,
        args: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        max_retries: int | None = None,
        backoff_s: float | None = None,
        delay_s: float = 0.0,
        actor: str | None = None,
        schedule: str | None = None,
    ) -> Job:
        """Queue a job; with a ``key`` already used, the existing job (nothing queued)."""
        args = dict(args or {})
        job_kind = get_kind(kind)
        _check_json(args, "args")
        if job_kind.check is not None:
            job_kind.check(self.services, args)
        if key is not None and (not key or len(key) > 300):
            raise InvalidInput("key: 1 to 300 characters", field="key")
        retries = self.max_retries if max_retries is None else max_retries
        if retries < 0 or retries > 100:
            raise InvalidInput("max_retries: expected 0..100", field="max_retries")
        now = self.clock()
        job_id = uuid.uuid4().hex
        job, created = self.store.insert_job(
            Job(
                id=job_id,
                kind=kind,
                key=key or job_id,
                args=args,
                status="queued",
                max_retries=retries,
                backoff_s=self.backoff_s if backoff_s is None else backoff_s,
                created_at_ms=now,
                run_at_ms=now + int(delay_s * 1000),
                actor=actor,
                schedule=schedule,
            )
        )
        if created:
            self._submit(job.id, delay_s)
        return job

    def _submit(self, job_id: str, delay_s: float = 0.0) -> None:
        task_id = self.queue.submit(job_id, delay_s)
        self.store.set_submitted(job_id, task_id, self.clock())

    def get(self, job_id: str) -> Job:
        """One job with its log lines; NotFound otherwise."""
        return self.store.get_job(job_id)

    def list_jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[Job]:
        """Jobs newest first; InvalidInput for an unknown status or a bad limit."""
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                f"status: expected one of {', '.join(STATUSES)}, got {status!r}", field="status"
            )
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit: expected 1..1000", field="limit")
        return self.store.list_jobs(status=status, kind=kind, limit=limit)

    def cancel(self, job_id: str, actor: str | None = None) -> Job:
        """Cancel a job that has not finished (Conflict if it has). A running attempt sees
        it within :data:`~keel.automation.lease.CANCEL_POLL_S` (at once in this process):
        its executor calls are stopped, its outcome discarded, and it is not retried."""
        self.store.cancel(job_id, self.clock())
        running = self._running.get(job_id)
        if running is not None:
            running.set()
        task_id = self.store.task_id(job_id)
        if task_id:
            self.queue.revoke(task_id)
        self.store.add_logs(job_id, [self._line("INFO", f"cancelled by {actor or 'unknown'}")])
        return self.store.get_job(job_id)

    # ---- running -------------------------------------------------------------------------
    def run(self, job_id: str) -> None:
        """Run one attempt of a job if it is still due and nobody else runs it."""
        now = self.clock()
        job = self.store.claim(job_id, self.worker_id, now, now + self.lease_ms)
        if job is None:
            return
        lines = [self._line("INFO", f"attempt {job.attempts} on {self.worker_id}")]
        capture = _Capture(threading.get_ident())
        root = logging.getLogger("keel")
        if root.getEffectiveLevel() > logging.INFO:
            # A job's INFO lines are part of its record. Handlers elsewhere keep their own
            # level (`keel worker` sets its console's), so this adds no console noise there.
            root.setLevel(logging.INFO)
        root.addHandler(capture)
        # Set by the heartbeat once the job is cancelled (from any process), or at once by
        # cancel() in this one; executor calls of the kind stop on it (cancel_scope).
        cancel = self._running[job.id] = threading.Event()
        try:
            with heartbeat(self.store, job.id, self.worker_id, self.lease_ms, self.clock, cancel):
                try:
                    with cancel_scope(cancel):
                        result = get_kind(job.kind).run(self.services, dict(job.args))
                    _check_json(result, "result")
                except Exception as exc:
                    lines += capture.lines
                    if cancel.is_set():  # the row already says cancelled: no retry
                        lines.append(self._line("INFO", f"stopped after cancel: {exc}"))
                        self.store.add_logs(job.id, lines)
                    else:
                        self._failed(job, exc, lines)
                    return
        finally:
            self._running.pop(job.id, None)
            root.removeHandler(capture)
        lines += capture.lines
        done = self.store.finish(
            job.id, self.worker_id, "succeeded", result=result, finished_at_ms=self.clock()
        )
        lines.append(self._line("INFO", "succeeded" if done else "finished after cancel"))
        self.store.add_logs(job.id, lines)

    def _failed(self, job: Job, exc: BaseException, lines: list[JobLog]) -> None:
        text = "".join(traceback.format_exception(exc))
        error = f"{type(exc).__name__}: {exc}"
        permanent = is_permanent(exc)
        if job.attempts <= job.max_retries and not permanent:
            delay_s = job.backoff_s * 2 ** (job.attempts - 1)
            done = self.store.finish(
                job.id,
                self.worker_id,
                "retrying",
                error=error,
                traceback=text,
                run_at_ms=self.clock() + int(delay_s * 1000),
            )
            lines.append(self._line("WARNING", f"{error}; retry in {delay_s:g} s"))
            self.store.add_logs(job.id, lines)
            if done:
                self._submit(job.id, delay_s)
            return
        self.store.finish(
            job.id,
            self.worker_id,
            "failed",
            error=error,
            traceback=text,
            finished_at_ms=self.clock(),
        )
        why = "not retried: the same input fails every time" if permanent else "no retries left"
        lines.append(self._line("ERROR", f"{error}; {why}"))
        self.store.add_logs(job.id, lines)

    # ---- the tick: schedules and re-delivery ----------------------------------------------
    def tick(self, now: int | None = None) -> list[Job]:
        """Fire due schedules and re-deliver jobs whose worker died; the jobs fired."""
        now = self.clock() if now is None else now
        self.reap(now)
        return self.fire_schedules(now)

    def reap(self, now: int | None = None) -> int:
        """Re-queue running jobs whose lease expired; re-send lost messages. The count
        re-delivered."""
        now = self.clock() if now is None else now
        count = 0
        for job in self.store.expired_leases(now):
            if job.attempts > job.max_retries + MAX_REDELIVERIES:
                message = f"worker lost {job.attempts} times (last {job.worker}); giving up"
                if self.store.finish(
                    job.id, job.worker or "", "failed", error=message, finished_at_ms=now
                ):
                    self.store.add_logs(job.id, [self._line("ERROR", message)])
                continue
            if self.store.requeue_expired(job.id, job.lease_until_ms, now):
                note = f"lease expired on {job.worker}; re-delivered"
                self.store.add_logs(job.id, [self._line("WARNING", note)])
                self._submit(job.id)
                count += 1
        # A queued job whose message went out over a lease ago and still waits: the message
        # may be lost (crash between insert and submit, Redis restart). A duplicate message
        # is harmless: only one claim succeeds.
        for job in self.store.unsubmitted(now - self.lease_ms):
            self._submit(job.id)
            count += 1
        return count

    def fire_schedules(self, now: int) -> list[Job]:
        """Enqueue the current period's job of every due schedule (once per period)."""
        moment = datetime.fromtimestamp(now / 1000, UTC)
        fired: list[Job] = []
        for schedule in self.store.list_schedules():
            if not schedule.enabled:
                continue
            at = latest_fire(schedule.cron, moment, self.misfire_grace_s)
            if at is None:
                continue
            at_ms = int(at.timestamp() * 1000)
            if at_ms < schedule.created_at_ms or at_ms <= (schedule.last_fired_at_ms or -1):
                continue
            key = f"schedule:{schedule.name}:{at.strftime('%Y-%m-%dT%H:%MZ')}"
            try:
                job = self.enqueue(
                    schedule.kind,
                    schedule.args,
                    key=key,
                    actor=f"schedule:{schedule.name}",
                    schedule=schedule.name,
                )
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s could not fire", schedule.name)
                continue
            self.store.mark_fired(schedule.name, at_ms, job.id)
            fired.append(job)
        return fired

    # ---- schedules -----------------------------------------------------------------------
    def schedule(
        self,
        name: str,
        kind: str,
        cron: str,
        args: dict[str, Any] | None = None,
        *,
        enabled: bool = True,
        actor: str | None = None,
    ) -> Schedule:
        """Create or replace a schedule; InvalidInput names a bad cron field, kind or arg."""
        from pydantic import ValidationError

        from keel._models import invalid_input

        try:
            spec = ScheduleSpec(name=name, kind=kind, cron=cron, args=args or {}, enabled=enabled)
        except ValidationError as exc:
            raise invalid_input(exc) from None
        job_kind = get_kind(spec.kind)
        _check_json(spec.args, "args")
        if job_kind.check is not None:
            job_kind.check(self.services, spec.args)
        now = self.clock()
        stored = self.store.save_schedule(
            Schedule(**spec.model_dump(), created_by=actor, created_at_ms=now, updated_at_ms=now)
        )
        return self._with_next(stored)

    def get_schedule(self, name: str) -> Schedule:
        """One schedule with its next firing time."""
        return self._with_next(self.store.get_schedule(name))

    def list_schedules(self) -> list[Schedule]:
        """Every schedule with its next firing time."""
        return [self._with_next(s) for s in self.store.list_schedules()]

    def delete_schedule(self, name: str) -> None:
        """Stop a schedule (its past jobs stay)."""
        self.store.delete_schedule(name)

    def schedule_monitor(self, monitor: str, cron: str, actor: str | None = None) -> Schedule:
        """Run monitor ``monitor`` at each firing of ``cron`` (R-MON-14); NotFound for an
        unknown monitor, InvalidInput naming the bad cron field."""
        name = monitor_schedule_name(monitor)
        return self.schedule(name, "monitor.run", cron, {"monitor": monitor}, actor=actor)

    def unschedule_monitor(self, monitor: str) -> None:
        """Stop running ``monitor`` on a schedule; NotFound when it has none."""
        self.store.delete_schedule(monitor_schedule_name(monitor))

    def _with_next(self, schedule: Schedule) -> Schedule:
        if not schedule.enabled:
            return schedule
        after = datetime.fromtimestamp(self.clock() / 1000, UTC)
        at = next_fire(schedule.cron, after)
        return schedule.model_copy(update={"next_fire_at_ms": int(at.timestamp() * 1000)})

    # ---- helpers -------------------------------------------------------------------------
    def _line(self, level: str, message: str) -> JobLog:
        return JobLog(time_ms=self.clock(), level=level, message=message)

    def wait(self, job_id: str, timeout_s: float = 30.0, poll_s: float = 0.05) -> Job:
        """Poll until the job is final (for callers that must have the outcome)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.store.get_job(job_id)
            if job.status in FINAL_STATUSES or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)


def _check_json(value: Any, field: str) -> None:
    """InvalidInput unless ``value`` is plain JSON (it is stored and sent as JSON)."""
    try:
        orjson.dumps(value)
    except TypeError as exc:
        raise InvalidInput(f"{field}: not JSON-serialisable ({exc})", field=field) from None
