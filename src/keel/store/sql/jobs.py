"""Jobs, their log lines and periodic schedules in SQL.

Every state change is a compare-and-set ``UPDATE … WHERE status …`` so that two workers
holding the same job's message (a re-delivery racing the original) cannot both run it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update

from keel.automation.job_models import ACTIVE_STATUSES, Job, JobLog, Schedule
from keel.errors import Conflict, NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_jobs import JobLogRow, JobRow, JobScheduleRow

__all__ = ["JobSql"]

_JOB_FIELDS = tuple(Job.model_fields)


def _job(row: JobRow, logs: Sequence[JobLogRow] = ()) -> Job:
    data = {name: getattr(row, name) for name in _JOB_FIELDS if name != "logs"}
    data["logs"] = [JobLog(time_ms=r.time_ms, level=r.level, message=r.message) for r in logs]
    return Job.model_validate(data)


def _schedule(row: JobScheduleRow) -> Schedule:
    return Schedule.model_construct(  # stored values were validated when written
        **{c.key: getattr(row, c.key) for c in JobScheduleRow.__table__.columns}
    )


class JobSql(SqlBase):
    """Persistence of the job queue's state."""

    # ---- jobs ----------------------------------------------------------------------------
    def insert_job(self, job: Job) -> tuple[Job, bool]:
        """Store a new job; when its key exists, the existing job and False instead."""
        values = job.model_dump(exclude={"logs"})
        try:
            with self.write("a job with this key exists", field="key") as session:
                session.add(JobRow(**values))
        except Conflict:
            existing = self.find_job_by_key(job.key)
            if existing is None:  # the conflict was not the key: let it surface
                raise
            return existing, False
        return job, True

    def set_submitted(self, job_id: str, task_id: str, at_ms: int) -> None:
        """Remember the Huey message that carries the job (for revoke and re-delivery)."""
        with self.write_conn() as conn:
            conn.execute(
                update(JobRow)
                .where(JobRow.id == job_id)
                .values(task_id=task_id, submitted_at_ms=at_ms)
            )

    def get_job(self, job_id: str, *, with_logs: bool = True) -> Job:
        """One job with its log lines; raises :class:`NotFound`."""
        with self.read() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"job {job_id!r} not found", field="id")
            logs: Sequence[JobLogRow] = ()
            if with_logs:
                logs = session.scalars(
                    select(JobLogRow).where(JobLogRow.job_id == job_id).order_by(JobLogRow.id)
                ).all()
            return _job(row, logs)

    def find_job_by_key(self, key: str) -> Job | None:
        """The job enqueued with ``key``, or None."""
        with self.read() as session:
            row = session.scalars(select(JobRow).where(JobRow.key == key)).first()
            return None if row is None else _job(row)

    def list_jobs(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        schedule: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """Jobs newest first, optionally of one status / kind / schedule."""
        query = select(JobRow)
        if status is not None:
            query = query.where(JobRow.status == status)
        if kind is not None:
            query = query.where(JobRow.kind == kind)
        if schedule is not None:
            query = query.where(JobRow.schedule == schedule)
        query = query.order_by(JobRow.created_at_ms.desc(), JobRow.id).limit(limit)
        with self.read() as session:
            return [_job(r) for r in session.scalars(query)]

    def _cas(self, job_id: str, where: Sequence[Any], **values: Any) -> bool:
        with self.write_conn() as conn:
            result = conn.execute(
                update(JobRow).where(JobRow.id == job_id, *where).values(**values)
            )
            return bool(result.rowcount)

    def claim(self, job_id: str, worker: str, now_ms: int, lease_until_ms: int) -> Job | None:
        """Mark a due queued/retrying job running on ``worker``; None when it is not
        claimable (already running elsewhere, finished, cancelled, or not yet due)."""
        claimed = self._cas(
            job_id,
            (JobRow.status.in_(("queued", "retrying")), JobRow.run_at_ms <= now_ms),
            status="running",
            attempts=JobRow.attempts + 1,
            worker=worker,
            started_at_ms=now_ms,
            lease_until_ms=lease_until_ms,
        )
        if not claimed:
            return None
        return self.get_job(job_id, with_logs=False)

    def renew_lease(self, job_id: str, worker: str, lease_until_ms: int) -> bool:
        """Extend a running job's lease; False when the job is no longer ours."""
        where = (JobRow.status == "running", JobRow.worker == worker)
        return self._cas(job_id, where, lease_until_ms=lease_until_ms)

    def finish(self, job_id: str, worker: str, status: str, **values: Any) -> bool:
        """Record the outcome of the attempt ``worker`` runs; False when the job is no
        longer ours (cancelled meanwhile, or re-delivered after our lease expired)."""
        where = (JobRow.status == "running", JobRow.worker == worker)
        return self._cas(job_id, where, status=status, lease_until_ms=None, **values)

    def cancel(self, job_id: str, now_ms: int) -> Job:
        """Cancel a job that has not finished; :class:`Conflict` when it has."""
        done = self._cas(
            job_id,
            (JobRow.status.in_(ACTIVE_STATUSES),),
            status="cancelled",
            finished_at_ms=now_ms,
            lease_until_ms=None,
        )
        job = self.get_job(job_id)
        if not done:
            raise Conflict(f"job {job_id!r} is already {job.status}", field="id", status=job.status)
        return job

    def expired_leases(self, now_ms: int) -> list[Job]:
        """Running jobs whose worker stopped renewing the lease (killed, frozen)."""
        query = select(JobRow).where(JobRow.status == "running", JobRow.lease_until_ms < now_ms)
        with self.read() as session:
            return [_job(r) for r in session.scalars(query)]

    def requeue_expired(self, job_id: str, lease_until_ms: int | None, now_ms: int) -> bool:
        """Put a job whose lease expired back in the queue (compare-and-set on the lease)."""
        where = (JobRow.status == "running", JobRow.lease_until_ms == lease_until_ms)
        return self._cas(
            job_id, where, status="queued", worker=None, lease_until_ms=None, run_at_ms=now_ms
        )

    def unsubmitted(self, before_ms: int) -> list[Job]:
        """Due queued/retrying jobs whose message went out before ``before_ms`` (or never):
        their message may be lost, e.g. with a Redis restart or a crash after the insert."""
        query = select(JobRow).where(
            JobRow.status.in_(("queued", "retrying")),
            JobRow.run_at_ms <= before_ms,
            (JobRow.submitted_at_ms.is_(None)) | (JobRow.submitted_at_ms < before_ms),
        )
        with self.read() as session:
            return [_job(r) for r in session.scalars(query.limit(1000))]

    def task_id(self, job_id: str) -> str | None:
        """The Huey message id of a job's latest submission."""
        with self.read() as session:
            return session.scalar(select(JobRow.task_id).where(JobRow.id == job_id))

    def add_logs(self, job_id: str, lines: Sequence[JobLog]) -> None:
        """Append log lines to a job."""
        if not lines:
            return
        with self.write_conn() as conn:
            conn.execute(
                insert(JobLogRow),
                [{"job_id": job_id, **line.model_dump()} for line in lines],
            )

    # ---- schedules -----------------------------------------------------------------------
    def save_schedule(self, schedule: Schedule) -> Schedule:
        """Insert or replace a schedule (its firing history is kept on replace)."""
        values = schedule.model_dump(
            exclude={"next_fire_at_ms", "last_fired_at_ms", "last_job_id", "created_at_ms"}
        )
        with self.write() as session:
            row = session.get(JobScheduleRow, schedule.name)
            if row is None:
                session.add(JobScheduleRow(created_at_ms=schedule.created_at_ms, **values))
            else:
                for key, value in values.items():
                    if key != "created_by":
                        setattr(row, key, value)
        return self.get_schedule(schedule.name)

    def get_schedule(self, name: str) -> Schedule:
        """One schedule; raises :class:`NotFound`."""
        with self.read() as session:
            row = session.get(JobScheduleRow, name)
            if row is None:
                raise NotFound(f"schedule {name!r} not found", field="name")
            return _schedule(row)

    def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        with self.read() as session:
            rows = session.scalars(select(JobScheduleRow).order_by(JobScheduleRow.name))
            return [_schedule(r) for r in rows]

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (its jobs stay); raises :class:`NotFound`."""
        with self.write_conn() as conn:
            result = conn.execute(delete(JobScheduleRow).where(JobScheduleRow.name == name))
            if not result.rowcount:
                raise NotFound(f"schedule {name!r} not found", field="name")

    def mark_fired(self, name: str, fired_at_ms: int, job_id: str) -> None:
        """Record a firing, never moving the mark backwards."""
        with self.write_conn() as conn:
            conn.execute(
                update(JobScheduleRow)
                .where(
                    JobScheduleRow.name == name,
                    (JobScheduleRow.last_fired_at_ms.is_(None))
                    | (JobScheduleRow.last_fired_at_ms < fired_at_ms),
                )
                .values(last_fired_at_ms=fired_at_ms, last_job_id=job_id)
            )
