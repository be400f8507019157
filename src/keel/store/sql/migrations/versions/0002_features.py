"""feature store tables

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_definitions",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("spec_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("removed_at_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("kind", "name", "version", name=op.f("pk_feature_definitions")),
    )
    op.create_table(
        "feature_usage",
        sa.Column("view", sa.String(length=128), nullable=False),
        sa.Column("feature", sa.String(length=128), nullable=False),
        sa.Column("defined_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_offline_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_online_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("view", "feature", name=op.f("pk_feature_usage")),
    )
    op.create_table(
        "feature_freshness",
        sa.Column("view", sa.String(length=128), nullable=False),
        sa.Column("materialized_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_materialized_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_push_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("rows_written", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("view", name=op.f("pk_feature_freshness")),
    )


def downgrade() -> None:
    op.drop_table("feature_freshness")
    op.drop_table("feature_usage")
    op.drop_table("feature_definitions")
