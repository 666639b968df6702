"""The outbox keeps the id of the request that queued each message

A delivery runs later, in the background, on whichever process claims it: with the request's id
stored beside the message, its log lines and its call to the partner (``X-Request-ID``) name the
request that asked for it. Null for messages queued before this, and for any queued outside a
request.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("request_id")
