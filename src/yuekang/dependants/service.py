"""Family members (亲友代办): a proofed adult adds children and elderly relatives without a
smartphone, and holds their codes.

Each family member is a resident of their own -- their document, status and codes are theirs;
a code names them (masked), never the guardian -- with no phone to sign in with. Adding one:

- the guardian's own identity is proved (``proofed``, ``counter`` or ``partner``) and they are
  an adult; they hold at most ``dependants.max_per_guardian`` family members;
- the family member is proved against the population register like anyone (``identity_mismatch``
  otherwise), with the relationship declared by the guardian;
- a child is active at once; an adult must consent: by a one-time code sent to their own phone
  (which the carrier must confirm is registered to them -- the guardian's second phone will not
  do), read out to the guardian, or in person at a service counter;
- the document may not be bound to anyone who proved it: only an ``unverified`` binding (made
  before proofing existed) gives way. When the family member later proves themselves on their
  own phone, their binding wins and the arrangement ends (residents/binding.py).

Either side ends it: the guardian, the adult family member from their own account (they see
every arrangement naming their phone), or counter staff. Ending it releases the family member's
binding and revokes their live codes. Everything is audited.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import ratelimit
from yuekang.audit import service as audit
from yuekang.auth.service import phone_index
from yuekang.codec.proofing import Person
from yuekang.config import DependantSettings
from yuekang.db import transaction
from yuekang.dependants.models import Guardianship
from yuekang.exceptions import Conflict, Forbidden, NotFound, Refusal, ValidationFailed
from yuekang.health_status import service as health_status
from yuekang.health_status.models import HealthStatus
from yuekang.principals import Actor
from yuekang.residents import assurance
from yuekang.residents.binding import (
    GUARDIAN_RELEASED_SMS,
    RECLAIMED_SMS,
    Attempt,
    ProofingDeps,
    document_held,
    holder_of,
    identity_mismatch,
    notify,
    phone_not_registered,
)
from yuekang.residents.documents import DocType, local_date
from yuekang.residents.models import Identity, Resident
from yuekang.residents.service import (
    account_phone,
    doc_index,
    release_identity,
    store_identity,
    validated_number,
)
from yuekang.rules import RuleSet

GUARDIAN_LEVELS = (assurance.PROOFED, assurance.COUNTER, "partner")
LIVE = ("pending_consent", "active")
RELATIONSHIP_WORDS = {
    "child": "子女",
    "parent": "父母",
    "spouse": "配偶",
    "grandparent": "祖父母/外祖父母",
    "grandchild": "孙子女/外孙子女",
    "sibling": "兄弟姐妹",
    "other": "其他亲友",
}


@dataclass(frozen=True)
class DependantView:
    id: uuid.UUID
    """The arrangement's id: what the guardian's paths name."""
    relationship: str
    state: str
    consent: str | None
    masked_name: str
    doc_type: str
    assurance: str
    status: str | None
    reason_codes: list[str]
    valid_until: dt.datetime | None
    created_at: dt.datetime
    consent_by_sms: bool
    """A phone was given for the adult's consent: the guardian enters the code sent to it."""
    consent_expires_at: dt.datetime | None


def _age(birth: dt.date, today: dt.date) -> int:
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _consent_hash(secret: str, guardianship_id: uuid.UUID, code: str) -> bytes:
    # Bound to the arrangement: a sign-in code cannot pass as a consent, nor one consent as another.
    message = b"consent:" + guardianship_id.bytes + code.encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


