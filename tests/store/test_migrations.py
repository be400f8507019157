"""Alembic migrations: the only way the schema changes, and they match the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from keel.config import Settings
from keel.store.sql.engine import make_engine
from keel.store.sql.migrate import current_revision, head_revision, upgrade
from keel.store.sql.tables import Base

# each test migrates its own database from empty
pytestmark = pytest.mark.fresh_database


def test_upgrade_reaches_head_and_matches_models(settings: Settings) -> None:
    engine = make_engine(settings)
    assert current_revision(engine) is None
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], f"tables.py and the migrations disagree: {diff}"


def test_upgrade_is_idempotent(settings: Settings) -> None:
    engine = make_engine(settings)
    upgrade(engine)
    assert upgrade(engine) == head_revision()
    engine.dispose()


def test_sqlite_pragmas_applied(sqlite_settings: Settings) -> None:
    engine = make_engine(sqlite_settings)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()
