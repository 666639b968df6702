"""Scan records: the minimum kept, uploads that can be repeated, retention, and contact tracing
that only epidemiologists may do, each query audited with its case reference."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from conftest import RunningApp
from yuekang import maintenance
from yuekang.audit.models import AuditEvent
from yuekang.clock import ManualClock
from yuekang.principals import Role
from yuekang.scans.models import ScanRecord


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def records_of(running: RunningApp, code_id: str) -> list[ScanRecord]:
    async with running.context.sessionmaker() as session:
        rows = await session.execute(select(ScanRecord).where(ScanRecord.code_id == code_id))
        return list(rows.scalars())


async def checkpoint_id(running: RunningApp, key: str) -> str:
    return uuid.UUID(hex=key.removeprefix("ykc_").split("_")[0]).__str__()


def scan(code_id: str | None, at: dt.datetime, verdict: str = "valid", **extra: Any) -> dict:
    return {
        "scan_id": extra.pop("scan_id", uuid.uuid4().hex),
        "code_id": code_id,
        "scanned_at": at.isoformat(),
        "verdict": verdict,
        **extra,
    }


async def test_online_verification_keeps_only_code_place_time_and_verdict(running: RunningApp):
    gate = await running.checkpoint_key()
    code = await running.api.code(await running.api.registered())
    await running.client.post("/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]})

    [record] = await records_of(running, code["code_id"])

    assert str(record.checkpoint_id) == await checkpoint_id(running, gate)
    assert (record.verdict, record.reason, record.source) == ("valid", None, "online")
    assert (record.method, record.subject_index) == ("code", None)
    stored = {c.name for c in ScanRecord.__table__.columns}
    # subject_index: only a document check (刷证核验) has one, the document's blind index;
    # decision: what the gate made of the verdict (a venue lets a valid green code in).
    assert stored == {
        "id", "checkpoint_id", "scan_id", "code_id", "scanned_at", "verdict", "reason", "source",
        "received_at", "method", "subject_index", "decision",
    }  # fmt: skip
    assert record.decision == "allow"


async def test_offline_scans_are_stored_once_however_often_uploaded(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    code = await running.api.code(await running.api.registered())
    batch = {
        "scans": [
            scan(code["code_id"], clock.now(), scan_id="s-1"),
            scan(code["code_id"], clock.now(), "invalid", reason="revoked", scan_id="s-2"),
            scan(None, clock.now(), "invalid", reason="malformed", scan_id="s-3"),
        ]
    }
    first = await running.client.post("/v1/scans", headers=bearer(gate), json=batch)
    again = await running.client.post("/v1/scans", headers=bearer(gate), json=batch)

    assert first.json() == {"received": 3, "stored": 3, "duplicates": 0, "refused": []}
    assert again.json() == {"received": 3, "stored": 0, "duplicates": 3, "refused": []}
    assert sorted(r.scan_id for r in await records_of(running, code["code_id"])) == ["s-1", "s-2"]


async def test_scans_from_the_future_or_past_retention_are_set_aside_not_stored(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    code = await running.api.code(await running.api.registered())
    batch = {
        "scans": [
            scan(code["code_id"], clock.now() + dt.timedelta(hours=1), scan_id="ahead"),
            scan(code["code_id"], clock.now() - dt.timedelta(days=29), scan_id="too-old"),
            scan(code["code_id"], clock.now(), scan_id="fine"),
        ]
    }
    answer = await running.client.post("/v1/scans", headers=bearer(gate), json=batch)

    assert answer.json() == {
        "received": 3, "stored": 1, "duplicates": 0, "refused": ["ahead", "too-old"],
    }  # fmt: skip
    assert [r.scan_id for r in await records_of(running, code["code_id"])] == ["fine"]
    bad_id = await running.client.post(
        "/v1/scans", headers=bearer(gate), json={"scans": [scan("not-a-code-id", clock.now())]}
    )
    assert bad_id.status_code == 422


async def test_records_past_retention_are_purged_from_the_table(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    old = await running.api.code(await running.api.registered())
    await running.client.post("/v1/verify", headers=bearer(gate), json={"qr_text": old["qr_text"]})
    clock.advance(dt.timedelta(days=20).total_seconds())
    recent = await running.api.code(await running.api.registered())
    await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": recent["qr_text"]}
    )
    clock.advance(dt.timedelta(days=9).total_seconds())

    context = running.context
    done = await maintenance.run_once(
        context.sessionmaker, context.settings, context.clock, force=True
    )
    assert done.deleted["scan_records"] >= 1

    assert await records_of(running, old["code_id"]) == []
    assert len(await records_of(running, recent["code_id"])) == 1


async def test_contact_tracing_is_for_epidemiologists_and_audited(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    resident = await running.api.registered()
    first, second = await running.api.code(resident), await running.api.code(resident)
    for code in (first, second):
        await running.client.post(
            "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
        )
    epi = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    window = {
        "from": (clock.now() - dt.timedelta(minutes=1)).isoformat(),
        "to": (clock.now() + dt.timedelta(minutes=1)).isoformat(),
        "case_reference": "GZ-2026-0117",
    }
    place = await checkpoint_id(running, gate)

    at_gate = await running.client.get(
        f"/v1/admin/checkpoints/{place}/scans", headers=epi, params=window
    )
    travels = await running.client.get(
        f"/v1/admin/codes/{first['code_id']}/scans",
        headers=epi,
        params={"case_reference": "GZ-2026-0117"},
    )
    who = await running.client.post(
        f"/v1/admin/codes/{second['code_id']}/resolve",
        headers=epi,
        json={"case_reference": "GZ-2026-0117"},
    )

    assert {s["code_id"] for s in at_gate.json()} >= {first["code_id"], second["code_id"]}
    assert {s["code_id"] for s in travels.json()} == {first["code_id"], second["code_id"]}
    me = (await running.client.get("/v1/me", headers=resident.auth)).json()
    assert who.json() == {"resident_id": me["resident_id"]}
    async with running.context.sessionmaker() as session:
        audited = (
            await session.execute(
                select(AuditEvent.action, AuditEvent.detail).where(
                    AuditEvent.action.like("scans.%")
                )
            )
        ).all()
    mine = [a for a, d in audited if d.get("case_reference") == "GZ-2026-0117"]
    assert {"scans.at_checkpoint", "scans.of_person", "scans.resolve_code"} <= set(mine)

    for role in (Role.OPERATOR, Role.ADMIN):
        other = bearer(await running.operator_token(role))
        refused = await running.client.post(
            f"/v1/admin/codes/{second['code_id']}/resolve",
            headers=other,
            json={"case_reference": "GZ-2026-0117"},
        )
        assert refused.status_code == 403
    no_case = await running.client.get(f"/v1/admin/codes/{first['code_id']}/scans", headers=epi)
    assert no_case.status_code == 422


async def _refusal(running: RunningApp, gate: str, record: dict[str, Any]) -> tuple[int, str]:
    answer = await running.client.post(
        "/v1/scans", headers={**bearer(gate), "Accept-Language": "en"}, json={"scans": [record]}
    )
    fields = answer.json()["error"]["fields"] if answer.status_code == 422 else [{"reason": ""}]
    return answer.status_code, fields[0]["reason"]


async def test_an_upload_no_device_could_have_made_is_refused_not_counted(
    running: RunningApp, clock: ManualClock
):
    gate = await running.checkpoint_key()
    code_id = (await running.api.code(await running.api.registered()))["code_id"]
    now = clock.now()
    # A pass with no code read, a pass with something wrong with it, a refusal without a why.
    assert await _refusal(running, gate, scan(None, now, decision="allow")) == (
        422, "code_id_missing"
    )  # fmt: skip
    assert await _refusal(running, gate, scan(code_id, now, reason="revoked")) == (
        422, "reason_with_valid"
    )  # fmt: skip
    assert await _refusal(running, gate, scan(code_id, now, "invalid")) == (422, "reason_missing")
    # What devices do send: a pass with its decision, one from a device older than decisions,
    # an unreadable code with its reason, a scan it could not verify (no decision to make).
    fine = [
        scan(code_id, now, decision="allow"),
        scan(code_id, now),
        scan(None, now, "invalid", reason="malformed", decision="deny"),
        scan(code_id, now, "cannot_verify", reason="trust_expired", decision=None),
    ]
    # And a pass from a device that says it could not decide: null is not "allow". It is set
    # aside by name, as a scan from a wrong clock is, not stored and so never counted; the
    # others in the batch are stored.
    undecided = scan(code_id, now, decision=None, scan_id="undecided")
    answer = await running.client.post(
        "/v1/scans", headers=bearer(gate), json={"scans": [*fine, undecided]}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"received": 5, "stored": 4, "duplicates": 0, "refused": ["undecided"]}
    assert "undecided" not in {r.scan_id for r in await records_of(running, code_id)}
    # Two records under one scan id in a batch: one was silently dropped, the counts not
    # adding up (hostile review); now the batch is refused and names why.
    twice = [scan(code_id, now, decision="allow", scan_id="s-1")] * 2
    answer = await running.client.post(
        "/v1/scans", headers={**bearer(gate), "Accept-Language": "en"}, json={"scans": twice}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["reason"] == "scan_id_repeated"
    assert answer.json()["error"]["fields"][0]["message"] == "Each scan id appears once in a batch."


async def test_a_pass_given_offline_to_a_code_already_revoked_is_kept_but_not_counted_as_one(
    running: RunningApp, clock: ManualClock
):
    admin = bearer(await running.operator_token(Role.ADMIN))
    gate = await running.checkpoint_key("Offline gate", "venue")
    resident = await running.api.registered()
    code_id = (await running.api.code(resident))["code_id"]
    before = clock.now()
    clock.advance(60)
    await running.set_red(resident)  # the green code is revoked now
    clock.advance(60)
    # The device, offline on the bundle of an hour ago, let the green code through twice: once
    # before the revocation (right at the time) and once after it.
    batch = [
        scan(code_id, before, decision="allow", scan_id="before"),
        scan(code_id, clock.now(), decision="allow", scan_id="after"),
    ]
    answer = await running.client.post("/v1/scans", headers=bearer(gate), json={"scans": batch})
    assert answer.status_code == 200, answer.text

    kept = {r.scan_id: r for r in await records_of(running, code_id)}
    # What the device decided is kept as it was; the server's reason sits beside it.
    assert {k: (r.verdict, r.decision, r.reason) for k, r in kept.items()} == {
        "before": ("valid", "allow", None),
        "after": ("valid", "allow", "revoked"),
    }
    overview = await running.client.get("/v1/admin/stats/overview", headers=admin)
    [place] = [p for p in overview.json()["scans"] if p["name"] == "Offline gate"]
    assert (place["valid"], place["allow"], place["allowed_revoked"]) == (2, 1, 1)
