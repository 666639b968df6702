"""Guangdong -> Macao: ``POST /v1/exchange/guangdong/inbound`` (EXCHANGE.md sections 3, 4, 7)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from partner.conftest import BIR, GD, INBOUND, Macao, macao_code_keys
from yuekang.codec.exchange import EncryptionKey, new_jti
from yuekang.codec.keys import SigningKey
from yuekang.codec.macao import read_macao_code, source_digest
from yuekang_reference.macao.store import Code, Consent, Conversion


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def codes_stored(macao: Macao) -> int:
    async with macao.app.state.service.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Code)) or 0)


async def test_happy_path(macao: Macao) -> None:
    gd = macao.guangdong
    claims = gd.claims()
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(claims)))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert set(answer) == {"conversion_id", "code", "colour", "expires_at"}
    assert answer["colour"] == "verde"

    verified = read_macao_code(answer["code"], macao_code_keys(await macao.keys()), now=macao.now())
    assert verified.claims.cor == "verde"
    assert verified.claims.tdoc == "BIR"
    assert verified.claims.nome == "陳*文"
    assert verified.claims.tan == claims["nat"]["sampled_on"]
    assert verified.claims.exp == answer["expires_at"] == macao.now() + 21600

    async with macao.app.state.service.sessionmaker() as session:
        code = await session.scalar(select(Code).where(Code.cti == verified.claims.cti))
        conversion = await session.get(Conversion, answer["conversion_id"])
        consent = await session.scalar(
            select(Consent).where(Consent.conversion_id == answer["conversion_id"])
        )
    assert code is not None and conversion is not None and consent is not None
    assert (code.source_issuer, code.origin) == (GD, "conversion")
    assert code.source_kid == gd.code_key.kid
    assert code.source_digest == source_digest(claims["source"]["code"])
    assert (conversion.direction, conversion.partner_conversion_id) == ("inbound", claims["cid"])
    assert consent.external_id == claims["consent"]["id"]
    assert json.loads(consent.fields) == sorted(claims["consent"]["fields"])

    # The person converted in is the one who later declares with the same document.
    declared = await macao.declare()
    latest = await macao.client.get(f"/v1/persons/{declared['person_id']}/code")
    assert latest.json()["code"] == declared["code"]
    assert code.person_id == declared["person_id"]


async def test_prc_id_becomes_an_other_document(macao: Macao) -> None:
    gd = macao.guangdong
    subject = {**gd.claims()["subject"], "doc_type": "prc_id", "doc_number": "11010519491231002X"}
    subject["birth_date"] = "1949-12-31"
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims(subject=subject))))
    assert response.status_code == 201, response.text
    keys = macao_code_keys(await macao.keys())
    assert read_macao_code(response.json()["code"], keys, now=macao.now()).claims.tdoc == "OUTRO"


async def test_same_idempotency_key_gets_the_same_answer(macao: Macao) -> None:
    gd = macao.guangdong
    claims = gd.claims()
    request = gd.request(gd.seal(claims), idempotency_key="outbox-1")
    first = await macao.client.post(INBOUND, **request)
    assert first.status_code == 201
    # The very same request again (a retry after a lost answer).
    again = await macao.client.post(INBOUND, **request)
    assert again.status_code == 200
    assert again.json() == first.json()
    # Guangdong's outbox seals a fresh package for each attempt: same conversion, same answer.
    resealed = gd.claims(
        cid=claims["cid"], subject=claims["subject"], source={"code": gd.health_code()}
    )
    retry = await macao.client.post(
        INBOUND, **gd.request(gd.seal(resealed), idempotency_key="outbox-1")
    )
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert await codes_stored(macao) == 1


async def test_idempotency_key_with_another_package(macao: Macao) -> None:
    gd = macao.guangdong
    first = await macao.client.post(
        INBOUND, **gd.request(gd.seal(gd.claims()), idempotency_key="outbox-2")
    )
    assert first.status_code == 201
    other = await macao.client.post(
        INBOUND, **gd.request(gd.seal(gd.claims()), idempotency_key="outbox-2")
    )
    assert other.status_code == 409
    assert error_code(other) == "idempotency_key_reused"
    assert await codes_stored(macao) == 1


async def test_replayed_package(macao: Macao) -> None:
    gd = macao.guangdong
    package = gd.seal(gd.claims())
    assert (await macao.client.post(INBOUND, **gd.request(package))).status_code == 201
    replay = await macao.client.post(INBOUND, **gd.request(package))
    assert replay.status_code == 409
    assert error_code(replay) == "package_replayed"


async def test_replayed_request_signature(macao: Macao) -> None:
    gd = macao.guangdong
    jti = new_jti()
    first = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims()), jti=jti))
    assert first.status_code == 201
    second = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims()), jti=jti))
    assert second.status_code == 409
    assert error_code(second) == "request_replayed"


async def test_a_refused_request_cannot_be_sent_again(macao: Macao) -> None:
    gd = macao.guangdong
    request = gd.request(gd.seal(gd.claims(source={"code": gd.health_code("yellow")})))
    assert error_code(await macao.client.post(INBOUND, **request)) == "source_not_green"
    assert error_code(await macao.client.post(INBOUND, **request)) == "request_replayed"


def _days_ago(days: int, now: int) -> str:
    local = dt.datetime.fromtimestamp(now, dt.timezone(dt.timedelta(hours=8))).date()
    return (local - dt.timedelta(days=days)).isoformat()


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"consent": {"recipient": "yk:hk"}}, 422, "consent_insufficient"),
        (
            {"consent": {"fields": ["name", "document", "birth_date", "status"]}},
            422,
            "consent_insufficient",
        ),
        ({"consent": {"purpose": "marketing"}}, 422, "consent_insufficient"),
        ({"source": "yellow"}, 422, "source_not_green"),
        ({"source": "red"}, 422, "source_not_green"),
        ({"source": "foreign"}, 422, "source_code_invalid"),
        ({"source": "MO1:ABC"}, 422, "source_code_invalid"),
        ({"nat": None}, 422, "nat_missing"),
        ({"nat": {"result": "positive"}}, 422, "nat_not_negative"),
        ({"nat": {"sampled_on": 8}}, 422, "nat_too_old"),
        ({"nat": {"sampled_on": -3}}, 400, "package_malformed"),
        ({"travel": {"outside_region_14d": True}}, 422, "travel_outside_region"),
        ({"subject": {"doc_type": "driving_licence"}}, 422, "unmapped_document_type"),
        ({"subject": {"doc_number": "22345678"}}, 422, "invalid_document"),
        ({"subject": {"doc_type": "hkid", "doc_number": "A1234567"}}, 422, "invalid_document"),
        ({"subject": {"name": 5}}, 400, "package_malformed"),
        ({"subject": {"phone": "66123456"}}, 400, "package_malformed"),
        ({"travel": {"outside_region_14d": "no"}}, 400, "package_malformed"),
        ({"typ": "conversion.cancel"}, 400, "package_malformed"),
        ({"cid": None}, 400, "package_malformed"),
    ],
)
async def test_refusals(macao: Macao, changes: dict[str, Any], status: int, code: str) -> None:
    gd = macao.guangdong
    claims = gd.claims()
    for name, change in changes.items():
        if name == "source":
            if change == "foreign":
                text = dataclasses.replace(gd, code_key=SigningKey.generate()).health_code()
            elif change.startswith("MO1:"):
                text = change
            else:
                text = gd.health_code(change)
            claims["source"] = {"code": text}
        elif name == "nat" and change is not None and "sampled_on" in change:
            claims["nat"]["sampled_on"] = _days_ago(change["sampled_on"], macao.now())
        elif isinstance(change, dict) and isinstance(claims.get(name), dict):
            claims[name] = {**claims[name], **change}
        else:
            claims[name] = change
    if claims["cid"] is None:
        del claims["cid"]
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(claims)))
    assert response.status_code == status, response.text
    assert error_code(response) == code
    if code == "source_code_invalid":
        assert response.json()["error"]["detail"]["reason"] in ("unknown_key", "malformed")
    assert await codes_stored(macao) == 0


async def test_stale_nat_follows_the_window_setting(macao: Macao) -> None:
    gd = macao.guangdong
    claims = gd.claims()
    claims["nat"]["sampled_on"] = _days_ago(6, macao.now())
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(claims)))
    assert response.status_code == 201
    claims = gd.claims()
    claims["nat"]["sampled_on"] = _days_ago(7, macao.now())
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(claims)))
    assert error_code(response) == "nat_too_old"


async def test_known_document_with_another_birth_date(macao: Macao) -> None:
    gd = macao.guangdong
    await macao.declare(birth_date="1980-01-01")
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))
    assert response.status_code == 409
    assert error_code(response) == "identity_mismatch"


async def test_tampered_package(macao: Macao) -> None:
    gd = macao.guangdong
    package = gd.seal(gd.claims())
    header, key, iv, ciphertext, tag = package.split(".")
    middle = len(ciphertext) // 2
    flipped = "A" if ciphertext[middle] != "A" else "B"
    tampered = ".".join(
        [header, key, iv, ciphertext[:middle] + flipped + ciphertext[middle + 1 :], tag]
    )
    response = await macao.client.post(INBOUND, **gd.request(tampered))
    assert response.status_code == 422
    assert error_code(response) == "decryption_failed"


@pytest.mark.parametrize(
    "package", ["", "not-a-package", "a.b.c.d.e", "x" * 70_000, "." * 4], ids=repr
)
async def test_malformed_packages(macao: Macao, package: str) -> None:
    gd = macao.guangdong
    response = await macao.client.post(INBOUND, **gd.request(package))
    assert response.status_code in (400, 413)
    assert error_code(response) in ("package_malformed", "payload_too_large")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{", "malformed_json"),
        (b"[]", "package_malformed"),
        (b'{"package": 5}', "package_malformed"),
        (b'{"pkg": "x"}', "package_malformed"),
        (b"\xff", "malformed_json"),
    ],
)
async def test_malformed_bodies(macao: Macao, body: bytes, code: str) -> None:
    response = await macao.client.post(INBOUND, **macao.guangdong.request(body=body))
    assert response.status_code == 400
    assert error_code(response) == code


async def test_oversized_request(macao: Macao) -> None:
    body = json.dumps({"package": "x" * 200_000}).encode()
    response = await macao.client.post(INBOUND, **macao.guangdong.request(body=body))
    assert response.status_code == 413


async def test_unknown_guangdong_key(macao: Macao) -> None:
    gd = macao.guangdong
    stranger = SigningKey.generate()
    # The request proof, then the package, signed by a key Guangdong never published.
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims()), signer=stranger))
    assert response.status_code == 401
    assert error_code(response) == "unknown_sender_key"
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims(), signer=stranger)))
    assert response.status_code == 401
    assert error_code(response) == "unknown_sender_key"


async def test_retired_guangdong_key(macao: Macao) -> None:
    gd = macao.guangdong
    old = gd.sig_key
    gd.retired_sig_keys.append(old)
    gd.sig_key = SigningKey.generate()
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims(), signer=old)))
    assert response.status_code == 401
    assert error_code(response) == "retired_sender_key"
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))
    assert response.status_code == 201


async def test_request_signature_checks(macao: Macao) -> None:
    gd = macao.guangdong
    package = gd.seal(gd.claims())
    unsigned = await macao.client.post(INBOUND, **gd.request(package, signed=False))
    assert (unsigned.status_code, error_code(unsigned)) == (401, "signature_missing")
    no_key = await macao.client.post(INBOUND, **gd.request(package, idempotency_key=None))
    assert (no_key.status_code, error_code(no_key)) == (400, "idempotency_key_required")
    request = gd.request(package)
    request["headers"]["Idempotency-Key"] = "another-key"
    mismatch = await macao.client.post(INBOUND, **request)
    assert (mismatch.status_code, error_code(mismatch)) == (401, "request_mismatch")
    request = gd.request(package)
    macao.clock.advance(301)
    old = await macao.client.post(INBOUND, **request)
    assert (old.status_code, error_code(old)) == (401, "request_too_old")
    garbled = gd.request(package)
    garbled["headers"]["Yuekang-Signature"] = "garbage"
    response = await macao.client.post(INBOUND, **garbled)
    assert (response.status_code, error_code(response)) == (401, "signature_malformed")


async def test_package_time_and_audience_checks(macao: Macao) -> None:
    gd = macao.guangdong
    now = macao.now()
    cases = [
        (gd.claims(aud="yk:hk"), "wrong_audience"),
        (gd.claims(iss="yk:hk"), "wrong_issuer"),
        (gd.claims(iat=now - 1000, exp=now - 700), "package_expired"),
        (gd.claims(iat=now + 500, exp=now + 700), "package_not_yet_valid"),
    ]
    for claims, code in cases:
        response = await macao.client.post(INBOUND, **gd.request(gd.seal(claims)))
        assert response.status_code == 422, response.text
        assert error_code(response) == code


async def test_package_to_another_key(macao: Macao) -> None:
    gd = macao.guangdong
    stranger = EncryptionKey.generate().public()
    response = await macao.client.post(
        INBOUND, **gd.request(gd.seal(gd.claims(), recipient=stranger))
    )
    assert response.status_code == 422
    assert error_code(response) == "wrong_recipient_key"


async def test_retired_encryption_key(macao: Macao) -> None:
    gd = macao.guangdong
    old_document = await macao.keys()
    rotated = await macao.rotate("exchange")
    document = await macao.keys()
    states = {k["kid"]: k["state"] for k in document["keys"] if k["purpose"] == "exchange"}
    assert all(states[kid] == "retired" for kid in rotated["retired"])
    assert all(states[kid] == "active" for kid in rotated["active"])
    gd.macao_keys = old_document

    # Sealed to the old key just before the rotation reached Guangdong: still opens.
    macao.clock.advance(590)
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))
    assert response.status_code == 201, response.text

    macao.clock.advance(20)
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))
    assert response.status_code == 422
    assert error_code(response) == "wrong_recipient_key"

    gd.macao_keys = document
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))
    assert response.status_code == 201


async def test_guangdong_keys_unavailable(macao: Macao) -> None:
    gd = macao.guangdong
    request = gd.request(gd.seal(gd.claims()))
    gd.down = True
    response = await macao.client.post(INBOUND, **request)
    assert response.status_code == 503
    assert error_code(response) == "partner_not_configured"


async def test_guangdong_rotation_is_picked_up(macao: Macao) -> None:
    """A key Guangdong just published is fetched on first sight, even within the cache time."""
    macao.app.state.service.guangdong._ttl = 3600
    gd = macao.guangdong
    assert (await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))).status_code == 201
    gd.sig_key = SigningKey.generate()
    macao.app.state.service.guangdong._fetched -= 10
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(gd.claims())))
    assert response.status_code == 201, response.text


async def test_the_document_number_is_normalised(macao: Macao) -> None:
    gd = macao.guangdong
    claims = gd.claims()
    claims["subject"]["doc_number"] = "1234567(8)"
    response = await macao.client.post(INBOUND, **gd.request(gd.seal(claims)))
    assert response.status_code == 201
    declared = await macao.declare(doc_number=BIR)
    async with macao.app.state.service.sessionmaker() as session:
        persons = {c.person_id for c in (await session.scalars(select(Code))).all()}
    assert persons == {declared["person_id"]}
