"""SQL implementation of keel's store (SQLite and PostgreSQL through SQLAlchemy 2)."""

from __future__ import annotations

from keel.store.sql._base import WriteBusy
from keel.store.sql.artifacts import ArtifactSql
from keel.store.sql.datasets import DatasetSql
from keel.store.sql.registry import RegistrySql
from keel.store.sql.runs import RunSql
from keel.store.sql.search import SearchSql

__all__ = ["SqlStore", "WriteBusy"]


class SqlStore(RunSql, ArtifactSql, SearchSql, DatasetSql, RegistrySql):
    """The metadata store: every aggregate over one engine."""
