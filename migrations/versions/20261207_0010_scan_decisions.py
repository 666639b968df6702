"""Scan records keep the checkpoint's decision; the audit log is indexed by kind of actor

A scan's verdict says whether the code is genuine; the decision -- allow, deny, manual check --
is what the place's policy made of it, and what an operator counts (a genuine green code with no
recent test is denied at a border). Null for records made before this, and for uploads from
devices that do not send one.

The console lists the audit log by kind of actor (staff and partners first), newest first: an
index on (actor_type, id) keeps that from reading the whole log.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scan_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision", sa.String(length=16), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_scan_records_decision"),
            "decision IS NULL OR decision IN ('allow', 'deny', 'manual_check')",
        )
    op.create_index("ix_audit_log_actor_type_id", "audit_log", ["actor_type", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_log_actor_type_id", table_name="audit_log")
    with op.batch_alter_table("scan_records", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_scan_records_decision"), type_="check")
        batch_op.drop_column("decision")
