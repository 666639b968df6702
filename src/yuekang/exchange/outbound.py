"""A resident's conversion to a partner: decided in their request, delivered by the outbox.

The request checks the consent and our conditions, then writes the conversion, the consent
receipt and the outbox message in one transaction (:mod:`yuekang.exchange.outbox` sends it
later, outside any transaction), so nothing is sent for a request that rolled back and nothing
decided is forgotten. The conditions are checked again when the message leaves
(:func:`check_outbound`): a status can change while a partner is down.

A refused attempt is part of the record: its audit event (naming the direction, the partner
and the fields) is kept, and nothing else the attempt wrote is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import logs
from yuekang.audit import service as audit
from yuekang.clock import epoch
from yuekang.db import savepoint
from yuekang.exceptions import (
    Conflict,
    NotFound,
    Refusal,
    ServiceUnavailable,
    YuekangError,
)
from yuekang.exchange import conditions, partners, repository
from yuekang.exchange.common import ExchangeDeps, ExchangeRefused, partner_terms
from yuekang.exchange.consent import OutboundConsent, check_outbound_consent
from yuekang.exchange.messages import FIELDS, PURPOSE
from yuekang.exchange.models import ConsentReceipt, Conversion, OutboxMessage
from yuekang.exchange.partners import PartnerView
from yuekang.exchange.records import audit_conversion
from yuekang.feeds.models import TravelRecord
from yuekang.health_status import service as health_status
from yuekang.health_status.models import HealthStatus
from yuekang.principals import Actor
from yuekang.residents import assurance
from yuekang.residents.documents import local_date
from yuekang.residents.models import Identity, Resident
from yuekang.rules import RuleSet
from yuekang.rules.ruleset import PartnerExchange


async def outside_region_days(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    home_regions: list[str],
    since: dt.date,
) -> list[dt.date]:
    """Days the travel feed places this person outside the region since ``since``."""
    identity = await session.get(Identity, resident_id)
    if identity is None:
        return []
    rows = await session.execute(
        select(TravelRecord.region_code, TravelRecord.date).where(
            TravelRecord.person == identity.doc_index, TravelRecord.date >= since
        )
    )
    return [
        day
        for region, day in rows.all()
        if not any(region.startswith(prefix) for prefix in home_regions)
    ]


async def request_outbound(
    session: AsyncSession,
    *,
    partner_id: str,
    resident_id: uuid.UUID,
    consent: OutboundConsent,
    idempotency_key: str,
    deps: ExchangeDeps,
    rules: RuleSet,
    now: dt.datetime,
) -> tuple[Conversion, bool] | Refusal:
    """Queue a conversion to the partner; ``(conversion, replayed)``. A refusal is audited
    and returned as a :class:`Refusal` (an attempted transfer is part of the record); nothing
    else it wrote is kept."""
    # Scoped to the resident, and hashed so that any key the header allows fits the column.
    scoped_key = hashlib.sha256(f"{resident_id}:{idempotency_key}".encode()).hexdigest()
    earlier = await repository.conversion_by_key(session, partner_id, "outbound", scoped_key)
    if earlier is not None:
        return earlier, True
    partner = await partners.load(session, partner_id)
    if partner is None or partner.enc_key is None or not partner.sig_keys:
        raise ServiceUnavailable(
            "conversion to this partner is not available", code="partner_not_configured"
        )
    # A status that lapsed is decided again here, outside the savepoint: that change (and the
    # revocations a worse status brings) stands whatever refusal the transfer meets.
    status = await health_status.current(session, resident_id, rules=rules, now=now)
    # A refusal keeps its audit event only: whatever the attempt wrote is undone first.
    attempt = await savepoint(session)
    try:
        queued = await _queue_outbound(
            session,
            partner=partner,
            resident_id=resident_id,
            consent=consent,
            scoped_key=scoped_key,
            status=status,
            deps=deps,
            rules=rules,
            now=now,
        )
    except YuekangError as exc:
        await attempt.rollback()
        if exc.status_code >= 500:
            raise
        await audit.record(
            session,
            actor=Actor.resident(resident_id),
            action="exchange.outbound.refused",
            subject_type="resident",
            subject_id=str(resident_id),
            now=now,
            detail={
                "direction": "outbound",
                "partner": partner.id,
                "fields": [f for f in consent.fields if f in FIELDS],
                "code": exc.code,
            },
        )
        return Refusal(exc)
    await attempt.commit()
    return queued


async def _queue_outbound(
    session: AsyncSession,
    *,
    partner: PartnerView,
    resident_id: uuid.UUID,
    consent: OutboundConsent,
    scoped_key: str,
    status: HealthStatus | None,
    deps: ExchangeDeps,
    rules: RuleSet,
    now: dt.datetime,
) -> tuple[Conversion, bool]:
    check_outbound_consent(consent, recipient=partner.issuer)
    if await session.get(Identity, resident_id) is None:
        raise Conflict("bind an identity document first", code="identity_required")
    terms = partner_terms(rules, partner.id)
    await check_outbound(session, resident_id=resident_id, status=status, terms=terms, now=now)
    conversion = Conversion(
        id=uuid.uuid4(),
        direction="outbound",
        partner_id=partner.id,
        resident_id=resident_id,
        state="queued",
        idempotency_key=scoped_key,
        fields=json.dumps(list(FIELDS)),
        created_at=now,
    )
    try:
        async with session.begin_nested():
            session.add(conversion)
    except IntegrityError:
        # The same key raced in from another request: answer with that one.
        raced = await repository.conversion_by_key(session, partner.id, "outbound", scoped_key)
        assert raced is not None
        return raced, True
    receipt = ConsentReceipt(
        id=uuid.uuid4(),
        resident_id=resident_id,
        direction="outbound",
        partner_id=partner.id,
        recorded_by=deps.issuer,
        recipient=consent.recipient,
        purpose=PURPOSE,
        fields=json.dumps(list(FIELDS)),
        text_version=consent.text_version,
        granted_at=now,
    )
    session.add(receipt)
    await session.flush()
    conversion.consent_id = receipt.id
    payload = {
        "typ": "conversion.request",
        "consent": {
            "id": str(receipt.id),
            "granted_at": epoch(now),
            "recipient": consent.recipient,
            "purpose": PURPOSE,
            "text_version": consent.text_version,
            "fields": list(FIELDS),
        },
    }
    message_id = uuid.uuid4()
    ciphertext, key_id = deps.pii.encrypt(
        json.dumps(payload), context=f"outbox.payload:{message_id}"
    )
    session.add(
        OutboxMessage(
            id=message_id,
            partner_id=partner.id,
            conversion_id=conversion.id,
            kind="conversion.request",
            payload_ct=ciphertext,
            key_id=key_id,
            state="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            request_id=logs.request_id(),
        )
    )
    # The session does not autoflush: the answer reads the message back.
    await session.flush()
    await audit_conversion(
        session,
        actor=Actor.resident(resident_id),
        action="exchange.outbound.requested",
        conversion=conversion,
        consent=str(receipt.id),
        now=now,
    )
    return conversion, False


async def check_outbound(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    status: HealthStatus | None,
    terms: PartnerExchange,
    now: dt.datetime,
) -> None:
    """Our green-to-green conditions for sending this person to the partner, now, given their
    status as decided now (``health_status.current``). Only a proved identity goes: we vouch
    for the person to the partner (docs/IDENTITY.md)."""
    identity = await session.get(Identity, resident_id)
    resident = await session.get(Resident, resident_id)
    if identity is None:
        raise Conflict("bind an identity document first", code="identity_required")
    if not assurance.may_convert(identity.assurance) or resident is None or not resident.phone_ct:
        raise Conflict(
            "only an identity proved against the registry, at a counter or by a partner may be "
            "converted; prove it first (PUT /v1/me/identity)",
            code="identity_unverified",
        )
    today = local_date(now)
    problems = conditions.refusals(
        terms.outbound,
        status="none" if status is None else status.status,
        nat_sampled_at=None if status is None else status.nat_sampled_at,
        nat_result=None if status is None else status.nat_result,
        outside_region_days=await outside_region_days(
            session,
            resident_id=resident_id,
            home_regions=terms.home_regions,
            since=today - dt.timedelta(days=terms.outbound.no_travel_days),
        ),
        now=now,
        today=today,
    )
    if problems:
        code = "status_not_green" if problems[0] == "source_not_green" else problems[0]
        raise ExchangeRefused(
            code,
            "the conditions for a conversion are not met: " + ", ".join(problems),
            fields=[{"field": "conditions", "reason": p, "message": p} for p in problems],
        )


async def get_outbound(
    session: AsyncSession, *, resident_id: uuid.UUID, partner_id: str, conversion_id: uuid.UUID
) -> tuple[Conversion, OutboxMessage | None]:
    """The resident's own conversion to this partner and its message; anyone else's is not
    found, so that a conversion id tells nothing about another person."""
    conversion = await session.get(Conversion, conversion_id)
    if (
        conversion is None
        or conversion.direction != "outbound"
        or conversion.resident_id != resident_id
        or conversion.partner_id != partner_id
    ):
        raise NotFound("no such conversion", code="conversion_not_found")
    return conversion, await repository.message_of(session, conversion.id)
