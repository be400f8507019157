"""Jobs half of :class:`keel.Client`: the job queue, schedules, monitor schedules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keel.automation.job_models import Job, Schedule

if TYPE_CHECKING:
    from keel.client._transport import Transport

__all__ = ["JobsMixin"]


class JobsMixin:
    """Job methods; mixed into :class:`keel.Client`."""

    transport: Transport

    def list_jobs(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[Job]:
        """Jobs newest first, optionally only one status (``queued``, ``running``,
        ``succeeded``, ``failed``, ``cancelled``, ``retrying``) or kind."""
        return self.transport.list_jobs(status, kind, limit)

    def get_job(self, job_id: str) -> Job:
        """One job with its log lines, result, or error and traceback."""
        return self.transport.get_job(job_id)

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a job that has not finished (Conflict when it has)."""
        return self.transport.cancel_job(job_id)

    def list_schedules(self) -> list[Schedule]:
        """Periodic schedules with their last and next firing."""
        return self.transport.list_schedules()

    def schedule_monitor(self, name: str, cron: str | None = None) -> Schedule:
        """Run monitor ``name`` at each firing of ``cron`` (5 fields, UTC, or ``@hourly``);
        each run is a ``monitor.run`` job. Replaces an earlier schedule of the monitor.

        Without ``cron``, the default cadence of the monitor's fastest check (R-MON-14,
        :func:`keel.monitoring.cadence.default_cron`: 15 min with feature views, else 1 h).
        """
        return self.transport.schedule_monitor(name, cron)

    def unschedule_monitor(self, name: str) -> None:
        """Stop running monitor ``name`` on a schedule."""
        self.transport.unschedule_monitor(name)
