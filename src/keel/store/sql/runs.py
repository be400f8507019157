"""Experiments, runs, params, metrics, tags, artifacts and run inputs in SQL."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from keel.errors import Conflict, NotFound
from keel.store.sql.runlogs import RunLogSql
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


class RunSql(RunLogSql):
    """Tracking persistence (metric, param and tag writes: :class:`RunLogSql`)."""

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
