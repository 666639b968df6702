"""Guangdong -> Macao: a resident's green 粤康码 becomes a Macao code (docs/EXCHANGE.md, section 3).

Macao is played by an ``httpx.MockTransport`` that does what the protocol asks of it: it checks the
request signature with our key from ``GET /v1/exchange/keys``, opens the package with its own
``enc`` key, verifies the Guangdong code inside with our JWKS, and answers a repeated
``Idempotency-Key`` with its first answer. Delivery is driven by calling the outbox's ``run_once``
with the app's manual clock: the background loop the lifespan starts is cancelled, so nothing is
delivered behind the test's back.

Every test gets a database of its own: the partner row (its circuit), the outbox and the exchange
keys are global state.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from conftest import RunningApp, make_settings
from exchange.kit import (
    FIELDS,
    GD,
    MACAO,
    MACAO_URL,
    MO,
    OUTBOUND,
    PARTNER,
    TEXT_VERSION,
    FakeMacao,
    OurKeys,
    audit_events,
    feed,
    now_s,
    our_keys,
    register,
    stored_conversion,
)
from feeds.feedkit import case, days_ago, error_code, local_time, nat, today, travel
from support.api import Resident
from yuekang.clock import ManualClock, epoch
from yuekang.codec.exchange import REQUEST_PROOF_HEADER, open_package, verify_request
from yuekang.codec.jwks import parse_jwks
from yuekang.codec.keys import VerificationKey
from yuekang.codec.macao import read_macao_code
from yuekang.config import ExchangeSettings, Settings
from yuekang.exchange.models import ConsentReceipt
from yuekang.exchange.outbox import INBOUND_PATH, claim, prepare, record_result
from yuekang.health_status.models import StatusChange
from yuekang.verifier import Verifier

PACKAGE_MEMBERS = {
    "iss",
    "aud",
    "iat",
    "exp",
    "jti",
    "typ",
    "cid",
    "subject",
    "source",
    "nat",
    "travel",
    "consent",
}


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    # A long poll: the background loop is cancelled anyway, this is belt and braces.
    return make_settings(
        fresh_database_url, tmp_path / "keys", exchange=ExchangeSettings(poll_seconds=60)
    )


async def stop_background_outbox(running: RunningApp) -> None:
    """Cancel the delivery loop the app's lifespan started for this app's outbox."""
    outbox = running.context.outbox
    loops = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        is_run = getattr(coro, "__qualname__", "") == "Outbox.run"
        if is_run and frame is not None and frame.f_locals.get("self") is outbox:
            loops.append(task)
    assert len(loops) == 1, "the app runs one outbox loop"
    loops[0].cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loops[0]


@dataclass
class Received:
    idempotency_key: str
    claims: dict[str, Any]


@dataclass
class MacaoServer:
    """Macao's inbound endpoint, as the protocol describes it."""

    clock: ManualClock
    guangdong: OurKeys
    yk_keys: dict[str, VerificationKey]
    macao: FakeMacao = field(default_factory=lambda: MACAO)
    down: bool = False
    lose_next_answer: bool = False
    refusal: tuple[int, dict[str, Any]] | None = None
    calls: list[str | None] = field(default_factory=list)
    """The Idempotency-Key of every request that reached the transport."""
    received: list[Received] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        key = request.headers.get("Idempotency-Key")
        self.calls.append(key)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        assert request.method == "POST"
        assert f"{request.url.scheme}://{request.url.host}" == MACAO_URL
        assert request.url.path == INBOUND_PATH == "/v1/exchange/guangdong/inbound"
        assert request.headers["content-type"] == "application/json"
        assert key is not None, "every delivery carries an Idempotency-Key"
        now = epoch(self.clock.now())
        body = request.content
        sig = {self.guangdong.sig.kid: self.guangdong.sig}
        proof = verify_request(
            request.headers.get(REQUEST_PROOF_HEADER),
            keys=sig,
            method=request.method,
            path=request.url.raw_path.decode("ascii"),
            body=body,
            idempotency_key=key,
            now=now,
        )
        assert proof.issuer == GD
        opened = open_package(
            json.loads(body)["package"],
            decryption_keys={self.macao.enc_key.kid: self.macao.enc_key},
            sender_keys=sig,
            issuer=GD,
            audience=MO,
            now=now,
        )
        claims = dict(opened.claims)
        verdict = Verifier(self.yk_keys).verify(claims["source"]["code"], now=now)
        assert verdict.valid, verdict.reasons
        assert verdict.status == "green"
        assert verdict.issuer == GD
        self.received.append(Received(key, claims))
        if key in self.answers:
            return httpx.Response(200, json=self.answers[key])
        if self.refusal is not None:
            return httpx.Response(self.refusal[0], json=self.refusal[1])
        code = self.macao.code(now, tan=(claims.get("nat") or {}).get("sampled_on"))
        answer = {
            "conversion_id": str(uuid.uuid4()),
            "code": code,
            "colour": "verde",
            "expires_at": now + 6 * 3600,
        }
        self.answers[key] = answer
        self.issued.append(code)
        if self.lose_next_answer:
            # Macao committed its answer; the network lost it on the way back.
            self.lose_next_answer = False
            raise httpx.ReadTimeout("timed out reading the answer", request=request)
        return httpx.Response(201, json=answer)


