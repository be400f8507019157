"""The audit log is append-only in the database itself (issue #15 item 4), on both backends."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from keel.auth.models import AuditEntry
from keel.config import Settings
from keel.store.sql.auth import AuthSql
from keel.store.sql.engine import make_engine
from keel.store.sql.migrate import alembic_config, head_revision, upgrade

# each test migrates its own database from empty
pytestmark = pytest.mark.fresh_database


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    upgrade(engine)
    AuthSql(engine).append_audit([AuditEntry(at_ms=1, actor="ann", action="alias.set")])
    yield engine
    engine.dispose()


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT id, actor, action FROM audit_log"))]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE audit_log SET action = 'nothing happened' WHERE id = 1",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE actor = 'ann'",
    ],
)
def test_audit_rows_cannot_be_changed_or_deleted(engine: Engine, statement: str) -> None:
    before = _rows(engine)
    with pytest.raises(DBAPIError, match="audit_log is append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement))
    assert _rows(engine) == before == [(1, "ann", "alias.set")]


def test_audit_log_cannot_be_truncated(engine: Engine) -> None:
    # PostgreSQL's TRUNCATE bypasses row triggers, so it has a trigger of its own; SQLite has
    # no TRUNCATE statement at all (its DELETE without WHERE is covered above).
    expected = "append-only: TRUNCATE" if engine.dialect.name == "postgresql" else "syntax error"
    with pytest.raises(DBAPIError, match=expected):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))
    assert len(_rows(engine)) == 1


def test_appending_still_works(engine: Engine) -> None:
    AuthSql(engine).append_audit([AuditEntry(at_ms=2, actor="bob", action="token.create")])
    assert [r[1] for r in _rows(engine)] == ["ann", "bob"]


def test_downgrade_lifts_the_guard_and_upgrade_restores_it(engine: Engine) -> None:
    command.downgrade(alembic_config(engine), "0004")
    with engine.begin() as conn:  # the documented retention path, with the guard lifted
        conn.execute(text("DELETE FROM audit_log WHERE at_ms < 2"))
    assert _rows(engine) == []
    assert upgrade(engine) == head_revision()
    AuthSql(engine).append_audit([AuditEntry(at_ms=3, actor="cy", action="x")])
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))


def _documented_retention(dialect: str) -> str:
    """The retention block of docs/security.md for ``dialect`` (run as written)."""
    docs = (Path(__file__).parents[2] / "docs" / "security.md").read_text()
    label = "-- SQLite" if dialect == "sqlite" else "-- PostgreSQL"
    [block] = [b for b in re.findall(r"```sql\n(.*?)```", docs, re.S) if b.startswith(label)]
    return block


def test_documented_retention_prunes_and_keeps_the_guard(engine: Engine) -> None:
    AuthSql(engine).append_audit([AuditEntry(at_ms=1_800_000_000_000, actor="bob", action="x")])
    script = _documented_retention(engine.dialect.name)
    raw = engine.raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    try:
        if engine.dialect.name == "sqlite":
            driver.executescript(script)
        else:  # the block manages its own transaction
            driver.autocommit = True
            driver.execute(script)
            driver.autocommit = False
    finally:
        raw.close()
    assert [r[1] for r in _rows(engine)] == ["bob"]  # the entry before the cutoff is gone
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_log"))