async def add(
    deps: ProofingDeps,
    *,
    guardian_id: uuid.UUID,
    name: str,
    doc_type: DocType,
    doc_number: str,
    birth_date: dt.date,
    relationship: str,
    phone: str | None,
    client_address: str,
    settings: DependantSettings,
    otp_secret: str,
    rules: RuleSet,
    now: dt.datetime,
) -> DependantView | Refusal:
    """Add a family member, proved against the registry (see the module's docstring); a
    refusal recorded with what it counted is returned as a :class:`Refusal`."""
    number = validated_number(doc_type, doc_number, birth_date, today=local_date(now))
    index = doc_index(deps.blind_index, doc_type, number)
    adult = _age(birth_date, local_date(now)) >= settings.adult_age
    consent_phone = phone if adult else None
    actor = Actor.resident(guardian_id)
    attempt = Attempt(deps, guardian_id, "dependant", doc_type, index, number, now)
    async with transaction(deps.sessionmaker) as session:
        await _check_guardian(session, deps, guardian_id, index, settings, now)
        limited = await attempt.count(session, client_address)
    if limited is not None:
        return limited
    person = Person(name=name, doc_type=doc_type.value, doc_number=number, birth_date=birth_date)
    result = await attempt.ask(person, consent_phone)
    if not result.identity_matches:
        await attempt.fail("identity_mismatch", result, identity_mismatch())
    if consent_phone is not None and not result.phone_matches:
        await attempt.fail("phone_not_registered_to_holder", result, phone_not_registered())

    code = f"{secrets.randbelow(10**6):06d}"
    async with transaction(deps.sessionmaker) as session:
        await _check_guardian(session, deps, guardian_id, index, settings, now)
        holder = await holder_of(session, index, other_than=None)
        if holder is not None and not (
            assurance.takes_over("dependant", holder.assurance)
            or await _lapsed_without_consent(session, holder.resident_id, settings, now)
        ):
            await attempt.record(session, "document_already_bound", result)
            return Refusal(
                held_as_family_member(settings)
                if holder.assurance == assurance.DEPENDANT
                else document_held()
            )
        dependant = Resident(id=uuid.uuid4(), created_at=now)
        session.add(dependant)
        await session.flush()
        if holder is not None:
            existing = await session.get(Identity, holder.resident_id)
            assert existing is not None
            released = await release_identity(
                session,
                identity=existing,
                to=dependant.id,
                reason="taken_by_guardian",
                pii=deps.pii,
                actor=actor,
                now=now,
            )
            notify(session, deps.sms, released.phone, RECLAIMED_SMS)
            notify(session, deps.sms, released.guardian_phone, GUARDIAN_RELEASED_SMS)
        await store_identity(
            session,
            resident_id=dependant.id,
            name=name,
            doc_type=doc_type,
            number=number,
            birth_date=birth_date,
            assurance=assurance.DEPENDANT,
            proofing_ref=result.reference,
            pii=deps.pii,
            blind_index=deps.blind_index,
            rules=rules,
            now=now,
            actor=actor,
        )
        arrangement = Guardianship(
            id=uuid.uuid4(),
            guardian_id=guardian_id,
            dependant_id=dependant.id,
            relationship=relationship,
            state="pending_consent" if adult else "active",
            consent=None if adult else "minor",
            consented_at=None if adult else now,
            created_at=now,
        )
        if consent_phone is not None:
            ciphertext, key_id = deps.pii.encrypt(
                consent_phone, context=f"guardianships.phone:{arrangement.id}"
            )
            arrangement.phone_index = phone_index(deps.blind_index, consent_phone)
            arrangement.phone_ct, arrangement.phone_key_id = ciphertext, key_id
            _new_consent_code(arrangement, code, otp_secret, settings, now)
            notify(
                session,
                deps.sms,
                consent_phone,
                _consent_text(name_of_guardian=await _guardian_name(session, guardian_id),
                              relationship=relationship, code=code, settings=settings),
            )  # fmt: skip
        session.add(arrangement)
        await attempt.record(session, "verified", result)
        await audit.record(
            session,
            actor=actor,
            action="dependant.add",
            subject_type="resident",
            subject_id=str(dependant.id),
            now=now,
            detail={
                "guardianship": str(arrangement.id),
                "relationship": relationship,
                "state": arrangement.state,
                "consent_by_sms": consent_phone is not None,
                "took_over": holder is not None,
            },
        )
        await session.flush()
        return await _view(session, arrangement, rules=rules, now=now)


