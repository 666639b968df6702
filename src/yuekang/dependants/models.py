from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime

RELATIONSHIPS = ("child", "parent", "spouse", "grandparent", "grandchild", "sibling", "other")
STATES = ("pending_consent", "active", "removed")
CONSENTS = ("minor", "sms", "counter")


class Guardianship(Base):
    """A guardian holding a family member's codes. The family member is a resident of their own
    (their identity, status and codes are theirs), with no phone to sign in with; an adult's own
    phone, when given for consent, is kept encrypted here so that they can be told and can end
    the arrangement from an account of their own."""

    __tablename__ = "guardianships"
    __table_args__ = (
        CheckConstraint(
            "relationship IN (" + ", ".join(f"'{r}'" for r in RELATIONSHIPS) + ")",
            name="relationship",
        ),
        CheckConstraint("state IN (" + ", ".join(f"'{s}'" for s in STATES) + ")", name="state"),
        Index("ix_guardianships_guardian_id_state", "guardian_id", "state"),
        Index("ix_guardianships_phone_index", "phone_index"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    guardian_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    dependant_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE"), unique=True
    )
    relationship: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    consent: Mapped[str | None] = mapped_column(String(16), nullable=True)
    consented_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    phone_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    consent_code_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    consent_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    consent_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    removed_by: Mapped[str | None] = mapped_column(String(96), nullable=True)
