"""Binding an identity only after it is proved: the resident's own binding, and reclaiming a
document someone else bound.

``PUT /v1/me/identity`` asks the identity registry (residents/proofing.py) whether the population
register knows the name, document and birth date, and whether the carrier has the phone signing
in registered to that person. Only then is anything bound, at the level ``proofed``
(residents/assurance.py). The outcomes, each a documented answer (docs/IDENTITY.md):

- ``verified``: bound (201), or already bound to this account (200);
- ``identity_mismatch`` (422): the register does not know these details -- one message whatever
  the field, so that the answer cannot be used to find out which part of a guess was right;
- ``phone_not_registered_to_holder`` (422): the person exists but this phone is not theirs at the
  carrier; a family member can add them (dependants) or a counter can verify them in person;
- ``proofing_unavailable`` (503, ``Retry-After``): the registry could not be asked; nothing bound;
- ``document_already_bound`` (409): another account holds the document and passed proofing too.

Reclaiming: when the document is bound to an account that never passed the same proofing
(``unverified``, or a family member's record made by a guardian), the holder wins -- that binding
is released, its codes revoked, both phones told. When the other account did pass proofing, the
carrier is asked whether that account's phone is still registered to the document's holder; a
number the holder no longer has (a changed or recycled number) loses the document too.

The registry is called between two transactions, never inside one: no row lock, and on SQLite
not the database's write lock, is held while it answers. What the second transaction finds is
checked again, so a binding made meanwhile by another request is not overwritten. Every attempt
is counted against three rate limits (the account, the document's blind index, the client's
address), recorded and audited whatever its outcome.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Literal, NoReturn

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang import metrics, ratelimit
from yuekang.audit import service as audit
from yuekang.auth.service import get_or_create_resident, phone_index
from yuekang.auth.sms import SmsDeliveryError, SmsSender
from yuekang.codec.proofing import Person, Purpose
from yuekang.config import ProofingSettings
from yuekang.db import after_commit, transaction
from yuekang.exceptions import (
    Conflict,
    Refusal,
    ServiceUnavailable,
    TooManyRequests,
    ValidationFailed,
    YuekangError,
)
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.principals import Actor
from yuekang.residents import assurance
from yuekang.residents.documents import DocType, local_date
from yuekang.residents.masking import mask_doc_number
from yuekang.residents.models import Identity, ProofingAttempt, Resident
from yuekang.residents.proofing import IdentityProofing, ProofingResult, ProofingUnavailable
from yuekang.residents.service import (
    MaskedIdentity,
    account_phone,
    doc_index,
    release_identity,
    store_identity,
    validated_number,
)
from yuekang.rules import RuleSet

log = logging.getLogger("yuekang.identity")

Outcome = Literal[
    "verified",
    "identity_mismatch",
    "phone_not_registered_to_holder",
    "proofing_unavailable",
    "document_already_bound",
    "rate_limited",
]

PROOFING_RETRY_AFTER_SECONDS = 30

RECLAIMED_SMS = (
    "【粤康码】您账号绑定的证件已由证件本人实名核验后绑定到其本人账号，本账号的绑定已解除，"
    "健康码已作废。如有疑问，请携带证件到服务窗口办理。"
)
RECLAIMING_SMS = "【粤康码】您的证件此前被其他账号绑定，现已解除，并绑定到您当前登录的账号。"
GUARDIAN_RELEASED_SMS = (
    "【粤康码】您代办的一位家人的证件已由其本人或另一位家人重新核验绑定，您的代办关系已结束。"
)


def identity_mismatch() -> YuekangError:
    # One message and no fields, whichever detail was wrong: the answer is no oracle.
    return ValidationFailed(
        "the details do not match the population register; check the name, document number "
        "and birth date as printed on the document",
        code="identity_mismatch",
    )


def phone_not_registered() -> YuekangError:
    return ValidationFailed(
        "this phone number is not registered to the document's holder at their carrier: a "
        "family member can add you to their account, or a service counter can verify you in "
        "person",
        code="phone_not_registered_to_holder",
    )


def proofing_unavailable() -> YuekangError:
    return ServiceUnavailable(
        "the identity registry cannot be reached; nothing was bound: try again shortly",
        code="proofing_unavailable",
        headers={"Retry-After": str(PROOFING_RETRY_AFTER_SECONDS)},
    )


def document_held() -> YuekangError:
    return Conflict(
        "this document is bound to another account that passed real-name verification; bring "
        "the document to a service counter",
        code="document_already_bound",
    )


@dataclass(frozen=True)
class ProofingDeps:
    """What a proofing flow needs from the running service."""

    sessionmaker: async_sessionmaker[AsyncSession]
    proofing: IdentityProofing
    pii: PiiCipher
    blind_index: BlindIndex
    sms: SmsSender
    settings: ProofingSettings


@dataclass(frozen=True)
class Bound:
    identity: MaskedIdentity
    created: bool
    """False when the account already held this document, proved (200)."""
    reclaimed: bool
    """True when another account's binding was released for this one."""


