"""The reference Macao system against a fake Guangdong.

The fake Guangdong is built from the codec alone (its own code, signing and encryption keys, a key
document and an inbound endpoint that checks what Macao sends it) and reached through an
``httpx.MockTransport`` given to ``create_app``; Macao itself is driven through its ASGI app with a
manual clock.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from yuekang.clock import ManualClock, epoch
from yuekang.codec.exchange import (
    REQUEST_PROOF_HEADER,
    EncryptionKey,
    EncryptionPublicKey,
    new_jti,
    open_package,
    seal_package,
    sign_request,
    verify_request,
)
from yuekang.codec.healthcode import HealthCodeClaims, sign_health_code
from yuekang.codec.keys import SigningKey, VerificationKey
from yuekang.exchange import messages
from yuekang_reference.macao import MacaoSettings, create_app

GD = "yk:gd"
GD_URL = "http://guangdong.test"
INBOUND = "/v1/exchange/guangdong/inbound"
CONSENT_FIELDS = list(messages.FIELDS)
BIR = "12345678"
TEST_PII_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


@dataclass
class FakeGuangdong:
    """Guangdong as Macao meets it: a key document and an inbound endpoint."""

    code_key: SigningKey = field(default_factory=SigningKey.generate)
    sig_key: SigningKey = field(default_factory=SigningKey.generate)
    enc_key: EncryptionKey = field(default_factory=EncryptionKey.generate)
    retired_sig_keys: list[SigningKey] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    macao_keys: dict[str, Any] | None = None
    """Macao's key document, for checking what it sends."""
    answer: Callable[[dict[str, Any]], httpx.Response] | None = None
    now: Callable[[], int] = lambda: 0
    key_fetches: int = 0
    down: bool = False

    def key_document(self) -> dict[str, Any]:
        def entry(jwk: dict[str, Any], purpose: str, state: str = "active") -> dict[str, Any]:
            return {**jwk, "purpose": purpose, "state": state}

        return {
            "issuer": GD,
            "format": "YK1",
            "keys": [
                entry(self.code_key.public().to_jwk(), "code"),
                entry(self.sig_key.public().to_jwk(), "exchange"),
                *(entry(k.public().to_jwk(), "exchange", "retired") for k in self.retired_sig_keys),
                entry(self.enc_key.public().to_jwk(), "exchange"),
            ],
        }

    def health_code(self, status: str = "green", *, iat: int | None = None) -> str:
        iat = self.now() if iat is None else iat
        claims = HealthCodeClaims(
            iss=GD, jti=new_jti(), iat=iat, exp=iat + 3600, st=status, nm="陳*文"
        )
        return sign_health_code(claims, self.code_key)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/v1/exchange/keys":
            self.key_fetches += 1
            return httpx.Response(200, json=self.key_document())
        if request.url.path == "/v1/exchange/macao/inbound" and request.method == "POST":
            return self.inbound(request)
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})

    def inbound(self, request: httpx.Request) -> httpx.Response:
        """What Guangdong does with a direct delivery, up to opening the package."""
        assert self.macao_keys is not None, "load Macao's key document first"
        sig_keys = {
            k["kid"]: VerificationKey.from_jwk(k, issuer=self.macao_keys["issuer"])
            for k in self.macao_keys["keys"]
            if k["purpose"] == "exchange" and k["use"] == "sig"
        }
        body = request.read()
        proof = verify_request(
            request.headers.get(REQUEST_PROOF_HEADER),
            keys=sig_keys,
            method=request.method,
            path=request.url.raw_path.decode(),
            body=body,
            idempotency_key=request.headers.get("Idempotency-Key"),
            now=self.now(),
        )
        opened = open_package(
            json.loads(body)["package"],
            decryption_keys={self.enc_key.kid: self.enc_key},
            sender_keys=sig_keys,
            issuer=self.macao_keys["issuer"],
            audience=GD,
            now=self.now(),
        )
        message = {
            "claims": dict(opened.claims),
            "proof": proof,
            "idempotency_key": request.headers.get("Idempotency-Key"),
        }
        self.received.append(message)
        if self.answer is not None:
            return self.answer(message)
        return httpx.Response(
            201,
            json={
                "conversion_id": str(uuid.uuid4()),
                "state": "completed",
                "code": {"qr_text": self.health_code(), "status": "green"},
            },
        )

    # --- what Guangdong sends to Macao ------------------------------------------------------------

    def claims(self, **changes: Any) -> dict[str, Any]:
        """A conversion request from Guangdong to Macao, valid as of now."""
        now = self.now()
        today = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=8))).date()
        request = messages.ConversionRequest(
            cid=str(uuid.uuid4()),
            subject=messages.Subject(
                name="陳大文",
                doc_type="macao_id",
                doc_number=BIR,
                birth_date=dt.date(1990, 1, 2),
                phone="+85366123456",
            ),
            source=messages.Source(code=self.health_code()),
            nat=messages.Nat(sampled_on=today - dt.timedelta(days=1), result="negative"),
            travel=messages.Travel(outside_region_14d=False),
            consent=messages.Consent(
                id=str(uuid.uuid4()),
                granted_at=now - 10,
                recipient="MO",
                purpose=messages.PURPOSE,
                text_version=messages.CONSENT_TEXT_VERSION,
                fields=CONSENT_FIELDS,
            ),
        )
        claims = messages.conversion_claims(
            request, iss=GD, aud="MO", iat=now, exp=now + 300, jti=new_jti()
        )
        claims.update(changes)
        return claims

    def seal(
        self,
        claims: dict[str, Any],
        *,
        signer: SigningKey | None = None,
        recipient: EncryptionPublicKey | None = None,
    ) -> str:
        if recipient is None:
            assert self.macao_keys is not None
            recipient = macao_enc_key(self.macao_keys)
        return seal_package(claims, signer=signer or self.sig_key, recipient=recipient)

    def request(
        self,
        package: str | None = None,
        *,
        body: bytes | None = None,
        idempotency_key: str | None = "",
        signer: SigningKey | None = None,
        jti: str | None = None,
        signed: bool = True,
    ) -> dict[str, Any]:
        """Keyword arguments for ``client.post``: a signed direct delivery to Macao."""
        if body is None:
            body = json.dumps({"package": package}).encode()
        key = str(uuid.uuid4()) if idempotency_key == "" else idempotency_key
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        if signed:
            headers[REQUEST_PROOF_HEADER] = sign_request(
                signer=signer or self.sig_key,
                issuer=GD,
                method="POST",
                path=INBOUND,
                body=body,
                idempotency_key=key,
                now=self.now(),
                jti=jti,
            )
        return {"content": body, "headers": headers}


