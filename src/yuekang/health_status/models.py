from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import BIGINT_PK, Base, UTCDateTime


class HealthStatus(Base):
    """The current status of a resident: the one record operators and (later) the rules engine
    write, and issuance reads."""

    __tablename__ = "health_status"
    __table_args__ = (CheckConstraint("status IN ('green', 'yellow', 'red')", name="status"),)

    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(8))
    reason_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(96))


class StatusChange(Base):
    """History of status changes: what changed, when, by whom and why."""

    __tablename__ = "status_changes"
    __table_args__ = (Index("ix_status_changes_resident_id_at", "resident_id", "at"),)

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    old_status: Mapped[str | None] = mapped_column(String(8), nullable=True)
    new_status: Mapped[str] = mapped_column(String(8))
    reason_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    actor: Mapped[str] = mapped_column(String(96))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
