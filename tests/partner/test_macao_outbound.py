"""Macao -> Guangdong: ``POST /v1/conversions/guangdong`` (EXCHANGE.md sections 2-4)."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from partner.conftest import BIR, CONSENT_FIELDS, GD, GD_URL, Macao, macao_code_keys
from yuekang.codec.exchange import open_package
from yuekang.codec.keys import VerificationKey
from yuekang.codec.macao import read_macao_code
from yuekang_reference.macao.app import _handoff_page
from yuekang_reference.macao.store import Code, Consent, Conversion
from yuekang_reference.macao.to_guangdong import BrowserHandoff

CONVERT = "/v1/conversions/guangdong"


def conversion(person_id: str, delivery: str = "direct", **consent: Any) -> dict[str, Any]:
    return {
        "person_id": person_id,
        "consent": {
            "recipient": GD,
            "fields": CONSENT_FIELDS,
            "accepted": True,
            "text_version": "2020-05.1",
            **consent,
        },
        "delivery": delivery,
    }


async def test_direct_delivery(macao: Macao) -> None:
    gd = macao.guangdong
    declared = await macao.declare(nat_negative_on="2020-05-01")
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["state"] == "completed"
    assert answer["guangdong"]["state"] == "completed"

    (message,) = gd.received
    claims = message["claims"]
    now = macao.now()
    assert (claims["iss"], claims["aud"], claims["typ"]) == ("MO", GD, "conversion.request")
    assert claims["iat"] == now and claims["exp"] == now + 300
    assert claims["cid"] == answer["conversion_id"] == message["idempotency_key"]
    assert claims["subject"] == {
        "name": "陳大文",
        "doc_type": "macao_id",
        "doc_number": BIR,
        "birth_date": "1990-01-02",
        "phone": "+85366123456",
    }
    assert claims["source"]["code"] == declared["code"]
    source = read_macao_code(claims["source"]["code"], macao_code_keys(await macao.keys()), now=now)
    assert source.claims.cor == "verde"
    assert claims["nat"] == {"sampled_on": "2020-05-01", "result": "negative"}
    assert claims["travel"] == {"outside_region_14d": False}
    consent = claims["consent"]
    assert consent["recipient"] == GD
    assert consent["purpose"] == "health-code-conversion"
    assert consent["text_version"] == "2020-05.1"
    assert consent["granted_at"] == now
    assert set(consent["fields"]) == set(CONSENT_FIELDS)
    assert message["proof"].issuer == "MO"
    signing_keys = [
        k["kid"]
        for k in (await macao.keys())["keys"]
        if (k["purpose"], k["use"]) == ("exchange", "sig")
    ]
    assert message["proof"].kid in signing_keys

    async with macao.app.state.service.sessionmaker() as session:
        stored = await session.get(Conversion, answer["conversion_id"])
        receipt = await session.get(Consent, consent["id"])
    assert stored is not None and stored.state == "completed"
    assert receipt is not None and receipt.recipient == GD


async def test_yellow_code_goes_and_guangdong_refuses(macao: Macao) -> None:
    gd = macao.guangdong
    gd.answer = lambda message: httpx.Response(
        422, json={"error": {"code": "source_not_green", "message": "only green"}}
    )
    declared = await macao.declare(travel_14d=True)
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 422
    body = response.json()
    assert body["state"] == "refused"
    assert body["error"]["code"] == "source_not_green"
    claims = gd.received[0]["claims"]
    assert claims["travel"] == {"outside_region_14d": True}
    assert claims["nat"] is None
    async with macao.app.state.service.sessionmaker() as session:
        stored = await session.get(Conversion, body["conversion_id"])
    assert stored is not None and (stored.state, stored.error_code) == (
        "refused",
        "source_not_green",
    )


async def test_guangdong_conflict_is_409(macao: Macao) -> None:
    macao.guangdong.answer = lambda message: httpx.Response(
        409, json={"error": {"code": "identity_mismatch", "message": "x"}}
    )
    declared = await macao.declare()
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "identity_mismatch"


@pytest.mark.parametrize("failure", ["network", "500", "not json"])
async def test_guangdong_unreachable(macao: Macao, failure: str) -> None:
    def answer(message: dict[str, Any]) -> httpx.Response:
        if failure == "network":
            raise httpx.ConnectError("connection refused")
        if failure == "500":
            return httpx.Response(500, text="oops")
        return httpx.Response(201, text="<html>")

    macao.guangdong.answer = answer
    declared = await macao.declare()
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "guangdong_unreachable"


async def test_guangdong_keys_unreachable(macao: Macao) -> None:
    declared = await macao.declare()
    macao.guangdong.down = True
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "guangdong_unreachable"


async def test_browser_delivery(macao: Macao) -> None:
    gd = macao.guangdong
    declared = await macao.declare()
    request = conversion(declared["person_id"], delivery="browser")
    page = await macao.client.post(CONVERT, json=request, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert f"form-action {GD_URL}" in page.headers["content-security-policy"]
    action = f"{GD_URL}/v1/exchange/macao/inbound"
    assert f'<form method="post" action="{action}"' in page.text
    (value,) = re.findall(r'<input type="hidden" name="package" value="([^"]*)">', page.text)
    package = html.unescape(value)
    assert gd.macao_keys is not None
    opened = open_package(
        package,
        decryption_keys={gd.enc_key.kid: gd.enc_key},
        sender_keys={
            k["kid"]: VerificationKey.from_jwk(k)
            for k in gd.macao_keys["keys"]
            if (k["purpose"], k["use"]) == ("exchange", "sig")
        },
        issuer="MO",
        audience=GD,
        now=macao.now(),
    )
    assert opened.claims["source"]["code"] == declared["code"]
    assert "document.forms[0].submit()" in page.text
    assert not gd.received  # nothing was sent server to server

    as_json = await macao.client.post(CONVERT, json=request, headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    body = as_json.json()
    assert body["action"] == action
    assert body["package"].count(".") == 4
    assert body["conversion_id"] != opened.claims["cid"]


def test_handoff_page_escapes() -> None:
    nasty = BrowserHandoff(
        conversion_id="c",
        action='http://gd.test/x?a=1&b="><script>alert(1)</script>',
        package='"><script>alert(2)</script>&amp;',
    )
    text = _handoff_page(nasty).body.decode()
    assert "<script>alert" not in text
    assert 'value="&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;&amp;amp;"' in text
    assert "a=1&amp;b=&quot;&gt;" in text


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"accepted": False}, 422, "consent_insufficient"),
        ({"recipient": "yk:hk"}, 422, "consent_insufficient"),
        ({"fields": ["name", "document"]}, 422, "consent_insufficient"),
        ({"fields": ["name", "email"]}, 422, "validation_error"),
        ({"fields": []}, 422, "validation_error"),
        ({"accepted": "yes"}, 422, "validation_error"),
    ],
)
async def test_consent_checks(
    macao: Macao, changes: dict[str, Any], status: int, code: str
) -> None:
    declared = await macao.declare()
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"], **changes))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert not macao.guangdong.received


async def test_conversion_needs_a_current_code(macao: Macao) -> None:
    declared = await macao.declare()
    macao.clock.advance(21600 + 1)
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "no_current_code"


async def test_other_documents_cannot_be_converted(macao: Macao) -> None:
    declared = await macao.declare(doc_type="OUTRO", doc_number="AB123")
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unmapped_document_type"


async def test_unknown_person_and_bad_bodies(macao: Macao) -> None:
    missing = await macao.client.post(
        CONVERT, json=conversion("6c2b1f7e-98a6-4a4e-9d43-5c3c1f0f2a11")
    )
    assert missing.status_code == 404
    bad = await macao.client.post(CONVERT, json=conversion("not-a-uuid"))
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "person_id"
    delivery = await macao.client.post(CONVERT, json=conversion(str(BIR), delivery="pigeon"))
    assert delivery.status_code == 422


async def test_guangdong_without_an_encryption_key(macao: Macao) -> None:
    gd = macao.guangdong
    declared = await macao.declare()
    original = gd.key_document

    def without_enc() -> dict[str, Any]:
        document = original()
        document["keys"] = [k for k in document["keys"] if k["use"] != "enc"]
        return document

    gd.key_document = without_enc  # type: ignore[method-assign]
    response = await macao.client.post(CONVERT, json=conversion(declared["person_id"]))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "partner_not_configured"


async def test_round_trip_keeps_the_person(macao: Macao) -> None:
    """A code converted in from Guangdong converts back out with the same basis."""
    gd = macao.guangdong
    claims = gd.claims()
    inbound = await macao.client.post(
        "/v1/exchange/guangdong/inbound", **gd.request(gd.seal(claims))
    )
    assert inbound.status_code == 201
    async with macao.app.state.service.sessionmaker() as session:
        code = await session.scalar(select(Code).where(Code.text == inbound.json()["code"]))
    assert code is not None
    response = await macao.client.post(CONVERT, json=conversion(code.person_id))
    assert response.status_code == 201, response.text
    sent = gd.received[-1]["claims"]
    assert sent["subject"] == claims["subject"]
    assert sent["nat"] == claims["nat"]
    assert sent["source"]["code"] == inbound.json()["code"]
