"""deployments, replica reports, bad prediction windows, leases and the decision log

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=True),
        sa.Column("related", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index("ix_decisions_model_at", "decisions", ["model", "at_ms"])
    op.create_index("ix_decisions_deployment_at", "decisions", ["deployment", "at_ms"])
    op.create_index("ix_decisions_at", "decisions", ["at_ms"])
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_model", "deployments", ["model"])
    op.create_table(
        "deployment_replicas",
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("replica", sa.String(length=128), nullable=False),
        sa.Column("state_version", sa.Integer(), nullable=False),
        sa.Column("weights", sa.JSON(), nullable=False),
        sa.Column("reported_at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment"],
            ["deployments.name"],
            name=op.f("fk_deployment_replicas_deployment_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("deployment", "replica", name=op.f("pk_deployment_replicas")),
    )
    op.create_table(
        "prediction_bad_windows",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("arm", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_ms", sa.BigInteger(), nullable=False),
        sa.Column("to_ms", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prediction_bad_windows")),
    )
    op.create_index(
        "ix_prediction_bad_windows_model", "prediction_bad_windows", ["model", "version"]
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_index("ix_prediction_bad_windows_model", table_name="prediction_bad_windows")
    op.drop_table("prediction_bad_windows")
    op.drop_table("deployment_replicas")
    op.drop_index("ix_deployments_model", table_name="deployments")
    op.drop_table("deployments")
    op.drop_index("ix_decisions_at", table_name="decisions")
    op.drop_index("ix_decisions_deployment_at", table_name="decisions")
    op.drop_index("ix_decisions_model_at", table_name="decisions")
    op.drop_table("decisions")