@dataclass(frozen=True)
class Holder:
    resident_id: uuid.UUID
    assurance: str


async def bind_proofed(
    deps: ProofingDeps,
    *,
    resident_id: uuid.UUID,
    name: str,
    doc_type: DocType,
    doc_number: str,
    birth_date: dt.date,
    client_address: str,
    rules: RuleSet,
    now: dt.datetime,
) -> Bound | Refusal:
    """The resident's own binding, proved against the registry with the phone they signed in
    with (see the module's docstring for the outcomes). A refusal whose attempt is recorded in
    the same transaction as the limits it counted is returned as a :class:`Refusal`."""
    number = validated_number(doc_type, doc_number, birth_date, today=local_date(now))
    index = doc_index(deps.blind_index, doc_type, number)
    actor = Actor.resident(resident_id)
    async with transaction(deps.sessionmaker) as session:
        mine = await session.get(Identity, resident_id)
        if mine is not None and assurance.may_have_codes(mine.assurance):
            if mine.doc_index != index:
                raise Conflict(
                    "an identity is already bound to this account", code="identity_already_bound"
                )
            number_shown = mask_doc_number(number)
            return Bound(_shown(mine, number_shown), created=False, reclaimed=False)
        attempt = Attempt(deps, resident_id, "bind", doc_type, index, number, now)
        limited = await attempt.count(session, client_address)
        if limited is not None:
            return limited
        phone = await account_phone(
            session, resident_id=resident_id, pii=deps.pii, actor=actor, now=now, purpose="proofing"
        )
        holder = await holder_of(session, index, other_than=resident_id)
    if phone is None:
        raise Conflict("this account has no phone to prove", code="phone_required")
    person = Person(name=name, doc_type=doc_type.value, doc_number=number, birth_date=birth_date)

    result = await attempt.ask(person, phone)
    await attempt.limited_unless_verified(result)
    if not result.identity_matches:
        await attempt.fail("identity_mismatch", result, identity_mismatch())
    if not result.phone_matches:
        await attempt.fail("phone_not_registered_to_holder", result, phone_not_registered())

    # The other account passed proofing too: is its phone still the holder's?
    recheck_cleared: uuid.UUID | None = None
    if holder is not None and not assurance.takes_over("self", holder.assurance):
        if await _still_holders_phone(deps, attempt, holder, person, now):
            await attempt.fail("document_already_bound", result, document_held())
        recheck_cleared = holder.resident_id

    async with transaction(deps.sessionmaker) as session:
        mine = await session.get(Identity, resident_id)
        if mine is not None and assurance.may_have_codes(mine.assurance):
            # Another request of this account bound something while the registry answered.
            if mine.doc_index != index:
                raise Conflict(
                    "an identity is already bound to this account", code="identity_already_bound"
                )
            return Bound(_shown(mine, mask_doc_number(number)), created=False, reclaimed=False)
        other = (
            await session.execute(
                select(Identity).where(
                    Identity.doc_index == index, Identity.resident_id != resident_id
                )
            )
        ).scalar_one_or_none()
        reclaimed = False
        if other is not None:
            if not (
                assurance.takes_over("self", other.assurance)
                or other.resident_id == recheck_cleared
            ):
                # Bound by another request while the registry answered.
                await attempt.record(session, "document_already_bound", result)
                return Refusal(document_held())
            released = await release_identity(
                session,
                identity=other,
                to=resident_id,
                reason="reclaimed_by_holder",
                pii=deps.pii,
                actor=actor,
                now=now,
            )
            notify(session, deps.sms, released.phone, RECLAIMED_SMS)
            notify(session, deps.sms, released.guardian_phone, GUARDIAN_RELEASED_SMS)
            notify(session, deps.sms, phone, RECLAIMING_SMS)
            reclaimed = True
        identity = await store_identity(
            session,
            resident_id=resident_id,
            name=name,
            doc_type=doc_type,
            number=number,
            birth_date=birth_date,
            assurance=assurance.PROOFED,
            proofing_ref=result.reference,
            pii=deps.pii,
            blind_index=deps.blind_index,
            rules=rules,
            now=now,
            actor=actor,
        )
        await attempt.record(session, "verified", result)
    return Bound(identity, created=True, reclaimed=reclaimed)


