"""Experiments, runs, params, metrics, tags, artifacts and run inputs in SQL."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_, update
from sqlalchemy.orm import Session

from keel._models import now_ms
from keel.auth.models import AuditEntry
from keel.errors import Conflict, NotFound
from keel.store.sql._base import SqlBase, upsert
from keel.store.sql._fastwrite import write_one_metric
from keel.store.sql.tables import (
    DatasetVersionRow,
    ExperimentRow,
    LatestMetricRow,
    MetricRow,
    ParamRow,
    RunInputRow,
    RunRow,
    RunTagRow,
)
from keel.store.sql.tables_auth import AuditRow
from keel.tracking.models import Experiment, Metric, Run, RunInput, RunStatus

__all__ = ["RunSql"]


def _experiment(row: ExperimentRow) -> Experiment:
    return Experiment(
        id=row.id,
        name=row.name,
        description=row.description,
        tags=dict(row.tags or {}),
        created_at_ms=row.created_at_ms,
    )


def run_row(s: Session, run_id: str) -> RunRow:
    """The row of ``run_id``; raises :class:`NotFound`."""
    row = s.get(RunRow, run_id)
    if row is None:
        raise NotFound(f"run {run_id!r} not found", field="run_id")
    return row


def _stored_value(row: MetricRow | LatestMetricRow) -> float:
    return math.nan if row.is_nan else row.value


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


class RunSql(SqlBase):
    """Tracking persistence."""

    # ---- experiments -------------------------------------------------------------
    def create_experiment(self, experiment: Experiment) -> Experiment:
        """Insert an experiment; a taken name raises :class:`Conflict`."""
        with self.write(f"experiment {experiment.name!r} already exists", field="name") as s:
            s.add(
                ExperimentRow(
                    id=experiment.id,
                    name=experiment.name,
                    description=experiment.description,
                    tags=experiment.tags,
                    created_at_ms=experiment.created_at_ms,
                )
            )
        return experiment

    def find_experiment(self, id_or_name: str) -> Experiment | None:
        """The experiment with this id or name, or None."""
        with self.read() as s:
            row = s.scalars(
                select(ExperimentRow)
                .where((ExperimentRow.id == id_or_name) | (ExperimentRow.name == id_or_name))
                .order_by((ExperimentRow.id == id_or_name).desc())
                .limit(1)
            ).first()
            return _experiment(row) if row else None

    def list_experiments(self, *, limit: int, offset: int) -> list[Experiment]:
        """Experiments by name."""
        with self.read() as s:
            rows = s.scalars(
                select(ExperimentRow).order_by(ExperimentRow.name).limit(limit).offset(offset)
            )
            return [_experiment(r) for r in rows]

    # ---- runs ----------------------------------------------------------------------
    def create_run(self, run: Run) -> Run:
        """Insert a new run with its initial tags and params."""
        with self.write(f"run {run.id} already exists", field="run_id") as s:
            conn = s.connection()
            if (
                run.parent_run_id
                and not conn.execute(
                    select(RunRow.id).where(RunRow.id == run.parent_run_id)
                ).first()
            ):
                raise NotFound(f"parent run {run.parent_run_id!r} not found", field="parent_run_id")
            conn.execute(
                insert(RunRow),
                {
                    "id": run.id,
                    "experiment_id": run.experiment_id,
                    "name": run.name,
                    "status": run.status.value,
                    "start_time_ms": run.start_time_ms,
                    "end_time_ms": run.end_time_ms,
                    "parent_run_id": run.parent_run_id,
                    "user": run.user,
                    "code_commit": run.code_commit,
                    "code_dirty": run.code_dirty,
                    "environment": run.environment,
                    "environment_hash": run.environment_hash,
                    "seed": run.seed,
                },
            )
            if run.tags:
                conn.execute(
                    insert(RunTagRow),
                    [{"run_id": run.id, "key": k, "value": v} for k, v in run.tags.items()],
                )
            if run.params:
                conn.execute(
                    insert(ParamRow),
                    [{"run_id": run.id, "key": k, "value": v} for k, v in run.params.items()],
                )
        return run

    def get_run(self, run_id: str) -> Run:
        """A run with its params, latest metrics, tags and inputs."""
        runs = self.get_runs([run_id])
        if not runs:
            raise NotFound(f"run {run_id!r} not found", field="run_id")
        return runs[0]

    def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """Several runs, in the order given (missing ids are skipped).

        Reads plain row tuples with Core rather than ORM objects: this builds
        every search page and every end-of-run reply, and object loading was
        most of its cost.
        """
        if not run_ids:
            return []
        with self.read() as s:
            conn = s.connection()
            rows = {
                r.id: r
                for r in conn.execute(select(RunRow.__table__).where(RunRow.id.in_(run_ids)))
            }
            ids = [i for i in run_ids if i in rows]
            params: dict[str, dict[str, str]] = {i: {} for i in ids}
            metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
            tags: dict[str, dict[str, str]] = {i: {} for i in ids}
            inputs: dict[str, list[RunInput]] = {i: [] for i in ids}
            for run_id, key, value in conn.execute(
                select(ParamRow.run_id, ParamRow.key, ParamRow.value).where(
                    ParamRow.run_id.in_(ids)
                )
            ):
                params[run_id][key] = value
            for run_id, key, number, is_nan in conn.execute(
                select(
                    LatestMetricRow.run_id,
                    LatestMetricRow.key,
                    LatestMetricRow.value,
                    LatestMetricRow.is_nan,
                ).where(LatestMetricRow.run_id.in_(ids))
            ):
                metrics[run_id][key] = math.nan if is_nan else number
            for run_id, key, value in conn.execute(
                select(RunTagRow.run_id, RunTagRow.key, RunTagRow.value).where(
                    RunTagRow.run_id.in_(ids)
                )
            ):
                tags[run_id][key] = value
            input_rows = conn.execute(
                select(RunInputRow.__table__, DatasetVersionRow.version)
                .outerjoin(
                    DatasetVersionRow, RunInputRow.dataset_version_id == DatasetVersionRow.id
                )
                .where(RunInputRow.run_id.in_(ids))
                .order_by(RunInputRow.id)
            )
            for i in input_rows:
                inputs[i.run_id].append(
                    RunInput(
                        name=i.name,
                        context=i.context,
                        content_hash=i.content_hash,
                        schema=i.schema,
                        row_count=i.row_count,
                        source_uri=i.source_uri,
                        dataset_version=i.version,
                    )
                )
        return [
            Run(
                id=r.id,
                experiment_id=r.experiment_id,
                name=r.name,
                status=RunStatus(r.status),
                start_time_ms=r.start_time_ms,
                end_time_ms=r.end_time_ms,
                parent_run_id=r.parent_run_id,
                user=r.user,
                params=params[r.id],
                metrics=metrics[r.id],
                tags=tags[r.id],
                inputs=inputs[r.id],
                code_commit=r.code_commit,
                code_dirty=r.code_dirty,
                environment=dict(r.environment or {}),
                environment_hash=r.environment_hash,
                seed=r.seed,
            )
            for r in (rows[i] for i in ids)
        ]

    def set_run_status(self, run_id: str, status: RunStatus, end_time_ms: int | None) -> None:
        """Move a run to ``status``; a terminal run cannot go back to RUNNING."""
        with self.write_conn() as conn:
            current = conn.execute(select(RunRow.status).where(RunRow.id == run_id)).scalar()
            if current is None:
                raise NotFound(f"run {run_id!r} not found", field="run_id")
            if RunStatus(current).is_terminal and status is RunStatus.RUNNING:
                raise Conflict(f"run {run_id} is {current}; it cannot be restarted")
            conn.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(status=status.value, end_time_ms=end_time_ms)
            )

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

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        """Every logged value of one metric, by step then time."""
        with self.read() as s:
            run_row(s, run_id)
            rows = s.scalars(
                select(MetricRow)
                .where(MetricRow.run_id == run_id, MetricRow.key == key)
                .order_by(MetricRow.step, MetricRow.timestamp_ms, MetricRow.id)
            )
            return [
                Metric(key=r.key, value=_stored_value(r), step=r.step, timestamp_ms=r.timestamp_ms)
                for r in rows
            ]
