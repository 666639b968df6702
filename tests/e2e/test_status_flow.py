"""The status flow against two real ``yuekang serve`` processes sharing one PostgreSQL database:
a feed makes a resident a close contact through one process, the other answers ``revoked`` for
their green code at once, their next code is red with the reason, an operator accepts their
appeal, and they are green again -- with every step in the audit log."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from support.api import answer, enrol_in_registry, random_prc_id
from support.postgres import create_database
from support.servers import Server, cli, serve, server_env
from yuekang.audit.models import AuditEvent
from yuekang.db import create_engine, migrate
from yuekang.residents.documents import local_date
from yuekang.rules import default_rule_set

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_servers(pg_server: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    url = create_database(pg_server)
    migrate(url)
    env = server_env(url, tmp_path / "keys", YUEKANG_RULES__REFRESH_SECONDS="1")
    with serve(env, tmp_path, "a") as a, serve(env, tmp_path, "b") as b:
        yield a, b


def _claims(qr_text: str) -> dict[str, object]:
    payload = qr_text.removeprefix("YK1:").split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def _audit_actions(url: str, subject_ids: set[str]) -> list[str]:
    async def read() -> list[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    select(AuditEvent.action)
                    .where(AuditEvent.subject_id.in_(subject_ids))
                    .order_by(AuditEvent.id)
                )
                return list(rows.scalars())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_feed_to_red_to_appeal_to_green_across_two_processes(
    two_servers: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = two_servers
    env = a.env
    feed_key = cli(env, tmp_path, "feeds", "clients", "create", "cdc", "--kinds", "cases")
    operator = cli(env, tmp_path, "operators", "create", "reviewer", "--role", "operator")
    gate = cli(env, tmp_path, "checkpoints", "create", "north gate")
    doc_number, birth = random_prc_id()
    enrol_in_registry(
        a.registry, name="李小明", doc_number=doc_number, birth_date=birth, phone="+8613900139000"
    )

    with (
        httpx.Client(base_url=a.base, timeout=30) as on_a,
        httpx.Client(base_url=b.base, timeout=30) as on_b,
    ):
        sent = on_a.post("/v1/auth/otp", json={"phone": "+8613900139000"})
        token = on_a.post(
            "/v1/auth/token", json={"phone": "+8613900139000", **answer(sent.json())}
        ).json()["access_token"]
        me = {"Authorization": f"Bearer {token}"}
        bound = on_a.put(
            "/v1/me/identity",
            headers=me,
            json={
                "name": "李小明",
                "doc_type": "prc_id",
                "doc_number": doc_number,
                "birth_date": birth.isoformat(),
            },
        )
        assert bound.status_code == 201, bound.text
        green = on_a.post("/v1/codes", headers=me).json()
        assert green["status"] == "green"
        scan = {"Authorization": f"Bearer {gate}"}
        assert (
            on_b.post("/v1/verify", headers=scan, json={"qr_text": green["qr_text"]}).json()[
                "verdict"
            ]
            == "valid"
        )

        # The authority reports a close contact through process A ...
        today = local_date(dt.datetime.now(dt.UTC)).isoformat()
        row = {
            "doc_type": "prc_id",
            "doc_number": doc_number,
            "category": "close_contact",
            "start_date": today,
        }
        batch = on_a.post(
            "/v1/feeds/cases",
            content=json.dumps(row) + "\n",
            headers={
                "Authorization": f"Bearer {feed_key}",
                "Content-Type": "application/x-ndjson",
                "Idempotency-Key": "cdc-2026-11-25-001",
            },
        )
        assert batch.status_code == 201, batch.text
        assert batch.json()["codes_revoked"] == 1

        # ... and process B refuses the green code at once.
        verdict = on_b.post("/v1/verify", headers=scan, json={"qr_text": green["qr_text"]}).json()
        assert verdict["verdict"] == "invalid"
        assert [r["code"] for r in verdict["reasons"]] == ["revoked"]

        red = on_b.post("/v1/codes", headers=me).json()
        assert red["status"] == "red"
        assert _claims(red["qr_text"])["st"] == "red"
        status = on_b.get("/v1/me/status", headers=me, params={"lang": "en"}).json()
        assert status["reason_codes"] == ["close_contact"]
        assert "close contact" in status["explanation"][0]

        # The resident appeals on A; an operator reviews and accepts it on B.
        filed = on_a.post(
            "/v1/me/appeals", headers=me, json={"text": "I was abroad on that day; see my ticket."}
        )
        assert filed.status_code == 201, filed.text
        staff = {"Authorization": f"Bearer {operator}"}
        pending = on_b.get("/v1/admin/appeals", headers=staff).json()
        assert [p["id"] for p in pending] == [filed.json()["id"]]
        detail = on_b.get(f"/v1/admin/appeals/{filed.json()['id']}", headers=staff).json()
        assert detail["text"] == "I was abroad on that day; see my ticket."
        accepted = on_b.post(
            f"/v1/admin/appeals/{filed.json()['id']}/decision",
            headers=staff,
            json={"decision": "accept", "reason": "travel record confirms absence"},
        )
        assert accepted.status_code == 200, accepted.text

        after = on_a.get("/v1/me/status", headers=me, params={"lang": "en"}).json()
        assert after["status"] == "green"
        assert after["reason_codes"] == ["override"]
        # The reviewer's note is for staff; the resident reads that staff reviewed it.
        assert after["explanation"][0].startswith("Reviewed by staff on")
        assert "travel record confirms absence" not in " ".join(after["explanation"])
        assert on_a.post("/v1/codes", headers=me).json()["status"] == "green"
        mine = on_a.get("/v1/me/appeals", headers=me).json()
        assert mine[0]["state"] == "accepted"
        resident_id = on_a.get("/v1/me", headers=me).json()["resident_id"]

    actions = _audit_actions(env["YUEKANG_DATABASE_URL"], {filed.json()["id"], resident_id})
    assert actions.count("appeal.file") == 1
    assert "appeal.read" in actions
    assert "appeal.accept" in actions
    assert "status.set" in actions


def test_a_rule_set_activated_on_one_process_reaches_the_other(
    two_servers: tuple[Server, Server], tmp_path: Path
) -> None:
    a, b = two_servers
    epidemiologist = cli(a.env, tmp_path, "operators", "create", "epi", "--role", "epidemiologist")
    staff = {"Authorization": f"Bearer {epidemiologist}"}
    document = default_rule_set().document()
    document["version"] = "gd-2021.2"
    activated = httpx.post(f"{a.base}/v1/admin/rule-sets", headers=staff, json=document)
    assert activated.status_code == 201, activated.text
    started = time.monotonic()
    while True:
        active = httpx.get(f"{b.base}/v1/admin/rule-sets/active", headers=staff).json()
        if active["version"] == "gd-2021.2":
            break
        # YUEKANG_RULES__REFRESH_SECONDS=1: the documented bound, plus time to answer.
        assert time.monotonic() - started < 3, "process B still uses the old rule set"
        time.sleep(0.1)
