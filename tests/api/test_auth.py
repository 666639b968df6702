"""Phone sign-in: one-time codes and their limits; sessions, their renewal and their end."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from conftest import TEST_SECRETS, RunningApp, make_settings, start_app
from support.api import answer, random_phone
from yuekang.auth.sms import MemorySmsSender, SmsDeliveryError
from yuekang.clock import ManualClock, epoch
from yuekang.config import OtpSettings, SessionSettings


@asynccontextmanager
async def from_address(running: RunningApp, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another client of the same server, connecting from ``address``."""
    app = running.client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def ask(client: httpx.AsyncClient, phone: str) -> dict[str, Any]:
    sent = await client.post("/v1/auth/otp", json={"phone": phone})
    assert sent.status_code == 200, sent.text
    body: dict[str, Any] = sent.json()
    return body


async def exchange(
    client: httpx.AsyncClient, phone: str, challenge: Any, code: str
) -> httpx.Response:
    return await client.post(
        "/v1/auth/token", json={"phone": phone, "challenge_id": str(challenge), "code": code}
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_sign_in_sends_a_six_digit_code_and_returns_a_session(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(database_url, tmp_path, otp=OtpSettings(per_client_limit=1000))
    async for running in start_app(settings, clock, sms):
        await _sign_in_sends(running, clock)


async def _sign_in_sends(running: RunningApp, clock: ManualClock) -> None:
    phone = random_phone()
    sent = await ask(running.client, phone)
    code = sent["dev_code"]
    assert len(code) == 6 and code.isdigit()
    assert running.sms.sent[-1][0] == phone and code in running.sms.sent[-1][1]
    assert uuid.UUID(sent["challenge_id"])
    resend_at = dt.datetime.fromisoformat(sent["resend_at"])
    assert resend_at == clock.now() + dt.timedelta(seconds=60) and sent["resend_in"] == 60

    token = await exchange(running.client, phone, sent["challenge_id"], code)
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 900
    assert body["refresh_token"].startswith("ykr1.")
    me = await running.client.get("/v1/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["phone"] == f"{phone[3:6]}****{phone[-4:]}"


async def test_dev_code_is_only_returned_in_development(
    database_url: str, tmp_path: Path, clock: ManualClock
):
    settings = make_settings(
        database_url,
        tmp_path,
        env="prod",
        sms={"backend": "http", "http_url": "http://127.0.0.1:9/sms", "http_token": "t" * 16},
    )
    sms = MemorySmsSender()
    async for app in start_app(settings, clock, sms, bootstrap=False):
        sent = await app.api.request_otp(random_phone())
        assert sent.status_code == 200
        assert sent.json()["dev_code"] is None
        assert len(sms.sent) == 1


async def test_a_code_is_single_use(running: RunningApp):
    phone = random_phone()
    sent = await ask(running.client, phone)
    first = await exchange(running.client, phone, sent["challenge_id"], sent["dev_code"])
    again = await exchange(running.client, phone, sent["challenge_id"], sent["dev_code"])
    assert first.status_code == 200
    assert again.status_code == 401 and again.json()["error"]["code"] == "otp_invalid"


async def test_codes_expire_after_five_minutes(running: RunningApp, clock: ManualClock):
    phone = random_phone()
    sent = await ask(running.client, phone)
    clock.advance(300)
    late = await exchange(running.client, phone, sent["challenge_id"], sent["dev_code"])
    assert late.status_code == 401 and late.json()["error"]["code"] == "otp_expired"


async def test_five_wrong_guesses_kill_the_challenge(running: RunningApp):
    phone = random_phone()
    sent = await ask(running.client, phone)
    for _ in range(5):
        response = await exchange(
            running.client, phone, sent["challenge_id"], wrong(sent["dev_code"])
        )
        assert response.json()["error"]["code"] == "otp_invalid"
    right = await exchange(running.client, phone, sent["challenge_id"], sent["dev_code"])
    assert right.status_code == 401
    assert right.json()["error"]["code"] == "otp_attempts_exceeded"


async def test_a_stranger_asking_for_codes_does_not_spoil_the_one_being_typed(
    running: RunningApp, clock: ManualClock
):
    phone = random_phone()
    mine = await ask(running.client, phone)
    async with from_address(running, "198.51.100.20") as stranger:
        for _ in range(3):
            clock.advance(60)
            theirs = await ask(stranger, phone)
            # ...and guessing at their own challenges costs the owner nothing.
            for _ in range(5):
                await exchange(stranger, phone, theirs["challenge_id"], wrong(mine["dev_code"]))
    signed_in = await exchange(running.client, phone, mine["challenge_id"], mine["dev_code"])
    assert signed_in.status_code == 200, signed_in.text


async def test_a_code_opens_only_its_own_challenge(running: RunningApp):
    phone, other_phone = random_phone(), random_phone()
    first = await ask(running.client, phone)
    async with from_address(running, "198.51.100.21") as elsewhere:
        second = await ask(elsewhere, phone)
        other = await ask(elsewhere, other_phone)
    swapped = await exchange(running.client, phone, second["challenge_id"], first["dev_code"])
    assert swapped.status_code == 401 and swapped.json()["error"]["code"] == "otp_invalid"
    # Another phone's challenge is no challenge at all, even with its right code.
    crossed = await exchange(running.client, phone, other["challenge_id"], other["dev_code"])
    assert crossed.status_code == 401 and crossed.json()["error"]["code"] == "otp_invalid"
    unknown = await exchange(running.client, phone, uuid.uuid4(), first["dev_code"])
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "otp_invalid"
    # Both of the phone's own codes still work, each with its challenge.
    assert (
        await exchange(running.client, phone, second["challenge_id"], second["dev_code"])
    ).status_code == 200
    assert (
        await exchange(running.client, phone, first["challenge_id"], first["dev_code"])
    ).status_code == 200


async def test_code_checks_are_limited_per_address(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url,
        tmp_path,
        otp=OtpSettings(per_client_limit=1000, verify_per_client_limit=3),
    )
    address = f"2001:db8:{uuid.uuid4().hex[:4]}::1"
    async for app in start_app(settings, clock, sms, client_address=address):
        phones = [random_phone() for _ in range(4)]
        challenges = [await ask(app.client, phone) for phone in phones]
        for phone, sent in zip(phones[:3], challenges[:3], strict=True):
            refused = await exchange(
                app.client, phone, sent["challenge_id"], wrong(sent["dev_code"])
            )
            assert refused.json()["error"]["code"] == "otp_invalid"
        # Even the right code: this address has used its checks for the hour.
        limited = await exchange(
            app.client, phones[3], challenges[3]["challenge_id"], challenges[3]["dev_code"]
        )
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 0 < int(limited.headers["Retry-After"]) <= 3600


async def test_a_phone_and_address_wait_a_minute_between_codes(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(database_url, tmp_path, otp=OtpSettings(per_client_limit=1000))
    async for running in start_app(settings, clock, sms):
        await _wait_a_minute(running, clock)


async def _wait_a_minute(running: RunningApp, clock: ManualClock) -> None:
    phone = random_phone()
    await ask(running.client, phone)
    clock.advance(20)
    again = await running.client.post("/v1/auth/otp", json={"phone": phone})
    assert again.status_code == 429
    assert again.json()["error"]["code"] == "otp_resend_wait"
    assert again.headers["Retry-After"] == "40"
    # Someone else asking for the same phone is not held back by it (nor holds it back).
    async with from_address(running, "198.51.100.22") as elsewhere:
        await ask(elsewhere, phone)
    clock.advance(39)
    assert (await running.client.post("/v1/auth/otp", json={"phone": phone})).status_code == 429
    clock.advance(1)
    await ask(running.client, phone)


async def test_requests_are_limited_per_phone(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url, tmp_path, otp=OtpSettings(per_phone_limit=3, per_client_limit=1000)
    )
    async for app in start_app(settings, clock, sms):
        clock.advance(3600 - epoch(clock.now()) % 3600)  # at the start of an hour on the clock
        phone = random_phone()
        for _ in range(3):
            assert (await app.api.request_otp(phone)).status_code == 200
            clock.advance(60)
        refused = await app.api.request_otp(phone)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert (await app.api.request_otp(random_phone())).status_code == 200
        # The limit slides: the last hour counts, not the hour on the clock.
        clock.advance(3600)
        assert (await app.api.request_otp(phone)).status_code == 429
        clock.advance(3600)
        assert (await app.api.request_otp(phone)).status_code == 200


async def test_per_address_limit_holds_across_two_server_processes(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    """Two app instances with separate engines share only the database, as two processes do."""
    settings = make_settings(database_url, tmp_path, otp=OtpSettings(per_client_limit=4))
    # Unique per run, so earlier runs against a shared server cannot interfere.
    address = f"2001:db8:{uuid.uuid4().hex[:4]}::1"
    async for first in start_app(settings, clock, sms, client_address=address):
        async for second in start_app(settings, clock, sms, client_address=address):
            statuses = []
            for app in (first, second, first, second, first, second):
                response = await app.api.request_otp(random_phone())
                statuses.append(response.status_code)
            assert statuses == [200, 200, 200, 200, 429, 429]
            # A made-up X-Forwarded-For does not open a fresh bucket.
            spoofed = await first.api.request_otp(
                random_phone(), headers={"X-Forwarded-For": "203.0.113.7"}
            )
            assert spoofed.status_code == 429


async def test_ipv6_clients_are_counted_by_their_64(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(database_url, tmp_path, otp=OtpSettings(per_client_limit=2))
    network = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    statuses = []
    for host in ("::1", "::2", ":ffff:ffff:ffff:ffff"):
        async for app in start_app(settings, clock, sms, client_address=network + host):
            statuses.append((await app.api.request_otp(random_phone())).status_code)
    assert statuses == [200, 200, 429]
    # The next /64 is someone else.
    prefix, _, last = network.rpartition(":")
    neighbour = f"{prefix}:{(int(last, 16) + 1) % 0x10000:x}::1"
    async for app in start_app(settings, clock, sms, client_address=neighbour):
        assert (await app.api.request_otp(random_phone())).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"phone": "+86123"}, 422, "validation_error"),
        ({"phone": "12800138000"}, 422, "validation_error"),
        ({"phone": "13800138000", "region": "MO"}, 422, "validation_error"),
        ({"phone": "66123456", "region": "XX"}, 422, "validation_error"),
        ({"phone": "+8612800138000"}, 422, "validation_error"),
        ({"phone": "+8613800138000", "extra": 1}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"phone": 8613800138000}, 422, "validation_error"),
        ({"phone": "+86١٣٨٠٠١٣٨٠٠٠"}, 422, "validation_error"),
    ],
)
async def test_bad_phone_input_is_a_clear_422(running: RunningApp, body, status, code):
    response = await running.client.post("/v1/auth/otp", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["fields"]


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in text)


def _mo(n: str) -> str:
    return "6" + n[4:]  # an 8-digit Macao mobile


def _hk(n: str) -> str:
    return "9" + n[4:]  # an 8-digit Hong Kong mobile


@pytest.mark.parametrize(
    ("spell", "region", "e164"),
    [
        pytest.param(lambda n: n, None, lambda n: "+86" + n, id="plain"),
        pytest.param(lambda n: f"{n[:3]} {n[3:7]} {n[7:]}", None, lambda n: "+86" + n, id="spaces"),
        pytest.param(lambda n: f"{n[:3]}-{n[3:7]}-{n[7:]}", "CN", lambda n: "+86" + n, id="dashes"),
        pytest.param(lambda n: f"(+86) {n[:3]}.{n[3:]}", None, lambda n: "+86" + n, id="brackets"),
        pytest.param(lambda n: f"0086 {n}", None, lambda n: "+86" + n, id="00"),
        pytest.param(lambda n: f"86{n}", None, lambda n: "+86" + n, id="86"),
        # Full-width digits, as a Chinese input method types them.
        pytest.param(_full_width, None, lambda n: "+86" + n, id="full-width"),
        pytest.param(
            lambda n: f"{_mo(n)[:4]} {_mo(n)[4:]}", "MO", lambda n: "+853" + _mo(n), id="mo"
        ),
        pytest.param(
            lambda n: f"{_hk(n)[:4]}-{_hk(n)[4:]}", "HK", lambda n: "+852" + _hk(n), id="hk"
        ),
        # A number with its country code says where it is from, whatever region is chosen.
        pytest.param(lambda n: f"+853 {_mo(n)}", "HK", lambda n: "+853" + _mo(n), id="plus"),
    ],
)
async def test_numbers_are_taken_as_people_type_them_and_stored_in_e164(
    running: RunningApp, spell: Any, region: str | None, e164: Any
):
    mobile = "139" + "".join(random.choices("0123456789", k=8))
    body: dict[str, Any] = {"phone": spell(mobile)} | ({"region": region} if region else {})
    sent = await running.client.post("/v1/auth/otp", json=body)
    assert sent.status_code == 200, sent.text
    assert running.sms.sent[-1][0] == e164(mobile)
    code = sent.json()["dev_code"]

    token = await running.client.post(
        "/v1/auth/token", json={**body, "challenge_id": sent.json()["challenge_id"], "code": code}
    )

    assert token.status_code == 200, token.text


async def test_an_eight_digit_number_without_its_region_asks_for_it(running: RunningApp):
    response = await running.client.post("/v1/auth/otp", json={"phone": "6612 3456"})

    assert response.status_code == 422
    [field] = response.json()["error"]["fields"]
    assert (field["field"], field["reason"]) == ("region", "region_required")
    assert running.sms.sent == [] or running.sms.sent[-1][0] != "+85366123456"


async def test_token_request_validates_its_fields(running: RunningApp):
    bad_code = await running.client.post(
        "/v1/auth/token",
        json={"phone": random_phone(), "challenge_id": str(uuid.uuid4()), "code": "12ab56"},
    )
    assert bad_code.status_code == 422
    assert bad_code.json()["error"]["fields"][0]["field"] == "code"
    no_challenge = await running.client.post(
        "/v1/auth/token", json={"phone": random_phone(), "code": "123456"}
    )
    assert no_challenge.status_code == 422
    assert no_challenge.json()["error"]["fields"][0]["field"] == "challenge_id"


async def test_session_tokens_are_checked(running: RunningApp, clock: ManualClock):
    resident = await running.api.sign_in()
    assert (await running.client.get("/v1/me", headers=resident.auth)).status_code == 200
    missing = await running.client.get("/v1/me")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_token"
    forged = jwt.encode(
        jwt.decode(resident.token, options={"verify_signature": False}),
        "x" * 32,
        algorithm="HS256",
    )
    refused = await running.client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_token"
    clock.advance(900)
    expired = await running.client.get("/v1/me", headers=resident.auth)
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "token_expired"


async def test_a_health_code_is_not_a_session_token(running: RunningApp):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    jws = code["qr_text"].removeprefix("YK1:")
    for token in (code["qr_text"], jws):
        response = await running.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"


async def test_a_session_token_is_not_a_health_code(running: RunningApp):
    resident = await running.api.sign_in()
    key = await running.checkpoint_key()
    for text in (resident.token, "YK1:" + resident.token):
        verdict = await running.client.post(
            "/v1/verify", json={"qr_text": text}, headers={"Authorization": f"Bearer {key}"}
        )
        assert verdict.status_code == 200
        assert verdict.json()["verdict"] == "invalid"
        assert verdict.json()["reasons"][0]["code"] in {"malformed", "algorithm_not_allowed"}
    prefixed = await running.client.post(
        "/v1/verify",
        json={"qr_text": "YK1:" + resident.token},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert prefixed.json()["reasons"][0]["code"] == "algorithm_not_allowed"


# --- sessions ------------------------------------------------------------------------------------


async def sign_in(client: httpx.AsyncClient, phone: str | None = None) -> dict[str, Any]:
    phone = phone or random_phone()
    sent = await ask(client, phone)
    token = await client.post("/v1/auth/token", json={"phone": phone, **answer(sent)})
    assert token.status_code == 200, token.text
    body: dict[str, Any] = token.json()
    return body


async def renew(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


def error_code(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


async def test_a_session_is_renewed_with_its_refresh_token(running: RunningApp, clock: ManualClock):
    first = await sign_in(running.client)
    clock.advance(900)
    expired = await running.client.get("/v1/me", headers=bearer(first["access_token"]))
    assert error_code(expired) == "token_expired"

    renewed = await renew(running.client, first["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    second = renewed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["expires_in"] == 900
    me = await running.client.get("/v1/me", headers=bearer(second["access_token"]))
    assert me.status_code == 200
    # Renewing moves the session's end: it runs out 30 days after its last use.
    assert second["session_expires_at"] > first["session_expires_at"]


async def test_a_replayed_refresh_token_ends_the_session_for_both_holders(
    running: RunningApp, clock: ManualClock
):
    first = await sign_in(running.client)
    thief = (await renew(running.client, first["refresh_token"])).json()
    # The owner's phone still has the old one and sends it: two parties hold this session.
    replayed = await renew(running.client, first["refresh_token"])
    assert replayed.status_code == 401 and error_code(replayed) == "session_ended"
    refused = await running.client.get("/v1/me", headers=bearer(thief["access_token"]))
    assert refused.status_code == 401 and error_code(refused) == "session_ended"
    assert error_code(await renew(running.client, thief["refresh_token"])) == "session_ended"


async def test_signing_out_ends_the_session_at_once(running: RunningApp):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    # The image is cached for its owner and answered without the database...
    png = code["png_url"].removeprefix("http://testserver")
    assert (await running.client.get(png, headers=resident.auth)).status_code == 200

    out = await running.client.post("/v1/auth/logout", headers=resident.auth)
    assert out.status_code == 204
    for path in ("/v1/me", png):
        refused = await running.client.get(path, headers=resident.auth)
        assert refused.status_code == 401, path
        assert error_code(refused) == "session_ended"
    assert error_code(await renew(running.client, resident.refresh_token)) == "session_ended"
    again = await running.client.post("/v1/auth/logout", headers=resident.auth)
    assert again.status_code == 401


async def test_signing_out_everywhere_ends_every_phone_of_the_account(
    running: RunningApp, clock: ManualClock
):
    phone = random_phone()
    lost = await sign_in(running.client, phone)
    clock.advance(1)
    async with from_address(running, "198.51.100.30") as other_phone:
        here = await sign_in(other_phone, phone)
    other = await sign_in(running.client)

    listed = await running.client.get("/v1/me/sessions", headers=bearer(here["access_token"]))
    assert listed.status_code == 200
    assert [(s["current"]) for s in listed.json()] == [True, False]

    ended = await running.client.delete("/v1/me/sessions", headers=bearer(here["access_token"]))
    assert ended.json() == {"ended": 2}
    for tokens in (lost, here):
        refused = await running.client.get("/v1/me", headers=bearer(tokens["access_token"]))
        assert error_code(refused) == "session_ended"
        assert error_code(await renew(running.client, tokens["refresh_token"])) == "session_ended"
    # Another account is untouched.
    assert (
        await running.client.get("/v1/me", headers=bearer(other["access_token"]))
    ).status_code == 200


async def test_one_phone_is_signed_out_from_another(running: RunningApp, clock: ManualClock):
    phone = random_phone()
    lost = await sign_in(running.client, phone)
    clock.advance(60)
    here = await sign_in(running.client, phone)
    stranger = await sign_in(running.client)
    lost_id = jwt.decode(lost["access_token"], options={"verify_signature": False})["sid"]
    stranger_id = jwt.decode(stranger["access_token"], options={"verify_signature": False})["sid"]

    # Someone else's session is not this account's to end.
    foreign = await running.client.delete(
        f"/v1/me/sessions/{uuid.UUID(hex=stranger_id)}", headers=bearer(here["access_token"])
    )
    assert foreign.status_code == 404 and error_code(foreign) == "session_not_found"
    assert (
        await running.client.get("/v1/me", headers=bearer(stranger["access_token"]))
    ).status_code == 200

    done = await running.client.delete(
        f"/v1/me/sessions/{uuid.UUID(hex=lost_id)}", headers=bearer(here["access_token"])
    )
    assert done.status_code == 204
    assert (
        error_code(await running.client.get("/v1/me", headers=bearer(lost["access_token"])))
        == "session_ended"
    )
    assert (
        await running.client.get("/v1/me", headers=bearer(here["access_token"]))
    ).status_code == 200


async def test_a_session_ends_when_idle_or_at_its_cap(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url,
        tmp_path,
        session=SessionSettings(idle_seconds=3600, max_seconds=3 * 3600),
    )
    async for app in start_app(settings, clock, sms):
        idle = await sign_in(app.client)
        clock.advance(3600)
        assert error_code(await renew(app.client, idle["refresh_token"])) == "session_expired"

        used = await sign_in(app.client)
        for _ in range(2):
            clock.advance(3000)
            used = (await renew(app.client, used["refresh_token"])).json()
        # Renewed 6,000 s into a 10,800 s cap: the access token stops with the session.
        clock.advance(3000)
        last = (await renew(app.client, used["refresh_token"])).json()
        assert last["expires_in"] == 900
        clock.advance(1800 - 1)
        last = (await renew(app.client, last["refresh_token"])).json()
        assert last["expires_in"] == 1
        clock.advance(1)
        assert error_code(await renew(app.client, last["refresh_token"])) == "session_expired"


async def test_an_ended_session_is_refused_by_every_process(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url, tmp_path, session=SessionSettings(revocation_poll_seconds=0.2)
    )
    async for first in start_app(settings, clock, sms):
        async for second in start_app(settings, clock, sms):
            tokens = await sign_in(first.client)
            auth = bearer(tokens["access_token"])
            assert (await second.client.get("/v1/me", headers=auth)).status_code == 200
            assert (await first.client.post("/v1/auth/logout", headers=auth)).status_code == 204
            await asyncio.sleep(0.25)
            refused = await second.client.get("/v1/me", headers=auth)
            assert refused.status_code == 401 and error_code(refused) == "session_ended"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ykr1",
        "ykr1..",
        "ykr2." + "0" * 32 + "." + "A" * 43,
        "ykr1." + "0" * 32 + "." + "A" * 43,
        "ykr1." + "g" * 32 + "." + "A" * 43,
        "ykr1." + "0" * 32 + "." + "A" * 42 + "B",
        "ykr1." + "0" * 32 + "." + "A" * 42 + "=",
        "ykr1." + "0" * 32 + "." + "*" * 43,
    ],
)
async def test_malformed_refresh_tokens_are_a_clear_401(running: RunningApp, token: str):
    response = await renew(running.client, token)
    assert response.status_code == 401
    assert error_code(response) == "invalid_refresh_token"


async def test_a_forged_refresh_secret_does_not_end_the_session(running: RunningApp):
    tokens = await sign_in(running.client)
    prefix, session_hex, _ = tokens["refresh_token"].split(".")
    forged = await renew(running.client, f"{prefix}.{session_hex}.{'A' * 43}")
    assert forged.status_code == 401 and error_code(forged) == "invalid_refresh_token"
    assert (await renew(running.client, tokens["refresh_token"])).status_code == 200


async def test_an_access_token_without_a_session_is_refused(
    running: RunningApp, clock: ManualClock
):
    """Tokens from before sessions existed name no session and cannot be ended: refused."""
    tokens = await sign_in(running.client)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    del claims["sid"]
    old = jwt.encode(claims, TEST_SECRETS.session_secret, algorithm="HS256")
    refused = await running.client.get("/v1/me", headers=bearer(old))
    assert refused.status_code == 401 and error_code(refused) == "invalid_token"


async def test_one_address_cannot_use_up_a_phones_allowance(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url,
        tmp_path,
        otp=OtpSettings(
            per_phone_limit=4, per_phone_client_limit=2, per_client_limit=1000, resend_seconds=0
        ),
    )
    async for app in start_app(settings, clock, sms):
        phone = random_phone()
        async with from_address(app, "198.51.100.40") as stranger:
            answers = [
                (await stranger.post("/v1/auth/otp", json={"phone": phone})).status_code
                for _ in range(6)
            ]
        assert answers == [200, 200, 429, 429, 429, 429]
        # Its owner, elsewhere, still gets codes...
        await ask(app.client, phone)
        # ...until several addresses together reach the phone's own limit.
        async with from_address(app, "198.51.100.41") as other:
            await ask(other, phone)
            refused = await other.post("/v1/auth/otp", json={"phone": phone})
        assert refused.status_code == 429
        assert (await app.client.post("/v1/auth/otp", json={"phone": phone})).status_code == 429


async def test_the_per_phone_limit_does_not_double_at_the_edge_of_an_hour(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url,
        tmp_path,
        otp=OtpSettings(per_phone_limit=3, per_client_limit=1000, resend_seconds=0),
    )
    async for app in start_app(settings, clock, sms):
        # Ten seconds before an hour on the clock turns.
        clock.advance(3600 - epoch(clock.now()) % 3600 - 10)
        phone = random_phone()
        async with from_address(app, "198.51.100.50") as a, from_address(app, "198.51.100.51") as b:
            for client in (a, b, a):
                await ask(client, phone)
                clock.advance(1)
            clock.advance(10)  # a new hour on the clock
            edge = await b.post("/v1/auth/otp", json={"phone": phone})
            assert edge.status_code == 429
            # Three codes in the last hour, all but 0.3% of it still inside the window: the next
            # may go once a third of the hour has slid past them (3 x 2/3 + 1 = 3).
            wait = int(edge.headers["Retry-After"])
            assert 1150 < wait < 1250
            clock.advance(wait - 5)
            assert (await b.post("/v1/auth/otp", json={"phone": phone})).status_code == 429
            clock.advance(5)
            await ask(b, phone)


@pytest.mark.parametrize(
    ("host", "counted_as"),
    [
        ("2001:db8:1:2::7", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("64:ff9b::c633:6407", "198.51.100.7"),
        ("::ffff:0:c633:6407", "198.51.100.7"),
        ("::1", "::/64"),
        ("198.51.100.7", "198.51.100.7"),
        ("not an address", "invalid"),
    ],
)
def test_what_a_client_address_is_counted_as(host: str, counted_as: str):
    from starlette.requests import Request

    from yuekang.auth.endpoints import client_address

    request = Request({"type": "http", "client": (host, 1), "headers": []})
    assert client_address(request) == counted_as


class FailingSms:
    async def send(self, phone: str, text: str) -> None:
        raise SmsDeliveryError("gateway down")


async def test_an_sms_failure_is_a_503(database_url: str, tmp_path: Path, clock: ManualClock):
    settings = make_settings(database_url, tmp_path)
    async for app in start_app(settings, clock, FailingSms()):  # type: ignore[arg-type]
        response = await app.api.request_otp(random_phone())
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "sms_unavailable"
