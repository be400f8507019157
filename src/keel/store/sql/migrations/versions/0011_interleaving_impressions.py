"""interleaving impressions: the lists served by a deployment's rank route (R-DEP-18)

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interleaving_impressions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("routing_key", sa.String(length=256), nullable=True),
        sa.Column("k", sa.Integer(), nullable=True),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.Column("arm_a", sa.String(length=128), nullable=False),
        sa.Column("arm_b", sa.String(length=128), nullable=False),
        sa.Column("version_a", sa.Integer(), nullable=False),
        sa.Column("version_b", sa.Integer(), nullable=False),
        sa.Column("clicked", sa.JSON(), nullable=True),
        sa.Column("clicked_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("winner", sa.String(length=8), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment"],
            ["deployments.name"],
            name=op.f("fk_interleaving_impressions_deployment_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interleaving_impressions")),
    )
    op.create_index(
        "ix_interleaving_impressions_deployment",
        "interleaving_impressions",
        ["deployment", "winner"],
    )


def downgrade() -> None:
    op.drop_index("ix_interleaving_impressions_deployment", table_name="interleaving_impressions")
    op.drop_table("interleaving_impressions")