def held_as_family_member(settings: DependantSettings) -> Conflict:
    return Conflict(
        "this person is already held by another account as a family member; if they never "
        f"consented, that lapses {settings.pending_hours} hours after it was made, and a "
        "service counter can settle it",
        code="dependant_of_another_account",
    )


async def _lapsed_without_consent(
    session: AsyncSession, dependant_id: uuid.UUID, settings: DependantSettings, now: dt.datetime
) -> bool:
    """Whether a family member's record is an adult's who never consented in time: it no
    longer holds their document against another guardian."""
    arrangement = (
        await session.execute(select(Guardianship).where(Guardianship.dependant_id == dependant_id))
    ).scalar_one_or_none()
    return (
        arrangement is not None
        and arrangement.state == "pending_consent"
        and now - arrangement.created_at >= dt.timedelta(hours=settings.pending_hours)
    )


async def _check_guardian(
    session: AsyncSession,
    deps: ProofingDeps,
    guardian_id: uuid.UUID,
    index: bytes,
    settings: DependantSettings,
    now: dt.datetime,
) -> None:
    # Locked: two additions at once must not both find room under the limit.
    await session.get(Resident, guardian_id, with_for_update=True)
    own = await session.get(Identity, guardian_id)
    if own is None or assurance.level(own.assurance) not in GUARDIAN_LEVELS:
        raise Forbidden(
            "prove your own identity before adding family members", code="guardian_unverified"
        )
    if own.doc_index == index:
        raise Conflict("this is your own document", code="dependant_is_guardian")
    birth = deps.pii.decrypt(
        own.birth_date_ct, key_id=own.key_id, context=f"identities.birth_date:{guardian_id}"
    )
    if _age(dt.date.fromisoformat(birth), local_date(now)) < settings.adult_age:
        raise Forbidden("only an adult can add family members", code="guardian_not_adult")
    held = (
        await session.execute(
            select(func.count())
            .select_from(Guardianship)
            .where(Guardianship.guardian_id == guardian_id, Guardianship.state.in_(LIVE))
        )
    ).scalar_one()
    if held >= settings.max_per_guardian:
        raise Conflict(
            f"an account holds at most {settings.max_per_guardian} family members",
            code="dependant_limit",
            fields=[
                {
                    "field": "dependants",
                    "reason": "limit",
                    "message": "the most family members one account holds",
                    "limit": settings.max_per_guardian,
                }
            ],
        )


async def _guardian_name(session: AsyncSession, guardian_id: uuid.UUID) -> str:
    identity = await session.get(Identity, guardian_id)
    return identity.masked_name if identity is not None else "*"


def _consent_text(
    *, name_of_guardian: str, relationship: str, code: str, settings: DependantSettings
) -> str:
    minutes = settings.consent_ttl_seconds // 60
    return (
        f"【粤康码】{name_of_guardian}申请以{RELATIONSHIP_WORDS[relationship]}身份为您代办健康码。"
        f"如同意，请将验证码 {code} 告诉对方，{minutes} 分钟内有效；如不同意，请勿告知。"
        "同意后，可用本手机号登录粤康码随时解除。"
    )


def _new_consent_code(
    arrangement: Guardianship,
    code: str,
    secret: str,
    settings: DependantSettings,
    now: dt.datetime,
) -> None:
    arrangement.consent_code_hash = _consent_hash(secret, arrangement.id, code)
    arrangement.consent_attempts = 0
    arrangement.consent_expires_at = now + dt.timedelta(seconds=settings.consent_ttl_seconds)


