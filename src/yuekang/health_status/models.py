from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import BIGINT_PK, Base, UTCDateTime


class HealthStatus(Base):
    """The current decision about a resident: what the rules engine (or an operator) concluded,
    why, and until when it holds without new facts. Issuance reads it; when ``valid_until`` has
    passed or another rule set is active, the reader decides again before using it."""

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
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default="[]")
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    rule_set_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nat_sampled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    nat_result: Mapped[str | None] = mapped_column(String(8), nullable=True)
    vaccine_doses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    vaccinated_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


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


class StatusOverride(Base):
    """An operator's decision that replaces what the facts known at ``granted_at`` say: an
    accepted appeal, or a status set by hand. Facts that arrive later still count.

    Filed under the document (``person``, its blind index), like the facts: it is a decision
    about the document's person, so it holds for whichever account binds the document -- after a
    reclaim, after a family member is removed and added again (``resident_id`` says on which
    account it was made)."""

    __tablename__ = "status_overrides"
    __table_args__ = (
        CheckConstraint("status IN ('green', 'yellow', 'red')", name="status"),
        Index("ix_status_overrides_resident_id_granted_at", "resident_id", "granted_at"),
        Index("ix_status_overrides_person_granted_at", "person", "granted_at"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text)
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    granted_by: Mapped[str] = mapped_column(String(96))
    appeal_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    person: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)


class RuleSetRecord(Base):
    """A rule set that passed validation, as uploaded; the latest activated one is in force."""

    __tablename__ = "rule_sets"
    __table_args__ = (Index("ix_rule_sets_activated_at", "activated_at"),)

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    uploaded_by: Mapped[str] = mapped_column(String(96))
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
