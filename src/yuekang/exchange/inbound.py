"""A conversion package from a partner, turned into a Guangdong code (docs/EXCHANGE.md).

The package arrives two ways -- sent by the partner's system (signed, with an Idempotency-Key)
or carried by the person's browser -- and is opened, verified and matched the same way. The
partner's code inside it is what the partner signed for its own gates, so the package's other
members must describe that code's person and test (:func:`_same_person`) before our
green-to-green conditions are checked and the person is matched by document and birth date.

Everything the conversion writes is in one savepoint: a refusal at any step keeps only the
refused conversion and its audit event (every transfer, refused or not, leaves one naming the
direction, the partner, the fields and the consent), and our own outage keeps nothing, so the
partner may send the same package again.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.auth.service import get_or_create_resident, normalize_phone, phone_index
from yuekang.clock import epoch, from_epoch, rfc3339
from yuekang.codec.errors import InvalidCode
from yuekang.codec.exchange import (
    REQUEST_WINDOW,
    ExchangeError,
    OpenedPackage,
    open_package,
    verify_request,
)
from yuekang.codec.formats import PartnerCode
from yuekang.db import savepoint
from yuekang.exceptions import (
    Conflict,
    Refusal,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
    YuekangError,
)
from yuekang.exchange import conditions, messages, partners, repository
from yuekang.exchange import keys as exchange_keys
from yuekang.exchange.adapters import PartnerTable
from yuekang.exchange.common import (
    ExchangeDeps,
    ExchangeRefused,
    partner_adapter,
    partner_table,
    partner_terms,
)
from yuekang.exchange.consent import check_inbound_consent
from yuekang.exchange.mapping import Unmapped
from yuekang.exchange.messages import FIELDS, ConversionRequest, Subject
from yuekang.exchange.models import ConsentReceipt, Conversion
from yuekang.exchange.partners import PartnerView
from yuekang.exchange.records import audit_conversion
from yuekang.health_codes import service as health_codes
from yuekang.health_status import service as health_status
from yuekang.principals import Actor
from yuekang.residents import assurance
from yuekang.residents import service as residents
from yuekang.residents.binding import RECLAIMED_SMS, notify
from yuekang.residents.documents import DocType, DocumentError, local_date, validate_document
from yuekang.residents.masking import mask_name
from yuekang.residents.models import Identity, Resident
from yuekang.rules import RuleSet


def _codec_error(exc: ExchangeError) -> YuekangError:
    if exc.status == 401:
        return Unauthorized(str(exc), code=exc.code, headers={})
    return ExchangeRefused(exc.code, str(exc), status=exc.status)


def parse_request(claims: Any) -> ConversionRequest:
    try:
        return messages.parse_request(claims)
    except messages.MessageMalformed as exc:
        raise ExchangeRefused("package_malformed", str(exc), status=400, fields=exc.fields) from exc


@dataclass(frozen=True)
class Signed:
    """A direct call's signature and what it signs."""

    proof: str | None
    method: str
    path: str
    body: bytes


@dataclass(frozen=True)
class Answer:
    """What a conversion is answered; kept, to be given again to a repeated Idempotency-Key."""

    status_code: int
    body: dict[str, Any]


async def _partner(session: AsyncSession, partner_id: str) -> PartnerView:
    partner = await partners.load(session, partner_id)
    if partner is None or not partner.sig_keys:
        raise ServiceUnavailable(
            f"the partner {partner_id!r} is not registered here", code="partner_not_configured"
        )
    return partner


