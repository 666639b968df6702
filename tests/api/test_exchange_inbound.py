"""Macao -> Guangdong: a green Macao code becomes a green 粤康码 (docs/EXCHANGE.md, section 3).

A fake Macao (``tests/exchange/kit.py``) is registered the way an operator would register the real
one, and sends packages exactly as the protocol says: sealed to our ``enc`` key from
``GET /v1/exchange/keys``, signed with its exchange key, carrying a real ``MO1:`` code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from conftest import RunningApp, make_settings, start_app
from exchange.kit import (
    GD,
    INBOUND,
    MACAO,
    MO,
    PARTNER,
    FakeMacao,
    OurKeys,
    audit_events,
    carry,
    claims,
    consent,
    feed,
    macao_phone,
    now_s,
    our_keys,
    register,
    retire,
    send,
    stored_conversion,
    subject,
)
from feeds.feedkit import case, days_ago, error_code
from support.api import Resident, random_prc_id
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.codec.exchange import EncryptionKey
from yuekang.codec.healthcode import read_health_code
from yuekang.codec.jwks import parse_jwks
from yuekang.codec.keys import SigningKey, b64url_decode, b64url_encode
from yuekang.codec.macao import source_digest
from yuekang.exchange.models import ConsentReceipt, Conversion
from yuekang.health_codes.models import HealthCode
from yuekang.principals import Role
from yuekang.verifier import PartnerIssuer, Verifier


@pytest.fixture
async def gd(running: RunningApp) -> RunningApp:
    """The app under test with Macao registered."""
    await register(running)
    return running


@pytest.fixture
async def keys(gd: RunningApp) -> OurKeys:
    return await our_keys(gd)


async def unproved_holder(gd: RunningApp, person: dict[str, Any]) -> Resident:
    """An account holding ``person``'s document by a binding never proved (made before proofing
    existed, by whoever knew the number); the SMS sent so far forgotten."""
    holder = await gd.api.sign_in()
    bound = await gd.api.bind(
        holder,
        doc_type="macao_id",
        doc_number=person["doc_number"],
        birth_date=dt.date.fromisoformat(person["birth_date"]),
        name=person["name"],
    )
    assert bound.status_code == 201, bound.text
    await gd.unverify(holder)
    gd.sms.sent.clear()
    return holder


async def convert(gd: RunningApp, keys: OurKeys, **changes: Any) -> Any:
    """A direct conversion that must succeed; the 201 body."""
    sent = await send(gd, MACAO.seal(claims(gd, **changes), keys.enc))
    assert sent.status == 201, sent.response.text
    return sent.json()


async def jwks_verifier(gd: RunningApp, *, with_partner: bool) -> Verifier:
    response = await gd.client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    partners = (
        [
            PartnerIssuer(
                id=PARTNER,
                issuer=MO,
                format="MO1",
                keys=MACAO.code_keys(),
                colours={"verde": "green", "amarelo": "yellow", "vermelho": "red"},
            )
        ]
        if with_partner
        else []
    )
    return Verifier(parse_jwks(response.json(), issuer=GD), partners=partners)


async def codes_of(gd: RunningApp, resident_id: uuid.UUID | None) -> int:
    async with gd.context.sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(HealthCode)
            .where(HealthCode.resident_id == resident_id)
        )
        return int(count or 0)


async def refused_conversions(gd: RunningApp, jti: str) -> list[Conversion]:
    async with gd.context.sessionmaker() as session:
        return list(
            (
                await session.execute(select(Conversion).where(Conversion.package_jti == jti))
            ).scalars()
        )


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert error_code(response) == (status, code), response.text
    assert response.json()["error"]["message"]


# --- the happy path ----------------------------------------------------------------------------


async def test_a_green_macao_code_becomes_a_green_guangdong_code(gd: RunningApp, keys: OurKeys):
    now = now_s(gd)
    macao_code = MACAO.code(now, tan=days_ago(gd, 2))
    package = claims(gd, source={"code": macao_code})
    sent = await send(gd, MACAO.seal(package, keys.enc))

    assert sent.status == 201, sent.response.text
    assert sent.response.headers["cache-control"] == "no-store"
    body = sent.json()
    assert set(body) == {"conversion_id", "state", "code"}
    assert body["state"] == "completed"
    uuid.UUID(body["conversion_id"])
    code = body["code"]
    assert set(code) == {"code_id", "qr_text", "status", "expires_at", "source"}
    assert code["status"] == "green"
    assert code["qr_text"].startswith("YK1:")
    assert dt.datetime.fromisoformat(code["expires_at"]) > gd.context.clock.now()
    source = {"issuer": MO, "kid": MACAO.code_key.kid, "digest": source_digest(macao_code)}
    assert code["source"] == source

    # The code is ours, verifies with our published keys and names the Macao code it came from.
    verdict = (await jwks_verifier(gd, with_partner=True)).verify(code["qr_text"], now=now)
    assert verdict.valid, verdict.reasons
    assert verdict.status == "green"
    assert verdict.code_id == code["code_id"]
    assert verdict.issuer == GD
    assert verdict.source == (MO, MACAO.code_key.kid, source_digest(macao_code))
    assert verdict.origin == "converted_from_macao"
    assert verdict.masked_name is not None
    assert verdict.masked_name.startswith("陳")
    # A verifier told of no partner still sees where the code came from, by issuer id.
    bare = (await jwks_verifier(gd, with_partner=False)).verify(code["qr_text"], now=now)
    assert bare.valid
    assert bare.origin == f"converted_from_{MO}"
    # The Macao code itself is recognised at a checkpoint that knows Macao.
    macao_verdict = (await jwks_verifier(gd, with_partner=True)).verify(macao_code, now=now)
    assert (macao_verdict.valid, macao_verdict.origin) == (True, "issued_by_macao")

    stored = await stored_conversion(gd, body["conversion_id"])
    assert (stored.direction, stored.state, stored.partner_id) == ("inbound", "completed", PARTNER)
    assert stored.code_id == code["code_id"]
    assert stored.source_digest == source_digest(macao_code)
    assert await codes_of(gd, stored.resident_id) == 1


async def test_the_converted_person_signs_in_with_the_packages_phone(gd: RunningApp, keys: OurKeys):
    person = subject(name="陳大文")
    body = await convert(gd, keys, subject=person)

    resident = await gd.api.sign_in(person["phone"])
    identity = await gd.client.get("/v1/me/identity", headers=resident.auth)
    assert identity.status_code == 200, identity.text
    assert identity.json()["doc_type"] == "macao_id"
    assert identity.json()["masked_name"].startswith("陳")
    seen = await gd.client.get(f"/v1/codes/{body['code']['code_id']}", headers=resident.auth)
    assert seen.status_code == 200, seen.text
    assert seen.json()["qr_text"] == body["code"]["qr_text"]

    # A refreshed code still says where it came from while the conversion holds...
    jwks = await gd.client.get("/.well-known/jwks.json")
    keyring = parse_jwks(jwks.json(), issuer=GD)
    gd.context.clock.advance(3600)
    await gd.api.renew(resident)
    fresh = await gd.api.code(resident)
    assert fresh["status"] == "green"
    assert fresh["code_id"] != body["code"]["code_id"]
    claims_now = read_health_code(fresh["qr_text"], keyring, now=now_s(gd)).claims
    assert claims_now.src == (MO, MACAO.code_key.kid, body["code"]["source"]["digest"])
    assert claims_now.nt is not None  # Macao's negative test shows on the Guangdong code
    # Asked again, the same code (with its provenance), not a new row each time.
    for _ in range(3):
        again = await gd.api.issue(resident)
        assert again.status_code == 200 and again.json()["code_id"] == fresh["code_id"]

    # ...and not once the Macao test has left the 168-hour window.
    gd.context.clock.advance(6 * 86400)
    resident = await gd.api.sign_in(person["phone"])
    later = await gd.api.code(resident)
    assert later["status"] == "green"
    assert read_health_code(later["qr_text"], keyring, now=now_s(gd)).claims.src is None


async def test_an_account_of_the_same_document_is_the_one_converted(gd: RunningApp, keys: OurKeys):
    number, birth = random_prc_id()
    resident = await gd.api.sign_in()
    assert (await gd.api.bind(resident, doc_number=number, birth_date=birth)).status_code == 201
    person = subject(doc_type="prc_id", doc_number=number, birth_date=birth.isoformat())
    body = await convert(gd, keys, subject=person)

    mine = await gd.client.get(f"/v1/codes/{body['code']['code_id']}", headers=resident.auth)
    assert mine.status_code == 200, "the code is issued to the account that holds the document"
    # The phone in the package did not become an account of its own.
    other = await gd.api.sign_in(person["phone"])
    assert (await gd.client.get("/v1/me/identity", headers=other.auth)).status_code == 404


async def test_a_package_never_binds_a_document_into_an_existing_account(
    gd: RunningApp, keys: OurKeys
):
    # Whoever holds the account proved the phone to us; the package did not. The person binds
    # the document themselves, then converts. A Macao number is no mainland carrier's to
    # confirm, so they prove it at a service counter.
    phone = macao_phone()
    resident = await gd.api.sign_in(phone)
    person = subject(phone=phone)

    sent = await send(gd, MACAO.seal(claims(gd, subject=person), keys.enc))

    assert_refused(sent.response, 409, "phone_in_use")
    identity = await gd.client.get("/v1/me/identity", headers=resident.auth)
    assert identity.status_code == 404
    details = {
        "doc_type": "macao_id",
        "doc_number": person["doc_number"],
        "birth_date": person["birth_date"],
        "name": person["name"],
    }
    by_phone = await gd.client.put("/v1/me/identity", headers=resident.auth, json=details)
    assert by_phone.json()["error"]["code"] in (
        "identity_mismatch",
        "phone_not_registered_to_holder",
    )
    operator = {"Authorization": f"Bearer {await gd.operator_token(Role.OPERATOR)}"}
    bound = await gd.client.post(
        "/v1/admin/identity/counter",
        headers=operator,
        json={**details, "phone": phone, "reason": "澳门身份证原件", "document_seen": True},
    )
    assert bound.status_code == 201, bound.text
    body = await convert(gd, keys, subject=person)
    mine = await gd.client.get(f"/v1/codes/{body['code']['code_id']}", headers=resident.auth)
    assert mine.status_code == 200


async def test_a_binding_never_proved_gives_way_to_the_partners_person(
    gd: RunningApp, keys: OurKeys
):
    # Bound before proofing existed, by whoever knew the number: Macao proved this person, so
    # the holder arriving through Macao wins; the account that held it is told and loses it.
    person = subject()
    squatter = await unproved_holder(gd, person)

    body = await convert(gd, keys, subject=person)

    assert (await gd.client.get("/v1/me/identity", headers=squatter.auth)).status_code == 404
    assert squatter.phone in {phone for phone, _ in gd.sms.sent}
    holder = await gd.api.sign_in(person["phone"])
    identity = (await gd.client.get("/v1/me/identity", headers=holder.auth)).json()
    assert identity["assurance"] == "partner:MO"
    mine = await gd.client.get(f"/v1/codes/{body['code']['code_id']}", headers=holder.auth)
    assert mine.status_code == 200


async def test_consent_receipt_and_audit_of_a_completed_conversion(gd: RunningApp, keys: OurKeys):
    given = consent(granted_at=now_s(gd) - 30)
    package = claims(gd, consent=given)
    sent = await send(gd, MACAO.seal(package, keys.enc))
    assert sent.status == 201
    conversion_id = sent.json()["conversion_id"]

    stored = await stored_conversion(gd, conversion_id)
    async with gd.context.sessionmaker() as session:
        receipt = await session.get(ConsentReceipt, stored.consent_id)
    assert receipt is not None
    assert (receipt.direction, receipt.partner_id, receipt.recorded_by) == ("inbound", PARTNER, MO)
    assert (receipt.external_id, receipt.recipient) == (given["id"], GD)
    assert json.loads(receipt.fields) == given["fields"]
    assert receipt.resident_id == stored.resident_id

    events = [
        e
        for e in await audit_events(gd, "exchange.inbound.completed")
        if e.detail["conversion"] == conversion_id
    ]
    assert len(events) == 1
    event = events[0]
    assert (event.actor_type, event.actor_id) == ("partner", PARTNER)
    assert (event.subject_type, event.subject_id) == ("resident", str(stored.resident_id))
    assert event.detail["direction"] == "inbound"
    assert event.detail["partner"] == PARTNER
    assert event.detail["consent"] == given["id"]
    assert sorted(event.detail["fields"]) == sorted(given["fields"])
    assert event.detail["code"] == sent.json()["code"]["code_id"]
    assert event.detail["carried_by"] == "partner"


# --- idempotency and replay --------------------------------------------------------------------


async def test_a_retry_with_the_same_key_and_package_gets_the_same_answer(
    gd: RunningApp, keys: OurKeys
):
    package = MACAO.seal(claims(gd), keys.enc)
    first = await send(gd, package, idempotency_key="mo-retry-" + uuid.uuid4().hex)
    assert first.status == 201
    again = await send(gd, package, idempotency_key=first.headers["Idempotency-Key"])
    assert again.status == 200, again.response.text
    assert again.json() == first.json()
    stored = await stored_conversion(gd, first.json()["conversion_id"])
    assert await codes_of(gd, stored.resident_id) == 1


async def test_the_same_key_with_another_package_is_refused(gd: RunningApp, keys: OurKeys):
    key = "mo-" + uuid.uuid4().hex
    first = await send(gd, MACAO.seal(claims(gd), keys.enc), idempotency_key=key)
    assert first.status == 201
    other = await send(gd, MACAO.seal(claims(gd), keys.enc), idempotency_key=key)
    assert_refused(other.response, 409, "idempotency_key_reused")


async def test_a_package_is_accepted_once(gd: RunningApp, keys: OurKeys):
    package = MACAO.seal(claims(gd), keys.enc)
    assert (await send(gd, package)).status == 201
    replayed = await send(gd, package)  # a new Idempotency-Key, a new signature
    assert_refused(replayed.response, 409, "package_replayed")
    # Carried by a browser it is the same package: refused as well.
    assert_refused(await carry(gd, package), 409, "package_replayed")


async def test_a_request_signature_is_accepted_once(gd: RunningApp, keys: OurKeys):
    first = await send(gd, MACAO.seal(claims(gd), keys.enc))
    assert first.status == 201
    again = await gd.client.post(INBOUND, content=first.body, headers=first.headers)
    assert_refused(again, 409, "request_replayed")


async def test_a_refusal_is_answered_again_for_a_retry_with_the_same_key(
    gd: RunningApp, keys: OurKeys
):
    """A partner that lost our answer retries: it must get the refusal again, never a 200."""
    package = MACAO.seal(claims(gd, travel={"outside_region_14d": True}), keys.enc)
    key = "mo-" + uuid.uuid4().hex
    first = await send(gd, package, idempotency_key=key)
    assert_refused(first.response, 422, "travel_outside_region")
    again = await send(gd, package, idempotency_key=key)
    assert_refused(again.response, 422, "travel_outside_region")


# --- the browser ---------------------------------------------------------------------------------


async def test_a_package_carried_by_the_browser_converts(gd: RunningApp, keys: OurKeys):
    person = subject()
    response = await carry(gd, MACAO.seal(claims(gd, subject=person), keys.enc))
    assert response.status_code == 201, response.text
    assert response.json()["code"]["status"] == "green"
    events = [
        e
        for e in await audit_events(gd, "exchange.inbound.completed")
        if e.detail["conversion"] == response.json()["conversion_id"]
    ]
    assert [e.detail["carried_by"] for e in events] == ["browser"]


async def test_a_form_post_with_an_idempotency_key_must_be_signed(gd: RunningApp, keys: OurKeys):
    package = MACAO.seal(claims(gd), keys.enc)
    response = await carry(gd, package, **{"Idempotency-Key": "k-" + uuid.uuid4().hex})
    assert_refused(response, 401, "signature_missing")
    # Nothing was used up: the person's browser can still carry it.
    assert (await carry(gd, package)).status_code == 201


# --- refusals ----------------------------------------------------------------------------------


def _changes(gd: RunningApp, case: str) -> dict[str, Any]:
    now = now_s(gd)
    match case:
        case "amarelo":
            return {"code": {"cor": "amarelo"}}
        case "vermelho":
            return {"code": {"cor": "vermelho"}}
        case "nat_too_old":
            return {"nat": {"sampled_on": days_ago(gd, 8), "result": "negative"}}
        case "nat_missing":
            return {"nat": None}
        case "nat_not_negative":
            return {"nat": {"sampled_on": days_ago(gd, 1), "result": "positive"}}
        case "travel":
            return {"travel": {"outside_region_14d": True}}
        case "consent_field_missing":
            return {"consent": consent(fields=[f for f in consent()["fields"] if f != "nat"])}
        case "consent_wrong_recipient":
            return {"consent": consent(recipient="yk:hk")}
        case "consent_other_purpose":
            return {"consent": consent(purpose="marketing")}
        case "unregistered_code_key":
            return {"code": {"key": SigningKey.generate()}}
        case "expired_code":
            return {"code": {"now": now - 7 * 3600}}
        case "yk_code":
            return {"source": {"code": "YK1:abc.def.ghi"}}
        case "wrong_audience":
            return {"aud": "yk:hk"}
        case "wrong_issuer":
            return {"iss": "yk:hk"}
        case "expired":
            return {"iat": now - 1000, "exp": now - 700}
        case "not_yet_valid":
            return {"iat": now + 300, "exp": now + 600}
        case "bad_check_digit":
            number, birth = random_prc_id()
            bad = number[:-1] + ("0" if number[-1] != "0" else "1")
            return {
                "subject": subject(doc_type="prc_id", doc_number=bad, birth_date=birth.isoformat())
            }
        case "bad_macao_number":
            return {"subject": subject(doc_number="2345678")}
        case "outro":
            return {"subject": subject(doc_type="OUTRO")}
        case "no_subject":
            return {"subject": None}
        case "other_typ":
            return {"typ": "conversion.cancel"}
        case "bad_phone":
            return {"subject": subject(phone="66123456")}
    raise AssertionError(case)


REFUSALS = [
    ("amarelo", 422, "source_not_green"),
    ("vermelho", 422, "source_not_green"),
    ("nat_too_old", 422, "nat_too_old"),
    ("nat_missing", 422, "nat_missing"),
    ("nat_not_negative", 422, "nat_not_negative"),
    ("travel", 422, "travel_outside_region"),
    ("consent_field_missing", 422, "consent_insufficient"),
    ("consent_wrong_recipient", 422, "consent_insufficient"),
    ("consent_other_purpose", 422, "consent_insufficient"),
    ("unregistered_code_key", 422, "source_code_invalid"),
    ("expired_code", 422, "source_code_invalid"),
    ("yk_code", 422, "source_code_invalid"),
    ("wrong_audience", 422, "wrong_audience"),
    ("wrong_issuer", 422, "wrong_issuer"),
    ("expired", 422, "package_expired"),
    ("not_yet_valid", 422, "package_not_yet_valid"),
    ("bad_check_digit", 422, "invalid_document"),
    ("bad_macao_number", 422, "invalid_document"),
    ("outro", 422, "unmapped_document_type"),
    ("no_subject", 400, "package_malformed"),
    ("other_typ", 400, "package_malformed"),
    ("bad_phone", 400, "package_malformed"),
]


@pytest.mark.parametrize(
    ("case", "status", "code"), REFUSALS, ids=[f"{c}-{code}" for c, _, code in REFUSALS]
)
async def test_a_package_that_does_not_qualify_is_refused(
    gd: RunningApp, keys: OurKeys, case: str, status: int, code: str
):
    person = subject()
    package = claims(gd, **{"subject": person, **_changes(gd, case)})
    sent = await send(gd, MACAO.seal(package, keys.enc))
    assert_refused(sent.response, status, code)
    # Nothing was issued, and nobody can sign in to find a code for this person.
    resident = await gd.api.sign_in(person["phone"])
    assert (await gd.client.get("/v1/me/identity", headers=resident.auth)).status_code == 404


async def test_a_source_code_that_does_not_verify_says_why(gd: RunningApp, keys: OurKeys):
    code = MACAO.code(now_s(gd), key=SigningKey.generate())
    sent = await send(gd, MACAO.seal(claims(gd, source={"code": code}), keys.enc))
    assert_refused(sent.response, 422, "source_code_invalid")
    reasons = [f["reason"] for f in sent.json()["error"]["fields"]]
    assert reasons == ["unknown_key"]


async def test_every_condition_not_met_is_listed(gd: RunningApp, keys: OurKeys):
    package = claims(
        gd,
        code={"cor": "amarelo"},
        nat={"sampled_on": days_ago(gd, 9), "result": "negative"},
        travel={"outside_region_14d": True},
    )
    sent = await send(gd, MACAO.seal(package, keys.enc))
    assert_refused(sent.response, 422, "source_not_green")
    reasons = [f["reason"] for f in sent.json()["error"]["fields"]]
    assert reasons == ["source_not_green", "nat_too_old", "travel_outside_region"]


async def test_the_nat_window_counts_from_the_start_of_the_sampling_day(
    gd: RunningApp, keys: OurKeys
):
    six_days = {"nat": {"sampled_on": days_ago(gd, 6), "result": "negative"}}
    assert (await send(gd, MACAO.seal(claims(gd, **six_days), keys.enc))).status == 201
    seven_days = {"nat": {"sampled_on": days_ago(gd, 7), "result": "negative"}}
    now = gd.context.clock.now().astimezone(dt.timezone(dt.timedelta(hours=8)))
    sent = await send(gd, MACAO.seal(claims(gd, **seven_days), keys.enc))
    if now.time() == dt.time():
        assert sent.status == 201  # exactly at the edge: still inside
    else:
        assert_refused(sent.response, 422, "nat_too_old")


async def test_a_package_for_a_key_we_do_not_hold_is_refused(gd: RunningApp):
    package = MACAO.seal(claims(gd), EncryptionKey.generate().public())
    assert_refused((await send(gd, package)).response, 422, "wrong_recipient_key")


@pytest.mark.parametrize("segment", [0, 2, 3, 4], ids=["header", "iv", "ciphertext", "tag"])
async def test_an_altered_package_does_not_decrypt(gd: RunningApp, keys: OurKeys, segment: int):
    parts = MACAO.seal(claims(gd), keys.enc).split(".")
    if segment == 0:
        header = json.loads(b64url_decode(parts[0]))
        header["epk"] = {**header["epk"], "x": b64url_encode(b"\x01" * 32)}
        parts[0] = b64url_encode(json.dumps(header).encode())
    else:
        raw = bytearray(b64url_decode(parts[segment]))
        raw[len(raw) // 2] ^= 0x01
        parts[segment] = b64url_encode(bytes(raw))
    sent = await send(gd, ".".join(parts))
    assert_refused(sent.response, 422, "decryption_failed")


async def test_a_package_signed_by_a_key_macao_never_registered_is_refused(
    gd: RunningApp, keys: OurKeys
):
    stranger = SigningKey.generate()
    sent = await send(gd, MACAO.seal(claims(gd), keys.enc, signer=stranger))
    assert_refused(sent.response, 401, "unknown_sender_key")
    # The same for the request signature.
    sent = await send(gd, MACAO.seal(claims(gd), keys.enc), signer=stranger)
    assert_refused(sent.response, 401, "unknown_sender_key")


async def test_a_package_signed_by_a_retired_key_is_refused(gd: RunningApp, keys: OurKeys):
    old = SigningKey.generate()
    await register(gd, MACAO, old)
    package = MACAO.seal(claims(gd), keys.enc, signer=old)
    assert (await send(gd, package, signer=old)).status == 201, "an active key is accepted"
    await retire(gd, old.kid)
    sent = await send(gd, MACAO.seal(claims(gd), keys.enc, signer=old))
    assert_refused(sent.response, 401, "retired_sender_key")
    sent = await send(gd, MACAO.seal(claims(gd), keys.enc), signer=old)
    assert_refused(sent.response, 401, "retired_sender_key")


async def test_a_forged_signature_is_refused(gd: RunningApp, keys: OurKeys):
    # A key claiming Macao's kid: the kid is known, the signature is not Macao's.
    forger = dataclasses.replace(SigningKey.generate(), kid=MACAO.sig_key.kid)
    sent = await send(gd, MACAO.seal(claims(gd), keys.enc, signer=forger))
    assert_refused(sent.response, 401, "bad_signature")
    sent = await send(gd, MACAO.seal(claims(gd), keys.enc), signer=forger)
    assert_refused(sent.response, 401, "bad_signature")


async def test_a_body_altered_after_signing_is_refused(gd: RunningApp, keys: OurKeys):
    package = MACAO.seal(claims(gd), keys.enc)
    other = MACAO.seal(claims(gd), keys.enc)
    sent = await send(gd, package, body=json.dumps({"package": other}).encode())
    assert_refused(sent.response, 401, "request_mismatch")
    # Even a byte that changes nothing in the JSON.
    sent = await send(gd, package, body=json.dumps({"package": package}).encode() + b" ")
    assert_refused(sent.response, 401, "request_mismatch")
    # The signature covers the Idempotency-Key too.
    body = json.dumps({"package": package}).encode()
    proof = MACAO.sign(body, now_s(gd), idempotency_key="signed-key")
    sent = await send(gd, package, idempotency_key="another-key", proof=proof)
    assert_refused(sent.response, 401, "request_mismatch")
    # None of these used the package up.
    assert (await send(gd, package)).status == 201


@pytest.mark.parametrize("offset", [-301, 301], ids=["old", "future"])
async def test_a_request_signature_outside_the_window_is_refused(
    gd: RunningApp, keys: OurKeys, offset: int
):
    package = MACAO.seal(claims(gd), keys.enc)
    sent = await send(gd, package, signed_at=now_s(gd) + offset)
    assert_refused(sent.response, 401, "request_too_old")
    assert (await send(gd, package, signed_at=now_s(gd) - 299)).status == 201


async def test_a_direct_call_must_be_signed(gd: RunningApp, keys: OurKeys):
    package = MACAO.seal(claims(gd), keys.enc)
    assert_refused((await send(gd, package, proof=None)).response, 401, "signature_missing")
    garbled = await send(gd, package, proof="not.a-signature")
    assert_refused(garbled.response, 401, "signature_malformed")
    unsigned = await send(gd, package, proof=None, idempotency_key=None)
    assert_refused(unsigned.response, 401, "signature_missing")


async def test_a_document_known_with_another_birth_date_is_refused(gd: RunningApp, keys: OurKeys):
    number = subject()["doc_number"]
    resident = await gd.api.sign_in()
    bound = await gd.api.bind(
        resident,
        name="陳大文",
        doc_type="macao_id",
        doc_number=number,
        birth_date=dt.date(1980, 5, 6),
    )
    assert bound.status_code == 201, bound.text
    person = subject(doc_number=number, birth_date="1990-01-02")
    sent = await send(gd, MACAO.seal(claims(gd, subject=person), keys.enc))
    assert_refused(sent.response, 409, "identity_mismatch")
    # The matching birth date converts, into that very account.
    person = subject(doc_number=number, birth_date="1980-05-06")
    body = await convert(gd, keys, subject=person)
    mine = await gd.client.get(f"/v1/codes/{body['code']['code_id']}", headers=resident.auth)
    assert mine.status_code == 200


async def test_a_phone_whose_account_holds_another_document_is_refused(
    gd: RunningApp, keys: OurKeys
):
    resident = await gd.api.registered()
    person = subject(phone=resident.phone)
    sent = await send(gd, MACAO.seal(claims(gd, subject=person), keys.enc))
    assert_refused(sent.response, 409, "phone_in_use")
    identity = await gd.client.get("/v1/me/identity", headers=resident.auth)
    assert identity.json()["doc_type"] == "prc_id", "the account keeps its own document"


async def test_a_person_guangdong_does_not_see_as_green_is_refused_without_detail(
    gd: RunningApp, keys: OurKeys
):
    resident = await gd.api.registered()
    assert resident.doc_number is not None
    assert resident.birth_date is not None
    await feed(gd, "cases", case(resident, days_ago(gd, 0)))
    person = subject(
        doc_type="prc_id",
        doc_number=resident.doc_number,
        birth_date=resident.birth_date.isoformat(),
        phone=resident.phone,
    )
    package = claims(gd, subject=person)
    sent = await send(gd, MACAO.seal(package, keys.enc))
    assert_refused(sent.response, 422, "not_eligible_here")
    error = sent.json()["error"]
    assert "fields" not in error
    for said in (error["message"], error.get("detail", "")):
        assert "contact" not in said
        assert "red" not in said
    # The refusal is on the record of the account it was about; no code was issued to it.
    [refused] = await refused_conversions(gd, package["jti"])
    assert refused.resident_id is not None
    assert refused.error_code == "not_eligible_here"
    assert await codes_of(gd, refused.resident_id) == 0


async def test_a_refusal_after_matching_leaves_no_account_behind(gd: RunningApp, keys: OurKeys):
    """Guangdong's feeds know the document (a close contact) before the person ever signed in."""
    number, birth = random_prc_id()
    await feed(gd, "cases", case(number, days_ago(gd, 0)))
    person = subject(doc_type="prc_id", doc_number=number, birth_date=birth.isoformat())
    package = claims(gd, subject=person)
    sent = await send(gd, MACAO.seal(package, keys.enc))
    assert_refused(sent.response, 422, "not_eligible_here")
    [refused] = await refused_conversions(gd, package["jti"])
    assert (refused.state, refused.resident_id) == ("refused", None)
    resident = await gd.api.sign_in(person["phone"])
    identity = await gd.client.get("/v1/me/identity", headers=resident.auth)
    assert identity.status_code == 404, "a refused conversion must not bind the document"


