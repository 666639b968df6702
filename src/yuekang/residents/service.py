"""Binding a real-name identity to a resident, and reading it back (masked, audited)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.dependants.models import Guardianship
from yuekang.exceptions import Conflict, NotFound, Refusal, ValidationFailed
from yuekang.health_status import service as health_status
from yuekang.health_status.models import HealthStatus
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.principals import Actor
from yuekang.residents.assurance import UNVERIFIED
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


def validated_number(
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
    assurance: str
    proofed_at: dt.datetime | None


async def store_identity(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    name: str,
    doc_type: DocType,
    number: str,
    birth_date: dt.date,
    assurance: str,
    proofing_ref: str | None,
    pii: PiiCipher,
    blind_index: BlindIndex,
    rules: RuleSet,
    now: dt.datetime,
    actor: Actor,
) -> MaskedIdentity:
    """Write the resident's identity (a validated, normalised ``number``) with how it was proved,
    replacing an unverified one of theirs, and decide their status from the facts filed under
    the document. The callers (residents/binding.py, dependants, the exchange) have already
    settled who may hold the document; the unique index still refuses a second holder."""
    index = doc_index(blind_index, doc_type, number)

    def seal(column: str, value: str) -> bytes:
        ciphertext, _ = pii.encrypt(value, context=f"identities.{column}:{resident_id}")
        return ciphertext

    identity = await session.get(Identity, resident_id)
    fields = {
        "doc_type": doc_type.value,
        "doc_index": index,
        "name_ct": seal("name", name),
        "doc_number_ct": seal("doc_number", number),
        "birth_date_ct": seal("birth_date", birth_date.isoformat()),
        "key_id": pii.active_key_id,
        "masked_name": mask_name(name),
        "updated_at": now,
        "assurance": assurance,
        "proofed_at": None if assurance == UNVERIFIED else now,
        "proofing_ref": proofing_ref,
    }
    replaced = identity is not None and identity.doc_index != index
    try:
        async with session.begin_nested():
            if identity is None:
                identity = Identity(resident_id=resident_id, bound_at=now, **fields)
                session.add(identity)
            else:
                for column, value in fields.items():
                    setattr(identity, column, value)
                if replaced:
                    identity.bound_at = now
    except IntegrityError as exc:
        raise Conflict(
            "this document is bound to another account", code="document_already_bound"
        ) from exc
    if replaced:
        # The codes of the document bound before (unverified: made before proofing existed)
        # must not outlive it.
        await health_status.revoke_unexpired_codes(
            session, resident_id=resident_id, reason="identity_replaced", now=now
        )
    # Facts may have arrived before the person registered: the first status is decided from them.
    await health_status.decide(
        session, resident_ids=[resident_id], rules=rules, now=now, actor=Actor.system("rules")
    )
    await audit.record(
        session,
        actor=actor,
        action="identity.bind",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"doc_type": doc_type.value, "assurance": assurance, "replaced": replaced},
    )
    return _masked(identity, number)


@dataclass(frozen=True)
class Released:
    """A binding taken from an account (reclaimed by the document's holder, or ended)."""

    resident_id: uuid.UUID
    phone: str | None
    """The released account's phone, to tell them; None for a family member's record."""
    guardian_phone: str | None
    """A released family member's guardian, to tell them."""


async def release_identity(
    session: AsyncSession,
    *,
    identity: Identity,
    to: uuid.UUID | None,
    reason: str,
    pii: PiiCipher,
    actor: Actor,
    now: dt.datetime,
) -> Released:
    """Take a document away from the account holding it: the binding and its status go, its
    live codes are revoked at once, and a family-member arrangement on it ends. The family
    members the account held as a guardian go with the document to ``to`` (the same person,
    proved again), or their arrangements end with it. Facts and operators' decisions are filed
    under the document, so they hold for whoever binds it next. Audited; the caller tells the
    phones after the commit."""
    released = identity.resident_id
    # Locked first, as a status change locks it: an issuance holding the row commits its code
    # before the revocation below looks for codes, so none is left valid.
    await session.get(HealthStatus, released, with_for_update=True, populate_existing=True)
    await health_status.revoke_unexpired_codes(
        session, resident_id=released, reason="identity_released", now=now
    )
    await session.execute(delete(HealthStatus).where(HealthStatus.resident_id == released))
    await session.delete(identity)
    await session.flush()
    resident = await session.get(Resident, released)
    phone = _phone(resident, pii) if resident is not None else None
    guardian_phone = None
    guardianship = (
        await session.execute(
            select(Guardianship).where(
                Guardianship.dependant_id == released, Guardianship.state != "removed"
            )
        )
    ).scalar_one_or_none()
    if guardianship is not None:
        guardianship.state = "removed"
        guardianship.removed_at = now
        guardianship.removed_by = actor.label
        guardian = await session.get(Resident, guardianship.guardian_id)
        guardian_phone = _phone(guardian, pii) if guardian is not None else None
    held = (
        (
            await session.execute(
                select(Guardianship).where(
                    Guardianship.guardian_id == released, Guardianship.state != "removed"
                )
            )
        )
        .scalars()
        .all()
    )
    for arrangement in held:
        if to is not None:
            arrangement.guardian_id = to
            continue
        dependant = await session.get(Identity, arrangement.dependant_id)
        if dependant is not None:
            await release_identity(
                session,
                identity=dependant,
                to=None,
                reason="guardian_released",
                pii=pii,
                actor=actor,
                now=now,
            )
        arrangement.state = "removed"
        arrangement.removed_at = now
        arrangement.removed_by = actor.label
    await audit.record(
        session,
        actor=actor,
        action="identity.released",
        subject_type="resident",
        subject_id=str(released),
        now=now,
        detail={
            "doc_type": identity.doc_type,
            "reason": reason,
            "to": None if to is None else str(to),
            "assurance": identity.assurance,
            "guardianship_ended": guardianship is not None,
            "family_members": len(held),
            "family_members_moved": to is not None,
        },
    )
    return Released(released, phone, guardian_phone)


def _phone(resident: Resident, pii: PiiCipher) -> str | None:
    if resident.phone_ct is None or resident.phone_key_id is None:
        return None
    return pii.decrypt(
        resident.phone_ct, key_id=resident.phone_key_id, context=f"residents.phone:{resident.id}"
    )


async def account_phone(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    pii: PiiCipher,
    actor: Actor,
    now: dt.datetime,
    purpose: str,
) -> str | None:
    """The phone an account signs in with, decrypted for ``purpose`` (audited)."""
    resident = await session.get(Resident, resident_id)
    if resident is None:
        return None
    phone = _phone(resident, pii)
    await audit.record(
        session,
        actor=actor,
        action="phone.read",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"purpose": purpose, "masked": False},
    )
    return phone


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
        assurance=identity.assurance,
        proofed_at=identity.proofed_at,
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
    phone = None if resident is None else _phone(resident, pii)
    if phone is None:
        raise NotFound("no such resident", code="resident_not_found")
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
) -> uuid.UUID | Refusal:
    """Resolve a document to a resident id through the blind index; audited with its reason,
    found or not: probing for documents that are not there must leave a trace too, so not
    finding one is a :class:`Refusal`."""
    number = validated_number(doc_type, doc_number, None, today=local_date(now))
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
        return Refusal(NotFound("no resident has bound this document", code="resident_not_found"))
    return resident_id