async def _view(
    session: AsyncSession, arrangement: Guardianship, *, rules: RuleSet, now: dt.datetime
) -> DependantView:
    identity = await session.get(Identity, arrangement.dependant_id)
    status: HealthStatus | None = None
    if identity is not None and arrangement.state == "active":
        status = await health_status.current(
            session, arrangement.dependant_id, rules=rules, now=now, lock=False
        )
    return DependantView(
        id=arrangement.id,
        relationship=arrangement.relationship,
        state=arrangement.state,
        consent=arrangement.consent,
        masked_name=identity.masked_name if identity else "*",
        doc_type=identity.doc_type if identity else "",
        assurance=identity.assurance if identity else assurance.UNVERIFIED,
        status=None if status is None else status.status,
        reason_codes=[] if status is None else list(status.reason_codes),
        valid_until=None if status is None else status.valid_until,
        created_at=arrangement.created_at,
        consent_by_sms=arrangement.phone_ct is not None,
        consent_expires_at=arrangement.consent_expires_at
        if arrangement.state == "pending_consent"
        else None,
    )


ANY_LIVE = (
    select(Guardianship.__table__.c.id)
    .where(
        Guardianship.__table__.c.guardian_id == bindparam("resident_id"),
        Guardianship.__table__.c.state.in_(LIVE),
    )
    .limit(1)
)
"""A row when the guardian holds a live arrangement: nearly always none, and the page asks at
every load (``fastlane.nothing_to_list``)."""


async def listing(
    session: AsyncSession, *, guardian_id: uuid.UUID, rules: RuleSet, now: dt.datetime
) -> list[DependantView]:
    """The guardian's family members, oldest arrangement first."""
    arrangements = (
        (
            await session.execute(
                select(Guardianship)
                .where(Guardianship.guardian_id == guardian_id, Guardianship.state.in_(LIVE))
                .order_by(Guardianship.created_at, Guardianship.id)
            )
        )
        .scalars()
        .all()
    )
    return [await _view(session, a, rules=rules, now=now) for a in arrangements]


async def held(
    session: AsyncSession,
    *,
    guardian_id: uuid.UUID,
    guardianship_id: uuid.UUID,
    active: bool = False,
) -> Guardianship:
    """The guardian's arrangement; someone else's (or an ended one) is "not found"."""
    arrangement = await session.get(Guardianship, guardianship_id)
    if (
        arrangement is None
        or arrangement.guardian_id != guardian_id
        or arrangement.state not in LIVE
    ):
        raise NotFound("no such family member", code="dependant_not_found")
    own = await session.get(Identity, guardian_id)
    if own is None or assurance.level(own.assurance) not in GUARDIAN_LEVELS:
        raise Forbidden(
            "prove your own identity before acting for family members", code="guardian_unverified"
        )
    if active and arrangement.state != "active":
        raise Conflict(
            "this family member has not consented yet: enter the code sent to their phone, or "
            "bring them to a service counter",
            code="consent_pending",
        )
    return arrangement


async def phone_index_of(session: AsyncSession, resident_id: uuid.UUID) -> bytes:
    """The blind index of the resident's phone: how arrangements made for them name them."""
    resident = await session.get(Resident, resident_id)
    if resident is None or resident.phone_index is None:
        raise NotFound("no such resident", code="resident_not_found")
    return resident.phone_index


async def holding_me(
    session: AsyncSession, *, resident_id: uuid.UUID, guardianship_id: uuid.UUID
) -> Guardianship:
    """A live arrangement in which someone holds the codes of ``resident_id`` (matched by the
    phone their record names); any other is "not found"."""
    index = await phone_index_of(session, resident_id)
    arrangement = await session.get(Guardianship, guardianship_id)
    if arrangement is None or arrangement.phone_index != index or arrangement.state not in LIVE:
        raise NotFound("no such arrangement", code="guardianship_not_found")
    return arrangement


async def live(session: AsyncSession, guardianship_id: uuid.UUID) -> Guardianship:
    """A live arrangement, for counter staff; an ended or unknown one is "not found"."""
    arrangement = await session.get(Guardianship, guardianship_id)
    if arrangement is None or arrangement.state not in LIVE:
        raise NotFound("no such family member", code="dependant_not_found")
    return arrangement


