"""resolutions in the decision log: the incident a resolution record closes (R-CICD-13)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # unique: one resolution per incident, enforced by the database under concurrency
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("resolves", sa.Integer(), nullable=True))
        batch.create_unique_constraint("uq_decisions_resolves", ["resolves"])


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_constraint("uq_decisions_resolves", type_="unique")
        batch.drop_column("resolves")
