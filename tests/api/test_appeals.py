"""Appeals (申诉): a resident contests a red or yellow status, an operator reads the words (audited)
and accepts -- an override that expires and never hides newer facts -- or rejects with a reason."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from sqlalchemy import select

from conftest import RunningApp
from support.api import Api, Resident
from yuekang import apikeys
from yuekang.appeals.models import Appeal
from yuekang.audit.models import AuditEvent, SelfRead
from yuekang.clock import ManualClock
from yuekang.operators.service import TOKEN_PREFIX
from yuekang.principals import Role

LOCAL = dt.timezone(dt.timedelta(hours=8))
APPEAL_TEXT = "我那天一直在家，没有去过通报的餐厅，请核实。I stayed home all day."


def local_today(clock: ManualClock) -> dt.date:
    return clock.now().astimezone(LOCAL).date()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def push_case(
    app: RunningApp,
    resident: Resident,
    category: str,
    start: dt.date,
    end: dt.date | None = None,
) -> dict[str, Any]:
    key = await app.feed_key("cases")
    row = {
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "category": category,
        "start_date": start.isoformat(),
    }
    if end is not None:
        row["end_date"] = end.isoformat()
    response = await app.client.post(
        "/v1/feeds/cases",
        content=(json.dumps(row) + "\n").encode(),
        headers={
            **bearer(key),
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    assert batch["rows_accepted"] == 1, batch["errors"]
    return batch


async def red_resident(
    app: RunningApp, clock: ManualClock, start: dt.date | None = None
) -> Resident:
    """A registered resident the case feed names as a close contact from ``start`` (today)."""
    resident = await app.api.registered()
    await push_case(app, resident, "close_contact", start or local_today(clock))
    assert (await my_status(app.api, resident))["status"] == "red"
    return resident


async def my_status(api: Api, resident: Resident, **params: str) -> dict[str, Any]:
    response = await api.client.get("/v1/me/status", headers=resident.auth, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def file(api: Api, resident: Resident, text: str = APPEAL_TEXT) -> dict[str, Any]:
    response = await api.client.post("/v1/me/appeals", headers=resident.auth, json={"text": text})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def decide(
    app: RunningApp, headers: dict[str, str], appeal_id: str, **body: Any
) -> dict[str, Any]:
    response = await app.client.post(
        f"/v1/admin/appeals/{appeal_id}/decision", headers=headers, json=body
    )
    assert response.status_code == 200, response.text
    decided: dict[str, Any] = response.json()
    return decided


async def sign_in_again(api: Api, resident: Resident) -> None:
    """Sessions last hours; after the clock jumps days the resident signs in again."""
    resident.token = (await api.sign_in(resident.phone)).token


async def audit_actions(app: RunningApp, subject_id: str) -> list[AuditEvent]:
    async with app.context.sessionmaker() as session:
        return list(
            (
                await session.execute(
                    select(AuditEvent)
                    .where(AuditEvent.subject_id == subject_id)
                    .order_by(AuditEvent.id)
                )
            ).scalars()
        )


async def test_a_red_resident_files_one_appeal_at_a_time(running: RunningApp, clock: ManualClock):
    api = running.api
    resident = await red_resident(running, clock)
    appeal = await file(api, resident)
    assert appeal["state"] == "pending"
    assert appeal["status_at_filing"] == "red"
    assert appeal["reason_codes"] == ["close_contact"]
    assert appeal["decided_at"] is None
    assert appeal["decision_reason"] is None
    assert "text" not in appeal

    again = await api.client.post(
        "/v1/me/appeals", headers=resident.auth, json={"text": "second try, same thing"}
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "appeal_pending"

    mine = await api.client.get("/v1/me/appeals", headers=resident.auth)
    assert [a["id"] for a in mine.json()] == [appeal["id"]]
    # The resident reads back what they wrote (the page shows it under the appeal), and the
    # read is counted among their own reads, as every read of personal data is audited.
    assert mine.json()[0]["text"] == APPEAL_TEXT
    me = await api.client.get("/v1/me", headers=resident.auth)
    async with running.context.sessionmaker() as session:
        counted = (
            (
                await session.execute(
                    select(SelfRead.count).where(
                        SelfRead.action == "appeal.list",
                        SelfRead.resident_id == me.json()["resident_id"],
                    )
                )
            )
            .scalars()
            .all()
        )
    assert counted == [1]

    green = await api.registered()
    refused = await api.client.post(
        "/v1/me/appeals", headers=green.auth, json={"text": "I am green but unhappy"}
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "status_not_contested"

    unbound = await api.sign_in()
    early = await api.client.post(
        "/v1/me/appeals", headers=unbound.auth, json={"text": "who am I even"}
    )
    assert early.status_code == 404
    assert early.json()["error"]["code"] == "identity_not_bound"
    assert (await api.client.post("/v1/me/appeals", json={"text": "anonymous"})).status_code == 401


async def test_the_appeal_text_is_encrypted_at_rest(running: RunningApp, clock: ManualClock):
    resident = await red_resident(running, clock)
    appeal = await file(running.api, resident)
    async with running.context.sessionmaker() as session:
        row = await session.get(Appeal, uuid.UUID(appeal["id"]))
    assert row is not None
    assert row.text_ct
    for plain in (APPEAL_TEXT, "没有去过通报的餐厅", "I stayed home all day"):
        assert plain.encode() not in row.text_ct
    assert APPEAL_TEXT.encode("utf-16-le") not in row.text_ct


async def test_an_operator_reviews_and_accepts_an_appeal(running: RunningApp, clock: ManualClock):
    api = running.api
    resident = await red_resident(running, clock)
    appeal = await file(api, resident)
    token = await running.operator_token(Role.OPERATOR)
    parsed = apikeys.parse(TOKEN_PREFIX, token)
    assert parsed is not None
    operator_id = str(parsed[0])
    staff = bearer(token)

    listed = await running.client.get("/v1/admin/appeals", headers=staff, params={"limit": 500})
    assert listed.status_code == 200
    [summary] = [a for a in listed.json() if a["id"] == appeal["id"]]
    assert "text" not in summary
    assert summary["state"] == "pending"
    assert summary["reason_codes"] == ["close_contact"]
    assert all(a["state"] == "pending" for a in listed.json())
    resident_id = summary["resident_id"]

    read = await running.client.get(f"/v1/admin/appeals/{appeal['id']}", headers=staff)
    assert read.status_code == 200
    assert read.json()["text"] == APPEAL_TEXT
    reads = [e for e in await audit_actions(running, appeal["id"]) if e.action == "appeal.read"]
    assert [(e.actor_type, e.actor_id) for e in reads] == [("operator", operator_id)]
    assert reads[0].detail == {"resident_id": resident_id}

    reason = "医院证明当日在院，密接判定有误"
    accepted = await decide(running, staff, appeal["id"], decision="accept", reason=reason)
    assert accepted["state"] == "accepted"
    assert accepted["decision_reason"] == reason
    assert accepted["override_status"] == "green"
    expires = dt.datetime.fromisoformat(accepted["override_expires_at"])
    assert expires == clock.now() + dt.timedelta(days=14)

    status = await my_status(api, resident)
    assert status["status"] == "green"
    assert status["reason_codes"] == ["override"]
    assert status["can_appeal"] is False
    assert dt.datetime.fromisoformat(status["valid_until"]) == expires
    [sentence] = status["explanation"]
    # The reviewer's own words are for staff: the resident reads that staff reviewed it.
    assert reason not in sentence
    assert sentence.startswith("工作人员已复核")
    [english] = (await my_status(api, resident, lang="en"))["explanation"]
    assert english.startswith("Reviewed by staff on") and reason not in english
    assert (await api.code(resident))["status"] == "green"

    [mine] = (await api.client.get("/v1/me/appeals", headers=resident.auth)).json()
    assert mine["state"] == "accepted"
    assert mine["decision_reason"] == reason

    on_appeal = [(e.action, e.actor_id) for e in await audit_actions(running, appeal["id"])]
    assert ("appeal.file", resident_id) in on_appeal
    assert ("appeal.accept", operator_id) in on_appeal
    set_status = [e for e in await audit_actions(running, resident_id) if e.action == "status.set"]
    assert len(set_status) == 1
    assert set_status[0].actor_id == operator_id
    assert set_status[0].detail["appeal_id"] == appeal["id"]
    assert set_status[0].detail["old"] == "red"
    assert set_status[0].detail["new"] == "green"

    for decision in (
        {"decision": "accept", "reason": "accept again"},
        {"decision": "reject", "reason": "changed my mind"},
    ):
        twice = await running.client.post(
            f"/v1/admin/appeals/{appeal['id']}/decision", headers=staff, json=decision
        )
        assert twice.status_code == 409
        assert twice.json()["error"]["code"] == "appeal_already_decided"
    missing = await running.client.post(
        f"/v1/admin/appeals/{uuid.uuid4()}/decision",
        headers=staff,
        json={"decision": "accept", "reason": "nobody"},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "appeal_not_found"


async def test_a_rejected_appeal_is_answered_and_the_status_stays(
    running: RunningApp, clock: ManualClock
):
    api = running.api
    resident = await red_resident(running, clock)
    appeal = await file(api, resident)
    staff = bearer(await running.operator_token(Role.OPERATOR))
    with_status = await running.client.post(
        f"/v1/admin/appeals/{appeal['id']}/decision",
        headers=staff,
        json={"decision": "reject", "reason": "a rejection with a colour", "status": "green"},
    )
    assert with_status.status_code == 422
    reason = "流调记录显示同一时间同一场所，维持原判定"
    rejected = await decide(running, staff, appeal["id"], decision="reject", reason=reason)
    assert rejected["state"] == "rejected"
    assert rejected["override_status"] is None

    [mine] = (await api.client.get("/v1/me/appeals", headers=resident.auth)).json()
    assert mine["state"] == "rejected"
    assert mine["decision_reason"] == reason
    assert mine["decided_at"] is not None
    status = await my_status(api, resident)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["close_contact"]
    assert status["can_appeal"] is True
    assert (await api.code(resident))["status"] == "red"
    actions = [e.action for e in await audit_actions(running, appeal["id"])]
    assert "appeal.reject" in actions
    # Nothing waits any more: the resident may appeal again.
    assert (await file(api, resident, "new evidence attached"))["state"] == "pending"


async def test_an_accepted_appeal_does_not_hide_a_newer_fact(
    running: RunningApp, clock: ManualClock
):
    api = running.api
    start = local_today(clock)
    resident = await red_resident(running, clock, start)
    appeal = await file(api, resident)
    staff = bearer(await running.operator_token(Role.OPERATOR))
    await decide(running, staff, appeal["id"], decision="accept", reason="wrong person listed")
    assert (await my_status(api, resident))["status"] == "green"
    green_code = await api.code(resident)

    # The authority sending the same close contact again is nothing new.
    clock.advance(1)
    resent = await push_case(running, resident, "close_contact", start)
    assert resent["persons_recomputed"] == 0
    assert (await my_status(api, resident))["status"] == "green"

    clock.advance(1)
    batch = await push_case(running, resident, "confirmed", local_today(clock))
    assert batch["statuses_changed"] == 1
    assert batch["codes_revoked"] == 1
    status = await my_status(api, resident)
    assert status["status"] == "red"
    assert status["reason_codes"][0] == "confirmed_case"
    # The override still covers what it was granted over.
    assert "close_contact" not in status["reason_codes"]
    assert status["can_appeal"] is True
    assert (await api.code(resident))["status"] == "red"
    gate = bearer(await running.checkpoint_key())
    verdict = await running.client.post(
        "/v1/verify", headers=gate, json={"qr_text": green_code["qr_text"]}
    )
    assert verdict.json()["verdict"] == "invalid"
    assert "revoked" in [r["code"] for r in verdict.json()["reasons"]]


async def test_a_correction_that_shortens_an_episode_keeps_the_appeal(
    running: RunningApp, clock: ManualClock
):
    api = running.api
    start = local_today(clock)
    resident = await red_resident(running, clock, start)
    appeal = await file(api, resident)
    staff = bearer(await running.operator_token(Role.OPERATOR))
    await decide(running, staff, appeal["id"], decision="accept", reason="wrong person listed")
    green_code = await api.code(resident)

    # The authority gives the episode an end date: better news, not a new fact.
    clock.advance(1)
    await push_case(running, resident, "close_contact", start, end=start + dt.timedelta(days=5))
    assert (await my_status(api, resident))["status"] == "green"
    gate = bearer(await running.checkpoint_key())
    verdict = await running.client.post(
        "/v1/verify", headers=gate, json={"qr_text": green_code["qr_text"]}
    )
    assert verdict.json()["verdict"] == "valid"

    # Lengthening it is news the reviewer did not see: it counts again.
    clock.advance(1)
    await push_case(running, resident, "close_contact", start, end=start + dt.timedelta(days=9))
    status = await my_status(api, resident)
    assert status["status"] == "red"
    assert status["reason_codes"][0] == "close_contact"


async def test_an_override_expires_and_the_facts_count_again(
    running: RunningApp, clock: ManualClock
):
    api = running.api
    still_red = await red_resident(running, clock)
    past_window = await red_resident(running, clock)
    staff = bearer(await running.operator_token(Role.OPERATOR))
    short = await decide(
        running,
        staff,
        (await file(api, still_red))["id"],
        decision="accept",
        reason="short review",
        valid_days=3,
    )
    long = await decide(
        running,
        staff,
        (await file(api, past_window))["id"],
        decision="accept",
        reason="long review",
        valid_days=20,
    )
    short_end = dt.datetime.fromisoformat(short["override_expires_at"])
    long_end = dt.datetime.fromisoformat(long["override_expires_at"])
    assert short_end == clock.now() + dt.timedelta(days=3)
    assert long_end == clock.now() + dt.timedelta(days=20)

    clock.set(short_end - dt.timedelta(seconds=1))
    await sign_in_again(api, still_red)
    assert (await my_status(api, still_red))["status"] == "green"

    # The close contact (14 days from today) still holds when the 3-day override ends.
    clock.set(short_end)
    await sign_in_again(api, still_red)
    status = await my_status(api, still_red)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["close_contact"]
    assert status["can_appeal"] is True

    # The 20-day override outlives the 14-day window: nothing is left when it ends.
    clock.set(long_end - dt.timedelta(seconds=1))
    await sign_in_again(api, past_window)
    assert (await my_status(api, past_window))["reason_codes"] == ["override"]
    clock.set(long_end)
    await sign_in_again(api, past_window)
    status = await my_status(api, past_window)
    assert status["status"] == "green"
    assert status["reason_codes"] == []
    assert status["valid_until"] is None


async def test_an_appeal_overtaken_by_new_facts_cannot_be_accepted(
    running: RunningApp, clock: ManualClock
):
    api = running.api
    resident = await api.registered()
    await push_case(running, resident, "secondary_contact", local_today(clock))
    appeal = await file(api, resident)
    assert appeal["status_at_filing"] == "yellow"
    clock.advance(60)
    await push_case(running, resident, "confirmed", local_today(clock))
    staff = bearer(await running.operator_token(Role.OPERATOR))

    accepted = await running.client.post(
        f"/v1/admin/appeals/{appeal['id']}/decision",
        headers=staff,
        json={"decision": "accept", "reason": "was elsewhere"},
    )

    assert accepted.status_code == 409
    assert accepted.json()["error"]["code"] == "appeal_outdated"
    assert "confirmed_case" in accepted.json()["error"]["detail"]
    status = await my_status(api, resident)
    assert status["status"] == "red"
    rejected = await decide(
        running, staff, appeal["id"], decision="reject", reason="status changed; appeal again"
    )
    assert rejected["state"] == "rejected"


async def test_a_code_never_outlives_the_override_it_shows(running: RunningApp, clock: ManualClock):
    api = running.api
    resident = await red_resident(running, clock)
    appeal = await file(api, resident)
    staff = bearer(await running.operator_token(Role.OPERATOR))
    await decide(
        running, staff, appeal["id"], decision="accept", reason="review pending", valid_days=1
    )
    clock.advance((dt.timedelta(days=1) - dt.timedelta(minutes=2)).total_seconds())
    await sign_in_again(api, resident)

    code = await api.code(resident)

    # Two minutes before the override ends, the green code lasts two minutes, not an hour.
    expires = dt.datetime.fromisoformat(code["expires_at"])
    assert expires - clock.now() == dt.timedelta(minutes=2)
    clock.advance(600)
    verdict = await running.client.post(
        "/v1/verify",
        headers=bearer(await running.checkpoint_key()),
        json={"qr_text": code["qr_text"]},
    )
    assert verdict.json()["verdict"] == "invalid"
    assert (await my_status(api, resident))["status"] == "red"
