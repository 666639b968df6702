"""A fake Macao for the Guangdong side of the exchange (docs/EXCHANGE.md).

Macao is built from the codec alone: its code key (``MO1:`` codes), its exchange signing key, its
encryption key and the key document it would publish. It is registered with the app under test
the way an operator would (``partners.save`` with the parsed document), and builds packages and
request signatures exactly as the protocol says a partner does.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import select

from conftest import RunningApp
from feeds.feedkit import days_ago, error_code, ndjson, push
from yuekang.audit.models import AuditEvent
from yuekang.clock import epoch
from yuekang.codec.exchange import (
    REQUEST_PROOF_HEADER,
    EncryptionKey,
    EncryptionPublicKey,
    new_jti,
    seal_package,
    sign_request,
)
from yuekang.codec.keys import SigningKey, VerificationKey
from yuekang.codec.macao import MacaoCodeClaims, sign_macao_code
from yuekang.exchange import messages, partners
from yuekang.exchange.mapping import load_table
from yuekang.exchange.models import Conversion
from yuekang.principals import Actor
from yuekang.residents.masking import mask_name

MO = "MO"
GD = "yk:gd"
PARTNER = "macao"
MACAO_URL = "http://macao.test"
INBOUND = "/v1/exchange/macao/inbound"
OUTBOUND = "/v1/exchange/macao/outbound"
FIELDS = list(messages.FIELDS)
PURPOSE = messages.PURPOSE
TEXT_VERSION = messages.CONSENT_TEXT_VERSION


def _entry(jwk: dict[str, Any], purpose: str, state: str = "active") -> dict[str, Any]:
    return {**jwk, "purpose": purpose, "state": state}


@dataclass
class FakeMacao:
    """Macao's keys and what it sends."""

    code_key: SigningKey = field(default_factory=SigningKey.generate)
    sig_key: SigningKey = field(default_factory=SigningKey.generate)
    enc_key: EncryptionKey = field(default_factory=EncryptionKey.generate)

    def key_document(self, *extra_sig: SigningKey) -> dict[str, Any]:
        return {
            "issuer": MO,
            "format": "MO1",
            "keys": [
                _entry(self.code_key.public().to_jwk(), "code"),
                _entry(self.sig_key.public().to_jwk(), "exchange"),
                *(_entry(k.public().to_jwk(), "exchange") for k in extra_sig),
                _entry(self.enc_key.public().to_jwk(), "exchange"),
            ],
        }

    def code_keys(self) -> dict[str, VerificationKey]:
        """Macao's code keys, as a checkpoint would trust them."""
        public = self.code_key.public()
        return {
            public.kid: VerificationKey(kid=public.kid, alg="ES256", public_key=public.public_key)
        }

    def code(
        self,
        now: int,
        *,
        cor: str = "verde",
        key: SigningKey | None = None,
        tdoc: str = "BIR",
        tan: str | None = None,
        lifetime: int = 6 * 3600,
        nome: str = "陳*文",
    ) -> str:
        """A Macao health code (``MO1:``), issued at ``now``."""
        claims = MacaoCodeClaims(
            iss=MO,
            cti=new_jti(),
            iat=now,
            exp=now + lifetime,
            cor=cor,  # type: ignore[arg-type]
            nome=nome,
            tdoc=tdoc,
            tan=tan,
        )
        return sign_macao_code(claims, key or self.code_key)

    def seal(
        self,
        claims: dict[str, Any],
        recipient: EncryptionPublicKey,
        *,
        signer: SigningKey | None = None,
    ) -> str:
        return seal_package(claims, signer=signer or self.sig_key, recipient=recipient)

    def sign(
        self,
        body: bytes,
        now: int,
        *,
        idempotency_key: str | None,
        path: str = INBOUND,
        signer: SigningKey | None = None,
        jti: str | None = None,
    ) -> str:
        return sign_request(
            signer=signer or self.sig_key,
            issuer=MO,
            method="POST",
            path=path,
            body=body,
            idempotency_key=idempotency_key,
            now=now,
            jti=jti,
        )


MACAO = FakeMacao()
"""The one Macao every test registers: tests that share a database then agree on its keys."""


async def register(running: RunningApp, macao: FakeMacao = MACAO, *extra_sig: SigningKey) -> None:
    """Register (or re-sync) Macao as an operator would, from its key document."""
    document = partners.parse_key_document(macao.key_document(*extra_sig))
    async with running.context.sessionmaker() as session, session.begin():
        await partners.save(
            session,
            partner_id=PARTNER,
            base_url=MACAO_URL,
            document=document,
            actor=Actor.cli(),
            now=running.context.clock.now(),
        )


async def retire(running: RunningApp, kid: str) -> None:
    async with running.context.sessionmaker() as session, session.begin():
        await partners.retire_key(
            session,
            partner_id=PARTNER,
            kid=kid,
            actor=Actor.cli(),
            now=running.context.clock.now(),
        )


@dataclass(frozen=True)
class OurKeys:
    """Guangdong's key document, as a partner reads it."""

    document: dict[str, Any]
    enc: EncryptionPublicKey
    sig: VerificationKey


async def our_keys(running: RunningApp) -> OurKeys:
    response = await running.client.get("/v1/exchange/keys")
    assert response.status_code == 200, response.text
    document = response.json()
    exchange = [
        k for k in document["keys"] if k["purpose"] == "exchange" and k["state"] == "active"
    ]
    enc = [k for k in exchange if k["use"] == "enc"]
    sig = [k for k in exchange if k["use"] == "sig"]
    assert len(enc) == 1, document
    assert len(sig) == 1, document
    return OurKeys(
        document=document,
        enc=EncryptionPublicKey.from_jwk(_bare(enc[0])),
        sig=VerificationKey.from_jwk(_bare(sig[0]), issuer=document["issuer"]),
    )


