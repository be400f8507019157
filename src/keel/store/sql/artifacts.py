"""Run artifacts and run inputs in SQL."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from keel.errors import NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.runs import run_row
from keel.store.sql.tables import ArtifactRow, RunInputRow, RunRow
from keel.tracking.models import ArtifactFile, RunInput
from keel.tracking.validation import check_artifacts_open

__all__ = ["ArtifactSql"]


class ArtifactSql(SqlBase):
    """Files logged to runs and datasets runs read."""

    def put_artifacts(self, run_id: str, files: Iterable[ArtifactFile]) -> None:
        """Record (or replace) files of a running run.

        Raises :class:`Conflict` once the run has ended: its files are what a version
        is registered from, so nobody may swap them afterwards (issue #15 item 5).
        """
        with self.write() as s:
            # FOR UPDATE (PostgreSQL): an end_run committing meanwhile waits for this
            # write, so no file lands after the status check said RUNNING
            row = s.get(RunRow, run_id, with_for_update=True)
            if row is None:
                raise NotFound(f"run {run_id!r} not found", field="run_id")
            check_artifacts_open(run_id, row.status)
            for f in files:
                s.merge(
                    ArtifactRow(
                        run_id=run_id, path=f.path, sha256=f.sha256, size_bytes=f.size_bytes
                    )
                )

    def list_artifacts(self, run_id: str, prefix: str | None = None) -> list[ArtifactFile]:
        """Files of a run, optionally under ``prefix/``."""
        with self.read() as s:
            run_row(s, run_id)
            query = select(ArtifactRow).where(ArtifactRow.run_id == run_id)
            if prefix:
                query = query.where(ArtifactRow.path.startswith(prefix.rstrip("/") + "/"))
            rows = s.scalars(query.order_by(ArtifactRow.path))
            return [
                ArtifactFile(path=r.path, sha256=r.sha256, size_bytes=r.size_bytes) for r in rows
            ]

    def add_run_input(self, run_id: str, item: RunInput, dataset_version_id: int | None) -> None:
        """Record that a run read a dataset (idempotent per name, context and hash)."""
        with self.write() as s:
            run_row(s, run_id)
            exists = s.scalar(
                select(RunInputRow.id).where(
                    RunInputRow.run_id == run_id,
                    RunInputRow.name == item.name,
                    RunInputRow.context == item.context,
                    RunInputRow.content_hash == item.content_hash,
                )
            )
            if exists is None:
                s.add(
                    RunInputRow(
                        run_id=run_id,
                        name=item.name,
                        context=item.context,
                        content_hash=item.content_hash,
                        schema_=item.schema_,
                        row_count=item.row_count,
                        source_uri=item.source_uri,
                        dataset_version_id=dataset_version_id,
                    )
                )
