from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, LargeBinary, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class Appeal(Base):
    """A resident contesting a red or yellow status. Their words may describe their health, so
    the text is encrypted like any personal field and every reading of it is audited."""

    __tablename__ = "appeals"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'accepted', 'rejected')", name="state"),
        Index("ix_appeals_state_filed_at", "state", "filed_at"),
        Index("ix_appeals_resident_id_filed_at", "resident_id", "filed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    status_at_filing: Mapped[str] = mapped_column(String(8))
    reason_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    text_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(8))
    filed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(96), nullable=True)
    decision_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    override_status: Mapped[str | None] = mapped_column(String(8), nullable=True)
    override_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
