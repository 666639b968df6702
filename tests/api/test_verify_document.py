"""刷证核验: a checkpoint checks a person by their document, with no code and no oracle."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from conftest import RunningApp, make_settings, start_app
from support.api import random_prc_id
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import DocumentCheckSettings, Settings
from yuekang.principals import Role
from yuekang.scans.models import ScanRecord


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def check(
    running: RunningApp, gate: str, number: str, doc_type: str = "prc_id", **headers: str
) -> Any:
    return await running.client.post(
        "/v1/verify/document",
        headers={**bearer(gate), **headers},
        json={"doc_type": doc_type, "doc_number": number},
    )


async def test_a_proofed_residents_document_answers_like_their_code(running: RunningApp):
    gate = await running.checkpoint_key("Tianhe station", kind="transport")
    resident = await running.api.registered(name="张小三")
    assert resident.doc_number is not None

    answer = await check(running, gate, resident.doc_number.lower(), **{"accept-language": "en"})

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verdict"] == "valid"
    assert (body["status"], body["masked_name"], body["assurance"]) == ("green", "张*三", "proofed")
    assert (body["decision"], body["decision_reason"]) == ("allow", "green")
    assert body["origin"] == "document_check"
    assert body["code_id"] is None and body["kid"] is None
    assert resident.doc_number not in answer.text


async def test_a_red_resident_is_denied_by_document_too(running: RunningApp):
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    await running.set_red(resident)
    assert resident.doc_number is not None

    body = (await check(running, gate, resident.doc_number)).json()

    assert (body["verdict"], body["status"], body["decision"]) == ("valid", "red", "deny")


async def test_unknown_unbound_and_unproved_documents_answer_alike(running: RunningApp):
    gate = await running.checkpoint_key()
    never_bound, _ = random_prc_id()
    legacy = await running.api.registered()
    await running.unverify(legacy)  # bound before proofing existed
    assert legacy.doc_number is not None

    answers = [await check(running, gate, n) for n in (never_bound, legacy.doc_number)]

    assert [a.status_code for a in answers] == [200, 200]
    bodies = [a.json() for a in answers]
    assert bodies[0] == bodies[1]
    assert bodies[0]["verdict"] == "invalid"
    assert [r["code"] for r in bodies[0]["reasons"]] == ["no_valid_code"]
    assert bodies[0]["status"] is None and bodies[0]["masked_name"] is None
    assert bodies[0]["decision"] == "deny"


async def test_a_mistyped_number_is_a_422_and_no_key_a_401(running: RunningApp):
    gate = await running.checkpoint_key()
    number, _ = random_prc_id()
    typo = number[:-1] + ("0" if number[-1] != "0" else "1")

    bad = await check(running, gate, typo)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_document"
    unknown_key = await check(running, "yk_cp_nothing_here", number)
    assert unknown_key.status_code == 401
    resident_token = (await running.api.registered()).token
    assert (await check(running, resident_token, number)).status_code == 401


async def test_every_check_is_a_scan_record_found_by_contact_tracing(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    code = await running.api.code(resident)
    assert resident.doc_number is not None
    await check(running, gate, resident.doc_number)
    await check(running, gate, random_prc_id()[0])

    async with running.context.sessionmaker() as session:
        records = (
            (await session.execute(select(ScanRecord).where(ScanRecord.method == "document")))
            .scalars()
            .all()
        )
    mine = [r for r in records if r.scanned_at == clock.now()]
    assert {(r.verdict, r.reason) for r in mine} >= {
        ("valid", None),
        ("invalid", "no_valid_code"),
    }
    assert all(r.code_id is None and r.subject_index is not None for r in mine)

    epi = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    travels = await running.client.get(
        f"/v1/admin/codes/{code['code_id']}/scans",
        headers=epi,
        params={"case_reference": "GZ-2026-0200"},
    )
    assert travels.status_code == 200
    checked = [s for s in travels.json() if s["method"] == "document"]
    assert [(s["verdict"], s["code_id"]) for s in checked] == [("valid", None)]


async def test_document_checks_are_rate_limited_per_checkpoint(
    database_url: str, tmp_path, clock: ManualClock
):
    settings: Settings = make_settings(
        database_url,
        tmp_path / "keys",
        document_checks=DocumentCheckSettings(per_checkpoint_limit=3),
    )
    async for running in start_app(settings, clock, MemorySmsSender()):
        gate, other_gate = await running.checkpoint_key(), await running.checkpoint_key()
        number, _ = random_prc_id()
        codes = [(await check(running, gate, number)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = await check(running, gate, number)
        assert limited.headers["retry-after"]
        assert (await check(running, other_gate, number)).status_code == 200
        clock.advance(dt.timedelta(minutes=1).total_seconds())
        assert (await check(running, gate, number)).status_code == 200
