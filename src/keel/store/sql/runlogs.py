"""Run logging in SQL: metrics, params and tags written to a run (the hottest write path)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_

from keel._models import now_ms
from keel.auth.models import AuditEntry
from keel.errors import Conflict, NotFound
from keel.store.sql._base import SqlBase, upsert
from keel.store.sql._fastwrite import write_one_metric
from keel.store.sql.tables import LatestMetricRow, MetricRow, ParamRow, RunRow, RunTagRow
from keel.store.sql.tables_auth import AuditRow
from keel.tracking.models import Metric

__all__ = ["RunLogSql"]


def _newer_than_stored(excluded: Any) -> Any:
    """Keep the stored latest value when it has a higher (step, timestamp)."""
    table = LatestMetricRow.__table__
    return tuple_(excluded.step, excluded.timestamp_ms) >= tuple_(
        table.c.step, table.c.timestamp_ms
    )


def _metric_row(run_id: str, metric: Metric, stamp: int) -> dict[str, Any]:
    """A ``metrics`` row; NaN as value 0 with ``is_nan`` (SQLite turns NaN into NULL)."""
    is_nan = math.isnan(metric.value)
    return {
        "run_id": run_id,
        "key": metric.key,
        "value": 0.0 if is_nan else metric.value,
        "is_nan": is_nan,
        "step": metric.step,
        "timestamp_ms": metric.timestamp_ms if metric.timestamp_ms is not None else stamp,
    }


class RunLogSql(SqlBase):
    """Writes of metrics, params and tags to existing runs."""

    def log_batch(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        nowait: bool = False,
        audit: AuditEntry | None = None,
    ) -> None:
        """Write metrics, params and tags in one transaction.

        A param may be logged again with the same value; a different value
        raises :class:`Conflict` and nothing of the batch is written. This is
        the hottest write path (one call per logged metric), so it uses
        SQLAlchemy Core statements rather than the ORM unit of work. ``nowait``: see
        :meth:`write_conn`. ``audit``: an entry committed with the batch (or not at all).
        """
        if len(metrics) == 1 and not params and not tags and self.inline_writes:
            self._log_one_metric(run_id, metrics[0], audit=audit, nowait=nowait)
            return
        with self.write_conn(nowait=nowait) as conn:
            experiment_id = self._experiment_of(conn, run_id)
            if params:
                self._add_params(conn, run_id, params)
            if tags:
                upsert(
                    conn,
                    RunTagRow.__table__,
                    [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()],
                    ["run_id", "key"],
                    ["value"],
                )
            if metrics:
                self._add_metrics(conn, run_id, experiment_id, metrics)
            if audit is not None:
                conn.execute(insert(AuditRow), [audit.model_dump(exclude={"id"})])

    def _log_one_metric(
        self, run_id: str, metric: Metric, *, audit: AuditEntry | None, nowait: bool
    ) -> None:
        """One metric on SQLite, on the DBAPI connection (see ``_fastwrite`` for why)."""
        write_one_metric(
            self.engine,
            _metric_row(run_id, metric, now_ms()),
            self._experiment_of(None, run_id),
            _newer_than_stored,
            audit=audit,
            nowait=nowait,
        )

    def _experiment_of(self, conn: Connection | None, run_id: str) -> str:
        # A run never changes experiment and is never deleted, so the answer
        # can be remembered; the foreign keys still guard every insert. Without
        # ``conn``, a connection is checked out only when the answer is not known.
        cache: dict[str, str] = self.__dict__.setdefault("_run_experiments", {})
        found = cache.get(run_id)
        if found is None:
            statement = select(RunRow.experiment_id).where(RunRow.id == run_id)
            if conn is None:
                with self.engine.connect() as reader:
                    found = reader.execute(statement).scalar()
            else:
                found = conn.execute(statement).scalar()
            if found is None:
                raise NotFound(f"run {run_id!r} not found", field="run_id")
            if len(cache) >= 100_000:
                cache.clear()
            cache[run_id] = found
        return found

    def _add_params(self, conn: Connection, run_id: str, params: dict[str, str]) -> None:
        existing = dict(
            conn.execute(
                select(ParamRow.key, ParamRow.value).where(
                    ParamRow.run_id == run_id, ParamRow.key.in_(list(params))
                )
            ).all()
        )
        new_rows = []
        for key, value in params.items():
            if key in existing:
                if existing[key] != value:
                    raise Conflict(
                        f"param {key!r} is already {existing[key]!r}; params are immutable",
                        field=f"params.{key}",
                        old=existing[key],
                        new=value,
                    )
                continue
            new_rows.append({"run_id": run_id, "key": key, "value": value})
        if new_rows:
            conn.execute(insert(ParamRow), new_rows)

    def _add_metrics(
        self, conn: Connection, run_id: str, experiment_id: str, metrics: Sequence[Metric]
    ) -> None:
        stamp = now_ms()
        rows: list[dict[str, Any]] = []
        newest: dict[str, dict[str, Any]] = {}
        for m in metrics:
            row = _metric_row(run_id, m, stamp)
            rows.append(row)
            best = newest.get(m.key)
            if best is None or (row["step"], row["timestamp_ms"]) >= (
                best["step"],
                best["timestamp_ms"],
            ):
                newest[m.key] = row
        conn.execute(insert(MetricRow), rows)
        latest = [{**row, "experiment_id": experiment_id} for row in newest.values()]
        table = LatestMetricRow.__table__
        upsert(
            conn,
            table,
            latest,
            ["run_id", "key"],
            ["value", "is_nan", "step", "timestamp_ms"],
            only_if=_newer_than_stored,
        )
