from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import BIGINT_PK, Base, UTCDateTime

REVOKED = "revoked"
"""The reason on an uploaded valid verdict's record. A device gives none with a valid verdict
(schemas.ScanUpload); this one is the server's: the code had been revoked before the scan, which
the device, offline on an older trust bundle, did not know (scans.service.upload)."""


class ScanRecord(Base):
    """One scan at a checkpoint: which code, where, when, and the verdict -- nothing else about
    the person. Kept for the retention period (28 days by default), then purged."""

    __tablename__ = "scan_records"
    __table_args__ = (
        UniqueConstraint("checkpoint_id", "scan_id", name="uq_scan_records_scan"),
        Index("ix_scan_records_code_id_scanned_at", "code_id", "scanned_at"),
        Index("ix_scan_records_checkpoint_id_scanned_at", "checkpoint_id", "scanned_at"),
        Index("ix_scan_records_scanned_at", "scanned_at"),
        CheckConstraint("verdict IN ('valid', 'invalid', 'cannot_verify')", name="verdict"),
        CheckConstraint("source IN ('online', 'offline')", name="source"),
        CheckConstraint("method IN ('code', 'document')", name="method"),
        CheckConstraint(
            "decision IS NULL OR decision IN ('allow', 'deny', 'manual_check')", name="decision"
        ),
        Index("ix_scan_records_subject_index_scanned_at", "subject_index", "scanned_at"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("checkpoints.id", ondelete="CASCADE")
    )
    scan_id: Mapped[str] = mapped_column(String(64))
    code_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    scanned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source: Mapped[str] = mapped_column(String(8))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # A document check (刷证核验) has no code: the document's blind index stands in for it, so
    # that contact tracing finds the person's document checks beside their code scans.
    method: Mapped[str] = mapped_column(String(8), server_default="code")
    subject_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    # What the place's policy made of the verdict (allow, deny, manual_check): what operators
    # count. Null for records older than it and for uploads from devices that do not send it.
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
