"""audit log append-only in the database: UPDATE and DELETE (and TRUNCATE) raise

Revision ID: 0005
Revises: 0004

Until now the audit log was append-only by convention (no code path updated or
deleted rows). Triggers make the database refuse it, whoever asks (issue #15 item 4).
Retention is a deliberate maintenance step: docs/security.md shows how to drop the
trigger, prune and re-create it in one transaction. A later migration that rebuilds
``audit_log`` on SQLite (batch mode copies and drops the table) drops these triggers
with it and must create them again; tests/store/test_audit_append_only.py checks
them at head.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_SQLITE_UP = (
    """
    CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only: entries cannot be updated');
    END
    """,
    """
    CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only: entries cannot be deleted');
    END
    """,
)
_SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS audit_log_no_update",
    "DROP TRIGGER IF EXISTS audit_log_no_delete",
)

# One function for both triggers; TG_OP names the refused operation. ERRCODE
# insufficient_privilege (42501): the statement is not allowed, the data is fine.
_POSTGRES_UP = (
    """
    CREATE FUNCTION keel_audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    """
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION keel_audit_log_append_only()
    """,
    """
    CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION keel_audit_log_append_only()
    """,
)
_POSTGRES_DOWN = (
    "DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log",
    "DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log",
    "DROP FUNCTION IF EXISTS keel_audit_log_append_only()",
)


def _statements(up: bool) -> tuple[str, ...]:
    if op.get_bind().dialect.name == "postgresql":
        return _POSTGRES_UP if up else _POSTGRES_DOWN
    return _SQLITE_UP if up else _SQLITE_DOWN


def upgrade() -> None:
    for statement in _statements(up=True):
        op.execute(statement)


def downgrade() -> None:
    for statement in _statements(up=False):
        op.execute(statement)
