from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import Base, UTCDateTime


class ExchangeKey(Base):
    """Our keys for the exchange: ``sig`` signs packages and requests, ``enc`` opens packages sent
    to us. Private halves PKCS#8-encrypted like every other private key."""

    __tablename__ = "exchange_keys"
    __table_args__ = (
        CheckConstraint("use IN ('sig', 'enc')", name="use"),
        CheckConstraint("state IN ('active', 'retired')", name="state"),
    )

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    use: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Partner(Base):
    """A partner health-code system we exchange with, and its delivery circuit, shared by every
    process through this row."""

    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(64), unique=True)
    code_format: Mapped[str] = mapped_column(String(16))
    base_url: Mapped[str] = mapped_column(Text)
    circuit_failures: Mapped[int] = mapped_column(Integer, default=0)
    circuit_open_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    synced_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class PartnerKey(Base):
    """A public key of a partner, as registered by an operator from the partner's key document."""

    __tablename__ = "partner_keys"
    __table_args__ = (
        CheckConstraint("purpose IN ('code', 'exchange')", name="purpose"),
        CheckConstraint("use IN ('sig', 'enc')", name="use"),
        CheckConstraint("state IN ('active', 'retired')", name="state"),
    )

    partner_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("partners.id", ondelete="CASCADE"), primary_key=True
    )
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))
    use: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    not_after: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ExchangeNonce(Base):
    """A package or request id seen from a partner, kept until it could no longer be accepted
    anyway: the primary key is what refuses a replay, on every process at once."""

    __tablename__ = "exchange_nonces"

    partner_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class ConsentReceipt(Base):
    """What a person agreed to for one transfer: recorded here when they consented with us,
    copied from the package when they consented with the partner."""

    __tablename__ = "consent_receipts"
    __table_args__ = (CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    resident_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE"), nullable=True, index=True
    )
    direction: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[str] = mapped_column(String(32))
    recorded_by: Mapped[str] = mapped_column(String(64))
    """``yk:gd`` when the person consented here, the partner's issuer when they did there."""
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The consent id the partner gave it."""
    recipient: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    fields: Mapped[str] = mapped_column(Text)
    """JSON list of the fields the person agreed to send."""
    text_version: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Conversion(Base):
    """One conversion, either way. Inbound: the Macao code we converted and the code we issued.
    Outbound: the delivery state and, once delivered, the Macao code."""

    __tablename__ = "conversions"
    __table_args__ = (
        CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
        CheckConstraint(
            "state IN ('completed', 'refused', 'queued', 'delivering', 'delivered', 'failed')",
            name="state",
        ),
        UniqueConstraint(
            "partner_id", "direction", "idempotency_key", name="uq_conversions_idempotency"
        ),
        Index("ix_conversions_resident", "resident_id", "direction", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    direction: Mapped[str] = mapped_column(String(16))
    partner_id: Mapped[str] = mapped_column(String(32), ForeignKey("partners.id"))
    resident_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("residents.id", ondelete="CASCADE"), nullable=True
    )
    state: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """Inbound: the partner's key; outbound: the resident's, prefixed with their id."""
    package_jti: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consent_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("consent_receipts.id"), nullable=True
    )
    fields: Mapped[str] = mapped_column(Text, default="[]")
    source_issuer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_kid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    nat_sampled_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    valid_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    """Inbound: codes refreshed until then carry the conversion's ``src``."""
    code_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Inbound: the code we issued."""
    partner_code: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Outbound: the code the partner issued (a signed token showing a masked name only)."""
    partner_code_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    response: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Inbound: the JSON answered, replayed for a repeated Idempotency-Key."""
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxMessage(Base):
    """A message to a partner, written in the transaction that decided to send it and delivered
    by the outbox worker: retried with backoff until delivered, refused or too old."""

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'delivered', 'refused', 'failed')", name="state"),
        Index("ix_outbox_due", "state", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    partner_id: Mapped[str] = mapped_column(String(32), ForeignKey("partners.id"))
    conversion_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("conversions.id", ondelete="CASCADE"), unique=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    payload_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """Who holds the message now: only the holder of this token may record an attempt."""
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    """The request that queued it (logs.py): its deliveries log it and send it to the partner."""
