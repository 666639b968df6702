from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class HealthCode(Base):
    """An issued code. ``qr_text`` holds only what the QR shows (masked name, status, times), so
    the owner can fetch its image again and an idempotent retry gets the very same code."""

    __tablename__ = "health_codes"
    __table_args__ = (
        UniqueConstraint("resident_id", "idempotency_key", name="uq_health_codes_idempotency"),
        Index("ix_health_codes_resident_id_expires_at", "resident_id", "expires_at"),
        # The console counts codes issued per day.
        Index("ix_health_codes_issued_at", "issued_at"),
        CheckConstraint("status IN ('green', 'yellow', 'red')", name="status"),
    )

    code_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    kid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    qr_text: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Revocation(Base):
    """A revoked code. Kept until the code would have expired anyway, so the list stays short."""

    __tablename__ = "revocations"
    __table_args__ = (Index("ix_revocations_expires_at", "expires_at"),)

    code_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    reason: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