async def revoke_unverified_codes(
    session: AsyncSession, *, actor: Actor, now: dt.datetime
) -> tuple[int, int]:
    """Revoke the live codes of every binding never proved; ``(bindings, codes)``. Audited."""
    unverified = (
        (
            await session.execute(
                select(Identity.resident_id).where(Identity.assurance == UNVERIFIED)
            )
        )
        .scalars()
        .all()
    )
    revoked = 0
    for resident_id in unverified:
        revoked += await health_status.revoke_unexpired_codes(
            session, resident_id=resident_id, reason="identity_unverified", now=now
        )
    await audit.record(
        session,
        actor=actor,
        action="identity.revoke_unverified",
        subject_type="resident",
        subject_id="-",
        now=now,
        detail={"bindings": len(unverified), "codes": revoked},
    )
    return len(unverified), revoked


async def require_proved(session: AsyncSession, resident_id: uuid.UUID) -> None:
    """409 ``identity_unverified`` when the resident's binding was never proved: such an account
    sees no status and gets no code (docs/IDENTITY.md)."""
    identity = await session.get(Identity, resident_id)
    if identity is not None and identity.assurance == UNVERIFIED:
        raise Conflict(
            "the identity bound to this account was never proved: prove it against the "
            "registry (PUT /v1/me/identity) or at a service counter",
            code="identity_unverified",
        )