def _shown(identity: Identity, masked_number: str) -> MaskedIdentity:
    return MaskedIdentity(
        doc_type=identity.doc_type,
        masked_name=identity.masked_name,
        masked_doc_number=masked_number,
        bound_at=identity.bound_at,
        assurance=identity.assurance,
        proofed_at=identity.proofed_at,
    )


async def holder_of(
    session: AsyncSession, index: bytes, *, other_than: uuid.UUID | None
) -> Holder | None:
    query = select(Identity.resident_id, Identity.assurance).where(Identity.doc_index == index)
    if other_than is not None:
        query = query.where(Identity.resident_id != other_than)
    row = (await session.execute(query)).one_or_none()
    return None if row is None else Holder(row.resident_id, row.assurance)


async def _still_holders_phone(
    deps: ProofingDeps, attempt: Attempt, holder: Holder, person: Person, now: dt.datetime
) -> bool:
    """Whether the phone of the account holding the document is still registered to the
    document's holder. Asked only once the caller has passed proofing as that holder, so it
    tells nobody else anything about another account's phone."""
    async with transaction(deps.sessionmaker) as session:
        phone = await account_phone(
            session,
            resident_id=holder.resident_id,
            pii=deps.pii,
            actor=Actor.system("proofing"),
            now=now,
            purpose="recheck_by_document_holder",
        )
    if phone is None:
        return False
    result = await attempt.ask(person, phone, purpose="recheck")
    return result.identity_matches and result.phone_matches


