"""Dataset versions in SQL."""

from __future__ import annotations

from sqlalchemy import func, select

from keel.errors import NotFound
from keel.store.sql._base import SqlBase
from keel.store.sql.tables import DatasetVersionRow
from keel.tracking.models import DatasetVersion

__all__ = ["DatasetSql"]


def _version(row: DatasetVersionRow) -> DatasetVersion:
    return DatasetVersion(
        name=row.name,
        version=row.version,
        content_hash=row.content_hash,
        blob_sha256=row.blob_sha256,
        format=row.format,
        schema=row.schema_,
        row_count=row.row_count,
        size_bytes=row.size_bytes,
        source_uri=row.source_uri,
        description=row.description,
        created_at_ms=row.created_at_ms,
    )


class DatasetSql(SqlBase):
    """Named, content-addressed dataset versions."""

    def add_dataset_version(self, item: DatasetVersion) -> tuple[DatasetVersion, int, bool]:
        """Store a version; identical content under the same name returns the existing one.

        Returns ``(version, row id, created)``.
        """
        with self.write(conflict=f"dataset {item.name!r} changed concurrently; retry") as s:
            existing = s.scalar(
                select(DatasetVersionRow).where(
                    DatasetVersionRow.name == item.name,
                    DatasetVersionRow.content_hash == item.content_hash,
                )
            )
            if existing is not None:
                return _version(existing), existing.id, False
            latest = s.scalar(
                select(func.max(DatasetVersionRow.version)).where(
                    DatasetVersionRow.name == item.name
                )
            )
            row = DatasetVersionRow(
                name=item.name,
                version=(latest or 0) + 1,
                content_hash=item.content_hash,
                blob_sha256=item.blob_sha256,
                format=item.format,
                schema_=item.schema_,
                row_count=item.row_count,
                size_bytes=item.size_bytes,
                source_uri=item.source_uri,
                description=item.description,
                created_at_ms=item.created_at_ms,
            )
            s.add(row)
            s.flush()
            return _version(row), row.id, True

    def get_dataset_version(self, name: str, version: int | None = None) -> DatasetVersion:
        """A version by number (latest when None); raises :class:`NotFound`."""
        with self.read() as s:
            query = select(DatasetVersionRow).where(DatasetVersionRow.name == name)
            if version is None:
                query = query.order_by(DatasetVersionRow.version.desc()).limit(1)
            else:
                query = query.where(DatasetVersionRow.version == version)
            row = s.scalar(query)
            if row is None:
                what = f"dataset {name!r}" + ("" if version is None else f" version {version}")
                raise NotFound(f"{what} not found", field="version" if version else "name")
            return _version(row)

    def dataset_version_id(self, name: str, version: int) -> int:
        """Row id of a dataset version; raises :class:`NotFound`."""
        with self.read() as s:
            found = s.scalar(
                select(DatasetVersionRow.id).where(
                    DatasetVersionRow.name == name, DatasetVersionRow.version == version
                )
            )
            if found is None:
                raise NotFound(f"dataset {name!r} version {version} not found", field="version")
            return int(found)

    def find_dataset_by_hash(self, content_hash: str) -> list[DatasetVersion]:
        """Every version (under any name) with this content hash."""
        with self.read() as s:
            rows = s.scalars(
                select(DatasetVersionRow)
                .where(DatasetVersionRow.content_hash == content_hash)
                .order_by(DatasetVersionRow.name, DatasetVersionRow.version)
            )
            return [_version(r) for r in rows]

    def list_dataset_versions(self, name: str | None = None) -> list[DatasetVersion]:
        """All versions (of one dataset when ``name`` is given)."""
        with self.read() as s:
            query = select(DatasetVersionRow)
            if name is not None:
                query = query.where(DatasetVersionRow.name == name)
            rows = s.scalars(query.order_by(DatasetVersionRow.name, DatasetVersionRow.version))
            return [_version(r) for r in rows]
