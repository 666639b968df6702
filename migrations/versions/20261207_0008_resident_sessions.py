"""Resident sessions: short access tokens renewed by rotating refresh tokens, and sign-out

Access tokens issued before this revision carry no session and are refused from now on: their
holders sign in again (they lasted 12 hours at most).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resident_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("refresh_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("previous_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["resident_id"], ["residents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("resident_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_resident_sessions_resident_id", ["resident_id"], unique=False)
        batch_op.create_index("ix_resident_sessions_revoked_at", ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("resident_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_resident_sessions_revoked_at")
        batch_op.drop_index("ix_resident_sessions_resident_id")
    op.drop_table("resident_sessions")
