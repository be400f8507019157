"""Monitor definitions and runs in SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select

from keel.errors import NotFound
from keel.monitoring.models import Monitor, MonitorRun
from keel.store.sql._base import SqlBase
from keel.store.sql.tables_monitoring import MonitorRow, MonitorRunRow

__all__ = ["MonitorSql"]

_SPEC_COLUMNS = {"name", "model", "reference", "sampling_rate", "created_by"}
#: Monitor fields with a column of their own, outside the ``config`` JSON.
_NOT_CONFIG = _SPEC_COLUMNS | {"version", "created_at_ms", "updated_at_ms"}


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


def _values(monitor: Monitor) -> dict[str, Any]:
    """The row's columns a save writes (the key and the creation are kept)."""
    data = monitor.model_dump(mode="json")
    return {
        "model": monitor.model,
        "version_ref": monitor.version,
        "reference": monitor.reference,
        "window_s": monitor.window_s,
        "sampling_rate": monitor.sampling_rate,
        "config": {k: v for k, v in data.items() if k not in _NOT_CONFIG},
        "updated_at_ms": monitor.updated_at_ms,
    }


def _run(row: MonitorRunRow) -> MonitorRun:
    return MonitorRun.model_validate(
        {c.key: getattr(row, c.key) for c in MonitorRunRow.__table__.columns}
    )


class MonitorSql(SqlBase):
    """CRUD of monitors; append and list of monitor runs."""

    def save_monitor(self, monitor: Monitor) -> Monitor:
        """Insert or replace a monitor definition (an existing one keeps its creation)."""
        with self.write() as session:
            row = session.get(MonitorRow, monitor.name)
            if row is None:
                session.add(
                    MonitorRow(
                        name=monitor.name,
                        created_by=monitor.created_by,
                        created_at_ms=monitor.created_at_ms,
                        **_values(monitor),
                    )
                )
            else:
                for key, value in _values(monitor).items():
                    setattr(row, key, value)
        return self.get_monitor(monitor.name)

    def update_monitor(self, name: str, change: Callable[[Monitor], Monitor]) -> Monitor:
        """Replace monitor ``name`` with ``change(current)`` in one transaction holding the
        row's lock, so concurrent read-modify-writes (two rules added at once) queue instead
        of undoing each other; the stored monitor. NotFound for an unknown name.

        ``change`` runs under the lock: it may read (WAL readers and other PostgreSQL rows
        are not blocked) but must not write through the store, and what it raises rolls
        the transaction back with nothing written. Its result keeps the row's name,
        creator and creation time.
        """
        with self.write() as session:
            # lock: SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE (write())
            # already serialises every writer (the registry's set_registered_model_tag).
            row = session.get(MonitorRow, name, with_for_update=True)
            if row is None:
                raise NotFound(f"monitor {name!r} not found", field="name")
            changed = change(_monitor(row))
            for key, value in _values(changed).items():
                setattr(row, key, value)
            return _monitor(row)

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
