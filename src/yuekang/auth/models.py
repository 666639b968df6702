from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class OtpChallenge(Base):
    """A one-time code sent to a phone, stored as a keyed hash."""

    __tablename__ = "otp_challenges"
    __table_args__ = (
        Index("ix_otp_challenges_phone_index_created_at", "phone_index", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    phone_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    code_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RateLimitCounter(Base):
    """Fixed-window request counters shared by every server process through the database."""

    __tablename__ = "rate_limit_counters"

    bucket: Mapped[str] = mapped_column(String(96), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class ResidentSession(Base):
    """A signed-in phone: what its refresh token is now, and whether it was ended.

    Access tokens name their session (``sid``) so that ending it refuses them at once; the
    refresh token is kept as a keyed hash, with the one it replaced, so a replayed old one is
    recognised (someone else holds a copy) and ends the session."""

    __tablename__ = "resident_sessions"
    __table_args__ = (
        Index("ix_resident_sessions_resident_id", "resident_id"),
        Index("ix_resident_sessions_revoked_at", "revoked_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    refresh_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    previous_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
