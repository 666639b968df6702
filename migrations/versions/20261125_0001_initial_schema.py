"""initial schema

Revision ID: 0001
Revises: -
Create Date: 2026-11-25 21:11:33.476612
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.String(length=96), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=96), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_subject", ["subject_type", "subject_id"], unique=False)

    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkpoints")),
    )
    op.create_table(
        "operators",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('operator', 'epidemiologist', 'admin')", name=op.f("ck_operators_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operators")),
    )
    op.create_table(
        "otp_challenges",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_otp_challenges")),
    )
    with op.batch_alter_table("otp_challenges", schema=None) as batch_op:
        batch_op.create_index(
            "ix_otp_challenges_phone_index_created_at", ["phone_index", "created_at"], unique=False
        )

    op.create_table(
        "rate_limit_counters",
        sa.Column("bucket", sa.String(length=96), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "window_start", name=op.f("pk_rate_limit_counters")),
    )
    op.create_table(
        "residents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("phone_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("phone_ct", sa.LargeBinary(), nullable=False),
        sa.Column("phone_key_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_residents")),
        sa.UniqueConstraint("phone_index", name=op.f("uq_residents_phone_index")),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("private_pem", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("alg IN ('ES256', 'EdDSA')", name=op.f("ck_signing_keys_alg")),
        sa.CheckConstraint(
            "state IN ('pending', 'active', 'retired', 'compromised')",
            name=op.f("ck_signing_keys_state"),
        ),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_signing_keys")),
    )
    op.create_table(
        "health_codes",
        sa.Column("code_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("qr_text", sa.Text(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.CheckConstraint(
            "status IN ('green', 'yellow', 'red')", name=op.f("ck_health_codes_status")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_health_codes_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_id", name=op.f("pk_health_codes")),
        sa.UniqueConstraint("resident_id", "idempotency_key", name="uq_health_codes_idempotency"),
    )
    with op.batch_alter_table("health_codes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_health_codes_resident_id_expires_at", ["resident_id", "expires_at"], unique=False
        )

    op.create_table(
        "health_status",
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("reason_text", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=96), nullable=False),
        sa.CheckConstraint(
            "status IN ('green', 'yellow', 'red')", name=op.f("ck_health_status_status")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_health_status_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", name=op.f("pk_health_status")),
    )
    op.create_table(
        "identities",
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("doc_type", sa.String(length=32), nullable=False),
        sa.Column("doc_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("name_ct", sa.LargeBinary(), nullable=False),
        sa.Column("doc_number_ct", sa.LargeBinary(), nullable=False),
        sa.Column("birth_date_ct", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("masked_name", sa.String(length=64), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_identities_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", name=op.f("pk_identities")),
        sa.UniqueConstraint("doc_index", name=op.f("uq_identities_doc_index")),
    )
    op.create_table(
        "revocations",
        sa.Column("code_id", sa.String(length=32), nullable=False),
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_revocations_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_id", name=op.f("pk_revocations")),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index("ix_revocations_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "status_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("old_status", sa.String(length=8), nullable=True),
        sa.Column("new_status", sa.String(length=8), nullable=False),
        sa.Column("reason_text", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=96), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_status_changes_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_changes")),
    )
    with op.batch_alter_table("status_changes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_changes_resident_id_at", ["resident_id", "at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("status_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_status_changes_resident_id_at")

    op.drop_table("status_changes")
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index("ix_revocations_expires_at")

    op.drop_table("revocations")
    op.drop_table("identities")
    op.drop_table("health_status")
    with op.batch_alter_table("health_codes", schema=None) as batch_op:
        batch_op.drop_index("ix_health_codes_resident_id_expires_at")

    op.drop_table("health_codes")
    op.drop_table("signing_keys")
    op.drop_table("residents")
    op.drop_table("rate_limit_counters")
    with op.batch_alter_table("otp_challenges", schema=None) as batch_op:
        batch_op.drop_index("ix_otp_challenges_phone_index_created_at")

    op.drop_table("otp_challenges")
    op.drop_table("operators")
    op.drop_table("checkpoints")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_subject")
        batch_op.drop_index("ix_audit_log_at")

    op.drop_table("audit_log")