class Attempt:
    """One proofing attempt: asks the registry, and records and audits the outcome."""

    def __init__(
        self,
        deps: ProofingDeps,
        resident_id: uuid.UUID | None,
        purpose: Purpose,
        doc_type: DocType,
        index: bytes,
        number: str,
        now: dt.datetime,
        *,
        actor: Actor | None = None,
    ) -> None:
        self.deps = deps
        self.resident_id = resident_id
        self.purpose = purpose
        self.doc_type = doc_type
        self.index = index
        self.masked = mask_doc_number(number)
        self.now = now
        self.actor = actor or (
            Actor.resident(resident_id) if resident_id else Actor.system("proofing")
        )
        self.counted: list[tuple[str, int]] = []
        self.document_limited: TooManyRequests | None = None

    async def count(self, session: AsyncSession, client_address: str) -> Refusal | None:
        """Three limits on attempts, each a 429 with Retry-After past it: per account, per
        document (by blind index: one person's document tried from many accounts), per address.
        A refused attempt is recorded too, with the counts, in the caller's transaction, and
        answered as a :class:`Refusal` for the caller to return once that transaction commits.

        Past the document's limit, a resident binding their own document is still asked about
        (:attr:`document_limited`): failures from other accounts must not lock the holder out,
        and whoever is not the holder gets the same 429 whatever the registry said, so the
        limit still stops guessing (:meth:`limited_unless_verified`)."""
        settings = self.deps.settings
        limits = [
            (
                f"proof:acct:{self.resident_id or self.actor.id}",
                settings.per_account_limit,
                settings.per_account_window_seconds,
                "identity verifications for this account",
            ),
            (
                "proof:doc:" + self.index.hex()[:40],
                settings.per_document_limit,
                settings.per_document_window_seconds,
                "identity verifications for this document",
            ),
            (
                "proof:client:" + client_address[:64],
                settings.per_client_limit,
                settings.per_client_window_seconds,
                "identity verifications from this address",
            ),
        ]
        try:
            for bucket, limit, window, what in limits:
                try:
                    await ratelimit.hit(
                        session,
                        bucket=bucket,
                        limit=limit,
                        window_seconds=window,
                        now=self.now,
                        what=what,
                    )
                except TooManyRequests as exc:
                    if not (bucket.startswith("proof:doc:") and self.purpose == "bind"):
                        raise
                    self.document_limited = exc
                self.counted.append((bucket, window))
        except TooManyRequests as exc:
            await self.record(session, "rate_limited", None)
            return Refusal(exc)
        return None

    async def limited_unless_verified(self, result: ProofingResult) -> None:
        """Past the document's limit only the holder, proved by the registry and the carrier,
        goes on; anyone else gets the 429, whatever the registry said."""
        if self.document_limited is not None and not (
            result.identity_matches and result.phone_matches
        ):
            await self.fail("rate_limited", result, self.document_limited)

    async def ask(
        self, person: Person, phone: str | None, *, purpose: Purpose | None = None
    ) -> ProofingResult:
        try:
            return await self.deps.proofing.check(
                person=person, phone=phone, purpose=purpose or self.purpose
            )
        except ProofingUnavailable:
            # Not the resident's attempt that failed but the registry: it does not count.
            await self.fail("proofing_unavailable", None, proofing_unavailable(), refund=True)

    async def fail(
        self,
        outcome: Outcome,
        result: ProofingResult | None,
        error: YuekangError,
        *,
        refund: bool = False,
    ) -> NoReturn:
        """Record the attempt in a transaction of its own and raise ``error``; with ``refund``,
        take back what it counted against the limits."""
        async with transaction(self.deps.sessionmaker) as session:
            await self.record(session, outcome, result)
            if refund:
                for bucket, window in self.counted:
                    await ratelimit.refund(
                        session, bucket=bucket, window_seconds=window, now=self.now
                    )
        raise error

    async def record(
        self, session: AsyncSession, outcome: Outcome, result: ProofingResult | None
    ) -> None:
        after_commit(session, metrics.proofing(outcome).inc)
        session.add(
            ProofingAttempt(
                at=self.now,
                resident_id=self.resident_id,
                purpose=self.purpose,
                doc_type=self.doc_type.value,
                doc_index=self.index,
                masked_doc_number=self.masked,
                outcome=outcome,
                backend=self.deps.proofing.name,
                reference=None if result is None else result.reference,
            )
        )
        await audit.record(
            session,
            actor=self.actor,
            action="identity.proofing",
            subject_type="resident",
            subject_id=str(self.resident_id) if self.resident_id else "-",
            now=self.now,
            detail={
                "purpose": self.purpose,
                "outcome": outcome,
                "doc_type": self.doc_type.value,
                "backend": self.deps.proofing.name,
                "reference": None if result is None else result.reference,
            },
        )


def notify(session: AsyncSession, sms: SmsSender, phone: str | None, text: str) -> None:
    """Send ``text`` to ``phone`` once the transaction commits. A notice that cannot be sent is
    logged, not raised: what it tells of has happened and is in the audit log."""
    if phone is None:
        return

    async def send() -> None:
        try:
            await sms.send(phone, text)
        except SmsDeliveryError:
            log.warning("a notice could not be sent by SMS", exc_info=True)

    after_commit(session, send)


COUNTER_SMS = (
    "【粤康码】您的证件已在服务窗口经工作人员核验，并绑定到本手机号。"
    "如非本人办理，请立即到服务窗口反映。"
)


@dataclass(frozen=True)
class CounterBound:
    resident_id: uuid.UUID
    identity: MaskedIdentity
    reclaimed: bool
    new_account: bool