# --- records of refusals -------------------------------------------------------------------------


async def test_a_refused_conversion_is_recorded_and_audited(gd: RunningApp, keys: OurKeys):
    given = consent(granted_at=now_s(gd) - 60)
    package = claims(gd, consent=given, nat={"sampled_on": days_ago(gd, 10), "result": "negative"})
    sent = await send(gd, MACAO.seal(package, keys.enc))
    assert_refused(sent.response, 422, "nat_too_old")

    [stored] = await refused_conversions(gd, package["jti"])
    assert (stored.direction, stored.state, stored.error_code) == (
        "inbound",
        "refused",
        "nat_too_old",
    )
    assert stored.code_id is None
    events = [
        e
        for e in await audit_events(gd, "exchange.inbound.refused")
        if e.detail.get("conversion") == str(stored.id)
    ]
    assert len(events) == 1
    detail = events[0].detail
    assert detail["code"] == "nat_too_old"
    assert detail["consent"] == given["id"]
    assert detail["partner"] == PARTNER
    assert detail["direction"] == "inbound"
    assert sorted(detail["fields"]) == sorted(given["fields"])
    # The package stays used: a refused package is not accepted later either.
    again = await send(gd, sent.package)
    assert_refused(again.response, 409, "package_replayed")


# --- what the endpoint accepts --------------------------------------------------------------------