async def receive_inbound(
    session: AsyncSession,
    *,
    partner_id: str,
    package: str,
    signed: Signed | None,
    idempotency_key: str | None,
    deps: ExchangeDeps,
    rules: RuleSet,
    now: dt.datetime,
) -> Answer | Refusal:
    """A conversion package from the partner, carried by the person's browser (``signed`` is
    None) or sent by the partner itself. A refusal that is remembered (a replayed package, a
    refused conversion with its audit) is a :class:`Refusal`; the savepoint has undone
    everything else the conversion wrote."""
    partner = await _partner(session, partner_id)
    if signed is not None:
        try:
            proof = verify_request(
                signed.proof,
                keys=partner.sig_keys,
                retired_kids=partner.retired_sig,
                method=signed.method,
                path=signed.path,
                body=signed.body,
                idempotency_key=idempotency_key,
                now=epoch(now),
            )
        except ExchangeError as exc:
            raise _codec_error(exc) from exc
        fresh = await repository.record_nonce(
            session,
            partner_id=partner.id,
            kind="request",
            jti=proof.jti,
            expires_at=now + dt.timedelta(seconds=2 * REQUEST_WINDOW),
        )
        if not fresh:
            raise Conflict("this request signature was used before", code="request_replayed")
    elif idempotency_key is not None:
        raise Unauthorized(
            "a call with an Idempotency-Key is a direct call and must be signed",
            code="signature_missing",
            headers={},
        )
    ours = await exchange_keys.our_keys(
        session, passphrase=deps.passphrase, cache=deps.key_cache, now=now
    )
    if ours is None:
        raise ServiceUnavailable(
            "no exchange keys yet: run `yuekang exchange keys init`",
            code="partner_not_configured",
        )
    try:
        opened = open_package(
            package,
            decryption_keys=ours.decryption,
            sender_keys=partner.sig_keys,
            retired_sender_kids=partner.retired_sig,
            issuer=partner.issuer,
            audience=deps.issuer,
            now=epoch(now),
            leeway=deps.leeway,
        )
    except ExchangeError as exc:
        raise _codec_error(exc) from exc
    jti = str(opened.claims["jti"])
    if idempotency_key is not None:
        replayed = await _replay(session, partner.id, idempotency_key, jti)
        if replayed is not None:
            return replayed
    fresh = await repository.record_nonce(
        session,
        partner_id=partner.id,
        kind="package",
        jti=jti,
        expires_at=from_epoch(int(opened.claims["exp"])) + dt.timedelta(seconds=deps.leeway),
    )
    if not fresh:
        if idempotency_key is not None:
            # The same call sent twice at once: the other one committed while we waited on
            # its nonce, so answer as it was answered.
            replayed = await _replay(session, partner.id, idempotency_key, jti)
            if replayed is not None:
                return replayed
        await _refused_early(session, partner.id, jti, "package_replayed", now)
        return Refusal(Conflict("this package was accepted before", code="package_replayed"))
    try:
        request = parse_request(opened.claims)
    except ExchangeRefused as exc:
        await _refused_early(session, partner.id, jti, exc.code, now)
        return Refusal(exc)
    conversion = Conversion(
        id=uuid.uuid4(),
        direction="inbound",
        partner_id=partner.id,
        state="refused",
        idempotency_key=idempotency_key,
        package_jti=jti,
        fields=json.dumps(sorted(set(request.consent.fields) & set(FIELDS))),
        created_at=now,
    )
    session.add(conversion)
    correlation = {"cid": request.cid, "jti": jti, "sender_kid": opened.sender_kid}
    # Everything the conversion writes (an account, a binding, a consent receipt, a code) is in
    # one savepoint: a refusal at any step leaves only the refused conversion and its audit.
    attempt = await savepoint(session)
    try:
        answer = await _convert_inbound(
            session,
            partner=partner,
            request=request,
            opened=opened,
            conversion=conversion,
            carried="partner" if signed is not None else "browser",
            correlation=correlation,
            deps=deps,
            rules=rules,
            now=now,
        )
    except YuekangError as exc:
        matched = conversion.resident_id
        await attempt.rollback()
        if exc.status_code >= 500:
            # Our own outage (no signing key, say): nothing is kept, the package stays unused,
            # and the partner may send it again.
            raise
        await session.refresh(conversion)
        if matched is not None and await session.get(Resident, matched) is not None:
            conversion.resident_id = matched  # an account that existed before
        conversion.error_code = exc.code
        conversion.response = json.dumps({**exc.body(), "status": exc.status_code})
        await audit_conversion(
            session,
            actor=Actor.partner(partner.id),
            action="exchange.inbound.refused",
            conversion=conversion,
            consent=request.consent.id,
            now=now,
            extra={"code": exc.code, **correlation},
        )
        return Refusal(exc)
    await attempt.commit()
    return answer


async def _replay(
    session: AsyncSession, partner_id: str, idempotency_key: str, jti: str
) -> Answer | None:
    """The first answer to a repeated Idempotency-Key, or None if the key is new."""
    earlier = await repository.conversion_by_key(session, partner_id, "inbound", idempotency_key)
    if earlier is None:
        return None
    if earlier.package_jti != jti or earlier.response is None:
        raise Conflict(
            "this Idempotency-Key was used with another package",
            code="idempotency_key_reused",
        )
    stored = json.loads(earlier.response)
    if earlier.state != "completed":
        # The same refusal again, with its status: never a 200 for a refusal.
        error = stored.get("error", {})
        raise ExchangeRefused(
            str(error.get("code") or earlier.error_code),
            str(error.get("message", "")),
            status=int(stored.get("status", 422)),
            fields=error.get("fields", ()),
        )
    return Answer(200, stored)


async def _refused_early(
    session: AsyncSession, partner_id: str, jti: str, code: str, now: dt.datetime
) -> None:
    """The audit of a package refused before it became a conversion (replayed, unreadable)."""
    await audit.record(
        session,
        actor=Actor.partner(partner_id),
        action="exchange.inbound.refused",
        subject_type="package",
        subject_id=jti,
        now=now,
        detail={"direction": "inbound", "partner": partner_id, "code": code, "jti": jti},
    )


