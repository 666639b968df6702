"""Phone sign-in: one-time codes, their limits, and session tokens."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from conftest import RunningApp, make_settings, start_app
from support.api import random_phone
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import OtpSettings


async def test_sign_in_sends_a_six_digit_code_and_returns_a_bearer_token(running: RunningApp):
    phone = random_phone()
    sent = await running.api.request_otp(phone)
    assert sent.status_code == 200
    code = sent.json()["dev_code"]
    assert len(code) == 6 and code.isdigit()
    assert running.sms.sent[-1][0] == phone and code in running.sms.sent[-1][1]

    token = await running.client.post("/v1/auth/token", json={"phone": phone, "code": code})
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 43200
    me = await running.client.get(
        "/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
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
    code = (await running.api.request_otp(phone)).json()["dev_code"]
    first = await running.client.post("/v1/auth/token", json={"phone": phone, "code": code})
    again = await running.client.post("/v1/auth/token", json={"phone": phone, "code": code})
    assert first.status_code == 200
    assert again.status_code == 401 and again.json()["error"]["code"] == "otp_invalid"


async def test_codes_expire_after_five_minutes(running: RunningApp, clock: ManualClock):
    phone = random_phone()
    code = (await running.api.request_otp(phone)).json()["dev_code"]
    clock.advance(300)
    late = await running.client.post("/v1/auth/token", json={"phone": phone, "code": code})
    assert late.status_code == 401 and late.json()["error"]["code"] == "otp_expired"


async def test_five_wrong_guesses_kill_the_code(running: RunningApp):
    phone = random_phone()
    code = (await running.api.request_otp(phone)).json()["dev_code"]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = await running.client.post("/v1/auth/token", json={"phone": phone, "code": wrong})
        assert response.json()["error"]["code"] == "otp_invalid"
    right = await running.client.post("/v1/auth/token", json={"phone": phone, "code": code})
    assert right.status_code == 401
    assert right.json()["error"]["code"] == "otp_attempts_exceeded"


async def test_codes_are_stored_hashed(running: RunningApp):
    from sqlalchemy import select

    from yuekang.auth.models import OtpChallenge

    phone = random_phone()
    code = (await running.api.request_otp(phone)).json()["dev_code"]
    async with running.context.sessionmaker() as session:
        rows = (await session.execute(select(OtpChallenge.code_hash))).scalars().all()
    assert rows and all(code.encode() not in row and len(row) == 32 for row in rows)


async def test_requests_are_limited_per_phone(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    settings = make_settings(
        database_url, tmp_path, otp=OtpSettings(per_phone_limit=3, per_client_limit=1000)
    )
    async for app in start_app(settings, clock, sms):
        phone = random_phone()
        for _ in range(3):
            assert (await app.api.request_otp(phone)).status_code == 200
        refused = await app.api.request_otp(phone)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0
        assert (await app.api.request_otp(random_phone())).status_code == 200
        clock.advance(900)
        assert (await app.api.request_otp(phone)).status_code == 200


async def test_per_address_limit_holds_across_two_server_processes(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    """Two app instances with separate engines share only the database, as two processes do."""
    import uuid

    settings = make_settings(database_url, tmp_path, otp=OtpSettings(per_client_limit=4))
    # Unique per run, so earlier runs against a shared server cannot interfere.
    address = f"2001:db8::{uuid.uuid4().hex[:4]}"
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


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"phone": "13800138000"}, 422, "validation_error"),
        ({"phone": "+86123"}, 422, "validation_error"),
        ({"phone": "+8612800138000"}, 422, "validation_error"),
        ({"phone": "+8613800138000", "extra": 1}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"phone": 8613800138000}, 422, "validation_error"),
        ({"phone": "+8613８００１３８０００"}, 422, "validation_error"),
        ({"phone": "+86١٣٨٠٠١٣٨٠٠٠"}, 422, "validation_error"),
    ],
)
async def test_bad_phone_input_is_a_clear_422(running: RunningApp, body, status, code):
    response = await running.client.post("/v1/auth/otp", json=body)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["fields"]


async def test_token_request_validates_the_code_shape(running: RunningApp):
    response = await running.client.post(
        "/v1/auth/token", json={"phone": random_phone(), "code": "12ab56"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "code"


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
    clock.advance(43200)
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
