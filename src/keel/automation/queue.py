"""The task queue under keel's jobs: a Huey instance built from :class:`Settings`.

Huey carries one kind of message, ``keel.run_job(job_id)``, plus the per-minute
``keel.tick`` periodic task; the job's state lives in SQL (:mod:`keel.automation.jobs`).
Storage: a SQLite file in ``KEEL_HOME`` by default, Redis when ``KEEL_REDIS_URL`` is set,
or as ``KEEL_JOBS_QUEUE`` says. Huey deletes a message when a consumer dequeues it, so a
consumer killed mid-task loses the message: the jobs table's lease is what re-delivers it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from huey import Huey, PriorityRedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer

from keel.config import Settings
from keel.errors import InsufficientStorage, InvalidInput, KeelError, Unavailable
from keel.store.sql.engine import ensure_dir
from keel.store.storage_full import storage_full

__all__ = ["EmbeddedConsumer", "JobHandler", "JobQueue", "make_huey", "queue_backend"]

log = logging.getLogger("keel.jobs")

HUEY_NAME = "keel"


class JobHandler(Protocol):
    """What the queue's tasks call (the job service)."""

    def run(self, job_id: str) -> None: ...

    def tick(self) -> object: ...


def queue_backend(settings: Settings) -> str:
    """``sqlite`` or ``redis``: ``KEEL_JOBS_QUEUE``, where ``auto`` means Redis when
    ``KEEL_REDIS_URL`` is set."""
    if settings.jobs_queue != "auto":
        return settings.jobs_queue
    return "redis" if settings.redis_url else "sqlite"


def make_huey(settings: Settings) -> Huey:
    """The Huey instance for ``settings``. Results stay off: outcomes live in the jobs table.

    A SQLite queue file that cannot be opened raises one line naming it and
    KEEL_JOBS_QUEUE_PATH: :class:`InsufficientStorage` on a full disk, else
    :class:`Unavailable`.
    """
    if queue_backend(settings) == "redis":
        if not settings.redis_url:
            raise InvalidInput("jobs_queue=redis needs KEEL_REDIS_URL", field="jobs_queue")
        # priority: a scheduler tick overtakes a backlog of long jobs
        return PriorityRedisHuey(HUEY_NAME, url=settings.redis_url, results=False, utc=True)
    path = settings.jobs_queue_path or settings.home / "jobs-queue.db"
    ensure_dir(path.parent, "KEEL_JOBS_QUEUE_PATH")
    try:
        # timeout: a second process waits for SQLite's lock instead of failing
        return SqliteHuey(HUEY_NAME, filename=str(path), results=False, utc=True, timeout=30)
    except sqlite3.Error as exc:  # Huey opens the file and creates its tables here
        raise _queue_file_error(path, exc) from exc


def _queue_file_error(path: Path, exc: sqlite3.Error) -> KeelError:
    """The one-line :class:`KeelError` for the job queue's SQLite file refusing to open.

    Every embedded command opens the queue, so on a full disk this is the first error a
    user meets: :class:`InsufficientStorage` by the rule every write follows
    (:func:`~keel.store.storage_full.storage_full`; an existing WAL file there fails with
    SQLITE_IOERR_SHMSIZE, a new one with SQLITE_FULL); anything else is
    :class:`Unavailable`. Both name the file and KEEL_JOBS_QUEUE_PATH, never a traceback.
    """
    reason = str(exc).strip() or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", None)
    said = f"{reason}, {name}" if name else reason
    if storage_full(exc) is not None:
        return InsufficientStorage(
            f"cannot open the job queue {path} ({said}): its disk is full; free space there, "
            "or set KEEL_JOBS_QUEUE_PATH to a file on another disk, then retry",
            field="KEEL_JOBS_QUEUE_PATH",
            store="jobs_queue",
        )
    return Unavailable(
        f"cannot open the job queue {path} ({said}): keel needs it and its folder readable "
        "and writable as a SQLite file; fix that (or move a damaged file away), or set "
        "KEEL_JOBS_QUEUE_PATH to another file",
        field="KEEL_JOBS_QUEUE_PATH",
    )


class JobQueue:
    """keel's two Huey tasks over one Huey instance; :meth:`bind` gives them their handler."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._handler: JobHandler | None = None

        # huey ships no type hints: its decorators are untyped
        @huey.task(name="keel.run_job", priority=0)  # type: ignore[untyped-decorator]
        def run_job(job_id: str) -> None:
            self.handler.run(job_id)

        # Every consumer's scheduler enqueues a tick each minute; a tick fires due schedules
        # under idempotency keys, so N consumers still give one job per period.
        @huey.periodic_task(crontab(), name="keel.tick", priority=10)  # type: ignore[untyped-decorator]
        def tick() -> None:
            self.handler.tick()

        @huey.on_startup("keel.startup_tick")  # type: ignore[untyped-decorator]
        def startup_tick() -> None:
            # A restarted worker re-delivers what a killed one held without waiting a minute.
            try:
                self.handler.tick()
            except Exception:  # never keep a worker from starting
                log.exception("startup tick failed")

        self._run_job = run_job

    @property
    def handler(self) -> JobHandler:
        if self._handler is None:
            raise RuntimeError("JobQueue.bind() was not called")
        return self._handler

    def bind(self, handler: JobHandler) -> None:
        """Route the tasks to ``handler`` (the job service of this process)."""
        self._handler = handler

    def submit(self, job_id: str, delay_s: float = 0.0) -> str:
        """Put a ``run_job`` message on the queue (after ``delay_s``); returns its id."""
        # A task built here, not by calling the wrapper: with results off, the call
        # returns no handle and so no id to revoke.
        task = self._run_job.s(job_id, delay=delay_s) if delay_s > 0 else self._run_job.s(job_id)
        self.huey.enqueue(task)
        return str(task.id)

    def revoke(self, task_id: str) -> None:
        """Tell consumers to drop the message ``task_id`` if they see it."""
        self.huey.revoke_by_id(task_id, revoke_once=True)

    def pending(self) -> int:
        """Messages waiting in the queue (not counting scheduled ones)."""
        return int(self.huey.pending_count())

    def consumer(self, threads: int, *, embedded: bool = False) -> Consumer:
        """A Huey consumer with ``threads`` worker threads; ``embedded`` for one that runs
        inside another program (no signal handlers)."""
        cls = EmbeddedConsumer if embedded else Consumer
        # max_delay 2 s: an idle consumer polls the queue at most every 2 s; a new job
        # waits at most that long, and idling costs well under 1% of a core.
        return cls(
            self.huey,
            workers=threads,
            worker_type="thread",
            periodic=True,
            max_delay=2.0,
            scheduler_interval=1,
            check_worker_health=True,
        )


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A consumer started from a program that owns the signals (``keel server``)."""

    def _set_signal_handlers(self) -> None:
        pass

    def start_in_background(self) -> threading.Thread:
        """Start the workers and scheduler threads plus a health-check thread."""
        self.start()

        def watch() -> None:
            while not self.stop_flag.wait(self._health_check_interval):
                self.check_worker_health()

        thread = threading.Thread(target=watch, name="keel-jobs-health", daemon=True)
        thread.start()
        return thread

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop taking jobs; wait up to ``timeout_s`` for running ones."""
        self.shutdown_timeout = timeout_s
        self.stop(graceful=True)

    def __repr__(self) -> str:
        return f"EmbeddedConsumer({self.huey.name!r})"
