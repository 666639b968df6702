from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import BIGINT_PK, Base, UTCDateTime


class Resident(Base):
    """A person the service knows: usually someone who signed in with a phone number (stored only
    encrypted, found again through its blind index). A family member added by a guardian, or a
    person verified at a counter without a phone, has no phone and cannot sign in."""

    __tablename__ = "residents"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    phone_index: Mapped[bytes | None] = mapped_column(LargeBinary(32), unique=True, nullable=True)
    phone_ct: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    phone_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Identity(Base):
    """The real-name document bound to a resident: every personal field encrypted with AES-GCM,
    the key id beside each ciphertext, the document findable only through a keyed blind index."""

    __tablename__ = "identities"

    resident_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    doc_type: Mapped[str] = mapped_column(String(32))
    doc_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    name_ct: Mapped[bytes] = mapped_column(LargeBinary)
    doc_number_ct: Mapped[bytes] = mapped_column(LargeBinary)
    birth_date_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    # The masked name is printed inside every code; keeping it beside the ciphertext saves a
    # decryption per issuance and reveals nothing the QR does not already show.
    masked_name: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # residents/assurance.py: how we know the document is this person's. Bindings made before
    # proofing existed are "unverified" and get no code until proofed.
    assurance: Mapped[str] = mapped_column(String(24), server_default="unverified")
    proofed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The registry's check id, or the counter's case reference.
    proofing_ref: Mapped[str | None] = mapped_column(String(64), nullable=True)


class ProofingAttempt(Base):
    """One attempt to prove an identity, whatever its outcome: what rate limits and the
    operators' alerts count. The document is here only as its blind index and masked number."""

    __tablename__ = "proofing_attempts"
    __table_args__ = (
        Index("ix_proofing_attempts_doc_index_at", "doc_index", "at"),
        Index("ix_proofing_attempts_at", "at"),
    )

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    resident_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="SET NULL"), nullable=True
    )
    purpose: Mapped[str] = mapped_column(String(16))
    doc_type: Mapped[str] = mapped_column(String(32))
    doc_index: Mapped[bytes] = mapped_column(LargeBinary(32))
    masked_doc_number: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(40))
    backend: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(64), nullable=True)
