"""A reference Hong Kong system: issues 港康碼 (``HK1:`` codes) and sends a person's code to
Guangdong to be converted into a 粤康码, as the 2022 scheme did (one way: it takes nothing back).

Minimal on purpose, and in memory: it exists to prove that a partner is added to yuekang as an
adapter (``yuekang.exchange.adapters.hongkong``) and to drive that adapter end to end over HTTP
in the tests, speaking the exchange protocol of docs/EXCHANGE.md with the same message builder
(:mod:`yuekang.exchange.messages`) and codec as every other side.

- ``GET /v1/exchange/keys``: its key document (``HK1`` format, a code key and an exchange key).
- ``POST /v1/people``: a person declares (name, HKID or permit, birth date, phone, the day of
  their latest negative test); answered with an ``HK1:`` code, green or the colour given.
- ``POST /v1/people/{id}/conversions``: with the person's consent, seal a conversion request
  to Guangdong's active encryption key and send it, signed, to
  ``{guangdong}/v1/exchange/hongkong/inbound``; Guangdong's answer is passed back.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from yuekang.codec.exchange import (
    REQUEST_PROOF_HEADER,
    EncryptionPublicKey,
    new_jti,
    seal_package,
    sign_request,
)
from yuekang.codec.hongkong import HongKongCodeClaims, sign_hongkong_code
from yuekang.codec.keys import SigningKey, b64url_encode
from yuekang.exchange import messages
from yuekang.residents.masking import mask_name

ISSUER = "HK"
INBOUND_PATH = "/v1/exchange/hongkong/inbound"
CODE_LIFETIME = 24 * 3600
PACKAGE_LIFETIME = 300
_CODED_AS = {"hkid": "HKID", "hk_macao_permit": "PERMIT", "passport": "PASSPORT"}


class Declaration(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    doc_type: Literal["hkid", "hk_macao_permit", "passport"]
    doc_number: str = Field(min_length=1, max_length=32)
    birth_date: dt.date
    phone: str = Field(pattern=messages.E164)
    nat_negative_on: dt.date | None = None
    colour: Literal["green", "amber", "red"] = "green"


class ConsentIn(BaseModel):
    accepted: bool
    recipient: str
    fields: list[str]


@dataclass
class Person:
    declaration: Declaration
    code: str


@dataclass
class HongKong:
    """The system's keys and people; ``now`` is its clock (UTC seconds)."""

    guangdong: httpx.AsyncClient
    """A client for Guangdong's service (its base URL set)."""
    now: Any = field(default=lambda: int(dt.datetime.now(dt.UTC).timestamp()))
    code_key: SigningKey = field(default_factory=SigningKey.generate)
    sig_key: SigningKey = field(default_factory=SigningKey.generate)
    people: dict[str, Person] = field(default_factory=dict)

    def key_document(self) -> dict[str, Any]:
        return {
            "issuer": ISSUER,
            "format": "HK1",
            "keys": [
                {**self.code_key.public().to_jwk(), "purpose": "code", "state": "active"},
                {**self.sig_key.public().to_jwk(), "purpose": "exchange", "state": "active"},
            ],
        }

    def declare(self, declaration: Declaration) -> tuple[str, str]:
        now = self.now()
        claims = HongKongCodeClaims(
            iss=ISSUER,
            jti=b64url_encode(secrets.token_bytes(16)),
            iat=now,
            exp=now + CODE_LIFETIME,
            st=declaration.colour,
            nm=mask_name(declaration.name),
            dt=_CODED_AS[declaration.doc_type],
            nat=None
            if declaration.nat_negative_on is None
            else declaration.nat_negative_on.isoformat(),
        )
        person_id = str(uuid.uuid4())
        code = sign_hongkong_code(claims, self.code_key)
        self.people[person_id] = Person(declaration, code)
        return person_id, code

    async def convert(self, person_id: str, consent: ConsentIn) -> httpx.Response:
        person = self.people.get(person_id)
        if person is None:
            raise HTTPException(404, "no such person")
        guangdong = await self._guangdong_keys()
        if not consent.accepted or consent.recipient != guangdong["issuer"]:
            raise HTTPException(422, f"the consent must name {guangdong['issuer']} and be given")
        now = self.now()
        declared = person.declaration
        request = messages.ConversionRequest(
            cid=str(uuid.uuid4()),
            subject=messages.Subject(
                name=declared.name,
                doc_type=declared.doc_type,
                doc_number=declared.doc_number,
                birth_date=declared.birth_date,
                phone=declared.phone,
            ),
            source=messages.Source(code=person.code),
            nat=None
            if declared.nat_negative_on is None
            else messages.Nat(sampled_on=declared.nat_negative_on, result="negative"),
            travel=messages.Travel(outside_region_14d=False),
            consent=messages.Consent(
                id=str(uuid.uuid4()),
                granted_at=now,
                recipient=guangdong["issuer"],
                purpose=messages.PURPOSE,
                text_version=messages.CONSENT_TEXT_VERSION,
                fields=consent.fields,
            ),
        )
        claims = messages.conversion_claims(
            request,
            iss=ISSUER,
            aud=guangdong["issuer"],
            iat=now,
            exp=now + PACKAGE_LIFETIME,
            jti=new_jti(),
        )
        body = messages.package_body(
            seal_package(claims, signer=self.sig_key, recipient=guangdong["enc"])
        )
        key = str(uuid.uuid4())
        proof = sign_request(
            signer=self.sig_key,
            issuer=ISSUER,
            method="POST",
            path=INBOUND_PATH,
            body=body,
            idempotency_key=key,
            now=now,
        )
        return await self.guangdong.post(
            INBOUND_PATH,
            content=body,
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": key,
                REQUEST_PROOF_HEADER: proof,
            },
        )

    async def _guangdong_keys(self) -> dict[str, Any]:
        response = await self.guangdong.get("/v1/exchange/keys")
        if response.status_code != 200:
            raise HTTPException(503, "Guangdong's keys are unavailable")
        document = response.json()
        [enc] = [
            k
            for k in document["keys"]
            if (k["purpose"], k["use"], k["state"]) == ("exchange", "enc", "active")
        ]
        jwk = {k: v for k, v in enc.items() if k not in ("purpose", "state")}
        return {"issuer": document["issuer"], "enc": EncryptionPublicKey.from_jwk(jwk)}


def create_app(system: HongKong) -> FastAPI:
    app = FastAPI(title="Reference Hong Kong health-code system")

    @app.get("/v1/exchange/keys")
    async def key_document() -> dict[str, Any]:
        return system.key_document()

    @app.post("/v1/people", status_code=201)
    async def declare(declaration: Declaration) -> dict[str, str]:
        person_id, code = system.declare(declaration)
        return {"person_id": person_id, "code": code}

    @app.post("/v1/people/{person_id}/conversions")
    async def convert(person_id: str, consent: ConsentIn) -> Any:
        response = await system.convert(person_id, consent)
        # Guangdong's answer, status and all: the person's screen shows the converted code or
        # the reason it was refused.
        return JSONResponse(response.json(), status_code=response.status_code)

    return app
