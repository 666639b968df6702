"""Batches that overlap other work on PostgreSQL, where requests really run side by side: an appeal
accepted while a batch streams in, an identity bound while a batch is being decided."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from conftest import RunningApp
from feeds.feedkit import case, local_time, my_status, nat, ndjson, post, today, verify
from support.api import Api, random_phone, random_prc_id
from yuekang.clock import ManualClock
from yuekang.principals import Role


def travel_row(number: str, region: str, when: dt.date) -> dict[str, str]:
    return {
        "doc_type": "prc_id",
        "doc_number": number,
        "region_code": region,
        "date": when.isoformat(),
    }


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite runs one writer at a time: nothing overlaps")


async def _paused(first: bytes, rest: bytes, go: asyncio.Event) -> AsyncIterator[bytes]:
    yield first
    await go.wait()
    yield rest


async def _accept_appeal_during_batch(
    running: RunningApp, api: Api, clock: ManualClock, result: str
) -> tuple[dict[str, object], dict[str, object], str]:
    resident = await api.registered()
    cdc = await running.feed_key("cases")
    lab = await running.feed_key("nat-results")
    started = await post(running, cdc, "cases", ndjson(case(resident, today(running).isoformat())))
    assert started.status_code == 201
    appeal = await running.client.post(
        "/v1/me/appeals", headers=resident.auth, json={"text": "I was not there that day."}
    )
    staff = {"Authorization": f"Bearer {await running.operator_token(Role.OPERATOR)}"}

    go = asyncio.Event()
    # Yesterday morning: 07:00 today is still to come when the suite runs after midnight (UTC+8).
    sample = local_time(today(running) - dt.timedelta(days=1), 7)
    body = ndjson(nat(resident, sample, result))
    batch = asyncio.create_task(
        post(running, lab, "nat-results", _paused(body[:20], body[20:], go), idempotency_key="lab")
    )
    await asyncio.sleep(0.2)  # the batch has begun and holds its start time
    clock.advance(1)
    accepted = await running.client.post(
        f"/v1/admin/appeals/{appeal.json()['id']}/decision",
        headers=staff,
        json={"decision": "accept", "reason": "wrong person listed"},
    )
    assert accepted.status_code == 200, accepted.text
    green = await api.code(resident)
    clock.advance(1)
    go.set()
    response = await batch
    assert response.status_code == 201, response.text
    return await my_status(running, resident), await verify(running, green["qr_text"]), "ok"


async def test_a_negative_test_streaming_in_does_not_undo_an_appeal_accepted_meanwhile(
    running: RunningApp, api: Api, clock: ManualClock
):
    status, verdict, _ = await _accept_appeal_during_batch(running, api, clock, "negative")
    assert status["status"] == "green"
    assert verdict["verdict"] == "valid"


async def test_a_positive_test_the_reviewer_could_not_see_still_counts(
    running: RunningApp, api: Api, clock: ManualClock
):
    status, verdict, _ = await _accept_appeal_during_batch(running, api, clock, "positive")
    assert status["status"] == "red"
    assert status["reason_codes"][0] == "positive_nat"
    assert [r["code"] for r in verdict["reasons"]] == ["revoked"]


async def test_binding_while_a_batch_about_that_person_streams_in(
    running: RunningApp, api: Api, clock: ManualClock
):
    number, birth = random_prc_id()
    cdc = await running.feed_key("cases")
    resident = await api.sign_in(random_phone())
    go = asyncio.Event()
    body = ndjson(case(number, today(running).isoformat(), "confirmed"))
    batch = asyncio.create_task(
        post(running, cdc, "cases", _paused(body[:20], body[20:], go), idempotency_key="cdc")
    )
    await asyncio.sleep(0.2)
    bind = asyncio.create_task(api.bind(resident, doc_number=number, birth_date=birth))
    await asyncio.sleep(0.2)
    go.set()
    assert (await batch).status_code == 201
    assert (await bind).status_code == 201
    status = await my_status(running, resident)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["confirmed_case"]


async def test_overlapping_batches_never_fail_with_a_server_error(running: RunningApp):
    # The same 12,000 trips from two clients at once, in opposite orders: PostgreSQL may find a
    # deadlock and undo one batch. That must come back as a 503 to resend, and the resend works.
    numbers = [random_prc_id()[0] for _ in range(3000)]
    rows = [
        travel_row(number, region, today(running) - dt.timedelta(days=days_back))
        for number in numbers
        for region, days_back in (("440104", 2), ("440305", 3), ("510107", 4), ("310101", 5))
    ]
    forward, backward = ndjson(*rows), ndjson(*reversed(rows))
    one, other = await running.feed_key("travel"), await running.feed_key("travel")
    answers = await asyncio.gather(
        post(running, one, "travel", forward, idempotency_key="a"),
        post(running, other, "travel", backward, idempotency_key="b"),
    )
    assert {a.status_code for a in answers} <= {201, 503}
    for answer, key, body in zip(answers, (one, other), (forward, backward), strict=True):
        if answer.status_code == 503:
            assert answer.json()["error"]["code"] == "busy_retry"
            assert answer.headers["Retry-After"] == "1"
            again = await post(running, key, "travel", body, idempotency_key="again")
            assert again.status_code == 201, again.text
