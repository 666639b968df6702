"""Online verification at a checkpoint, and what hostile input gets back."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sqlalchemy import select

from conftest import RunningApp, make_settings
from yuekang.codec.keys import SigningKey, b64url_encode
from yuekang.config import Settings
from yuekang.principals import Role
from yuekang.scans.models import ScanRecord


@pytest.fixture(params=[True, False], ids=["fast-lane", "routes-only"])
def settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Settings:
    """Every test here runs with the fast lane (yuekang.fastlane) and without it: both must
    answer alike."""
    return make_settings(database_url, tmp_path / "keys", fast_lane=request.param)


@pytest.fixture
async def gate(running: RunningApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {await running.checkpoint_key()}"}


async def _verify(running: RunningApp, gate: dict[str, str], qr_text: object, **headers: str):
    response = await running.client.post(
        "/v1/verify", json={"qr_text": qr_text}, headers={**gate, **headers}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_fresh_code_verifies_online(running: RunningApp, gate):
    resident = await running.api.registered(name="李四")
    code = await running.api.code(resident)
    verdict = await _verify(running, gate, code["qr_text"])
    assert verdict["verdict"] == "valid"
    assert verdict["status"] == "green"
    assert verdict["masked_name"] == "*四"
    assert verdict["code_id"] == code["code_id"]
    assert verdict["reasons"] == []


async def test_verify_needs_a_checkpoint_key(running: RunningApp):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    for headers in (
        {},
        {"Authorization": "Bearer ykc_nothing"},
        {"Authorization": f"Bearer {resident.token}"},
    ):
        response = await running.client.post(
            "/v1/verify", json={"qr_text": code["qr_text"]}, headers=headers
        )
        assert response.status_code == 401


async def test_a_worse_status_revokes_live_codes_at_once(running: RunningApp, gate, clock):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    operator = {"Authorization": f"Bearer {await running.operator_token()}"}
    found = await running.client.post(
        "/v1/admin/residents/lookup",
        headers=operator,
        json={"doc_type": "prc_id", "doc_number": resident.doc_number, "reason": "case 42"},
    )
    changed = await running.client.put(
        f"/v1/admin/residents/{found.json()['resident_id']}/status",
        headers=operator,
        json={"status": "red", "reason": "close contact of case 42"},
    )
    assert changed.json()["codes_revoked"] == 1
    verdict = await _verify(running, gate, code["qr_text"], **{"Accept-Language": "en"})
    assert verdict["verdict"] == "invalid"
    assert verdict["reasons"] == [{"code": "revoked", "message": "Code revoked"}]
    fresh = await running.api.code(resident)
    assert fresh["status"] == "red"
    assert (await _verify(running, gate, fresh["qr_text"]))["status"] == "red"


async def test_expiry_and_clock_leeway(running: RunningApp, gate, clock):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    clock.advance(3600 + 119)
    assert (await _verify(running, gate, code["qr_text"]))["verdict"] == "valid"
    clock.advance(1)
    verdict = await _verify(running, gate, code["qr_text"])
    assert [r["code"] for r in verdict["reasons"]] == ["expired"]


async def test_a_code_from_the_future_is_not_yet_valid(running: RunningApp, gate, clock):
    resident = await running.api.registered()
    clock.advance(600)
    code = await running.api.code(resident)
    clock.advance(-600)
    verdict = await _verify(running, gate, code["qr_text"])
    assert [r["code"] for r in verdict["reasons"]] == ["not_yet_valid"]


def _segments(qr_text: str) -> tuple[dict[str, object], dict[str, object], str]:
    header, payload, signature = qr_text.removeprefix("YK1:").split(".")
    return (
        json.loads(base64.urlsafe_b64decode(header + "==")),
        json.loads(base64.urlsafe_b64decode(payload + "==")),
        signature,
    )


def _compact(header: dict[str, object], payload: dict[str, object], signature: str) -> str:
    def enc(value: dict[str, object]) -> str:
        return b64url_encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    return f"YK1:{enc(header)}.{enc(payload)}.{signature}"


async def test_attacks_are_invalid_verdicts_with_their_reason(running: RunningApp, gate):
    resident = await running.api.registered()
    good = (await running.api.code(resident))["qr_text"]
    header, payload, signature = _segments(good)
    view = await running.context.keyring.view(running.context.clock.now())
    public_pem = view.verification_keys[str(header["kid"])].public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attacker = SigningKey.generate("ES256")
    signing_input = good.removeprefix("YK1:").rsplit(".", 1)[0]
    raw = base64.urlsafe_b64decode(signature + "==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    # PyJWT refuses to HMAC with a PEM, so the classic confusion token is made by hand.
    hs_input = _compact({"alg": "HS256", "kid": header["kid"]}, payload, "").removeprefix("YK1:")
    hs_mac = hmac.new(public_pem, hs_input.rstrip(".").encode(), hashlib.sha256).digest()
    hs256 = hs_input.rstrip(".") + "." + b64url_encode(hs_mac)
    attacker_signed = attacker.sign(
        (
            _compact({**header, "jwk": attacker.public().to_jwk()}, payload, "x")
            .removeprefix("YK1:")
            .rsplit(".", 1)[0]
        ).encode()
    )
    cases = {
        "alg none": (
            _compact({"alg": "none", "kid": header["kid"]}, payload, ""),
            "algorithm_not_allowed",
        ),
        "hs256 with public key": ("YK1:" + hs256, "algorithm_not_allowed"),
        "unknown kid": (_compact({**header, "kid": "A" * 22}, payload, signature), "unknown_key"),
        "kid is a path": (
            _compact({**header, "kid": "../../keys/dev-secrets.json"}, payload, signature),
            "unknown_key",
        ),
        "huge kid": (_compact({**header, "kid": "k" * 500}, payload, signature), "malformed"),
        "embedded jwk": (
            _compact(
                {**header, "jwk": attacker.public().to_jwk()},
                payload,
                b64url_encode(attacker_signed),
            ),
            "bad_signature",
        ),
        "jku header": (
            _compact({**header, "jku": "http://127.0.0.1:9/keys"}, payload, signature),
            "bad_signature",
        ),
        "tampered status": (
            _compact(header, {**payload, "st": "green", "nm": "王*五"}, signature),
            "bad_signature",
        ),
        "tampered signature": (
            good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
            "bad_signature",
        ),
        "der signature": (f"YK1:{signing_input}.{b64url_encode(der)}", "bad_signature"),
        "truncated": (good[:120], "malformed"),
        "future version": ("YK2:" + good[4:], "unsupported_version"),
        "no prefix": (good[4:], "malformed"),
        "session token": (resident.token, "malformed"),
        "empty": ("", "malformed"),
        "binary junk": ("\x00\xff" * 100, "malformed"),
        "other scheme": ("HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH", "malformed"),
    }
    for name, (text, reason) in cases.items():
        verdict = await _verify(running, gate, text)
        assert verdict["verdict"] == "invalid", name
        assert [r["code"] for r in verdict["reasons"]] == [reason], name


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"qr_text": ', 400, "malformed_json"),
        (b"not json at all", 400, "malformed_json"),
        (b'{"qr_text": "YK1:x", "extra": 1}', 422, "validation_error"),
        (b'{"qr_text": 42}', 422, "validation_error"),
        (b"[]", 422, "validation_error"),
        (b"{}", 422, "validation_error"),
        (json.dumps({"qr_text": "Y" * 5000}).encode(), 422, "validation_error"),
    ],
)
async def test_malformed_requests_get_a_documented_error(
    running: RunningApp, gate, body, status, code
):
    response = await running.client.post(
        "/v1/verify", content=body, headers={**gate, "Content-Type": "application/json"}
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_an_oversized_body_is_refused_before_parsing(running: RunningApp, gate):
    big = b'{"qr_text": "' + b"A" * 70_000 + b'"}'
    response = await running.client.post(
        "/v1/verify", content=big, headers={**gate, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunks():
        for _ in range(20):
            yield b"A" * 8192

    streamed = await running.client.post(
        "/v1/verify", content=chunks(), headers={**gate, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_reason_messages_follow_accept_language(running: RunningApp, gate):
    for language, message in (
        ("zh-CN", "二维码格式无效"),
        ("zh-HK", "二維碼格式無效"),
        ("pt-PT", "Código de saúde inválido"),
        (None, "二维码格式无效"),
    ):
        headers = {"Accept-Language": language} if language else {}
        verdict = await _verify(running, gate, "garbage", **headers)
        assert verdict["reasons"][0]["message"] == message


async def test_scans_arriving_together_are_each_judged_and_recorded(running: RunningApp):
    """Online scans that arrive together share one transaction (checkpoints.online): each still
    gets its own checkpoint's answer, its own revocation check and its own scan record."""
    good, disabled = await running.checkpoint_key("east gate"), await running.checkpoint_key()
    good_id, disabled_id = (uuid.UUID(hex=k.removeprefix("ykc_")[:32]) for k in (good, disabled))
    admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
    assert (
        await running.client.post(f"/v1/admin/checkpoints/{disabled_id}/disable", headers=admin)
    ).status_code == 204
    fine_code = await running.api.code(await running.api.registered())
    resident = await running.api.registered()
    revoked_code = await running.api.code(resident)
    await _make_red(running, resident.doc_number)

    wrong_secret = good.rsplit("_", 1)[0] + "_" + "x" * 43
    calls = [
        (good, fine_code),
        (good, revoked_code),
        (disabled, fine_code),
        (wrong_secret, fine_code),
    ] * 5
    answers = await asyncio.gather(
        *(
            running.client.post(
                "/v1/verify",
                json={"qr_text": code["qr_text"]},
                headers={"Authorization": f"Bearer {key}", "Accept-Language": "en"},
            )
            for key, code in calls
        )
    )

    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 200, 401, 401] * 5
    for answer in answers[2::4] + answers[3::4]:
        assert answer.json()["error"]["code"] == "invalid_checkpoint_key"
    assert {answer.json()["verdict"] for answer in answers[0::4]} == {"valid"}
    assert {answer.json()["decision"] for answer in answers[0::4]} == {"allow"}
    for answer in answers[1::4]:
        assert answer.json()["reasons"] == [{"code": "revoked", "message": "Code revoked"}]
    async with running.context.sessionmaker() as session:
        records = (
            await session.execute(
                select(ScanRecord.checkpoint_id, ScanRecord.code_id, ScanRecord.verdict).where(
                    ScanRecord.code_id.in_([fine_code["code_id"], revoked_code["code_id"]])
                )
            )
        ).all()
    assert sorted(records) == sorted(
        [(good_id, fine_code["code_id"], "valid")] * 5
        + [(good_id, revoked_code["code_id"], "invalid")] * 5
    )


async def _make_red(running: RunningApp, doc_number: str) -> None:
    operator = {"Authorization": f"Bearer {await running.operator_token()}"}
    found = await running.client.post(
        "/v1/admin/residents/lookup",
        headers=operator,
        json={"doc_type": "prc_id", "doc_number": doc_number, "reason": "case 43"},
    )
    changed = await running.client.put(
        f"/v1/admin/residents/{found.json()['resident_id']}/status",
        headers=operator,
        json={"status": "red", "reason": "close contact of case 43"},
    )
    assert changed.json()["codes_revoked"] == 1


async def test_a_scan_with_a_trailing_newline_still_verifies(running: RunningApp):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    verdict = await running.client.post(
        "/v1/verify", json={"qr_text": code["qr_text"] + "\r\n"}, headers=gate
    )
    assert verdict.json()["verdict"] == "valid"