async def view(
    session: AsyncSession,
    *,
    guardian_id: uuid.UUID,
    guardianship_id: uuid.UUID,
    rules: RuleSet,
    now: dt.datetime,
) -> DependantView:
    arrangement = await held(session, guardian_id=guardian_id, guardianship_id=guardianship_id)
    return await _view(session, arrangement, rules=rules, now=now)


async def consent_by_code(
    session: AsyncSession,
    *,
    guardian_id: uuid.UUID,
    guardianship_id: uuid.UUID,
    code: str,
    otp_secret: str,
    settings: DependantSettings,
    rules: RuleSet,
    now: dt.datetime,
) -> DependantView | Refusal:
    """The adult family member's consent, as the code sent to their phone (read out to the
    guardian). Wrong guesses are counted, and kept, like sign-in codes'."""
    arrangement = await held(session, guardian_id=guardian_id, guardianship_id=guardianship_id)
    if arrangement.state != "pending_consent" or arrangement.consent_code_hash is None:
        raise Conflict(
            "no consent code is pending for this family member", code="consent_not_pending"
        )
    if arrangement.consent_expires_at is None or now >= arrangement.consent_expires_at:
        raise ValidationFailed(
            "the consent code has expired; ask for a new one", code="consent_code_expired"
        )
    counted = await session.execute(
        update(Guardianship)
        .where(
            Guardianship.id == arrangement.id,
            Guardianship.consent_attempts < settings.consent_max_attempts,
        )
        .values(consent_attempts=Guardianship.consent_attempts + 1)
        .returning(Guardianship.consent_attempts)
    )
    if counted.first() is None:
        raise ValidationFailed(
            "too many wrong codes; ask for a new one", code="consent_attempts_exceeded"
        )
    expected = _consent_hash(otp_secret, arrangement.id, code)
    if not hmac.compare_digest(arrangement.consent_code_hash, expected):
        return Refusal(ValidationFailed("wrong consent code", code="consent_code_wrong"))
    await _activate(session, arrangement, consent="sms", actor=Actor.resident(guardian_id), now=now)
    return await _view(session, arrangement, rules=rules, now=now)


async def _activate(
    session: AsyncSession,
    arrangement: Guardianship,
    *,
    consent: str,
    actor: Actor,
    now: dt.datetime,
    reason: str | None = None,
) -> None:
    arrangement.state = "active"
    arrangement.consent = consent
    arrangement.consented_at = now
    arrangement.consent_code_hash = None
    arrangement.consent_expires_at = None
    await audit.record(
        session,
        actor=actor,
        action="dependant.consent",
        subject_type="resident",
        subject_id=str(arrangement.dependant_id),
        now=now,
        detail={"guardianship": str(arrangement.id), "by": consent, "reason": reason},
    )


async def resend_consent(
    session: AsyncSession,
    deps: ProofingDeps,
    *,
    guardian_id: uuid.UUID,
    guardianship_id: uuid.UUID,
    otp_secret: str,
    settings: DependantSettings,
    now: dt.datetime,
) -> None:
    """A new consent code to the family member's phone (the old one stops working)."""
    arrangement = await held(session, guardian_id=guardian_id, guardianship_id=guardianship_id)
    await ratelimit.hit(
        session,
        bucket=f"consent:resend:{arrangement.id}",
        limit=settings.consent_resends_per_day,
        window_seconds=86400,
        now=now,
        what="consent codes sent for this family member",
    )
    if (
        arrangement.state != "pending_consent"
        or arrangement.phone_ct is None
        or arrangement.phone_key_id is None
    ):
        raise Conflict(
            "no phone was given for this family member's consent: bring them to a service counter",
            code="consent_phone_missing",
        )
    if arrangement.consent_expires_at is not None and arrangement.consent_expires_at - dt.timedelta(
        seconds=settings.consent_ttl_seconds
    ) > now - dt.timedelta(seconds=60):
        raise Conflict("a code was sent less than a minute ago", code="consent_resend_too_soon")
    phone = deps.pii.decrypt(
        arrangement.phone_ct,
        key_id=arrangement.phone_key_id,
        context=f"guardianships.phone:{arrangement.id}",
    )
    code = f"{secrets.randbelow(10**6):06d}"
    _new_consent_code(arrangement, code, otp_secret, settings, now)
    text = _consent_text(
        name_of_guardian=await _guardian_name(session, guardian_id),
        relationship=arrangement.relationship,
        code=code,
        settings=settings,
    )
    notify(session, deps.sms, phone, text)


