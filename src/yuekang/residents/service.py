"""Binding a real-name identity to a resident, and reading it back (masked, audited)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.exceptions import Conflict, NotFound, ValidationFailed
from yuekang.health_status import service as health_status
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.principals import Actor
from yuekang.residents.documents import DocType, DocumentError, local_date, validate_document
from yuekang.residents.masking import mask_doc_number, mask_name, mask_phone
from yuekang.residents.models import Identity, Resident
from yuekang.rules import RuleSet


def doc_index(blind_index: BlindIndex, doc_type: DocType, number: str) -> bytes:
    # A DocType is a str whose value is its text: "prc_id:<number>".
    return blind_index("doc", doc_type + ":" + number)


def doc_indexer(blind_index: BlindIndex) -> Callable[[DocType, str], bytes]:
    """:func:`doc_index` under one key, for many documents (a feed batch)."""
    by_type = {t: blind_index.prefixed("doc", t + ":") for t in DocType}

    def index(doc_type: DocType, number: str) -> bytes:
        return by_type[doc_type](number)

    return index


def _validated(
    doc_type: DocType, doc_number: str, birth_date: dt.date | None, *, today: dt.date
) -> str:
    """The normalised number, or a 422 naming the field and the reason."""
    try:
        return validate_document(doc_type, doc_number, birth_date, today=today)
    except DocumentError as exc:
        raise ValidationFailed(
            f"{exc.field}: {exc.message}",
            code="invalid_document",
            fields=[{"field": exc.field, "reason": exc.reason, "message": exc.message}],
        ) from exc


@dataclass(frozen=True)
class MaskedIdentity:
    doc_type: str
    masked_name: str
    masked_doc_number: str
    bound_at: dt.datetime


@dataclass(frozen=True)
class BindResult:
    identity: MaskedIdentity
    created: bool


async def bind_identity(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    name: str,
    doc_type: DocType,
    doc_number: str,
    birth_date: dt.date,
    pii: PiiCipher,
    blind_index: BlindIndex,
    rules: RuleSet,
    now: dt.datetime,
    actor: Actor | None = None,
) -> BindResult:
    """Bind a document once. Binding the same document again is a no-op; another document, or a
    document already bound to someone else, is a conflict (real-name binding is not editable from
    the phone: a mistake goes through support, which leaves an audit trail)."""
    number = _validated(doc_type, doc_number, birth_date, today=local_date(now))
    index = doc_index(blind_index, doc_type, number)
    existing = await session.get(Identity, resident_id)
    if existing is not None:
        if existing.doc_index == index:
            return BindResult(_masked(existing, number), created=False)
        raise Conflict(
            "an identity is already bound to this account", code="identity_already_bound"
        )
    owner = (
        await session.execute(select(Identity.resident_id).where(Identity.doc_index == index))
    ).scalar_one_or_none()
    if owner is not None:
        raise Conflict("this document is bound to another account", code="document_already_bound")

    def seal(column: str, value: str) -> bytes:
        ciphertext, _ = pii.encrypt(value, context=f"identities.{column}:{resident_id}")
        return ciphertext

    identity = Identity(
        resident_id=resident_id,
        doc_type=doc_type.value,
        doc_index=index,
        name_ct=seal("name", name),
        doc_number_ct=seal("doc_number", number),
        birth_date_ct=seal("birth_date", birth_date.isoformat()),
        key_id=pii.active_key_id,
        masked_name=mask_name(name),
        bound_at=now,
        updated_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(identity)
    except IntegrityError as exc:
        raise Conflict(
            "this document is bound to another account", code="document_already_bound"
        ) from exc
    # Facts may have arrived before the person registered: the first status is decided from them.
    await health_status.decide(
        session, resident_ids=[resident_id], rules=rules, now=now, actor=Actor.system("rules")
    )
    await audit.record(
        session,
        actor=actor or Actor.resident(resident_id),
        action="identity.bind",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"doc_type": doc_type.value},
    )
    return BindResult(_masked(identity, number), created=True)


async def resident_by_phone_index(session: AsyncSession, index: bytes) -> Resident | None:
    return (
        await session.execute(select(Resident).where(Resident.phone_index == index))
    ).scalar_one_or_none()


def _masked(identity: Identity, number: str) -> MaskedIdentity:
    return MaskedIdentity(
        doc_type=identity.doc_type,
        masked_name=identity.masked_name,
        masked_doc_number=mask_doc_number(number),
        bound_at=identity.bound_at,
    )


async def read_identity(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    actor: Actor,
    pii: PiiCipher,
    now: dt.datetime,
) -> MaskedIdentity | None:
    """The masked identity of a resident. Decrypting the document number is an access to personal
    data, so it is audited even when the resident reads their own."""
    identity = await session.get(Identity, resident_id)
    if identity is None:
        return None
    number = pii.decrypt(
        identity.doc_number_ct,
        key_id=identity.key_id,
        context=f"identities.doc_number:{resident_id}",
    )
    await audit.record(
        session,
        actor=actor,
        action="identity.read",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"fields": ["doc_number"], "masked": True},
    )
    return _masked(identity, number)


async def masked_phone(
    session: AsyncSession, *, resident_id: uuid.UUID, actor: Actor, pii: PiiCipher, now: dt.datetime
) -> str:
    """The resident's phone, masked; decrypting it is audited like any other personal field."""
    resident = await session.get(Resident, resident_id)
    if resident is None:
        raise NotFound("no such resident", code="resident_not_found")
    phone = pii.decrypt(
        resident.phone_ct, key_id=resident.phone_key_id, context=f"residents.phone:{resident_id}"
    )
    await audit.record(
        session,
        actor=actor,
        action="phone.read",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"masked": True},
    )
    return mask_phone(phone)


async def find_by_document(
    session: AsyncSession,
    *,
    doc_type: DocType,
    doc_number: str,
    blind_index: BlindIndex,
    actor: Actor,
    reason: str,
    now: dt.datetime,
) -> uuid.UUID:
    """Resolve a document to a resident id through the blind index; audited with its reason."""
    number = _validated(doc_type, doc_number, None, today=local_date(now))
    resident_id = (
        await session.execute(
            select(Identity.resident_id).where(
                Identity.doc_index == doc_index(blind_index, doc_type, number)
            )
        )
    ).scalar_one_or_none()
    await audit.record(
        session,
        actor=actor,
        action="resident.lookup_by_document",
        subject_type="resident",
        subject_id=str(resident_id) if resident_id else "-",
        now=now,
        detail={"doc_type": doc_type.value, "found": resident_id is not None, "reason": reason},
    )
    if resident_id is None:
        # Committed anyway: probing for documents that are not there must leave a trace too.
        raise NotFound(
            "no resident has bound this document", code="resident_not_found", commit=True
        )
    return resident_id