@pytest.fixture
async def gd(running: RunningApp) -> RunningApp:
    """The app under test, its delivery loop stopped, Macao registered."""
    await stop_background_outbox(running)
    await register(running)
    return running


@pytest.fixture
async def macao(gd: RunningApp) -> AsyncIterator[MacaoServer]:
    jwks = await gd.client.get("/.well-known/jwks.json")
    clock = gd.context.clock
    assert isinstance(clock, ManualClock)
    server = MacaoServer(
        clock=clock,
        guangdong=await our_keys(gd),
        yk_keys=dict(parse_jwks(jwks.json(), issuer=GD)),
    )
    context = gd.context
    async with httpx.AsyncClient(transport=httpx.MockTransport(server.handle)) as http:
        context.outbox = context.outbox_over(http)
        yield server


def advance(gd: RunningApp, seconds: float) -> None:
    clock = gd.context.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


async def deliver(gd: RunningApp) -> int:
    return await gd.context.outbox.run_once()


# --- residents ---------------------------------------------------------------------------------


async def green_resident(gd: RunningApp, *, tested_days_ago: int = 1) -> Resident:
    """A registered resident with a negative test from ``tested_days_ago`` days ago, 09:00."""
    resident = await gd.api.registered("张小三")
    sampled = local_time(today(gd) - dt.timedelta(days=tested_days_ago), 9)
    await feed(gd, "nat-results", nat(resident, sampled))
    return resident


def consent(**changes: Any) -> dict[str, Any]:
    given: dict[str, Any] = {
        "recipient": MO,
        "fields": list(FIELDS),
        "accepted": True,
        "text_version": TEXT_VERSION,
    }
    given.update(changes)
    return {"consent": given}


