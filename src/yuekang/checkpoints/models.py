from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import CheckConstraint, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class Checkpoint(Base):
    """A place that scans codes. Its API key is stored only as a SHA-256 hash."""

    __tablename__ = "checkpoints"
    __table_args__ = (CheckConstraint("kind IN ('venue', 'transport', 'border')", name="kind"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    kind: Mapped[str] = mapped_column(String(16), server_default="venue")
    """Which policy applies here: venue, transport or border."""
    region_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
