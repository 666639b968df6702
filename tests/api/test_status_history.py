"""Staff read why a resident's status changed: findings, rule-set version, actor -- audited."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from conftest import RunningApp
from support.api import Api
from yuekang.audit.models import AuditEvent
from yuekang.principals import Role
from yuekang.residents.documents import local_date


async def test_history_shows_what_changed_and_from_which_facts(running: RunningApp, api: Api):
    resident = await api.registered()
    me = (await running.client.get("/v1/me", headers=resident.auth)).json()
    feed = await running.feed_key("cases")
    today = local_date(running.context.clock.now()).isoformat()
    row = {
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "category": "close_contact",
        "start_date": today,
    }
    pushed = await running.client.post(
        "/v1/feeds/cases",
        content=json.dumps(row) + "\n",
        headers={
            "Authorization": f"Bearer {feed}",
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert pushed.status_code == 201, pushed.text
    epidemiologist = await running.operator_token(Role.EPIDEMIOLOGIST)
    staff = {"Authorization": f"Bearer {epidemiologist}"}

    answer = await running.client.get(
        f"/v1/admin/residents/{me['resident_id']}/status-history",
        headers=staff,
        params={"reason": "case investigation 2026-118"},
    )

    assert answer.status_code == 200, answer.text
    latest, first = answer.json()
    assert (first["old_status"], first["new_status"]) == (None, "green")
    assert (latest["old_status"], latest["new_status"]) == ("green", "red")
    assert latest["reason_codes"] == ["close_contact"]
    assert latest["rule_set_version"] == "gd-2021.3"
    assert latest["findings"][0]["rule"] == "close_contact"
    assert latest["actor"].startswith("feed:")
    async with running.context.sessionmaker() as session:
        audited = (
            (
                await session.execute(
                    select(AuditEvent.detail).where(
                        AuditEvent.action == "status.history.read",
                        AuditEvent.subject_id == me["resident_id"],
                    )
                )
            )
            .scalars()
            .all()
        )
    assert audited == [{"reason": "case investigation 2026-118"}]


async def test_history_needs_a_reason_and_a_known_resident(running: RunningApp):
    staff = {"Authorization": f"Bearer {await running.operator_token(Role.OPERATOR)}"}
    unknown = f"/v1/admin/residents/{uuid.uuid4()}/status-history"
    missing_reason = await running.client.get(unknown, headers=staff)
    assert missing_reason.status_code == 422
    not_found = await running.client.get(unknown, headers=staff, params={"reason": "checking"})
    assert not_found.status_code == 404
    assert not_found.json()["error"]["code"] == "resident_not_found"