async def ask(
    gd: RunningApp,
    resident: Resident,
    *,
    key: str | None = "",
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    headers = dict(resident.auth)
    if key is not None:
        headers["Idempotency-Key"] = key or uuid.uuid4().hex
    return await gd.client.post(OUTBOUND, json=consent() if body is None else body, headers=headers)


async def queued(gd: RunningApp, resident: Resident) -> dict[str, Any]:
    response = await ask(gd, resident)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert body["state"] == "queued"
    return body


async def read(gd: RunningApp, resident: Resident, conversion_id: str) -> dict[str, Any]:
    response = await gd.client.get(f"{OUTBOUND}/{conversion_id}", headers=resident.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def operator(gd: RunningApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {await gd.operator_token()}"}


async def outbox(gd: RunningApp, **params: str) -> list[dict[str, Any]]:
    response = await gd.client.get(
        "/v1/admin/exchange/outbox", headers=await operator(gd), params=params
    )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()
    return messages


async def message_of(gd: RunningApp, conversion_id: str) -> dict[str, Any]:
    (message,) = [m for m in await outbox(gd) if m["conversion_id"] == conversion_id]
    return message


async def circuit(gd: RunningApp) -> dict[str, Any]:
    response = await gd.client.get("/v1/admin/exchange/partners", headers=await operator(gd))
    assert response.status_code == 200, response.text
    (partner,) = [p for p in response.json() if p["id"] == PARTNER]
    return {"state": partner["circuit"], "until": partner["circuit_open_until"]}


async def events_of(gd: RunningApp, conversion_id: str) -> list[str]:
    return [
        e.action
        for e in await audit_events(gd)
        if e.action.startswith("exchange.outbound.")
        and isinstance(e.detail, dict)
        and e.detail.get("conversion") == conversion_id
    ]


def later(value: str | None, than: dt.datetime) -> bool:
    return value is not None and dt.datetime.fromisoformat(value) > than


# --- the consent screen ------------------------------------------------------------------------


async def test_the_consent_screen_names_macao_and_every_field(running: RunningApp):
    before = await running.client.get("/v1/exchange/macao/consent")
    assert before.status_code == 200, before.text
    assert before.json()["available"] is False
    assert before.json()["fields"] == FIELDS

    await register(running)
    screen = (await running.client.get("/v1/exchange/macao/consent")).json()
    assert screen["available"] is True
    assert screen["recipient"] == MO
    assert screen["fields"] == FIELDS
    assert screen["purpose"] == "health-code-conversion"
    assert screen["text_version"] == TEXT_VERSION
    assert set(screen["text"]) == {"zh-Hans", "zh-Hant", "en", "pt"}
    assert all(screen["recipient_name"] in text for text in screen["text"].values())
    assert "澳门" in screen["recipient_name"]


# --- the happy path ----------------------------------------------------------------------------


async def test_a_green_resident_gets_a_macao_code(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    response = await ask(gd, resident)
    assert response.status_code == 202, response.text
    asked = response.json()
    assert asked["state"] == "queued"
    assert asked["direction"] == "outbound"
    assert asked["partner"] == PARTNER
    assert asked["fields"] == FIELDS
    assert asked["partner_code"] is None
    assert asked["attempts"] == 0

    assert await deliver(gd) == 1
    done = await read(gd, resident, asked["id"])
    assert done["state"] == "delivered"
    assert done["error_code"] is None
    assert done["attempts"] == 1
    assert done["next_attempt_at"] is None
    assert done["partner_code"] == macao.issued[0]
    assert done["partner_code"].startswith("MO1:")
    assert dt.datetime.fromisoformat(done["partner_code_expires_at"]) == dt.datetime.fromtimestamp(
        macao.answers[macao.received[0].idempotency_key]["expires_at"], dt.UTC
    )
    # The Macao code is a real one: it verifies with Macao's code key, and it is green.
    macao_code = read_macao_code(done["partner_code"], MACAO.code_keys(), now=now_s(gd))
    assert macao_code.claims.cor == "verde"
    assert await deliver(gd) == 0, "a delivered message is not sent again"
    assert len(macao.calls) == 1

    assert await events_of(gd, asked["id"]) == [
        "exchange.outbound.requested",
        "exchange.outbound.sent",
        "exchange.outbound.delivered",
    ]
    conversion = await stored_conversion(gd, asked["id"])
    reads = [
        e
        for e in await audit_events(gd, "identity.read")
        if e.subject_id == str(conversion.resident_id) and e.detail.get("purpose") == "exchange"
    ]
    assert len(reads) == 1
    assert (reads[0].actor_type, reads[0].actor_id) == ("system", "outbox")

    async with gd.context.sessionmaker() as session:
        receipt = await session.get(ConsentReceipt, conversion.consent_id)
    assert receipt is not None
    assert str(receipt.id) == asked["consent_id"]
    assert (receipt.direction, receipt.partner_id, receipt.recorded_by) == ("outbound", PARTNER, GD)
    assert (receipt.recipient, receipt.text_version) == (MO, TEXT_VERSION)
    assert json.loads(receipt.fields) == FIELDS
    assert receipt.resident_id == conversion.resident_id

    mine = await gd.client.get("/v1/exchange/conversions", headers=resident.auth)
    assert [c["id"] for c in mine.json()] == [asked["id"]]


async def test_macao_receives_exactly_the_documented_package(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd, tested_days_ago=2)
    asked = await queued(gd, resident)
    assert await deliver(gd) == 1
    (received,) = macao.received
    claims = received.claims

    assert set(claims) == PACKAGE_MEMBERS
    now = now_s(gd)
    assert (claims["iss"], claims["aud"], claims["typ"]) == (GD, MO, "conversion.request")
    assert claims["iat"] == now
    assert 0 < claims["exp"] - claims["iat"] <= 600
    assert claims["cid"] == asked["id"]
    assert claims["subject"] == {
        "name": "张小三",
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "birth_date": resident.birth_date.isoformat() if resident.birth_date else None,
        "phone": resident.phone,
    }
    assert claims["nat"] == {"sampled_on": days_ago(gd, 2), "result": "negative"}
    assert claims["travel"] == {"outside_region_14d": False}
    consent_given = claims["consent"]
    assert set(consent_given) == {
        "id",
        "granted_at",
        "recipient",
        "purpose",
        "text_version",
        "fields",
    }
    assert consent_given["id"] == asked["consent_id"]
    assert consent_given["recipient"] == MO
    assert consent_given["purpose"] == "health-code-conversion"
    assert consent_given["text_version"] == TEXT_VERSION
    assert consent_given["fields"] == FIELDS
    assert consent_given["granted_at"] <= now
    # The code in the package is a fresh green code of this resident, verified by Macao already.
    verdict = Verifier(macao.yk_keys).verify(claims["source"]["code"], now=now)
    assert verdict.masked_name is not None
    assert verdict.masked_name.startswith("张")
    assert verdict.source is None, "a Guangdong code of our own: no partner provenance"
    # The Idempotency-Key is the outbox message's id.
    message = await message_of(gd, asked["id"])
    assert received.idempotency_key == message["id"]
    assert message["state"] == "delivered"


# --- asking ------------------------------------------------------------------------------------


async def test_an_idempotency_key_is_required_and_a_repeat_is_the_same_conversion(
    gd: RunningApp, macao: MacaoServer
):
    resident = await green_resident(gd)
    missing = await ask(gd, resident, key=None)
    assert error_code(missing) == (400, "idempotency_key_required")

    first = await ask(gd, resident, key="tap-1")
    assert first.status_code == 202, first.text
    again = await ask(gd, resident, key="tap-1")
    assert again.status_code == 200, again.text
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(await outbox(gd)) == 1

    # Another resident's key of the same spelling is theirs, not a repeat.
    other = await green_resident(gd)
    theirs = await ask(gd, other, key="tap-1")
    assert theirs.status_code == 202
    assert theirs.json()["id"] != first.json()["id"]
    assert len(await outbox(gd)) == 2

    assert await deliver(gd) == 2
    assert len(macao.issued) == 2


async def test_a_resident_without_a_recent_test_is_refused(gd: RunningApp, macao: MacaoServer):
    resident = await gd.api.registered()
    response = await ask(gd, resident)
    assert error_code(response) == (422, "nat_missing")
    old = await green_resident(gd, tested_days_ago=8)
    assert error_code(await ask(gd, old)) == (422, "nat_too_old")
    positive = await gd.api.registered()
    sampled = local_time(today(gd) - dt.timedelta(days=1), 9)
    await feed(gd, "nat-results", nat(positive, sampled, result="positive"))
    refused = await ask(gd, positive)
    assert error_code(refused)[0] == 422
    assert error_code(refused)[1] in ("status_not_green", "nat_not_negative")
    assert await outbox(gd) == [], "nothing was queued"


async def test_a_resident_who_is_not_green_is_refused(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    await feed(gd, "cases", case(resident, days_ago(gd, 0)))
    response = await ask(gd, resident)
    assert error_code(response) == (422, "status_not_green")
    assert await outbox(gd) == []


async def test_travel_outside_guangdong_and_macao_is_refused(gd: RunningApp, macao: MacaoServer):
    beijing = await green_resident(gd)
    await feed(gd, "travel", travel(beijing, "110101", days_ago(gd, 3)))
    assert error_code(await ask(gd, beijing)) == (422, "travel_outside_region")

    # Guangdong and Macao are the region; Beijing a month ago is over.
    home = await green_resident(gd)
    await feed(
        gd,
        "travel",
        travel(home, "440104", days_ago(gd, 1)),
        travel(home, "820000", days_ago(gd, 2)),
        travel(home, "110101", days_ago(gd, 30)),
    )
    assert (await ask(gd, home)).status_code == 202
    assert len(await outbox(gd)) == 1


CONSENTS_THAT_FALL_SHORT = {
    "a field missing": {"fields": [f for f in FIELDS if f != "travel"]},
    "an extra field": {"fields": [*FIELDS, "vaccinations"]},
    "no fields": {"fields": []},
    "ourselves as recipient": {"recipient": GD},
    "another spelling of Macao": {"recipient": "mo"},
    "declined": {"accepted": False},
    "an older consent text": {"text_version": "2019-01.0"},
}


async def test_a_consent_that_does_not_cover_the_transfer_is_refused(
    gd: RunningApp, macao: MacaoServer
):
    resident = await green_resident(gd)
    for case_name, given in CONSENTS_THAT_FALL_SHORT.items():
        response = await ask(gd, resident, body=consent(**given))
        assert error_code(response) == (422, "consent_insufficient"), (case_name, response.text)
    # The same request with the consent the screen asks for goes through.
    assert (await ask(gd, resident)).status_code == 202
    assert len(await outbox(gd)) == 1
    assert await deliver(gd) == 1
    assert len(macao.issued) == 1


async def test_a_consent_that_is_not_well_formed_is_a_validation_error(
    gd: RunningApp, macao: MacaoServer
):
    resident = await green_resident(gd)
    for body in ({}, {"consent": {"recipient": MO}}, {"consent": {**consent()["consent"], "x": 1}}):
        response = await ask(gd, resident, body=body)
        assert response.status_code in (400, 422), response.text
    assert await outbox(gd) == []


async def test_a_resident_without_an_identity_is_refused(gd: RunningApp, macao: MacaoServer):
    resident = await gd.api.sign_in()
    assert error_code(await ask(gd, resident)) == (409, "identity_required")


async def test_only_a_proved_identity_is_sent(gd: RunningApp, macao: MacaoServer):
    # We vouch for the person to Macao: a binding made before proofing is not enough, and a
    # resident who turns unverified while the message waits is not sent either.
    before_proofing = await green_resident(gd)
    await gd.unverify(before_proofing)
    assert error_code(await ask(gd, before_proofing)) == (409, "identity_unverified")
    assert await outbox(gd) == [], "nothing was queued"

    waiting = await green_resident(gd)
    conversion = await queued(gd, waiting)
    await gd.unverify(waiting)
    await deliver(gd)
    assert macao.received == []
    assert (await read(gd, waiting, conversion["id"]))["state"] == "refused"


async def test_asking_needs_a_signed_in_resident(gd: RunningApp):
    response = await gd.client.post(OUTBOUND, json=consent(), headers={"Idempotency-Key": "k"})
    assert response.status_code == 401


async def test_without_a_registered_partner_nothing_is_queued(running: RunningApp):
    await stop_background_outbox(running)
    resident = await green_resident(running)
    assert error_code(await ask(running, resident)) == (503, "partner_not_configured")


# --- delivery ----------------------------------------------------------------------------------


async def test_macao_down_then_circuit_open_then_delivered_exactly_once(
    gd: RunningApp, macao: MacaoServer
):
    resident = await green_resident(gd)
    first = await queued(gd, resident)
    macao.down = True

    assert await deliver(gd) == 1
    view = await read(gd, resident, first["id"])
    assert view["state"] == "queued"
    assert view["attempts"] == 1
    assert later(view["next_attempt_at"], gd.context.clock.now())
    assert (await message_of(gd, first["id"]))["last_error"].startswith("ConnectError")
    assert (await circuit(gd))["state"] == "closed"

    for attempt in range(2, 6):
        advance(gd, 61)
        assert await deliver(gd) == 1
        assert (await read(gd, resident, first["id"]))["attempts"] == attempt
    opened = await circuit(gd)
    assert opened["state"] == "open"
    assert later(opened["until"], gd.context.clock.now())
    assert len(macao.calls) == 5

    # A message due while the circuit is open waits for it instead of being sent.
    other = await green_resident(gd)
    second = await queued(gd, other)
    assert await deliver(gd) == 0
    assert len(macao.calls) == 5
    waiting = await read(gd, other, second["id"])
    assert (waiting["state"], waiting["attempts"]) == ("queued", 0)
    assert waiting["next_attempt_at"] == opened["until"]

    # Macao is back: once the window and the backoff have passed, both are delivered.
    macao.down = False
    advance(gd, 120)
    assert await deliver(gd) == 2
    assert (await circuit(gd))["state"] == "closed"
    done = await read(gd, resident, first["id"])
    assert done["state"] == "delivered"
    assert done["attempts"] == 6
    assert (await read(gd, other, second["id"]))["state"] == "delivered"

    key = (await message_of(gd, first["id"]))["id"]
    assert [k for k in macao.calls if k == key] == [key] * 6, "the same key on every attempt"
    assert len(macao.issued) == 2
    assert done["partner_code"] == macao.answers[key]["code"]
    assert await events_of(gd, first["id"]) == [
        "exchange.outbound.requested",
        *["exchange.outbound.sent"] * 6,
        "exchange.outbound.delivered",
    ]


async def test_a_server_error_is_retried(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    macao.refusal = (503, {"error": {"code": "unavailable", "message": "busy"}})
    assert await deliver(gd) == 1
    view = await read(gd, resident, asked["id"])
    assert (view["state"], view["attempts"], view["error_code"]) == ("queued", 1, None)
    assert (await message_of(gd, asked["id"]))["last_error"] == "http_503: unavailable"
    macao.refusal = None
    advance(gd, 61)
    assert await deliver(gd) == 1
    assert (await read(gd, resident, asked["id"]))["state"] == "delivered"


async def test_an_answer_lost_after_macao_issued_is_not_issued_twice(
    gd: RunningApp, macao: MacaoServer
):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    macao.lose_next_answer = True

    assert await deliver(gd) == 1
    view = await read(gd, resident, asked["id"])
    assert (view["state"], view["attempts"]) == ("queued", 1)
    assert view["partner_code"] is None
    assert len(macao.issued) == 1, "Macao did issue a code"

    advance(gd, 61)
    assert await deliver(gd) == 1
    done = await read(gd, resident, asked["id"])
    assert done["state"] == "delivered"
    assert done["partner_code"] == macao.issued[0]
    assert len(macao.issued) == 1, "the retry got the first answer, not a second code"
    assert len({r.idempotency_key for r in macao.received}) == 1
    assert len(macao.received) == 2
    # Each attempt sealed a fresh package: a new jti, the same conversion.
    first, second = (r.claims for r in macao.received)
    assert first["jti"] != second["jti"]
    assert first["cid"] == second["cid"] == asked["id"]


async def test_a_refusal_from_macao_is_final(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    macao.refusal = (422, {"error": {"code": "nat_too_old", "message": "teste antigo"}})

    assert await deliver(gd) == 1
    view = await read(gd, resident, asked["id"])
    assert (view["state"], view["error_code"]) == ("refused", "nat_too_old")
    assert view["next_attempt_at"] is None
    assert view["partner_code"] is None
    advance(gd, 3600)
    assert await deliver(gd) == 0
    assert len(macao.calls) == 1
    message = await message_of(gd, asked["id"])
    assert (message["state"], message["last_error"]) == ("refused", "nat_too_old")
    assert (await events_of(gd, asked["id"]))[-1] == "exchange.outbound.refused"


async def test_a_status_that_turns_red_while_queued_is_not_sent(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    await feed(gd, "cases", case(resident, days_ago(gd, 0)))

    assert await deliver(gd) == 0
    assert macao.calls == [], "nothing reached Macao"
    view = await read(gd, resident, asked["id"])
    assert (view["state"], view["error_code"]) == ("refused", "status_not_green")
    assert (await message_of(gd, asked["id"]))["state"] == "refused"
    assert await events_of(gd, asked["id"]) == [
        "exchange.outbound.requested",
        "exchange.outbound.refused",
    ]


async def test_a_message_older_than_max_age_fails(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    advance(gd, gd.context.settings.exchange.max_age_seconds + 1)

    assert await deliver(gd) == 0
    assert macao.calls == []
    resident = await gd.api.sign_in(resident.phone)  # a day later: the session has expired
    view = await read(gd, resident, asked["id"])
    assert (view["state"], view["error_code"]) == ("failed", "partner_unreachable")
    assert (await message_of(gd, asked["id"]))["state"] == "failed"


# --- who sees what -------------------------------------------------------------------------------


async def test_operators_see_the_outbox_and_residents_only_their_own(
    gd: RunningApp, macao: MacaoServer
):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    pending = await outbox(gd)
    assert [(m["conversion_id"], m["state"], m["attempts"]) for m in pending] == [
        (asked["id"], "pending", 0)
    ]
    assert await outbox(gd, state="delivered") == []
    assert await deliver(gd) == 1
    (delivered,) = await outbox(gd, state="delivered")
    assert delivered["conversion_id"] == asked["id"]
    assert delivered["delivered_at"] is not None
    assert "payload" not in json.dumps(delivered)

    other = await gd.api.registered()
    theirs = await gd.client.get(f"{OUTBOUND}/{asked['id']}", headers=other.auth)
    assert error_code(theirs) == (404, "conversion_not_found")
    missing = await gd.client.get(f"{OUTBOUND}/{uuid.uuid4()}", headers=resident.auth)
    assert missing.status_code == 404
    mine = await gd.client.get("/v1/exchange/conversions", headers=other.auth)
    assert mine.json() == []

    # A resident's token opens no admin door.
    assert (
        await gd.client.get("/v1/admin/exchange/outbox", headers=resident.auth)
    ).status_code in (401, 403)
    assert (
        await gd.client.get("/v1/admin/exchange/partners", headers=resident.auth)
    ).status_code in (401, 403)


async def test_a_refused_request_is_audited_with_its_reason(gd: RunningApp, macao: MacaoServer):
    resident = await gd.api.registered("张小三")  # no test at all

    response = await ask(gd, resident)

    assert error_code(response) == (422, "nat_missing")
    events = await audit_events(gd, "exchange.outbound.refused")
    assert [(e.actor_type, e.detail["code"]) for e in events] == [("resident", "nat_missing")]
    assert await outbox(gd) == []


async def test_the_longest_idempotency_key_is_accepted(gd: RunningApp, macao: MacaoServer):
    resident = await green_resident(gd)
    key = "k" * 128

    first = await ask(gd, resident, key=key)
    again = await ask(gd, resident, key=key)

    assert first.status_code == 202, first.text
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (429, {"error": {"code": "rate_limited", "message": "devagar"}}),
        (401, {"error": {"code": "unknown_sender_key", "message": "chave desconhecida"}}),
        (422, {"error": {"code": "wrong_recipient_key", "message": "outra chave"}}),
    ],
    ids=["throttled", "our key not synced there", "their key rotated"],
)
async def test_not_now_is_retried_not_refused(
    gd: RunningApp, macao: MacaoServer, status: int, body: dict[str, Any]
):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    macao.refusal = (status, body)

    assert await deliver(gd) == 1
    view = await read(gd, resident, asked["id"])
    assert view["state"] == "queued" and view["next_attempt_at"] is not None
    assert body["error"]["code"] in (await message_of(gd, asked["id"]))["last_error"]

    macao.refusal = None
    advance(gd, 120)
    assert await deliver(gd) == 1
    assert (await read(gd, resident, asked["id"]))["state"] == "delivered"
    assert len(macao.issued) == 1


async def test_our_own_outage_is_retried(
    gd: RunningApp, macao: MacaoServer, monkeypatch: pytest.MonkeyPatch
):
    resident = await green_resident(gd)
    asked = await queued(gd, resident)

    async def no_key(**_: object) -> None:
        return None

    with monkeypatch.context() as patched:
        patched.setattr(gd.context.keyring, "signing_key_for", no_key)
        assert await deliver(gd) == 0
    assert (await message_of(gd, asked["id"]))["last_error"] == "no_signing_key"
    assert (await read(gd, resident, asked["id"]))["state"] == "queued"
    advance(gd, 120)
    assert await deliver(gd) == 1
    assert (await read(gd, resident, asked["id"]))["state"] == "delivered"


async def test_an_attempt_whose_lease_was_taken_over_records_nothing(
    gd: RunningApp, macao: MacaoServer
):
    # A process that stalled past its lease must not overwrite what the process that took the
    # message over recorded, nor send it a second time.
    resident = await green_resident(gd)
    asked = await queued(gd, resident)
    async with gd.context.sessionmaker() as session, session.begin():
        [message_id] = await claim(
            session, now=gd.context.clock.now(), lease=dt.timedelta(seconds=1), token="stalled"
        )
    advance(gd, 2)
    assert await deliver(gd) == 1
    assert (await read(gd, resident, asked["id"]))["state"] == "delivered"

    async with gd.context.sessionmaker() as session, session.begin():
        late = await prepare(
            session,
            message_id,
            token="stalled",
            deps=gd.context.exchange_deps(),
            settings=gd.context.settings.exchange,
            rules=await gd.context.rulebook.current(),
            now=gd.context.clock.now(),
        )
        outcome = await record_result(
            session,
            message_id,
            token="stalled",
            response=None,
            error="ReadTimeout",
            settings=gd.context.settings.exchange,
            rng=random.Random(1),
            now=gd.context.clock.now(),
        )

    assert late is None and outcome == "stale"
    assert (await read(gd, resident, asked["id"]))["state"] == "delivered"
    assert len(macao.issued) == 1


async def test_a_refused_transfer_keeps_the_status_its_check_decided_again(
    gd: RunningApp, macao: MacaoServer
):
    # The yellow of a secondary contact lapses; asking for a transfer decides the status again
    # (green) before refusing for want of a test. That decision is kept, with its time.
    resident = await gd.api.registered()
    account = (await gd.client.get("/v1/me", headers=resident.auth)).json()
    await feed(gd, "cases", case(resident, today(gd).isoformat(), "secondary_contact"))
    me = await gd.client.get("/v1/me/status", headers=resident.auth)
    assert me.json()["status"] == "yellow", me.text
    lapse = dt.datetime.fromisoformat(me.json()["valid_until"])
    clock = gd.context.clock
    assert isinstance(clock, ManualClock)
    clock.set(lapse)
    resident = await gd.api.sign_in(resident.phone)

    refused = await ask(gd, resident)

    assert error_code(refused) == (422, "nat_missing"), refused.text
    async with gd.context.sessionmaker() as session:
        changes = (
            await session.execute(
                select(StatusChange.old_status, StatusChange.new_status, StatusChange.at)
                .where(StatusChange.resident_id == uuid.UUID(account["resident_id"]))
                .order_by(StatusChange.id)
            )
        ).all()
    assert changes[-1] == ("yellow", "green", lapse), changes
