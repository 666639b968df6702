"""Edges found in review: stale idempotent replays, SMS failures, audited misses, dates, scans."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select

from conftest import RunningApp, make_settings, start_app
from support.api import random_phone, random_prc_id
from yuekang.audit.models import AuditEvent
from yuekang.auth.sms import SmsDeliveryError
from yuekang.clock import ManualClock


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


class FailingSms:
    async def send(self, phone: str, text: str) -> None:
        raise SmsDeliveryError("gateway down")


async def test_an_sms_failure_is_a_503(database_url: str, tmp_path: Path, clock: ManualClock):
    settings = make_settings(database_url, tmp_path)
    async for app in start_app(settings, clock, FailingSms()):  # type: ignore[arg-type]
        response = await app.api.request_otp(random_phone())
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "sms_unavailable"


async def test_a_lookup_that_finds_nobody_is_still_audited(running: RunningApp):
    token = await running.operator_token()
    reason = f"probe {uuid.uuid4()}"
    response = await running.client.post(
        "/v1/admin/residents/lookup",
        headers={"Authorization": f"Bearer {token}"},
        json={"doc_type": "prc_id", "doc_number": random_prc_id()[0], "reason": reason},
    )
    assert response.status_code == 404
    async with running.context.sessionmaker() as session:
        details = (
            (
                await session.execute(
                    select(AuditEvent.detail).where(
                        AuditEvent.action == "resident.lookup_by_document"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert any(d.get("reason") == reason and d.get("found") is False for d in details)


async def test_a_birth_date_in_the_future_is_refused(running: RunningApp):
    resident = await running.api.sign_in()
    response = await running.client.put(
        "/v1/me/identity",
        headers=resident.auth,
        json={
            "name": "Chan Tai Man",
            "doc_type": "passport",
            "doc_number": "K12345678",
            "birth_date": "2999-01-01",
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0] == {
        "field": "birth_date",
        "reason": "date",
        "message": "in the future",
    }


async def test_a_scan_with_a_trailing_newline_still_verifies(running: RunningApp):
    resident = await running.api.registered()
    code = await running.api.code(resident)
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    verdict = await running.client.post(
        "/v1/verify", json={"qr_text": code["qr_text"] + "\r\n"}, headers=gate
    )
    assert verdict.json()["verdict"] == "valid"


async def test_json_nested_too_deeply_is_malformed_json(running: RunningApp):
    response = await running.client.post(
        "/v1/auth/otp",
        content=b"[" * 5000 + b"]" * 5000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
