"""Operators setting statuses, and roles refused outside their permissions."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from conftest import RunningApp
from support.api import random_prc_id
from yuekang.audit.models import AuditEvent
from yuekang.health_status.models import StatusChange
from yuekang.principals import Role


async def _lookup(app: RunningApp, headers: dict[str, str], doc_number: str):
    return await app.client.post(
        "/v1/admin/residents/lookup",
        headers=headers,
        json={"doc_type": "prc_id", "doc_number": doc_number, "reason": "case 7 follow-up"},
    )


async def test_status_changes_are_recorded_with_reason_and_audited(running: RunningApp):
    resident = await running.api.registered()
    headers = {"Authorization": f"Bearer {await running.operator_token()}"}
    resident_id = (await _lookup(running, headers, resident.doc_number)).json()["resident_id"]
    for status in ("yellow", "green"):
        response = await running.client.put(
            f"/v1/admin/residents/{resident_id}/status",
            headers=headers,
            json={"status": status, "reason": f"set {status} after review"},
        )
        assert response.status_code == 200
        assert response.json()["updated_by"].startswith("operator:")
    me = (await running.client.get("/v1/me", headers=resident.auth)).json()
    assert me["status"]["status"] == "green"
    # The operator's note is for staff: the resident reads the reason codes.
    assert me["status"]["reason"] is None
    assert me["status"]["reason_codes"] == ["override"]
    async with running.context.sessionmaker() as session:
        changes = (
            await session.execute(
                select(StatusChange.old_status, StatusChange.new_status)
                .where(StatusChange.resident_id == uuid.UUID(resident_id))
                .order_by(StatusChange.id)
            )
        ).all()
        audit = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.detail)
                .where(AuditEvent.subject_id == resident_id)
                .order_by(AuditEvent.id)
            )
        ).all()
    assert [tuple(c) for c in changes] == [
        (None, "green"),
        ("green", "yellow"),
        ("yellow", "green"),
    ]
    actions = [a for a, _ in audit]
    assert actions.count("status.set") == 2
    assert "resident.lookup_by_document" in actions
    lookup_detail = next(d for a, d in audit if a == "resident.lookup_by_document")
    assert lookup_detail["reason"] == "case 7 follow-up"


async def test_unknown_resident_and_bad_status(running: RunningApp):
    headers = {"Authorization": f"Bearer {await running.operator_token()}"}
    missing = await running.client.put(
        f"/v1/admin/residents/{uuid.uuid4()}/status",
        headers=headers,
        json={"status": "red", "reason": "no such person"},
    )
    assert missing.status_code == 404
    bad = await running.client.put(
        f"/v1/admin/residents/{uuid.uuid4()}/status",
        headers=headers,
        json={"status": "purple", "reason": "x"},
    )
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["fields"]} == {"status", "reason"}
    not_found = await _lookup(running, headers, random_prc_id()[0])
    assert not_found.status_code == 404
    assert not_found.json()["error"]["code"] == "resident_not_found"


async def test_roles_are_refused_outside_their_permissions(running: RunningApp):
    resident = await running.api.registered()
    epidemiologist = {
        "Authorization": f"Bearer {await running.operator_token(Role.EPIDEMIOLOGIST)}"
    }
    operator = {"Authorization": f"Bearer {await running.operator_token(Role.OPERATOR)}"}
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    resident_headers = resident.auth
    calls = [
        (
            "post",
            "/v1/admin/residents/lookup",
            {"doc_type": "prc_id", "doc_number": resident.doc_number, "reason": "curious"},
        ),
        (
            "put",
            f"/v1/admin/residents/{uuid.uuid4()}/status",
            {"status": "red", "reason": "because"},
        ),
        ("post", "/v1/admin/checkpoints", {"name": "rogue gate"}),
    ]
    for method, url, body in calls:
        for headers, expected in (
            (epidemiologist, 403),
            (gate, 401),
            (resident_headers, 401),
            ({}, 401),
        ):
            response = await running.client.request(method, url, json=body, headers=headers)
            assert response.status_code == expected, (url, response.text)
    created = await running.client.post(
        "/v1/admin/checkpoints", json={"name": "Lok Ma Chau"}, headers=operator
    )
    assert created.status_code == 201
    assert created.json()["api_key"].startswith("ykc_")
    keys = await running.client.post("/v1/admin/keys", json={}, headers=operator)
    assert keys.status_code == 403


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
