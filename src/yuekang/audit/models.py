from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import BIGINT_PK, Base, UTCDateTime


class AuditEvent(Base):
    """Who did what to whom, and when. Every read or change of personal data writes one, in the
    same transaction as the access itself, so an access without its audit record cannot commit."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_subject", "subject_type", "subject_id"),
        Index("ix_audit_log_at", "at"),
        # The console lists staff and partner access first (actor_type), newest first (id).
        Index("ix_audit_log_actor_type_id", "actor_type", "id"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(96))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(96))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class SelfRead(Base):
    """A resident's reads of their own data: one row per resident, action and UTC day, counted.

    The resident is the data subject, so these are not accesses by someone else, which the audit
    log is for; writing a row each would grow the log by two rows per page load. The count keeps
    the pattern (a session reading far more than a person would) without the growth."""

    __tablename__ = "audit_self_reads"

    resident_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    action: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
