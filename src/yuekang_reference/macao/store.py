"""The reference Macao system's database: its own tables on its own metadata, and the few queries
the service needs.

The schema is made with ``metadata.create_all`` at start and is not migrated with Alembic like the
Guangdong service's: this is a test double whose database is thrown away, and a schema change
here means deleting the data directory. Times are integer UTC seconds, as on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class MacaoBase(DeclarativeBase):
    # Times are UTC seconds: 64 bits, or they overflow in 2038 on PostgreSQL.
    type_annotation_map: ClassVar[dict[Any, Any]] = {int: BigInteger}
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class KeyRecord(MacaoBase):
    """One of the system's private keys, PKCS#8 encrypted under the key passphrase."""

    __tablename__ = "keys"

    kid: Mapped[str] = mapped_column(String(22), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16))  # code | exchange
    use: Mapped[str] = mapped_column(String(3))  # sig | enc
    private_pem: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(8))  # active | retired
    created_at: Mapped[int]
    retired_at: Mapped[int | None]
    not_before: Mapped[int | None]
    not_after: Mapped[int | None]


class Person(MacaoBase):
    """A resident, found by a blind index over (document type, number); every personal field is
    encrypted under ``pii_key_id`` and bound to its column and row."""

    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    document_index: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    tdoc: Mapped[str] = mapped_column(String(8))
    pii_key_id: Mapped[str] = mapped_column(String(16))
    name: Mapped[bytes] = mapped_column(LargeBinary)
    doc_number: Mapped[bytes] = mapped_column(LargeBinary)
    birth_date: Mapped[bytes] = mapped_column(LargeBinary)
    phone: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[int]
    updated_at: Mapped[int]


class Declaration(MacaoBase):
    __tablename__ = "declarations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    fever: Mapped[bool] = mapped_column(Boolean)
    contact_14d: Mapped[bool] = mapped_column(Boolean)
    travel_14d: Mapped[bool] = mapped_column(Boolean)
    nat_negative_on: Mapped[str | None] = mapped_column(String(10))
    colour: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[int]


class Code(MacaoBase):
    """An issued MO1 code, with what it was based on: a later conversion to Guangdong sends that
    basis (the test date and the travel answer), never anything newer the code does not show."""

    __tablename__ = "codes"
    __table_args__ = (Index("ix_codes_person_issued", "person_id", "id"),)

    # Issue order: two codes can share an iat (a declaration right after a conversion).
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cti: Mapped[str] = mapped_column(String(22), unique=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    text: Mapped[str] = mapped_column(Text)
    kid: Mapped[str] = mapped_column(String(22))
    colour: Mapped[str] = mapped_column(String(8))
    iat: Mapped[int]
    exp: Mapped[int]
    nat_negative_on: Mapped[str | None] = mapped_column(String(10))
    travel_14d: Mapped[bool] = mapped_column(Boolean)
    origin: Mapped[str] = mapped_column(String(16))  # declaration | conversion
    conversion_id: Mapped[str | None] = mapped_column(String(36))
    source_issuer: Mapped[str | None] = mapped_column(String(64))
    source_kid: Mapped[str | None] = mapped_column(String(64))
    source_digest: Mapped[str | None] = mapped_column(String(22))


class Conversion(MacaoBase):
    __tablename__ = "conversions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"))
    direction: Mapped[str] = mapped_column(String(8))  # outbound | inbound
    partner: Mapped[str] = mapped_column(String(64))
    delivery: Mapped[str | None] = mapped_column(String(8))  # direct | browser
    state: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(64))
    partner_conversion_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[int]
    updated_at: Mapped[int]


class Consent(MacaoBase):
    """A consent receipt: given here for an outbound transfer, or received with an inbound one."""

    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64))  # the sender's, when received
    conversion_id: Mapped[str] = mapped_column(ForeignKey("conversions.id"))
    person_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"))
    direction: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(64))
    text_version: Mapped[str] = mapped_column(String(32))
    fields: Mapped[str] = mapped_column(Text)  # JSON list
    granted_at: Mapped[int]


class SeenJti(MacaoBase):
    """Single use of packages and request proofs: a jti is kept until it could no longer pass the
    time checks anyway."""

    __tablename__ = "seen_jtis"

    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # package | request
    issuer: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)


class IdempotentAnswer(MacaoBase):
    """The answer given to a partner's request, by (issuer, Idempotency-Key). ``body_hash`` spots
    a byte-identical retry; ``message_hash`` a retry that re-sealed the same conversion."""

    __tablename__ = "idempotent_answers"

    issuer: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(43))
    message_hash: Mapped[str] = mapped_column(String(43))
    status: Mapped[int]
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[int]

    def answer_json(self) -> dict[str, Any]:
        value = json.loads(self.answer)
        assert isinstance(value, dict)
        return value


async def create_schema(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(MacaoBase.metadata.create_all)


async def keys(session: AsyncSession) -> Sequence[KeyRecord]:
    """Every key, oldest first."""
    result = await session.scalars(select(KeyRecord).order_by(KeyRecord.created_at, KeyRecord.kid))
    return result.all()


async def person_by_index(session: AsyncSession, index: bytes) -> Person | None:
    return await session.scalar(select(Person).where(Person.document_index == index))


async def latest_code(session: AsyncSession, person_id: str) -> Code | None:
    return await session.scalar(
        select(Code).where(Code.person_id == person_id).order_by(Code.id.desc()).limit(1)
    )


async def latest_declaration(session: AsyncSession, person_id: str) -> Declaration | None:
    return await session.scalar(
        select(Declaration)
        .where(Declaration.person_id == person_id)
        .order_by(Declaration.created_at.desc())
        .limit(1)
    )


async def remember_jti(
    session: AsyncSession, *, kind: str, issuer: str, jti: str, expires_at: int, now: int
) -> bool:
    """Record a jti; False if it is already recorded and not yet expired. Commits (a replay check
    that rolls back with a later refusal would let the same package be tried again)."""
    await session.execute(delete(SeenJti).where(SeenJti.expires_at < now))
    session.add(SeenJti(kind=kind, issuer=issuer, jti=jti, expires_at=expires_at))
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def idempotent_answer(
    session: AsyncSession, issuer: str, key: str
) -> IdempotentAnswer | None:
    return await session.get(IdempotentAnswer, (issuer, key))