async def consent_at_counter(
    session: AsyncSession,
    *,
    guardianship_id: uuid.UUID,
    reason: str,
    actor: Actor,
    rules: RuleSet,
    now: dt.datetime,
) -> DependantView:
    """Staff saw the family member (and their document) in person and recorded their consent."""
    arrangement = await session.get(Guardianship, guardianship_id)
    if arrangement is None or arrangement.state not in LIVE:
        raise NotFound("no such family member", code="dependant_not_found")
    if arrangement.state == "pending_consent":
        await _activate(
            session, arrangement, consent="counter", actor=actor, now=now, reason=reason
        )
    return await _view(session, arrangement, rules=rules, now=now)


async def end(
    session: AsyncSession,
    deps: ProofingDeps,
    *,
    arrangement: Guardianship,
    actor: Actor,
    reason: str,
    now: dt.datetime,
) -> None:
    """End an arrangement: the family member's binding is released and their codes revoked;
    the other side is told by SMS."""
    identity = await session.get(Identity, arrangement.dependant_id)
    guardian_phone = await account_phone(
        session,
        resident_id=arrangement.guardian_id,
        pii=deps.pii,
        actor=Actor.system("notice"),
        now=now,
        purpose="dependant_ended",
    )
    family_phone = (
        deps.pii.decrypt(
            arrangement.phone_ct,
            key_id=arrangement.phone_key_id,
            context=f"guardianships.phone:{arrangement.id}",
        )
        if arrangement.phone_ct is not None and arrangement.phone_key_id is not None
        else None
    )
    if identity is not None:
        await release_identity(
            session, identity=identity, to=None, reason=reason, pii=deps.pii, actor=actor, now=now
        )
    arrangement.state = "removed"
    arrangement.removed_at = now
    arrangement.removed_by = actor.label
    await audit.record(
        session,
        actor=actor,
        action="dependant.end",
        subject_type="resident",
        subject_id=str(arrangement.dependant_id),
        now=now,
        detail={"guardianship": str(arrangement.id), "reason": reason},
    )
    text = "【粤康码】一项亲友代办关系已解除，相关健康码已作废。如非本人操作，请到服务窗口办理。"
    if actor.type != "resident" or actor.id != str(arrangement.guardian_id):
        notify(session, deps.sms, guardian_phone, text)
    notify(session, deps.sms, family_phone, text)


@dataclass(frozen=True)
class GuardianView:
    id: uuid.UUID
    relationship: str
    state: str
    guardian_masked_name: str
    created_at: dt.datetime


async def naming_phone(
    session: AsyncSession, *, phone_index: bytes
) -> list[tuple[Guardianship, str]]:
    """The arrangements made for the person of this phone (an adult family member's own
    account sees them, and can end them)."""
    rows = await session.execute(
        select(Guardianship, Identity.masked_name)
        .join(Identity, Identity.resident_id == Guardianship.guardian_id)
        .where(Guardianship.phone_index == phone_index, Guardianship.state.in_(LIVE))
        .order_by(Guardianship.created_at)
    )
    return [(arrangement, name) for arrangement, name in rows.all()]
