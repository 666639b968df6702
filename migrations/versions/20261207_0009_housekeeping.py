"""Housekeeping: residents' own reads counted per day, and the lease of the maintenance round

A resident's reads of their own data are counted per day in ``audit_self_reads`` instead of one
audit row per read (two per page load). ``maintenance_leases`` lets one process at a time do a
round of housekeeping (maintenance.py).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_self_reads",
        sa.Column("resident_id", sa.String(length=96), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("resident_id", "day", "action"),
    )
    op.create_table(
        "maintenance_leases",
        sa.Column("task", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("task"),
    )


def downgrade() -> None:
    op.drop_table("maintenance_leases")
    op.drop_table("audit_self_reads")