async def bind_at_counter(
    session: AsyncSession,
    deps: ProofingDeps,
    *,
    phone: str | None,
    name: str,
    doc_type: DocType,
    doc_number: str,
    birth_date: dt.date,
    reason: str,
    actor: Actor,
    rules: RuleSet,
    now: dt.datetime,
) -> CounterBound:
    """Staff saw the person and their document: bind it to the account of ``phone`` (made if
    the person never signed in), or to a record without a phone for someone who has none.
    Counter staff settle what the automated checks cannot, so the document is taken from any
    other account, which is told. No registry is asked, so this runs in the request's own
    transaction; the reason is audited."""
    number = validated_number(doc_type, doc_number, birth_date, today=local_date(now))
    index = doc_index(deps.blind_index, doc_type, number)
    new_account = False
    if phone is None:
        resident = Resident(id=uuid.uuid4(), created_at=now)
        session.add(resident)
        await session.flush()
        new_account = True
    else:
        phone_idx = phone_index(deps.blind_index, phone)
        found = (
            await session.execute(select(Resident).where(Resident.phone_index == phone_idx))
        ).scalar_one_or_none()
        new_account = found is None
        resident = found or await get_or_create_resident(
            session, phone=phone, index=phone_idx, pii=deps.pii, now=now
        )
    mine = await session.get(Identity, resident.id)
    if mine is not None and mine.doc_index != index and assurance.may_have_codes(mine.assurance):
        raise Conflict(
            "this phone's account holds another proved document; end that first",
            code="identity_already_bound",
        )
    other = (
        await session.execute(
            select(Identity).where(Identity.doc_index == index, Identity.resident_id != resident.id)
        )
    ).scalar_one_or_none()
    reclaimed = other is not None
    if other is not None:
        released = await release_identity(
            session,
            identity=other,
            to=resident.id,
            reason="settled_at_counter",
            pii=deps.pii,
            actor=actor,
            now=now,
        )
        notify(session, deps.sms, released.phone, RECLAIMED_SMS)
        notify(session, deps.sms, released.guardian_phone, GUARDIAN_RELEASED_SMS)
    identity = await store_identity(
        session,
        resident_id=resident.id,
        name=name,
        doc_type=doc_type,
        number=number,
        birth_date=birth_date,
        assurance=assurance.COUNTER,
        proofing_ref=actor.label[:64],
        pii=deps.pii,
        blind_index=deps.blind_index,
        rules=rules,
        now=now,
        actor=actor,
    )
    session.add(
        ProofingAttempt(
            at=now,
            resident_id=resident.id,
            purpose="counter",
            doc_type=doc_type.value,
            doc_index=index,
            masked_doc_number=mask_doc_number(number),
            outcome="verified",
            backend="counter",
            reference=actor.label[:64],
        )
    )
    await audit.record(
        session,
        actor=actor,
        action="identity.counter",
        subject_type="resident",
        subject_id=str(resident.id),
        now=now,
        detail={
            "doc_type": doc_type.value,
            "reason": reason,
            "reclaimed": reclaimed,
            "new_account": new_account,
            "has_phone": phone is not None,
        },
    )
    notify(session, deps.sms, phone, COUNTER_SMS)
    return CounterBound(resident.id, identity, reclaimed, new_account)


FAILURES = (
    "identity_mismatch",
    "phone_not_registered_to_holder",
    "document_already_bound",
    "rate_limited",
)


@dataclass(frozen=True)
class Alert:
    doc_type: str
    masked_doc_number: str
    failures: int
    accounts: int
    first_at: dt.datetime
    last_at: dt.datetime


async def alerts(
    session: AsyncSession, *, settings: ProofingSettings, actor: Actor, now: dt.datetime
) -> list[Alert]:
    """Documents that failed proofing ``alert_failures`` times or more within the alert window,
    from any accounts: someone trying a person's document. Most failures first. Reading them
    is audited (they are about people, if only by masked number)."""
    since = now - dt.timedelta(seconds=settings.alert_window_seconds)
    failures = func.count(ProofingAttempt.id)
    rows = await session.execute(
        select(
            ProofingAttempt.doc_type,
            func.max(ProofingAttempt.masked_doc_number),
            failures,
            func.count(distinct(ProofingAttempt.resident_id)),
            func.min(ProofingAttempt.at),
            func.max(ProofingAttempt.at),
        )
        .where(ProofingAttempt.at >= since, ProofingAttempt.outcome.in_(FAILURES))
        .group_by(ProofingAttempt.doc_index, ProofingAttempt.doc_type)
        .having(failures >= settings.alert_failures)
        .order_by(failures.desc(), func.max(ProofingAttempt.at).desc())
        .limit(200)
    )
    found = [Alert(*row) for row in rows.all()]
    await audit.record(
        session,
        actor=actor,
        action="identity.alerts.read",
        subject_type="proofing",
        subject_id="-",
        now=now,
        detail={"alerts": len(found), "window_seconds": settings.alert_window_seconds},
    )
    return found