async def _convert_inbound(
    session: AsyncSession,
    *,
    partner: PartnerView,
    request: ConversionRequest,
    opened: OpenedPackage,
    conversion: Conversion,
    carried: str,
    correlation: dict[str, str],
    deps: ExchangeDeps,
    rules: RuleSet,
    now: dt.datetime,
) -> Answer:
    check_inbound_consent(
        request.consent,
        recipient=deps.issuer,
        sealed_at=int(opened.claims["iat"]),
        leeway=deps.leeway,
    )
    exchange = partner_terms(rules, partner.id)
    adapter = partner_adapter(partner.id)
    table = partner_table(adapter, exchange)
    try:
        source = adapter.reader().read(
            request.source.code, partner.code_keys, now=epoch(now), leeway=deps.leeway
        )
    except InvalidCode as exc:
        raise ExchangeRefused(
            "source_code_invalid",
            f"the partner's code does not verify: {exc.reason.value}",
            fields=[{"field": "source.code", "reason": exc.reason.value, "message": str(exc)}],
        ) from exc
    if source.issuer != partner.issuer:
        raise ExchangeRefused("source_code_invalid", "the code is not the partner's own")
    _same_person(request, source, table)
    conversion.source_issuer = source.issuer
    conversion.source_kid = source.kid
    conversion.source_digest = source.digest
    nat_sampled_at = None
    if request.nat is not None:
        nat_sampled_at = conditions.start_of_day(request.nat.sampled_on, rules.utc_offset_hours)
        conversion.nat_sampled_on = request.nat.sampled_on
    problems = conditions.refusals(
        exchange.inbound,
        status=table.status_of(source.colour),
        nat_sampled_at=nat_sampled_at,
        nat_result=None if request.nat is None else request.nat.result,
        outside_region_days=[local_date(now)] if request.travel.outside_region_14d else [],
        now=now,
        today=local_date(now),
    )
    if problems:
        raise ExchangeRefused(
            problems[0],
            "the green-to-green conditions are not met: " + ", ".join(problems),
            fields=[{"field": "conditions", "reason": p, "message": p} for p in problems],
        )
    resident_id = await _match(
        session,
        subject=request.subject,
        partner_issuer=partner.issuer,
        actor=Actor.partner(partner.id),
        deps=deps,
        rules=rules,
        now=now,
    )
    conversion.resident_id = resident_id
    status = await health_status.current(session, resident_id, rules=rules, now=now)
    if status is None or status.status != "green":
        raise ExchangeRefused(
            "not_eligible_here", "a Guangdong code cannot be issued for this person now"
        )
    consent = ConsentReceipt(
        id=uuid.uuid4(),
        resident_id=resident_id,
        direction="inbound",
        partner_id=partner.id,
        recorded_by=partner.issuer,
        external_id=request.consent.id,
        recipient=request.consent.recipient,
        purpose=request.consent.purpose,
        fields=json.dumps(request.consent.fields),
        text_version=request.consent.text_version,
        granted_at=from_epoch(request.consent.granted_at),
    )
    session.add(consent)
    await session.flush()
    assert nat_sampled_at is not None
    conversion.consent_id = consent.id
    # The conversion holds while its test is in the window (the code it came from was checked
    # to be valid now; its own expiry may be far off or absurd, so it does not bound this).
    conversion.valid_until = nat_sampled_at + dt.timedelta(hours=exchange.inbound.nat_window_hours)
    conversion.state = "completed"
    conversion.completed_at = now
    await session.flush()
    issued = await health_codes.issue_code(
        session,
        resident_id=resident_id,
        idempotency_key=None,
        keyring=deps.keyring,
        issuer=deps.issuer,
        lifetime=deps.code_lifetime,
        rules=rules,
        now=now,
    )
    code = issued.code
    conversion.code_id = code.code_id
    body = {
        "conversion_id": str(conversion.id),
        "state": "completed",
        "code": {
            "code_id": code.code_id,
            "qr_text": code.qr_text,
            "status": code.status,
            "expires_at": rfc3339(code.expires_at),
            "source": {
                "issuer": source.issuer,
                "kid": source.kid,
                "digest": source.digest,
            },
        },
    }
    conversion.response = json.dumps(body, ensure_ascii=False)
    await audit_conversion(
        session,
        actor=Actor.partner(partner.id),
        action="exchange.inbound.completed",
        conversion=conversion,
        consent=request.consent.id,
        now=now,
        extra={"carried_by": carried, "code": code.code_id, **correlation},
    )
    return Answer(201, body)


