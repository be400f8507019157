"""retraining triggers

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "triggers",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_evaluated_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_fired_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("last_job_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_triggers")),
    )
    op.create_index("ix_triggers_model", "triggers", ["model"])


def downgrade() -> None:
    op.drop_index("ix_triggers_model", table_name="triggers")
    op.drop_table("triggers")
