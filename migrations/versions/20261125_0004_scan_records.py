"""Scan records: code, checkpoint, time, verdict

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 23:41:51.589773
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scan_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("checkpoint_id", sa.Uuid(), nullable=False),
        sa.Column("scan_id", sa.String(length=64), nullable=False),
        sa.Column("code_id", sa.String(length=32), nullable=True),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('online', 'offline')", name=op.f("ck_scan_records_source")),
        sa.CheckConstraint(
            "verdict IN ('valid', 'invalid', 'cannot_verify')", name=op.f("ck_scan_records_verdict")
        ),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name=op.f("fk_scan_records_checkpoint_id_checkpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_records")),
        sa.UniqueConstraint("checkpoint_id", "scan_id", name="uq_scan_records_scan"),
    )
    with op.batch_alter_table("scan_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_scan_records_checkpoint_id_scanned_at",
            ["checkpoint_id", "scanned_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_scan_records_code_id_scanned_at", ["code_id", "scanned_at"], unique=False
        )
        batch_op.create_index("ix_scan_records_scanned_at", ["scanned_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scan_records", schema=None) as batch_op:
        batch_op.drop_index("ix_scan_records_scanned_at")
        batch_op.drop_index("ix_scan_records_code_id_scanned_at")
        batch_op.drop_index("ix_scan_records_checkpoint_id_scanned_at")

    op.drop_table("scan_records")