def _same_person(request: ConversionRequest, code: PartnerCode, table: PartnerTable) -> None:
    """The package must describe the person and test of the code it carries: the code is what
    the partner signed for its own gates, the package's other members only ride along with it."""
    # The code's document type may be coarse (Macao's OUTRO stands for several of ours): the
    # package names the exact type, which must be one the table files under the code's type.
    try:
        coded_as = table.coded_doc_type(request.subject.doc_type)
    except Unmapped as exc:
        raise ExchangeRefused(
            "unmapped_document_type",
            f"document type {request.subject.doc_type!r} has no counterpart in the partner's codes",
        ) from exc
    mismatched = []
    if coded_as != code.doc_type:
        mismatched.append("subject.doc_type")
    if mask_name(request.subject.name) != code.masked_name:
        mismatched.append("subject.name")
    # The code carries the date of the latest negative test; a positive test is refused below
    # on its own merits, whatever the code says.
    negative = request.nat is not None and request.nat.result == "negative"
    if negative and request.nat is not None and request.nat.sampled_on != code.tested_on:
        mismatched.append("nat.sampled_on")
    if mismatched:
        raise ExchangeRefused(
            "source_mismatch",
            "the package does not describe the code it carries: " + ", ".join(mismatched),
            fields=[{"field": f, "reason": "mismatch", "message": f} for f in mismatched],
        )


async def _match(
    session: AsyncSession,
    *,
    actor: Actor,
    subject: Subject,
    partner_issuer: str,
    deps: ExchangeDeps,
    rules: RuleSet,
    now: dt.datetime,
) -> uuid.UUID:
    """The resident this person is, by document number and birth date; made when there is none.

    The account of the document wins, unless its binding was never proved (made before
    proofing existed): the partner proved this person, so that binding is released. Without an
    account, a new one is made for the phone, its identity vouched for by the partner
    (``partner:MO``) -- but never is a document bound into an account that already exists:
    whoever holds that account proved the phone to us, the package did not. That person signs
    in and binds the document themselves, then converts again."""
    try:
        doc_type = DocType(subject.doc_type)
    except ValueError as exc:
        raise ExchangeRefused(
            "unmapped_document_type", f"document type {subject.doc_type!r} is not known here"
        ) from exc
    try:
        number = validate_document(
            doc_type, subject.doc_number, subject.birth_date, today=local_date(now)
        )
    except DocumentError as exc:
        raise ExchangeRefused(
            "invalid_document",
            f"{exc.field}: {exc.message}",
            fields=[
                {"field": f"subject.{exc.field}", "reason": exc.reason, "message": exc.message}
            ],
        ) from exc
    index = residents.doc_index(deps.blind_index, doc_type, number)
    owner = (
        await session.execute(select(Identity).where(Identity.doc_index == index))
    ).scalar_one_or_none()
    if owner is not None and assurance.takes_over("partner", owner.assurance):
        # Bound before proofing existed and never proved: the partner proved this person, so
        # the holder, arriving through the partner, wins (docs/IDENTITY.md, reclaiming). The
        # account is told; the new account's phone is the partner's to have told.
        released = await residents.release_identity(
            session,
            identity=owner,
            to=None,
            reason="reclaimed_through_partner",
            pii=deps.pii,
            actor=actor,
            now=now,
        )
        notify(session, deps.sms, released.phone, RECLAIMED_SMS)
        owner = None
    if owner is not None:
        birth = deps.pii.decrypt(
            owner.birth_date_ct,
            key_id=owner.key_id,
            context=f"identities.birth_date:{owner.resident_id}",
        )
        if birth != subject.birth_date.isoformat():
            raise ExchangeRefused(
                "identity_mismatch",
                "this document is known here with another birth date",
                status=409,
            )
        return owner.resident_id
    try:
        phone = normalize_phone(subject.phone)
    except (ValueError, ValidationFailed) as exc:
        raise ExchangeRefused(
            "package_malformed",
            "the phone number is not usable",
            status=400,
            fields=[{"field": "subject.phone", "reason": "format", "message": str(exc)}],
        ) from exc
    index = phone_index(deps.blind_index, phone)
    if await residents.resident_by_phone_index(session, index) is not None:
        raise ExchangeRefused(
            "phone_in_use",
            "this phone has a Guangdong account: sign in, bind the document there, and convert "
            "again",
            status=409,
        )
    resident = await get_or_create_resident(
        session, phone=phone, index=index, pii=deps.pii, now=now
    )
    await audit.record(
        session,
        actor=actor,
        action="resident.create",
        subject_type="resident",
        subject_id=str(resident.id),
        now=now,
        detail={"via": "exchange.inbound"},
    )
    await residents.store_identity(
        session,
        resident_id=resident.id,
        name=subject.name,
        doc_type=doc_type,
        number=number,
        birth_date=subject.birth_date,
        assurance=assurance.partner(partner_issuer),
        proofing_ref=None,
        pii=deps.pii,
        blind_index=deps.blind_index,
        rules=rules,
        now=now,
        actor=actor,
    )
    return resident.id