def _bare(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in ("purpose", "state")}


def now_s(running: RunningApp) -> int:
    return epoch(running.context.clock.now())


def macao_id() -> str:
    """A Macao resident ID number (BIR): 8 digits, starting with 1, 5 or 7."""
    return random.choice("157") + "".join(random.choices("0123456789", k=7))


def macao_phone() -> str:
    return "+8536" + "".join(random.choices("0123456789", k=7))


def subject(**changes: Any) -> dict[str, Any]:
    person = {
        "name": "陳大文",
        "doc_type": "macao_id",
        "doc_number": macao_id(),
        "birth_date": "1990-01-02",
        "phone": macao_phone(),
    }
    person.update(changes)
    return person


def consent(**changes: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "granted_at": 0,
        "recipient": GD,
        "purpose": PURPOSE,
        "text_version": TEXT_VERSION,
        "fields": list(FIELDS),
    }
    value.update(changes)
    return value


def claims(
    running: RunningApp, macao: FakeMacao = MACAO, *, lifetime: int = 300, **changes: Any
) -> dict[str, Any]:
    """A conversion request from Macao to us, valid now: a green Macao code, a negative test two
    days ago, no travel, a consent covering everything. ``changes`` replace top-level members;
    unless ``source`` is one of them, the Macao code is made to match the package (document
    type, masked name, test date), with ``code`` changing it (``{"cor": "amarelo"}``)."""
    code_changes: dict[str, Any] = changes.pop("code", {})
    now = now_s(running)
    # Built as Macao builds it; ``changes`` then make it whatever a test needs, valid or not.
    request = messages.ConversionRequest(
        cid=str(uuid.uuid4()),
        subject=messages.Subject.model_validate(subject()),
        source=messages.Source(code="(made below)"),
        nat=messages.Nat.model_validate({"sampled_on": days_ago(running, 2), "result": "negative"}),
        travel=messages.Travel(outside_region_14d=False),
        consent=messages.Consent.model_validate(consent(granted_at=now - 10)),
    )
    body = messages.conversion_claims(
        request, iss=MO, aud=GD, iat=now, exp=now + lifetime, jti=new_jti()
    )
    body.update(changes)
    if "source" not in changes:
        issued = code_changes.pop("now", now)
        body["source"] = {"code": macao.code(issued, **{**matching(body), **code_changes})}
    return body


def matching(body: dict[str, Any]) -> dict[str, Any]:
    """The Macao code claims that describe the package's person and test, as Macao would sign."""
    person, nat = body.get("subject"), body.get("nat")
    claims: dict[str, Any] = {}
    if isinstance(person, dict):
        if isinstance(person.get("name"), str) and person["name"]:
            claims["nome"] = mask_name(person["name"])
        doc_type = person.get("doc_type")
        table = load_table().documents_to_macao
        claims["tdoc"] = table.get(doc_type, "OUTRO") if isinstance(doc_type, str) else "OUTRO"
        if claims["tdoc"] == "unmapped":
            claims["tdoc"] = "OUTRO"
    negative = isinstance(nat, dict) and nat.get("result") == "negative"
    claims["tan"] = nat["sampled_on"] if negative else None  # type: ignore[index]
    return claims


@dataclass
class Sent:
    """A direct call as sent, and the answer."""

    response: httpx.Response
    body: bytes
    headers: dict[str, str]
    package: str

    @property
    def status(self) -> int:
        return self.response.status_code

    @property
    def code(self) -> str | None:
        return error_code(self.response)[1]

    def json(self) -> Any:
        return self.response.json()


async def send(
    running: RunningApp,
    package: str,
    *,
    macao: FakeMacao = MACAO,
    idempotency_key: str | None = "",
    signer: SigningKey | None = None,
    signed_at: int | None = None,
    body: bytes | None = None,
    proof: str | None = "",
) -> Sent:
    """Macao's direct call: ``{"package": ...}``, an Idempotency-Key (a fresh one unless given;
    ``None`` for none) and a request signature over exactly this body (``body`` replaces what is
    sent after signing; ``proof`` replaces the signature, ``None`` for none)."""
    if idempotency_key == "":
        idempotency_key = uuid.uuid4().hex
    signed_body = json.dumps({"package": package}).encode()
    if proof == "":
        proof = macao.sign(
            signed_body,
            now_s(running) if signed_at is None else signed_at,
            idempotency_key=idempotency_key,
            signer=signer,
        )
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    if proof is not None:
        headers[REQUEST_PROOF_HEADER] = proof
    sent = signed_body if body is None else body
    response = await running.client.post(INBOUND, content=sent, headers=headers)
    return Sent(response=response, body=sent, headers=headers, package=package)


async def carry(running: RunningApp, package: str, **headers: str) -> httpx.Response:
    """The person's browser posting Macao's form."""
    return await running.client.post(
        INBOUND,
        content=urlencode({"package": package}).encode("ascii"),
        headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
    )


async def feed(running: RunningApp, kind: str, *rows: dict[str, Any]) -> None:
    """Rows a feed must take, every one of them."""
    key = await running.feed_key(kind)
    result = await push(running, key, kind, ndjson(*rows), idempotency_key=uuid.uuid4().hex)
    assert result["rows_accepted"] == len(rows), result


async def stored_conversion(running: RunningApp, conversion_id: str) -> Conversion:
    async with running.context.sessionmaker() as session:
        found = await session.get(Conversion, uuid.UUID(conversion_id))
        assert found is not None
        return found


async def audit_events(running: RunningApp, *actions: str) -> list[AuditEvent]:
    async with running.context.sessionmaker() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if actions:
            query = query.where(AuditEvent.action.in_(actions))
        return list((await session.execute(query)).scalars())