def macao_enc_key(document: dict[str, Any]) -> EncryptionPublicKey:
    (jwk,) = [
        k
        for k in document["keys"]
        if k["purpose"] == "exchange" and k["use"] == "enc" and k["state"] == "active"
    ]
    return EncryptionPublicKey.from_jwk(jwk)


def macao_code_keys(document: dict[str, Any]) -> dict[str, VerificationKey]:
    keys = {}
    for jwk in document["keys"]:
        if jwk["purpose"] == "code":
            key = VerificationKey.from_jwk(jwk, issuer=document["issuer"])
            keys[key.kid] = key
    return keys


@dataclass
class Macao:
    app: Any
    client: httpx.AsyncClient
    settings: MacaoSettings
    clock: ManualClock
    guangdong: FakeGuangdong

    def now(self) -> int:
        return epoch(self.clock.now())

    async def keys(self) -> dict[str, Any]:
        response = await self.client.get("/v1/exchange/keys")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        self.guangdong.macao_keys = document
        return document

    async def declare(self, **changes: Any) -> dict[str, Any]:
        response = await self.client.post("/v1/declarations", json=declaration(**changes))
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def rotate(self, purpose: str) -> dict[str, Any]:
        token = self.app.state.service.admin_token
        response = await self.client.post(
            "/v1/admin/keys/rotate",
            params={"purpose": purpose},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


def declaration(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "陳大文",
        "doc_type": "BIR",
        "doc_number": BIR,
        "birth_date": "1990-01-02",
        "phone": "+85366123456",
        "fever": False,
        "contact_14d": False,
        "travel_14d": False,
        "nat_negative_on": None,
    }
    body.update(changes)
    return body


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def guangdong(clock: ManualClock) -> FakeGuangdong:
    return FakeGuangdong(now=lambda: epoch(clock.now()))


def macao_settings(data_dir: Path, **overrides: Any) -> MacaoSettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "guangdong_url": GD_URL,
        "guangdong_keys_ttl_seconds": 0,
        "key_passphrase": "test-passphrase-0123456789",
        "pii_key": TEST_PII_KEY,
        "blind_index_key": "test-blind-index-key-0123456789abcdef",
        "admin_token": "test-admin-token-0123456789",
    }
    values.update(overrides)
    return MacaoSettings(**values)


@pytest.fixture
async def macao(
    tmp_path: Path, clock: ManualClock, guangdong: FakeGuangdong
) -> AsyncIterator[Macao]:
    settings = macao_settings(tmp_path / "macao")
    app = create_app(
        settings, clock=clock, guangdong_transport=httpx.MockTransport(guangdong.handle)
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://macao.test"
        ) as client,
    ):
        running = Macao(app, client, settings, clock, guangdong)
        await running.keys()
        yield running
