"""Checkpoints have a kind (the policy that applies) and a region

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 23:54:27.781596
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), server_default="venue", nullable=False)
        )
        batch_op.add_column(sa.Column("region_code", sa.String(length=6), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_checkpoints_kind"), "kind IN ('venue', 'transport', 'border')"
        )


def downgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_checkpoints_kind"), type_="check")
        batch_op.drop_column("region_code")
        batch_op.drop_column("kind")
