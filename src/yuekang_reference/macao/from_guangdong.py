"""Guangdong -> Macao: Guangdong delivers a conversion package (a signed request carrying a
sealed package, EXCHANGE.md sections 4 and 7); a green Guangdong code with a recent negative
test becomes a Macao code. Every check of the request and the package is here, in order:
Idempotency-Key, request signature, replay, package, consent, source code, test, travel."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.clock import epoch
from yuekang.codec.errors import InvalidCode
from yuekang.codec.exchange import (
    REQUEST_WINDOW,
    ExchangeError,
    UnknownSenderKey,
    open_package,
    verify_request,
)
from yuekang.codec.healthcode import read_health_code
from yuekang.codec.keys import b64url_encode
from yuekang.codec.macao import source_digest
from yuekang.exchange import messages
from yuekang.exchange.mapping import Unmapped
from yuekang.residents.documents import DocType, DocumentError, validate_document
from yuekang_reference.macao import store
from yuekang_reference.macao.codes import MacaoCodes
from yuekang_reference.macao.deps import MacaoDeps
from yuekang_reference.macao.errors import PartnerError, document_error
from yuekang_reference.macao.keys import (
    GuangdongDirectory,
    GuangdongKeys,
    GuangdongUnavailable,
    OwnKeys,
)
from yuekang_reference.macao.persons import Persons, Subject
from yuekang_reference.macao.store import Consent, Conversion, IdempotentAnswer

T = TypeVar("T")

LEEWAY: Final = 60
_UTC8: Final = dt.timezone(dt.timedelta(hours=8))
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")


class FromGuangdong:
    def __init__(
        self,
        deps: MacaoDeps,
        keys: OwnKeys,
        persons: Persons,
        codes: MacaoCodes,
        guangdong: GuangdongDirectory,
    ) -> None:
        self.deps = deps
        self.keys = keys
        self.persons = persons
        self.codes = codes
        self.guangdong = guangdong

    async def receive(
        self,
        *,
        body: bytes,
        method: str,
        target: str,
        idempotency_key: str | None,
        proof: str | None,
    ) -> tuple[int, dict[str, Any]]:
        """Check a delivery and answer it: 201 with the Macao code, or 200 with the answer
        already given to the same Idempotency-Key."""
        if not idempotency_key:
            raise PartnerError(400, "idempotency_key_required", "send an Idempotency-Key header")
        if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise PartnerError(
                400, "idempotency_key_invalid", "an Idempotency-Key is 1-255 printable characters"
            )
        now = self.deps.now()

        async def verified(guangdong: GuangdongKeys) -> tuple[GuangdongKeys, str, int]:
            checked = verify_request(
                proof,
                keys=guangdong.sig_keys,
                retired_kids=guangdong.retired_sig_kids,
                method=method,
                path=target,
                body=body,
                idempotency_key=idempotency_key,
                now=now,
            )
            return guangdong, checked.jti, checked.iat

        guangdong, request_jti, request_iat = await self._with_guangdong_keys(verified)
        body_hash = _sha256(body)
        async with self.deps.sessionmaker() as session:
            stored = await store.idempotent_answer(session, guangdong.issuer, idempotency_key)
        if stored is not None and stored.body_hash == body_hash:
            return 200, stored.answer_json()

        async with self.deps.sessionmaker() as session:
            fresh = await store.remember_jti(
                session,
                kind="request",
                issuer=guangdong.issuer,
                jti=request_jti,
                expires_at=request_iat + 2 * REQUEST_WINDOW,
                now=now,
            )
        if not fresh:
            raise PartnerError(409, "request_replayed", "this request signature was used before")

        package = _package_of(body)
        decryption_keys = await self.keys.decryption_keys(now)

        async def opened(keys: GuangdongKeys) -> Mapping[str, Any]:
            return open_package(
                package,
                decryption_keys=decryption_keys,
                sender_keys=keys.sig_keys,
                retired_sender_kids=keys.retired_sig_kids,
                issuer=keys.issuer,
                audience=self.deps.issuer,
                now=now,
                leeway=LEEWAY,
            ).claims

        claims = await self._with_guangdong_keys(opened)
        async with self.deps.sessionmaker() as session:
            fresh = await store.remember_jti(
                session,
                kind="package",
                issuer=guangdong.issuer,
                jti=claims["jti"],
                expires_at=claims["exp"] + LEEWAY,
                now=now,
            )
        if not fresh:
            raise PartnerError(409, "package_replayed", "this package was accepted before")

        request = _conversion_request(claims)
        message_hash = _sha256(_canonical({"cid": request.cid, "subject": claims["subject"]}))
        if stored is not None:
            # Guangdong's outbox seals a fresh package (new jti, new source code) for every
            # attempt under one Idempotency-Key: the same conversion of the same person gets
            # the answer already given, anything else under that key is a client bug.
            return _repeat(stored, message_hash)
        return await self._convert(
            guangdong,
            request,
            now=now,
            key=idempotency_key,
            body_hash=body_hash,
            message_hash=message_hash,
        )

    async def _with_guangdong_keys(self, check: Callable[[GuangdongKeys], Awaitable[T]]) -> T:
        """``check`` with Guangdong's keys; once more with a fresh copy if it names a key we do
        not know (Guangdong may have rotated since we fetched)."""
        try:
            try:
                return await check(await self.guangdong.keys())
            except UnknownSenderKey:
                return await check(await self.guangdong.keys(refresh=True))
        except ExchangeError as exc:
            raise PartnerError(exc.status, exc.code, exc.detail) from exc
        except GuangdongUnavailable as exc:
            raise PartnerError(
                503, "partner_not_configured", f"Guangdong's keys are unavailable: {exc}"
            ) from exc

    async def _convert(
        self,
        guangdong: GuangdongKeys,
        request: messages.ConversionRequest,
        *,
        now: int,
        key: str,
        body_hash: str,
        message_hash: str,
    ) -> tuple[int, dict[str, Any]]:
        consent, sent = request.consent, _sent(request)
        issuer = self.deps.issuer
        if (
            consent.recipient != issuer
            or consent.purpose != messages.PURPOSE
            or not sent <= set(consent.fields)
        ):
            raise PartnerError(
                422,
                "consent_insufficient",
                f"the consent must name {issuer} and cover {', '.join(sorted(sent))}",
            )
        try:
            source = read_health_code(request.source.code, guangdong.code_keys, now=now)
        except InvalidCode as exc:
            raise PartnerError(
                422,
                "source_code_invalid",
                f"the Guangdong code does not verify: {exc.detail}",
                detail={"reason": exc.reason.value},
            ) from exc
        if source.claims.st != "green":
            raise PartnerError(422, "source_not_green", "only a green code is converted")
        self._check_nat(request.nat, now)
        if request.travel.outside_region_14d:
            raise PartnerError(
                422, "travel_outside_region", "the person was outside the region in 14 days"
            )
        subject = Subject(
            name=request.subject.name,
            doc_type=request.subject.doc_type,
            doc_number=request.subject.doc_number,
            birth_date=request.subject.birth_date.isoformat(),
            phone=request.subject.phone,
        )
        try:
            # Any exchange type the table maps is taken, OUTRO included (a PRC ID becomes an
            # "other document" here); only the way back to Guangdong is closed for OUTRO.
            tdoc = self.deps.table.doc_type_to_macao(subject.doc_type)
        except Unmapped as exc:
            raise PartnerError(422, "unmapped_document_type", str(exc)) from exc
        try:
            number = validate_document(
                DocType(subject.doc_type),
                subject.doc_number,
                dt.date.fromisoformat(subject.birth_date),
                today=self.deps.today(),
            )
        except DocumentError as exc:
            raise document_error(exc) from exc
        subject = dataclasses.replace(subject, doc_number=number)
        nat = request.nat.sampled_on.isoformat() if request.nat else None
        digest = source_digest(request.source.code)

        async def work(session: AsyncSession) -> tuple[int, dict[str, Any]]:
            person = await self.persons.upsert(session, subject, tdoc, now)
            conversion_id = str(uuid.uuid4())
            session.add(
                Conversion(
                    id=conversion_id,
                    person_id=person.id,
                    direction="inbound",
                    partner=guangdong.issuer,
                    delivery="direct",
                    state="completed",
                    partner_conversion_id=request.cid,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                Consent(
                    id=str(uuid.uuid4()),
                    external_id=consent.id,
                    conversion_id=conversion_id,
                    person_id=person.id,
                    direction="inbound",
                    recipient=consent.recipient,
                    purpose=consent.purpose,
                    text_version=consent.text_version,
                    fields=json.dumps(sorted(consent.fields)),
                    granted_at=consent.granted_at,
                )
            )
            code = await self.codes.issue(
                session,
                person,
                name=subject.name,
                colour=self.deps.table.colour_of(source.claims.st),
                nat_negative_on=nat,
                travel_14d=False,
                now=now,
                conversion_id=conversion_id,
                source=(source.claims.iss, source.kid, digest),
            )
            answer = {
                "conversion_id": conversion_id,
                "code": code.text,
                "colour": code.colour,
                "expires_at": code.exp,
            }
            session.add(
                IdempotentAnswer(
                    issuer=guangdong.issuer,
                    key=key,
                    body_hash=body_hash,
                    message_hash=message_hash,
                    status=201,
                    answer=json.dumps(answer),
                    created_at=now,
                )
            )
            return 201, answer

        try:
            return await self.deps.transaction(work)
        except IntegrityError:
            # The same Idempotency-Key answered by a concurrent request: its answer is ours.
            async with self.deps.sessionmaker() as session:
                stored = await store.idempotent_answer(session, guangdong.issuer, key)
            if stored is None:
                raise
            return _repeat(stored, message_hash)

    def _check_nat(self, nat: messages.Nat | None, now: int) -> None:
        if nat is None:
            raise PartnerError(422, "nat_missing", "no nucleic-acid test was sent")
        if nat.result != "negative":
            raise PartnerError(422, "nat_not_negative", "the latest test is not negative")
        sampled = nat.sampled_on
        if sampled > self.deps.today():
            raise PartnerError(400, "package_malformed", "the test was sampled in the future")
        # Only the day is known: the test counts from that day's start in Macao (UTC+8), the
        # reading under which it can only be younger than judged.
        start = dt.datetime.combine(sampled, dt.time(0), tzinfo=_UTC8)
        window = self.deps.settings.nat_window_hours
        if now - epoch(start) > window * 3600:
            raise PartnerError(422, "nat_too_old", f"the test is older than {window} hours")


# --- parsing what Guangdong sent ----------------------------------------------------------------


def _package_of(body: bytes) -> str:
    try:
        return messages.package_of(body)
    except messages.MessageMalformed as exc:
        raise PartnerError(400, exc.code, str(exc)) from exc


def _conversion_request(claims: Mapping[str, Any]) -> messages.ConversionRequest:
    """The members of a conversion request, checked for shape only (EXCHANGE.md section 2)."""
    try:
        return messages.parse_request(claims)
    except messages.MessageMalformed as exc:
        raise PartnerError(400, "package_malformed", str(exc), fields=exc.fields) from exc


def _sent(request: messages.ConversionRequest) -> frozenset[str]:
    """The fields a request carries, as a consent names them: a test only when there is one."""
    return frozenset(f for f in messages.FIELDS if f != "nat" or request.nat is not None)


def _repeat(stored: IdempotentAnswer, message_hash: str) -> tuple[int, dict[str, Any]]:
    if stored.message_hash != message_hash:
        raise PartnerError(
            409, "idempotency_key_reused", "this Idempotency-Key was used with another package"
        )
    return 200, stored.answer_json()


def _sha256(data: bytes) -> str:
    return b64url_encode(hashlib.sha256(data).digest())


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
