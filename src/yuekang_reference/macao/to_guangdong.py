"""Macao -> Guangdong: a resident's current green code converted, with their consent, into a
Guangdong one (EXCHANGE.md section 2). The sealed package goes to Guangdong directly, or through
the resident's browser."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

import httpx

from yuekang.codec.errors import InvalidCode
from yuekang.codec.exchange import new_jti, seal_package, sign_request
from yuekang.codec.keys import SigningKey
from yuekang.codec.macao import read_macao_code
from yuekang.exchange import messages
from yuekang.exchange.mapping import Unmapped
from yuekang_reference.macao import store
from yuekang_reference.macao.deps import MacaoDeps
from yuekang_reference.macao.errors import PartnerError
from yuekang_reference.macao.keys import (
    GuangdongDirectory,
    GuangdongKeys,
    GuangdongUnavailable,
    OwnKeys,
)
from yuekang_reference.macao.persons import Persons
from yuekang_reference.macao.schemas import CONSENT_FIELDS, ConversionIn
from yuekang_reference.macao.store import Consent, Conversion, Person

INBOUND_PATH: Final = "/v1/exchange/macao/inbound"


@dataclass(frozen=True)
class BrowserHandoff:
    conversion_id: str
    action: str
    package: str


class ToGuangdong:
    def __init__(
        self,
        deps: MacaoDeps,
        keys: OwnKeys,
        persons: Persons,
        guangdong: GuangdongDirectory,
        http: httpx.AsyncClient,
    ) -> None:
        self.deps = deps
        self.keys = keys
        self.persons = persons
        self.guangdong = guangdong
        self.http = http

    async def convert(self, request: ConversionIn) -> tuple[int, dict[str, Any]] | BrowserHandoff:
        """Seal the person's current code and details for Guangdong: delivered now (Guangdong's
        answer, or a refusal) or handed to the browser to post."""
        consent = request.consent
        if not consent.accepted:
            raise PartnerError(422, "consent_insufficient", "the person did not accept")
        now = self.deps.now()
        async with self.deps.sessionmaker() as session:
            person = await session.get(Person, str(request.person_id))
            if person is None:
                raise PartnerError(404, "not_found", "no such person")
            code = await store.latest_code(session, person.id)
            own_keys = await self.keys.code_verification_keys(session)
        if code is None:
            raise PartnerError(422, "no_current_code", "the person has no Macao code")
        try:
            read_macao_code(code.text, own_keys, now=now, leeway=0)
        except InvalidCode as exc:
            raise PartnerError(
                422,
                "no_current_code",
                "the person's Macao code is no longer valid: declare again",
                detail={"reason": exc.reason.value},
            ) from exc
        try:
            doc_type = self.deps.table.doc_type_from_macao(person.tdoc)
        except Unmapped as exc:
            raise PartnerError(422, "unmapped_document_type", str(exc)) from exc
        subject = self.persons.subject(person)
        guangdong = await self._guangdong_keys()
        if guangdong.enc_key is None:
            raise PartnerError(
                503, "partner_not_configured", "Guangdong publishes no active encryption key"
            )
        if subject.phone is None:
            # Guangdong opens an account with it (EXCHANGE.md section 2); every declaration
            # and every transfer here carries one, so only an old record can lack it.
            raise PartnerError(422, "phone_missing", "declare again with a phone number")
        sent = set(messages.FIELDS)
        if consent.recipient != guangdong.issuer or not sent <= set(consent.fields):
            raise PartnerError(
                422,
                "consent_insufficient",
                f"the consent must name {guangdong.issuer} and cover {', '.join(sorted(sent))}",
            )

        conversion_id, consent_id = str(uuid.uuid4()), str(uuid.uuid4())
        fields = [f for f in CONSENT_FIELDS if f in consent.fields]
        async with self.deps.sessionmaker() as session, session.begin():
            session.add(
                Conversion(
                    id=conversion_id,
                    person_id=person.id,
                    direction="outbound",
                    partner=guangdong.issuer,
                    delivery=request.delivery,
                    state="handed_over" if request.delivery == "browser" else "sending",
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                Consent(
                    id=consent_id,
                    conversion_id=conversion_id,
                    person_id=person.id,
                    direction="outbound",
                    recipient=guangdong.issuer,
                    purpose=messages.PURPOSE,
                    text_version=consent.text_version,
                    fields=json.dumps(fields),
                    granted_at=now,
                )
            )
            signer = await self.keys.exchange_signer(session)
        message = messages.ConversionRequest(
            cid=conversion_id,
            subject=messages.Subject(
                name=subject.name,
                doc_type=doc_type.value,
                doc_number=subject.doc_number,
                birth_date=dt.date.fromisoformat(subject.birth_date),
                phone=subject.phone,
            ),
            source=messages.Source(code=code.text),
            nat=(
                messages.Nat(
                    sampled_on=dt.date.fromisoformat(code.nat_negative_on), result="negative"
                )
                if code.nat_negative_on
                else None
            ),
            travel=messages.Travel(outside_region_14d=code.travel_14d),
            consent=messages.Consent(
                id=consent_id,
                granted_at=now,
                recipient=guangdong.issuer,
                purpose=messages.PURPOSE,
                text_version=consent.text_version,
                fields=fields,
            ),
        )
        claims = messages.conversion_claims(
            message,
            iss=self.deps.issuer,
            aud=guangdong.issuer,
            iat=now,
            exp=now + self.deps.settings.package_lifetime_seconds,
            jti=new_jti(),
        )
        package = seal_package(claims, signer=signer, recipient=guangdong.enc_key)
        action = f"{self.deps.settings.guangdong_url}{INBOUND_PATH}"
        if request.delivery == "browser":
            return BrowserHandoff(conversion_id, action, package)
        return await self._deliver(conversion_id, action, package, signer)

    async def _deliver(
        self, conversion_id: str, url: str, package: str, signer: SigningKey
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"package": package}).encode()
        proof = sign_request(
            signer=signer,
            issuer=self.deps.issuer,
            method="POST",
            path=httpx.URL(url).raw_path.decode("ascii"),
            body=body,
            idempotency_key=conversion_id,
            now=self.deps.now(),
        )
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": conversion_id,
            "Yuekang-Signature": proof,
        }
        try:
            response = await self.http.post(url, content=body, headers=headers)
            answer = response.json() if response.content else {}
        except (httpx.HTTPError, ValueError) as exc:
            await self._conversion_state(conversion_id, "failed", "guangdong_unreachable")
            raise _unreachable(
                conversion_id, f"Guangdong did not answer: {type(exc).__name__}"
            ) from exc
        if response.status_code >= 500 or not isinstance(answer, dict):
            await self._conversion_state(conversion_id, "failed", "guangdong_unreachable")
            raise _unreachable(conversion_id, f"Guangdong answered {response.status_code}")
        if response.is_success:
            partner_id = answer.get("conversion_id")
            await self._conversion_state(
                conversion_id,
                "completed",
                None,
                partner_id if isinstance(partner_id, str) else None,
            )
            return 201, {"conversion_id": conversion_id, "state": "completed", "guangdong": answer}
        error = answer.get("error", answer)
        code = error.get("code") if isinstance(error, dict) else None
        await self._conversion_state(
            conversion_id, "refused", code if isinstance(code, str) else "refused"
        )
        status = 409 if response.status_code == 409 else 422
        return status, {"conversion_id": conversion_id, "state": "refused", "error": error}

    async def _conversion_state(
        self, conversion_id: str, state: str, error: str | None, partner_id: str | None = None
    ) -> None:
        async with self.deps.sessionmaker() as session, session.begin():
            conversion = await session.get(Conversion, conversion_id)
            if conversion is not None:
                conversion.state, conversion.error_code = state, (error or "")[:64] or None
                conversion.partner_conversion_id = partner_id
                conversion.updated_at = self.deps.now()

    async def _guangdong_keys(self, *, refresh: bool = False) -> GuangdongKeys:
        try:
            return await self.guangdong.keys(refresh=refresh)
        except GuangdongUnavailable as exc:
            raise PartnerError(
                502, "guangdong_unreachable", f"Guangdong's keys are unavailable: {exc}"
            ) from exc


def _unreachable(conversion_id: str, message: str) -> PartnerError:
    return PartnerError(
        502, "guangdong_unreachable", message, extra={"conversion_id": conversion_id}
    )
