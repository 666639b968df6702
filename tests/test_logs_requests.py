"""Request ids (yuekang/logs.py): taken from ``X-Request-ID`` when sane, else made; answered on
every response -- errors, 413s, 404s and the fast lane's included; on every log line written
while the request is handled; stored on the outbox message it queues and sent, with the log
lines of its delivery, when the outbox calls the partner minutes later."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.test_exchange_outbound import consent, green_resident, stop_background_outbox
from conftest import RunningApp, make_settings, start_app
from exchange.kit import OUTBOUND, register
from yuekang import logs
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import Settings
from yuekang.exchange.models import OutboxMessage

MADE = re.compile(r"[0-9a-f]{32}")


class Seen(logging.Handler):
    """Each record with the request id it was written under."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[logging.LogRecord, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record, logs.request_id()))


@pytest.fixture
def seen() -> Iterator[Seen]:
    handler = Seen()
    logger = logging.getLogger("yuekang")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_sane_request_id_is_answered_as_it_came(running: RunningApp):
    answer = await running.client.get("/livez", headers={"X-Request-ID": "lb-7f3a:42.x"})
    assert answer.headers["X-Request-ID"] == "lb-7f3a:42.x"


@pytest.mark.parametrize(
    "given",
    [
        "x" * 129,  # too long for a log line's field
        'abc" "level": "CRITICAL',  # quotes: an attempt to write into a line
        "abc\u202edef",  # a bidirectional override
        "",
    ],
)
async def test_an_insane_request_id_is_replaced_never_echoed(running: RunningApp, given: str):
    answer = await running.client.get("/livez", headers={"X-Request-ID": given.encode("utf-8")})
    assert MADE.fullmatch(answer.headers["X-Request-ID"])


async def test_every_kind_of_answer_names_its_request(running: RunningApp, api_resident_auth):
    client = running.client
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    answers = {
        "made": await client.get("/livez"),
        "not found": await client.get("/v1/no-such-thing"),
        "method not allowed": await client.delete("/livez"),
        "validation": await client.post("/v1/auth/otp", json={"phone": 12}),
        "too large": await client.post(
            "/v1/auth/otp", content=b"{" + b" " * 70_000 + b"}", headers={"Content-Type": "x"}
        ),
        "fast lane": await client.post("/v1/verify", headers=gate, json={"qr_text": "YK1:x.y.z"}),
        "fast lane refusal": await client.post("/v1/verify", json={"qr_text": "YK1:x.y.z"}),
        "fast lane issuance": await client.post("/v1/codes", headers=api_resident_auth),
    }
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "made": 200,
        "not found": 404,
        "method not allowed": 405,
        "validation": 422,
        "too large": 413,
        "fast lane": 200,
        "fast lane refusal": 401,
        "fast lane issuance": 201,
    }
    ids = {name: answer.headers.get("X-Request-ID") for name, answer in answers.items()}
    assert all(value is not None and MADE.fullmatch(value) for value in ids.values()), ids
    assert len(set(ids.values())) == len(ids), "each request its own id"


@pytest.fixture
async def api_resident_auth(running: RunningApp) -> dict[str, str]:
    return (await running.api.registered()).auth


async def test_the_lines_of_a_request_carry_its_id(running: RunningApp, seen: Seen):
    resident = await running.api.sign_in()
    old = resident.refresh_token
    await running.api.renew(resident)
    # The replaced refresh token, sent again: the session ends, with a warning in the log.
    replayed = await running.client.post("/v1/auth/refresh", json={"refresh_token": old})
    assert replayed.status_code == 401
    warned = [request for record, request in seen.records if "replayed" in record.getMessage()]
    assert warned == [replayed.headers["X-Request-ID"]]


@pytest.fixture
def logged_settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "keys", access_log=True)


async def test_the_access_log_names_the_route_never_the_path(
    logged_settings: Settings, clock: ManualClock, sms: MemorySmsSender, seen: Seen
):
    async for running in start_app(logged_settings, clock, sms):
        resident = await running.api.registered()
        code = await running.api.code(resident)
        shown = await running.client.get(
            f"/v1/codes/{code['code_id']}.png?size=big", headers=resident.auth
        )
        assert shown.status_code == 200
    lines = [
        (record, request)
        for record, request in seen.records
        if record.name == "yuekang.access" and record.__dict__["route"].endswith(".png")
    ]
    assert len(lines) == 1
    record, request = lines[0]
    assert request == shown.headers["X-Request-ID"]
    assert record.__dict__["route"] == "/v1/codes/{code_id}.png"
    assert record.__dict__["status"] == 200
    assert record.__dict__["method"] == "GET"
    assert record.__dict__["duration_ms"] >= 0
    assert code["code_id"] not in record.getMessage()
    assert "size" not in record.getMessage()


@pytest.fixture
async def alone(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[RunningApp]:
    """An app on a database of its own: the outbox and the partner's circuit are global."""
    settings = make_settings(fresh_database_url, tmp_path / "keys")
    async for running in start_app(settings, clock, sms):
        yield running


async def test_an_outbox_delivery_logs_and_sends_the_id_of_the_request_that_queued_it(
    alone: RunningApp, seen: Seen
):
    running = alone
    await stop_background_outbox(running)
    await register(running)
    resident = await green_resident(running)
    queued = await running.client.post(
        OUTBOUND,
        json=consent(),
        headers={
            **resident.auth,
            "Idempotency-Key": uuid.uuid4().hex,
            "X-Request-ID": "phone-req-0001",
        },
    )
    assert queued.status_code == 202, queued.text
    assert queued.headers["X-Request-ID"] == "phone-req-0001"
    async with running.context.sessionmaker() as session:
        stored = (await session.execute(select(OutboxMessage.request_id))).scalars().all()
    assert stored == ["phone-req-0001"]

    sent: list[httpx.Request] = []

    def partner_down(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    context = running.context
    async with httpx.AsyncClient(transport=httpx.MockTransport(partner_down)) as http:
        outbox = context.outbox_over(http)
        assert logs.request_id() is None  # the delivery runs outside any request
        assert await outbox.run_once() == 1
    assert [request.headers.get("X-Request-ID") for request in sent] == ["phone-req-0001"]
    delivery = [
        request for record, request in seen.records if record.getMessage().startswith("outbox")
    ]
    assert delivery == ["phone-req-0001"]
    assert logs.request_id() is None  # and leaves none behind


async def test_calls_to_other_systems_name_the_request(running: RunningApp):
    """The service's own HTTP client (partners, the identity registry, the SMS gateway)."""
    sent: list[httpx.Request] = []

    def anyone(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    async with httpx.AsyncClient(
        transport=httpx.MockTransport(anyone), event_hooks={"request": [logs.send_request_id]}
    ) as http:
        await http.get("http://registry.test/")
        with logs.bound("req-42"):
            await http.get("http://registry.test/")
            await http.get("http://registry.test/", headers={"X-Request-ID": "chosen"})
    assert [r.headers.get("X-Request-ID") for r in sent] == [None, "req-42", "chosen"]
    hooks = running.context.http.event_hooks["request"]
    assert logs.send_request_id in hooks
