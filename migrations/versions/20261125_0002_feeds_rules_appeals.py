"""Feeds and their facts, rule sets, status overrides and appeals

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:04:35.569821
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "case_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person", sa.LargeBinary(length=32), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_records")),
        sa.UniqueConstraint("person", "category", "start_date", name="uq_case_records_key"),
    )
    with op.batch_alter_table("case_records", schema=None) as batch_op:
        batch_op.create_index("ix_case_records_batch_id", ["batch_id"], unique=False)

    op.create_table(
        "feed_clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_feed_clients_name")),
    )
    op.create_table(
        "nat_results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person", sa.LargeBinary(length=32), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String(length=8), nullable=False),
        sa.Column("lab", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nat_results")),
        sa.UniqueConstraint("person", "sampled_at", "lab", name="uq_nat_results_key"),
    )
    with op.batch_alter_table("nat_results", schema=None) as batch_op:
        batch_op.create_index("ix_nat_results_batch_id", ["batch_id"], unique=False)

    op.create_table(
        "risk_areas",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_areas")),
        sa.UniqueConstraint("region_code", "valid_from", name="uq_risk_areas_key"),
    )
    with op.batch_alter_table("risk_areas", schema=None) as batch_op:
        batch_op.create_index("ix_risk_areas_batch_id", ["batch_id"], unique=False)

    op.create_table(
        "rule_sets",
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("uploaded_by", sa.String(length=96), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_rule_sets")),
    )
    with op.batch_alter_table("rule_sets", schema=None) as batch_op:
        batch_op.create_index("ix_rule_sets_activated_at", ["activated_at"], unique=False)

    op.create_table(
        "travel_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person", sa.LargeBinary(length=32), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_travel_records")),
        sa.UniqueConstraint("person", "region_code", "date", name="uq_travel_records_key"),
    )
    with op.batch_alter_table("travel_records", schema=None) as batch_op:
        batch_op.create_index("ix_travel_records_batch_id", ["batch_id"], unique=False)
        batch_op.create_index(
            "ix_travel_records_region_code_date", ["region_code", "date"], unique=False
        )

    op.create_table(
        "vaccinations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("person", sa.LargeBinary(length=32), nullable=False),
        sa.Column("dose", sa.Integer(), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vaccinations")),
        sa.UniqueConstraint("person", "dose", name="uq_vaccinations_key"),
    )
    with op.batch_alter_table("vaccinations", schema=None) as batch_op:
        batch_op.create_index("ix_vaccinations_batch_id", ["batch_id"], unique=False)

    op.create_table(
        "appeals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("status_at_filing", sa.String(length=8), nullable=False),
        sa.Column("reason_codes", sa.JSON(), nullable=False),
        sa.Column("text_ct", sa.LargeBinary(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=96), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        sa.Column("override_status", sa.String(length=8), nullable=True),
        sa.Column("override_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'accepted', 'rejected')", name=op.f("ck_appeals_state")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_appeals_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeals")),
    )
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.create_index(
            "ix_appeals_resident_id_filed_at", ["resident_id", "filed_at"], unique=False
        )
        batch_op.create_index("ix_appeals_state_filed_at", ["state", "filed_at"], unique=False)

    op.create_table(
        "feed_batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("rows_total", sa.Integer(), nullable=False),
        sa.Column("rows_accepted", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("errors_truncated", sa.Boolean(), nullable=False),
        sa.Column("persons_recomputed", sa.Integer(), nullable=False),
        sa.Column("statuses_changed", sa.Integer(), nullable=False),
        sa.Column("codes_revoked", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["feed_clients.id"],
            name=op.f("fk_feed_batches_client_id_feed_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_batches")),
        sa.UniqueConstraint("client_id", "idempotency_key", name="uq_feed_batches_idempotency"),
    )
    with op.batch_alter_table("feed_batches", schema=None) as batch_op:
        batch_op.create_index("ix_feed_batches_received_at", ["received_at"], unique=False)

    op.create_table(
        "status_overrides",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("resident_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("granted_by", sa.String(length=96), nullable=False),
        sa.Column("appeal_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "status IN ('green', 'yellow', 'red')", name=op.f("ck_status_overrides_status")
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_status_overrides_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_overrides")),
    )
    with op.batch_alter_table("status_overrides", schema=None) as batch_op:
        batch_op.create_index(
            "ix_status_overrides_resident_id_granted_at",
            ["resident_id", "granted_at"],
            unique=False,
        )

    with op.batch_alter_table("health_status", schema=None) as batch_op:
        batch_op.add_column(sa.Column("findings", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("rule_set_version", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("nat_sampled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("nat_result", sa.String(length=8), nullable=True))
        batch_op.add_column(
            sa.Column("vaccine_doses", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("vaccinated_on", sa.Date(), nullable=True))

    # Before rules, an operator's status was written straight into health_status. Keep each as
    # an override, or the first re-decision from (absent) facts would turn it green.
    op.execute(
        """
        INSERT INTO status_overrides (resident_id, status, reason, granted_at, expires_at,
                                      granted_by, appeal_id)
        SELECT resident_id, status, COALESCE(reason_text, 'set before the rules engine'),
               updated_at, NULL, updated_by, NULL
        FROM health_status
        WHERE source <> 'default'
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("health_status", schema=None) as batch_op:
        batch_op.drop_column("vaccinated_on")
        batch_op.drop_column("vaccine_doses")
        batch_op.drop_column("nat_result")
        batch_op.drop_column("nat_sampled_at")
        batch_op.drop_column("rule_set_version")
        batch_op.drop_column("valid_until")
        batch_op.drop_column("findings")

    with op.batch_alter_table("status_overrides", schema=None) as batch_op:
        batch_op.drop_index("ix_status_overrides_resident_id_granted_at")

    op.drop_table("status_overrides")
    with op.batch_alter_table("feed_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_feed_batches_received_at")

    op.drop_table("feed_batches")
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.drop_index("ix_appeals_state_filed_at")
        batch_op.drop_index("ix_appeals_resident_id_filed_at")

    op.drop_table("appeals")
    with op.batch_alter_table("vaccinations", schema=None) as batch_op:
        batch_op.drop_index("ix_vaccinations_batch_id")

    op.drop_table("vaccinations")
    with op.batch_alter_table("travel_records", schema=None) as batch_op:
        batch_op.drop_index("ix_travel_records_region_code_date")
        batch_op.drop_index("ix_travel_records_batch_id")

    op.drop_table("travel_records")
    with op.batch_alter_table("rule_sets", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_sets_activated_at")

    op.drop_table("rule_sets")
    with op.batch_alter_table("risk_areas", schema=None) as batch_op:
        batch_op.drop_index("ix_risk_areas_batch_id")

    op.drop_table("risk_areas")
    with op.batch_alter_table("nat_results", schema=None) as batch_op:
        batch_op.drop_index("ix_nat_results_batch_id")

    op.drop_table("nat_results")
    op.drop_table("feed_clients")
    with op.batch_alter_table("case_records", schema=None) as batch_op:
        batch_op.drop_index("ix_case_records_batch_id")

    op.drop_table("case_records")