async def test_a_json_body_without_a_package_is_malformed(gd: RunningApp):
    for body in (b"{}", b'{"pkg": "x"}', b'{"package": ""}', b"[]", b"not json", b""):
        response = await gd.client.post(
            INBOUND, content=body, headers={"Content-Type": "application/json"}
        )
        assert_refused(response, 400, "package_malformed")


async def test_a_form_without_one_package_is_malformed(gd: RunningApp):
    for body in (b"", b"pkg=x", b"package=", b"package=a&package=b", b"%zz"):
        response = await gd.client.post(
            INBOUND, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert_refused(response, 400, "package_malformed")


async def test_other_media_types_are_refused(gd: RunningApp, keys: OurKeys):
    package = MACAO.seal(claims(gd), keys.enc)
    for media in ("text/plain", "application/jose", "multipart/form-data; boundary=x"):
        response = await gd.client.post(INBOUND, content=package, headers={"Content-Type": media})
        assert_refused(response, 415, "unsupported_media_type")


def garbage(rng: random.Random) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        return "".join(rng.choices(string.printable, k=rng.randrange(1, 300)))
    if choice == 1:
        return ".".join(
            "".join(rng.choices(string.ascii_letters + "-_", k=rng.randrange(0, 40)))
            for _ in range(5)
        )
    if choice == 2:
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 80)))
    if choice == 3:
        header = b64url_encode(json.dumps({"alg": "none", "kid": "x"}).encode())
        return f"{header}..{b64url_encode(b'x' * 12)}.{b64url_encode(b'y')}.{b64url_encode(b'z')}"
    return "eyJ" + "A" * rng.randrange(0, 200) + "...."


