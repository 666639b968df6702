"""Feed clients, batches, and the facts they deliver.

Facts are keyed by ``person``: the keyed blind index of the identity document, the same value an
identity binding stores in ``identities.doc_index``. No document number is kept with a fact, and a
fact about someone who has not registered yet is simply waiting for the binding that matches it.
Each fact table has a natural key; a fact sent again updates the row instead of adding one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from yuekang.db import BIGINT_PK, Base, UTCDateTime


class FeedClient(Base):
    """An authority system allowed to push some kinds of feed; its key is stored hashed."""

    __tablename__ = "feed_clients"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kinds: Mapped[list[str]] = mapped_column(JSON)
    key_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FeedBatch(Base):
    """One accepted batch and its result, found again by the client's Idempotency-Key."""

    __tablename__ = "feed_batches"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key", name="uq_feed_batches_idempotency"),
        Index("ix_feed_batches_received_at", "received_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    client_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("feed_clients.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str] = mapped_column(String(32))
    rows_total: Mapped[int] = mapped_column(Integer, default=0)
    rows_accepted: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    errors_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    persons_recomputed: Mapped[int] = mapped_column(Integer, default=0)
    statuses_changed: Mapped[int] = mapped_column(Integer, default=0)
    codes_revoked: Mapped[int] = mapped_column(Integer, default=0)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class _Fact:
    """What every fact row has besides its own columns: an id, the batch that last changed it,
    and when the service learned it (what an override is compared with)."""

    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    batch_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CaseRecord(_Fact, Base):
    __tablename__ = "case_records"
    __table_args__ = (
        UniqueConstraint("person", "category", "start_date", name="uq_case_records_key"),
        Index("ix_case_records_batch_id", "batch_id"),
    )

    person: Mapped[bytes] = mapped_column(LargeBinary(32))
    category: Mapped[str] = mapped_column(String(24))
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


class NatRecord(_Fact, Base):
    __tablename__ = "nat_results"
    __table_args__ = (
        UniqueConstraint("person", "sampled_at", "lab", name="uq_nat_results_key"),
        Index("ix_nat_results_batch_id", "batch_id"),
    )

    person: Mapped[bytes] = mapped_column(LargeBinary(32))
    sampled_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    result: Mapped[str] = mapped_column(String(8))
    lab: Mapped[str] = mapped_column(String(128))


class VaccinationRecord(_Fact, Base):
    __tablename__ = "vaccinations"
    __table_args__ = (
        UniqueConstraint("person", "dose", name="uq_vaccinations_key"),
        Index("ix_vaccinations_batch_id", "batch_id"),
    )

    person: Mapped[bytes] = mapped_column(LargeBinary(32))
    dose: Mapped[int] = mapped_column(Integer)
    date: Mapped[dt.date] = mapped_column(Date)
    product: Mapped[str] = mapped_column(String(64))


class TravelRecord(_Fact, Base):
    __tablename__ = "travel_records"
    __table_args__ = (
        UniqueConstraint("person", "region_code", "date", name="uq_travel_records_key"),
        Index("ix_travel_records_batch_id", "batch_id"),
        # A risk-area change looks up who was in those cities on those days.
        Index("ix_travel_records_region_code_date", "region_code", "date"),
    )

    person: Mapped[bytes] = mapped_column(LargeBinary(32))
    region_code: Mapped[str] = mapped_column(String(6))
    date: Mapped[dt.date] = mapped_column(Date)


class RiskAreaRecord(_Fact, Base):
    """A declared risk level for a division from ``valid_from``; sending the same division and
    start again changes its level or end (how an authority lifts an area early)."""

    __tablename__ = "risk_areas"
    __table_args__ = (
        UniqueConstraint("region_code", "valid_from", name="uq_risk_areas_key"),
        Index("ix_risk_areas_batch_id", "batch_id"),
    )

    region_code: Mapped[str] = mapped_column(String(6))
    level: Mapped[str] = mapped_column(String(8))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
