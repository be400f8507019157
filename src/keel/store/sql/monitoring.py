"""Monitor definitions and runs in SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select

from keel.errors import NotFound
from keel.monitoring.models import Monitor, MonitorRun
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_monitoring import MonitorRow, MonitorRunRow

__all__ = ["MonitorSql"]

_SPEC_COLUMNS = {"name", "model", "reference", "sampling_rate", "created_by"}


def _monitor(row: MonitorRow) -> Monitor:
    return Monitor(
        name=row.name,
        model=row.model,
        version=row.version_ref,
        reference=row.reference,
        sampling_rate=row.sampling_rate,
        created_by=row.created_by,
        created_at_ms=row.created_at_ms,
        updated_at_ms=row.updated_at_ms,
        **row.config,
    )


def _run(row: MonitorRunRow) -> MonitorRun:
    return MonitorRun.model_validate(
        {c.key: getattr(row, c.key) for c in MonitorRunRow.__table__.columns}
    )


class MonitorSql(SqlBase):
    """CRUD of monitors; append and list of monitor runs."""

    def save_monitor(self, monitor: Monitor) -> Monitor:
        """Insert or replace a monitor definition."""
        data = monitor.model_dump(mode="json")
        config = {
            k: v
            for k, v in data.items()
            if k not in _SPEC_COLUMNS | {"version", "created_at_ms", "updated_at_ms"}
        }
        with self.write() as session:
            row = session.get(MonitorRow, monitor.name)
            values: dict[str, Any] = {
                "model": monitor.model,
                "version_ref": monitor.version,
                "reference": monitor.reference,
                "window_s": monitor.window_s,
                "sampling_rate": monitor.sampling_rate,
                "config": config,
                "updated_at_ms": monitor.updated_at_ms,
            }
            if row is None:
                session.add(
                    MonitorRow(
                        name=monitor.name,
                        created_by=monitor.created_by,
                        created_at_ms=monitor.created_at_ms,
                        **values,
                    )
                )
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        return self.get_monitor(monitor.name)

    def get_monitor(self, name: str) -> Monitor:
        """A monitor; raises :class:`NotFound`."""
        with self.read() as session:
            row = session.get(MonitorRow, name)
            if row is None:
                raise NotFound(f"monitor {name!r} not found", field="name")
            return _monitor(row)

    def list_monitors(self) -> list[Monitor]:
        """Every monitor, by name."""
        with self.read() as session:
            return [
                _monitor(r) for r in session.scalars(select(MonitorRow).order_by(MonitorRow.name))
            ]

    def delete_monitor(self, name: str) -> None:
        """Delete a monitor and its runs."""
        self.get_monitor(name)
        with self.write() as session:
            session.execute(delete(MonitorRunRow).where(MonitorRunRow.monitor == name))
            session.execute(delete(MonitorRow).where(MonitorRow.name == name))

    def add_run(self, run: MonitorRun) -> MonitorRun:
        """Store the result of one monitor run."""
        with self.write() as session:
            session.add(MonitorRunRow(**run.model_dump(mode="json")))
        return run

    def list_runs(self, monitor: str, limit: int = 50) -> list[MonitorRun]:
        """The latest runs of a monitor, newest first."""
        self.get_monitor(monitor)
        with self.read() as session:
            rows = session.scalars(
                select(MonitorRunRow)
                .where(MonitorRunRow.monitor == monitor)
                .order_by(MonitorRunRow.started_at_ms.desc(), MonitorRunRow.id)
                .limit(limit)
            )
            return [_run(r) for r in rows]

    def get_run(self, monitor: str, run_id: str) -> MonitorRun:
        """One run; raises :class:`NotFound`."""
        with self.read() as session:
            row = session.get(MonitorRunRow, run_id)
            if row is None or row.monitor != monitor:
                raise NotFound(f"monitor {monitor!r} has no run {run_id!r}", field="run_id")
            return _run(row)