async def test_garbage_is_refused_without_a_server_error(gd: RunningApp):
    rng = random.Random(20200520)
    for _ in range(40):
        text = garbage(rng)
        sent = await send(gd, text)
        assert sent.status in (400, 401, 422), (text, sent.response.text)
        response = await carry(gd, text)
        assert response.status_code in (400, 401, 422), (text, response.text)
        assert "error" in response.json()


async def test_a_huge_package_is_refused(gd: RunningApp):
    huge = "A" * (65 * 1024)
    sent = await send(gd, huge)
    assert sent.status in (400, 413), sent.response.text
    response = await carry(gd, huge)
    assert response.status_code in (400, 413), response.text


async def test_a_form_that_is_not_utf8_is_refused(gd: RunningApp):
    for body in (b"package=\xff\xfe\x00", "package=陳".encode("gb18030"), b"\xc3\x28=1"):
        response = await gd.client.post(
            INBOUND, content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert_refused(response, 400, "package_malformed")


# --- no partner -------------------------------------------------------------------------------


@pytest.fixture
async def unregistered(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[RunningApp]:
    settings = make_settings(fresh_database_url, tmp_path / "keys")
    async for running_app in start_app(settings, clock, sms):
        yield running_app


async def test_without_a_registered_partner_nothing_converts(unregistered: RunningApp):
    keys = await our_keys(unregistered)
    package = FakeMacao().seal(claims(unregistered), keys.enc)
    sent = await send(unregistered, package)
    assert_refused(sent.response, 503, "partner_not_configured")
    assert_refused(await carry(unregistered, package), 503, "partner_not_configured")
    # Once registered, Macao's packages are opened.
    await register(unregistered)
    sent = await send(unregistered, MACAO.seal(claims(unregistered), keys.enc))
    assert sent.status == 201, sent.response.text


async def test_our_key_document_lists_our_keys(gd: RunningApp):
    keys = await our_keys(gd)
    assert keys.document["issuer"] == GD
    assert keys.document["format"] == "YK1"
    code_keys = [k for k in keys.document["keys"] if k["purpose"] == "code"]
    assert code_keys
    assert all(k["use"] == "sig" for k in code_keys)
    assert keys.enc.kid != keys.sig.kid
    for entry in keys.document["keys"]:
        assert "d" not in entry


# --- the package must describe the code it carries --------------------------------------------


@pytest.mark.parametrize(
    ("code", "field"),
    [
        ({"tdoc": "PTM"}, "subject.doc_type"),
        ({"nome": "李*明"}, "subject.name"),
        ({"tan": "2020-05-10"}, "nat.sampled_on"),
    ],
    ids=["document type", "name", "test date"],
)
async def test_a_package_that_does_not_describe_its_code_is_refused(
    gd: RunningApp, keys: OurKeys, code: dict[str, str], field: str
):
    # Macao's code is what its own gates trust; a package claiming a fresher test or another
    # person than its code must not become a green code here.
    sent = await send(gd, MACAO.seal(claims(gd, code=code), keys.enc))

    assert_refused(sent.response, 422, "source_mismatch")
    assert [f["field"] for f in sent.json()["error"]["fields"]] == [field]


async def test_a_name_with_invisible_characters_is_refused(gd: RunningApp, keys: OurKeys):
    # Shown masked to staff at our checkpoints: "\u202e陳大文" would show as "\u202e*文".
    person = subject(name="\u202e陳大文")
    sent = await send(gd, MACAO.seal(claims(gd, subject=person), keys.enc))
    assert_refused(sent.response, 400, "package_malformed")
    assert [f["field"] for f in sent.json()["error"]["fields"]] == ["subject.name"]
    assert "U+202E" in sent.response.text


async def test_a_mainland_document_converts_under_the_macao_type_other(
    gd: RunningApp, keys: OurKeys
):
    number, birth = random_prc_id()
    person = subject(doc_type="prc_id", doc_number=number, birth_date=birth.isoformat())

    body = await convert(gd, keys, subject=person)

    assert body["code"]["status"] == "green"


@pytest.mark.parametrize(
    "granted_at",
    [lambda now: now - 2 * 86_400, lambda now: now + 3600, lambda now: 10**15, lambda now: 10**20],
    ids=["two days before", "in the future", "year 33000", "beyond any calendar"],
)
async def test_a_consent_not_given_for_this_transfer_is_refused(
    gd: RunningApp, keys: OurKeys, granted_at: Any
):
    given = consent(granted_at=granted_at(now_s(gd)))

    sent = await send(gd, MACAO.seal(claims(gd, consent=given), keys.enc))

    assert_refused(sent.response, 422, "consent_insufficient")


async def test_a_macao_code_valid_for_centuries_converts_without_error(
    gd: RunningApp, keys: OurKeys
):
    body = await convert(gd, keys, code={"lifetime": 2**40})

    assert body["code"]["status"] == "green"


async def test_our_own_outage_keeps_nothing_and_the_package_can_be_sent_again(
    gd: RunningApp, keys: OurKeys, monkeypatch: pytest.MonkeyPatch
):
    package = MACAO.seal(claims(gd), keys.enc)

    async def no_key(**_: object) -> None:
        return None

    with monkeypatch.context() as patched:
        patched.setattr(gd.context.keyring, "signing_key_for", no_key)
        down = await send(gd, package, idempotency_key="outage-1")
    assert error_code(down.response) == (503, "no_signing_key")

    again = await send(gd, package, idempotency_key="outage-1")

    assert again.status == 201, again.response.text
    replayed = await send(gd, package, idempotency_key="outage-1")
    assert replayed.status == 200 and replayed.json() == again.json()


async def test_a_replayed_or_unreadable_package_is_audited(gd: RunningApp, keys: OurKeys):
    package = MACAO.seal(claims(gd), keys.enc)
    assert (await carry(gd, package)).status_code == 201
    assert error_code(await carry(gd, package)) == (409, "package_replayed")
    garbled = MACAO.seal(claims(gd, subject=None), keys.enc)
    assert error_code(await carry(gd, garbled))[1] == "package_malformed"

    codes = [e.detail["code"] for e in await audit_events(gd, "exchange.inbound.refused")]

    assert "package_replayed" in codes and "package_malformed" in codes


async def test_a_refused_conversion_tells_the_holder_of_an_unproved_binding_nothing(
    gd: RunningApp, keys: OurKeys
):
    # Matching the package released the unproved binding and queued its SMS; the refusal that
    # followed (the package's phone has an account) undid the release, so the SMS must go too.
    other = await gd.api.sign_in()
    person = subject(phone=other.phone)
    squatter = await unproved_holder(gd, person)

    sent = await send(gd, MACAO.seal(claims(gd, subject=person), keys.enc))

    assert error_code(sent.response) == (409, "phone_in_use"), sent.response.text
    mine = await gd.client.get("/v1/me/identity", headers=squatter.auth)
    assert mine.status_code == 200, mine.text
    assert gd.sms.sent == []
