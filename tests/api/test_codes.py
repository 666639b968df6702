"""Issuing codes: the token's content, its size, idempotency, images and key rules."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from conftest import RunningApp, make_settings, start_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.codec.keys import b64url_decode
from yuekang.config import KeySettings, Settings
from yuekang.health_codes.qr import STATUS_COLOURS, qr_version
from yuekang.principals import Role


@pytest.fixture(params=[True, False], ids=["fast-lane", "routes-only"])
def settings(request: pytest.FixtureRequest, database_url: str, tmp_path: Path) -> Settings:
    """Every test here runs with the fast lane (yuekang.fastlane) and without it: both must
    answer alike."""
    return make_settings(database_url, tmp_path / "keys", fast_lane=request.param)


def _claims(qr_text: str) -> dict[str, object]:
    payload = qr_text.removeprefix("YK1:").split(".")[1]
    claims: dict[str, object] = json.loads(b64url_decode(payload))
    return claims


async def test_a_code_is_a_signed_token_with_no_personal_data(running: RunningApp):
    resident = await running.api.registered(name="张小三")
    response = await running.api.issue(resident)
    assert response.status_code == 201
    code = response.json()
    assert set(code) == {
        "code_id",
        "qr_text",
        "status",
        "issued_at",
        "expires_at",
        "png_url",
        "svg_url",
    }
    assert code["qr_text"].startswith("YK1:")
    header = json.loads(b64url_decode(code["qr_text"][4:].split(".")[0]))
    assert set(header) == {"alg", "kid"}
    assert header["alg"] == "ES256"
    claims = _claims(code["qr_text"])
    assert set(claims) == {"iss", "jti", "iat", "exp", "st", "nm", "ia"}
    assert claims["ia"] == 1  # proofed: the registry and the carrier confirmed the holder
    assert claims["nm"] == "张*三"
    assert claims["st"] == "green" == code["status"]
    assert claims["jti"] == code["code_id"]
    assert len(b64url_decode(code["code_id"])) == 16
    assert claims["exp"] - claims["iat"] == 3600
    assert resident.doc_number not in code["qr_text"]
    text = json.dumps(claims, ensure_ascii=False)
    for secret in (
        "张小三",
        resident.doc_number,
        resident.birth_date.isoformat(),
        resident.birth_date.strftime("%Y%m%d"),
        resident.phone[3:],
    ):
        assert secret not in text
    issued = dt.datetime.fromisoformat(code["issued_at"])
    assert int(issued.timestamp()) == claims["iat"]


async def test_a_typical_code_fits_qr_version_13_at_level_m(running: RunningApp):
    resident = await running.api.registered(name="张小三")
    code = await running.api.code(resident)
    assert len(code["qr_text"]) <= 331
    assert qr_version(code["qr_text"]) <= 13


async def test_idempotency_key_returns_the_same_code(running: RunningApp, clock: ManualClock):
    resident = await running.api.registered()
    clock.advance(1)
    first = await running.api.issue(resident, **{"Idempotency-Key": "retry-1"})
    again = await running.api.issue(resident, **{"Idempotency-Key": "retry-1"})
    other = await running.api.issue(resident, **{"Idempotency-Key": "retry-2"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # Another key while that code is live: the same code again, not a new one.
    assert other.status_code == 200
    assert other.json()["code_id"] == first.json()["code_id"]
    # Keys are per resident: someone else's identical key is their own request.
    stranger = await running.api.registered()
    theirs = await running.api.issue(stranger, **{"Idempotency-Key": "retry-1"})
    assert theirs.json()["code_id"] != first.json()["code_id"]


async def test_a_bad_idempotency_key_is_refused(running: RunningApp):
    resident = await running.api.registered()
    response = await running.api.issue(resident, **{"Idempotency-Key": "x" * 200})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


async def test_codes_need_an_identity(running: RunningApp):
    resident = await running.api.sign_in()
    response = await running.api.issue(resident)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "identity_required"


async def test_lifetime_is_configurable(running: RunningApp):
    running.context.settings.codes.lifetime_seconds = 600
    resident = await running.api.registered()
    claims = _claims((await running.api.code(resident))["qr_text"])
    assert claims["exp"] - claims["iat"] == 600


@pytest.mark.parametrize("status", ["green", "yellow", "red"])
async def test_png_decodes_to_the_qr_text_in_the_status_colour(running: RunningApp, status):
    resident = await running.api.registered()
    if status != "green":
        await _set_status(running, resident, status)
    code = await running.api.code(resident)
    assert code["status"] == status
    response = await running.client.get(code["png_url"], headers=resident.auth)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    results = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [r.text for r in results] == [code["qr_text"]]
    colours = {colour for _, colour in image.convert("RGB").getcolors()}
    expected = STATUS_COLOURS[status].lstrip("#")
    assert colours == {(255, 255, 255), tuple(int(expected[i : i + 2], 16) for i in (0, 2, 4))}


async def test_svg_is_served_and_images_are_cached_and_revalidated(running: RunningApp):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    svg = await running.client.get(code["svg_url"], headers=resident.auth)
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content
    assert STATUS_COLOURS["green"].encode() in svg.content.lower()
    png = await running.client.get(code["png_url"], headers=resident.auth)
    cached = running.context.images.get(code["code_id"], "png")
    assert cached is not None and cached.image == png.content
    assert png.headers["cache-control"].startswith("private, max-age=")
    again = await running.client.get(
        code["png_url"], headers={**resident.auth, "If-None-Match": png.headers["etag"]}
    )
    assert again.status_code == 304


async def test_images_are_for_the_owner_only(running: RunningApp):
    owner = await running.api.registered()
    code = await running.api.code(owner)
    stranger = await running.api.registered()
    for url in (code["png_url"], code["svg_url"], f"/v1/codes/{code['code_id']}"):
        assert (await running.client.get(url, headers=stranger.auth)).status_code == 404
        assert (await running.client.get(url)).status_code == 401
    missing = await running.client.get("/v1/codes/nope.png", headers=owner.auth)
    assert missing.status_code == 404
    # Once the owner's image is cached (answered without the database), still the owner's only.
    assert (await running.client.get(code["png_url"], headers=owner.auth)).status_code == 200
    assert (await running.client.get(code["png_url"], headers=stranger.auth)).status_code == 404
    assert missing.json()["error"]["code"] == "code_not_found"


async def _set_status(running: RunningApp, resident, status: str) -> None:
    token = await running.operator_token()
    headers = {"Authorization": f"Bearer {token}"}
    found = await running.client.post(
        "/v1/admin/residents/lookup",
        headers=headers,
        json={"doc_type": "prc_id", "doc_number": resident.doc_number, "reason": "test case"},
    )
    assert found.status_code == 200, found.text
    response = await running.client.put(
        f"/v1/admin/residents/{found.json()['resident_id']}/status",
        headers=headers,
        json={"status": status, "reason": "test status"},
    )
    assert response.status_code == 200, response.text


async def test_issuances_arriving_together_each_get_their_own_answer(running: RunningApp):
    """Ordinary issuances that arrive together share a transaction (health_codes.batch); the
    others in the same moment still get their own answers."""
    greens = [await running.api.registered() for _ in range(4)]
    red = await running.api.registered()
    await _set_status(running, red, "red")
    unbound = await running.api.sign_in()
    answers = await asyncio.gather(
        *(running.api.issue(person) for person in greens),
        running.api.issue(red),
        running.client.post("/v1/codes", headers=unbound.auth),
        running.api.issue(greens[0], **{"Idempotency-Key": "same-moment"}),
    )
    assert [a.status_code for a in answers] == [201] * 5 + [409, 201]
    assert [a.json()["status"] for a in answers[:5]] == ["green"] * 4 + ["red"]
    assert answers[5].json()["error"]["code"] == "identity_required"
    assert len({a.json()["code_id"] for a in answers if a.status_code == 201}) == 6
    for person, answer in zip([*greens, red], answers, strict=False):
        code_id = answer.json()["code_id"]
        shown = await running.client.get(f"/v1/codes/{code_id}", headers=person.auth)
        assert shown.json()["qr_text"] == answer.json()["qr_text"]


async def count_codes(running: RunningApp, resident_id: str) -> int:
    from sqlalchemy import func, select

    from yuekang.health_codes.models import HealthCode

    async with running.context.sessionmaker() as session:
        query = select(func.count()).where(HealthCode.resident_id == uuid.UUID(resident_id))
        return int((await session.execute(query)).scalar_one())


async def test_asking_again_answers_the_live_code_until_half_its_life(
    running: RunningApp, clock: ManualClock
):
    resident = await running.api.registered()
    resident_id = (await running.client.get("/v1/me", headers=resident.auth)).json()["resident_id"]
    clock.advance(1)
    first = await running.api.issue(resident)
    assert first.status_code == 201
    # A script asking a hundred times in a row makes no more codes: each is a row, and a
    # revocation every checkpoint downloads if the status worsens.
    answers = [await running.api.issue(resident) for _ in range(100)]
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["code_id"] for a in answers} == {first.json()["code_id"]}
    assert await count_codes(running, resident_id) == 1

    clock.advance(1799)  # one second short of half the hour
    await running.api.renew(resident)
    assert (await running.api.issue(resident)).json()["code_id"] == first.json()["code_id"]
    clock.advance(1)
    renewed = await running.api.issue(resident)
    assert renewed.status_code == 201
    assert renewed.json()["code_id"] != first.json()["code_id"]
    assert await count_codes(running, resident_id) == 2


async def test_with_reuse_off_every_request_gets_a_new_code(
    running: RunningApp, clock: ManualClock
):
    """YUEKANG_CODES__REUSE=false: a new code for every request, on the batch path (no
    Idempotency-Key) as on the single one; the batch once answered the live code regardless."""
    running.context.settings.codes.reuse = False
    resident = await running.api.registered()
    resident_id = (await running.client.get("/v1/me", headers=resident.auth)).json()["resident_id"]
    clock.advance(1)
    answers = [await running.api.issue(resident) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert len({a.json()["code_id"] for a in answers}) == 3
    assert await count_codes(running, resident_id) == 3


async def test_a_changed_status_or_a_revoked_code_gets_a_new_code(
    running: RunningApp, clock: ManualClock
):
    resident = await running.api.registered()
    clock.advance(1)
    green = await running.api.code(resident)
    clock.advance(1)
    await running.set_red(resident)
    clock.advance(1)
    red = await running.api.issue(resident)
    assert red.status_code == 201 and red.json()["status"] == "red"
    assert red.json()["code_id"] != green["code_id"]


async def test_a_code_of_a_retired_key_is_not_handed_out_again(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    # A database of its own: the key it activates would be every later test's signing key.
    settings = make_settings(
        fresh_database_url,
        tmp_path,
        keys=KeySettings(ring_refresh_seconds=0, publish_lead_seconds=60),
    )
    async for running in start_app(settings, clock, sms):
        admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
        resident = await running.api.registered()
        clock.advance(1)
        old = await running.api.code(resident)
        new = (await running.client.post("/v1/admin/keys", json={}, headers=admin)).json()
        clock.advance(60)
        activated = await running.client.post(
            f"/v1/admin/keys/{new['kid']}/activate", headers=admin
        )
        assert activated.status_code == 200
        again = await running.api.issue(resident)
        assert again.status_code == 201
        assert again.json()["code_id"] != old["code_id"]


async def test_a_revoked_code_is_not_replayed_for_its_idempotency_key(running: RunningApp):
    resident = await running.api.registered()
    first = await running.api.issue(resident, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    operator = {"Authorization": f"Bearer {await running.operator_token()}"}
    found = await running.client.post(
        "/v1/admin/residents/lookup",
        headers=operator,
        json={"doc_type": "prc_id", "doc_number": resident.doc_number, "reason": "case 9"},
    )
    await running.client.put(
        f"/v1/admin/residents/{found.json()['resident_id']}/status",
        headers=operator,
        json={"status": "red", "reason": "confirmed"},
    )
    retry = await running.api.issue(resident, **{"Idempotency-Key": "k-1"})
    assert retry.status_code == 409
    assert retry.json()["error"]["code"] == "idempotency_key_stale"
