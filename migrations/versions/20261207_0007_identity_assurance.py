"""Identity assurance: proofing outcomes, family members, document checks at checkpoints

Operators' decisions (status overrides) are filed under the document's blind index, like the
facts, so that they follow the document from account to account.

Every identity bound before this revision becomes ``unverified``: nothing proved that its
document belongs to the person who bound it, so it gets no new code, and no status to read,
until proofed (codes already issued run out within their lifetime, an hour by default; the
status is decided again from the facts when the identity is proved; the history stays).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.alter_column("phone_index", existing_type=sa.LargeBinary(length=32), nullable=True)
        batch_op.alter_column("phone_ct", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.alter_column("phone_key_id", existing_type=sa.String(length=32), nullable=True)

    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "assurance", sa.String(length=24), server_default="unverified", nullable=False
            )
        )
        batch_op.add_column(sa.Column("proofed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("proofing_ref", sa.String(length=64), nullable=True))

    # Every binding so far is unverified: its account must not read the document's person's
    # status until it is proved (when the status is decided again from the facts, and the
    # operators' decisions kept below).
    op.execute("DELETE FROM health_status")

    # Operators' decisions follow the document, like the facts: filed under its blind index.
    with op.batch_alter_table("status_overrides", schema=None) as batch_op:
        batch_op.add_column(sa.Column("person", sa.LargeBinary(length=32), nullable=True))
        batch_op.create_index(
            "ix_status_overrides_person_granted_at", ["person", "granted_at"], unique=False
        )
    op.execute(
        "UPDATE status_overrides SET person = (SELECT identities.doc_index FROM identities "
        "WHERE identities.resident_id = status_overrides.resident_id)"
    )

    op.create_table(
        "proofing_attempts",
        sa.Column("id", BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resident_id", sa.Uuid(), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("doc_type", sa.String(length=32), nullable=False),
        sa.Column("doc_index", sa.LargeBinary(length=32), nullable=False),
        sa.Column("masked_doc_number", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=40), nullable=False),
        sa.Column("backend", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_proofing_attempts_resident_id_residents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proofing_attempts")),
    )
    with op.batch_alter_table("proofing_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_proofing_attempts_at", ["at"], unique=False)
        batch_op.create_index(
            "ix_proofing_attempts_doc_index_at", ["doc_index", "at"], unique=False
        )

    op.create_table(
        "guardianships",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("guardian_id", sa.Uuid(), nullable=False),
        sa.Column("dependant_id", sa.Uuid(), nullable=False),
        sa.Column("relationship", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consent", sa.String(length=16), nullable=True),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("phone_index", sa.LargeBinary(length=32), nullable=True),
        sa.Column("phone_ct", sa.LargeBinary(), nullable=True),
        sa.Column("phone_key_id", sa.String(length=32), nullable=True),
        sa.Column("consent_code_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("consent_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("consent_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(length=96), nullable=True),
        sa.CheckConstraint(
            "relationship IN ('child', 'parent', 'spouse', 'grandparent', 'grandchild', "
            "'sibling', 'other')",
            name=op.f("ck_guardianships_relationship"),
        ),
        sa.CheckConstraint(
            "state IN ('pending_consent', 'active', 'removed')",
            name=op.f("ck_guardianships_state"),
        ),
        sa.ForeignKeyConstraint(
            ["dependant_id"],
            ["residents.id"],
            name=op.f("fk_guardianships_dependant_id_residents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["guardian_id"],
            ["residents.id"],
            name=op.f("fk_guardianships_guardian_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardianships")),
        sa.UniqueConstraint("dependant_id", name=op.f("uq_guardianships_dependant_id")),
    )
    with op.batch_alter_table("guardianships", schema=None) as batch_op:
        batch_op.create_index(
            "ix_guardianships_guardian_id_state", ["guardian_id", "state"], unique=False
        )
        batch_op.create_index("ix_guardianships_phone_index", ["phone_index"], unique=False)

    with op.batch_alter_table("scan_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("method", sa.String(length=8), server_default="code", nullable=False)
        )
        batch_op.add_column(sa.Column("subject_index", sa.LargeBinary(length=32), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_scan_records_method"), "method IN ('code', 'document')"
        )
        batch_op.create_index(
            "ix_scan_records_subject_index_scanned_at",
            ["subject_index", "scanned_at"],
            unique=False,
        )


def downgrade() -> None:
    # Document checks have no code; a schema without document checks cannot keep them.
    op.execute("DELETE FROM scan_records WHERE method = 'document'")
    with op.batch_alter_table("scan_records", schema=None) as batch_op:
        batch_op.drop_index("ix_scan_records_subject_index_scanned_at")
        batch_op.drop_constraint(op.f("ck_scan_records_method"), type_="check")
        batch_op.drop_column("subject_index")
        batch_op.drop_column("method")

    with op.batch_alter_table("guardianships", schema=None) as batch_op:
        batch_op.drop_index("ix_guardianships_phone_index")
        batch_op.drop_index("ix_guardianships_guardian_id_state")
    op.drop_table("guardianships")

    with op.batch_alter_table("proofing_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_proofing_attempts_doc_index_at")
        batch_op.drop_index("ix_proofing_attempts_at")
    op.drop_table("proofing_attempts")

    with op.batch_alter_table("status_overrides", schema=None) as batch_op:
        batch_op.drop_index("ix_status_overrides_person_granted_at")
        batch_op.drop_column("person")

    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_column("proofing_ref")
        batch_op.drop_column("proofed_at")
        batch_op.drop_column("assurance")

    # Residents without a phone (family members, people verified at a counter) cannot exist
    # in the older schema.
    op.execute("DELETE FROM residents WHERE phone_index IS NULL")
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.alter_column("phone_key_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column("phone_ct", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.alter_column(
            "phone_index", existing_type=sa.LargeBinary(length=32), nullable=False
        )
