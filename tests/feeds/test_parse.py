"""Reading a batch body: CSV and NDJSON alike, and the limits that refuse a whole batch."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from conftest import RunningApp
from feeds.feedkit import (
    CSV,
    NDJSON,
    StartApp,
    csv_body,
    days_ago,
    error_code,
    local_time,
    my_status,
    nat,
    ndjson,
    post,
    problems,
    push,
    risk_area,
    today,
    travel,
)
from feeds.feedkit import case as case_row
from feeds.test_plain import CONTEXT, _variants
from support.api import NOBODYS_REGION, Api, Resident, random_prc_id
from yuekang.feeds import repository
from yuekang.feeds.parse import MAX_LINE_BYTES, Line, read_rows
from yuekang.feeds.rows import (
    SPECS,
    FeedKind,
    RowRejected,
    check_fully,
)
from yuekang.feeds.service import CHUNK_ROWS

MiB = 1024 * 1024


async def _cases_csv(
    running: RunningApp, key: str, resident: Resident, bom: bool
) -> tuple[str, list[str]]:
    return "doc_type,doc_number,category,start_date,end_date", [
        f"prc_id,{resident.doc_number},close_contact,{days_ago(running, 1)},",
        f"prc_id,{random_prc_id()[0]},confirmed,{days_ago(running, 3)},{days_ago(running, 1)}",
    ]


async def _cases_seen(running: RunningApp, resident: Resident) -> None:
    status = await my_status(running, resident)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["close_contact"]


async def _nat_csv(
    running: RunningApp, key: str, resident: Resident, bom: bool
) -> tuple[str, list[str]]:
    yesterday = today(running) - dt.timedelta(days=1)
    morning, evening = local_time(yesterday, 8).isoformat(), local_time(yesterday, 18).isoformat()
    # Columns in another order than the documented one; a quoted field with a comma.
    return "result,lab,doc_number,doc_type,sampled_at", [
        f'negative,"Lab 1, Tianhe",{resident.doc_number},prc_id,{morning}',
        f"negative,Lab 2,{resident.doc_number},prc_id,{evening}",
    ]


async def _nat_seen(running: RunningApp, resident: Resident) -> None:
    yesterday = today(running) - dt.timedelta(days=1)
    nat_read = (await my_status(running, resident))["nat"]
    assert nat_read["latest_result"] == "negative"
    assert dt.datetime.fromisoformat(nat_read["latest_sampled_at"]) == local_time(yesterday, 18)


async def _vaccinations_csv(
    running: RunningApp, key: str, resident: Resident, bom: bool
) -> tuple[str, list[str]]:
    return "doc_type,doc_number,dose,date,product", [
        f"prc_id,{resident.doc_number},1,{days_ago(running, 60)},CoronaVac",
        f"prc_id,{resident.doc_number}, 2 ,{days_ago(running, 30)},CoronaVac",
    ]


async def _vaccinations_seen(running: RunningApp, resident: Resident) -> None:
    vaccination = (await my_status(running, resident))["vaccination"]
    assert vaccination == {"doses": 2, "last_dose_on": days_ago(running, 30)}


# Each variant of the travel and risk-area cases has a city of its own (risk areas are shared by
# everyone): Nanjing and Suzhou for travel, Hangzhou and Ningbo for risk areas.
CITIES = {
    ("travel", False): ("320104", "320102"),
    ("travel", True): ("320505", "320506"),
    ("risk-areas", False): ("330102", "330106"),
    ("risk-areas", True): ("330203", "330205"),
}


async def _travel_csv(
    running: RunningApp, key: str, resident: Resident, bom: bool
) -> tuple[str, list[str]]:
    area, place = CITIES["travel", bom]
    await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area(area, "medium", days_ago(running, 10))),
        idempotency_key="areas",
    )
    return "doc_type,doc_number,region_code,date", [
        f"prc_id,{resident.doc_number},{place},{days_ago(running, 2)}",
        f"prc_id,{resident.doc_number},110105,{days_ago(running, 1)}",
    ]


async def _travel_seen(running: RunningApp, resident: Resident) -> None:
    status = await my_status(running, resident)
    assert status["status"] == "yellow"
    assert status["reason_codes"] == ["risk_city_arrival"]


async def _risk_areas_csv(
    running: RunningApp, key: str, resident: Resident, bom: bool
) -> tuple[str, list[str]]:
    area, place = CITIES["risk-areas", bom]
    await push(
        running,
        key,
        "travel",
        ndjson(travel(resident, place, days_ago(running, 1))),
        idempotency_key="trips",
    )
    assert (await my_status(running, resident))["status"] == "green"
    return "region_code,level,valid_from,valid_to", [
        f"{area},medium,{days_ago(running, 5)},",
        f"{place},low,{days_ago(running, 5)},{days_ago(running, -30)}",
    ]


Setup = Callable[[RunningApp, str, Resident, bool], Awaitable[tuple[str, list[str]]]]
Seen = Callable[[RunningApp, Resident], Awaitable[None]]


@pytest.mark.parametrize(
    ("kind", "setup", "seen"),
    [
        ("cases", _cases_csv, _cases_seen),
        ("nat-results", _nat_csv, _nat_seen),
        ("vaccinations", _vaccinations_csv, _vaccinations_seen),
        ("travel", _travel_csv, _travel_seen),
        ("risk-areas", _risk_areas_csv, _travel_seen),
    ],
)
@pytest.mark.parametrize(
    ("newline", "bom"), [("\n", False), ("\r\n", True)], ids=["lf", "crlf-bom"]
)
async def test_csv_batches_work_like_ndjson_for_every_kind(
    running: RunningApp, api: Api, kind: str, setup: Setup, seen: Seen, newline: str, bom: bool
):
    resident = await api.registered()
    key = await running.feed_key()
    header, records = await setup(running, key, resident, bom)

    batch = await push(
        running,
        key,
        kind,
        csv_body(header, *records, newline=newline, bom=bom),
        idempotency_key="csv",
        content_type="text/csv; charset=utf-8",
    )

    assert batch["kind"] == kind
    assert batch["errors"] == []
    assert (batch["rows_total"], batch["rows_accepted"], batch["rows_rejected"]) == (2, 2, 0)
    assert batch["persons_recomputed"] == 1
    await seen(running, resident)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("doc_type,doc_number,category,start,end_date", id="unknown-column"),
        pytest.param("doc_type,doc_number,category", id="missing-column"),
        pytest.param("doc_type,doc_number,category,start_date,start_date", id="repeated-column"),
        pytest.param("doc_type,doc_number,category,start_date,end_date,comment", id="extra-column"),
    ],
)
async def test_a_csv_header_that_does_not_fit_refuses_the_batch(
    running: RunningApp, api: Api, header: str
):
    resident = await api.registered()
    key = await running.feed_key("cases")
    record = f"prc_id,{resident.doc_number},close_contact,{today(running).isoformat()},"
    refused = await post(
        running, key, "cases", csv_body(header, record), content_type=CSV, idempotency_key="b"
    )

    assert error_code(refused) == (422, "bad_header")
    assert (await my_status(running, resident))["status"] == "green"
    # Nothing was recorded under the key: the corrected batch is taken.
    fixed = await push(
        running,
        key,
        "cases",
        csv_body("doc_type,doc_number,category,start_date,end_date", record),
        content_type=CSV,
        idempotency_key="b",
    )
    assert fixed["rows_accepted"] == 1
    assert (await my_status(running, resident))["status"] == "red"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(b"", NDJSON, 400, "empty_batch", id="empty-ndjson"),
        pytest.param(b"\n\r\n  \n", NDJSON, 400, "empty_batch", id="blank-lines"),
        pytest.param(
            b"doc_type,doc_number,category,start_date\r\n",
            CSV,
            400,
            "empty_batch",
            id="header-only",
        ),
        pytest.param(b"", CSV, 422, "bad_header", id="csv-without-header"),
        pytest.param(b"\xff\xfe,doc_number\n", CSV, 422, "bad_header", id="csv-header-not-utf8"),
        pytest.param(
            b"doc_type,doc_number,category,start_date\rprc_id,1,close_contact,2026-01-01\r",
            CSV,
            422,
            "bad_header",
            id="csv-with-old-mac-line-ends",
        ),
    ],
)
async def test_a_body_without_rows_is_refused(
    running: RunningApp, body: bytes, content_type: str, status: int, code: str
):
    key = await running.feed_key("cases")
    refused = await post(running, key, "cases", body, content_type=content_type)
    assert error_code(refused) == (status, code)
    # A refused batch leaves no trace: its key is still free.
    fixed = await push(running, key, "cases", ndjson(case_row(random_prc_id()[0], "2024-01-01")))
    assert fixed["rows_total"] == 1


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _long_nat_line(resident: Resident, size: int) -> bytes:
    row = nat(resident, "2024-01-01T10:00:00+08:00")
    line = json.dumps({**row, "lab": ""}).encode()
    return json.dumps({**row, "lab": "L" * (size - len(line))}).encode()


async def test_a_line_over_16_kib_refuses_the_batch_when_it_streams_in(
    running: RunningApp, api: Api
):
    resident = await api.registered()
    key = await running.feed_key("nat-results")
    good = ndjson(nat(resident, running.context.clock.now() - dt.timedelta(hours=1)))
    long_line = _long_nat_line(resident, MAX_LINE_BYTES + 1)
    parts = [long_line[i : i + 4096] for i in range(0, len(long_line), 4096)]

    refused = await post(running, key, "nat-results", _chunks(good, *parts, b"\n"))

    assert error_code(refused) == (422, "line_too_long")
    assert (await my_status(running, resident))["nat"] is None


async def test_a_line_of_exactly_16_kib_is_read_as_a_row(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key("nat-results")
    line = _long_nat_line(resident, MAX_LINE_BYTES)
    parts = [line[i : i + 4096] for i in range(0, len(line), 4096)]

    response = await post(running, key, "nat-results", _chunks(*parts, b"\n"))

    assert response.status_code == 201, response.text
    assert problems(response.json()) == [(1, "lab", "too_long")]


async def test_a_line_over_16_kib_refuses_the_batch_however_it_is_chunked(
    running: RunningApp, api: Api
):
    resident = await api.registered()
    key = await running.feed_key("nat-results")
    body = _long_nat_line(resident, MAX_LINE_BYTES + 1) + b"\n"

    refused = await post(running, key, "nat-results", body)

    assert error_code(refused) == (422, "line_too_long")


async def test_a_declared_200_mb_body_is_refused_before_it_is_read(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key("cases")
    body = ndjson(case_row(resident, today(running).isoformat()))
    read: list[int] = []

    async def counted() -> AsyncIterator[bytes]:
        read.append(len(body))
        yield body

    refused = await post(running, key, "cases", counted(), **{"Content-Length": str(200 * MiB)})

    assert error_code(refused) == (413, "payload_too_large")
    assert read == []
    assert (await my_status(running, resident))["status"] == "green"
    again = await push(running, key, "cases", body)
    assert again["rows_accepted"] == 1
    assert (await my_status(running, resident))["status"] == "red"


async def test_a_streamed_body_over_the_limit_is_cut_off_and_nothing_is_applied(
    app_with: StartApp,
):
    running = await app_with(max_body_bytes=2 * MiB)
    api = running.api
    first = await api.registered()
    unregistered, birth_date = random_prc_id()
    key = await running.feed_key("cases")
    start = today(running).isoformat()
    head = ndjson(case_row(first, start), case_row(unregistered, start))
    filler = ndjson(case_row(random_prc_id()[0], days_ago(running, 2)))
    chunk = filler * (MiB // len(filler))
    sent: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(200):  # 200 MiB if nobody stops it
            sent.append(len(chunk))
            yield chunk

    refused = await post(running, key, "cases", body(), idempotency_key="big")

    assert error_code(refused) == (413, "payload_too_large")
    assert len(sent) <= 3
    # The chunks before the one that crossed the limit were read: more rows than one write
    # chunk had been checked and written when the body was cut off. All of it is undone.
    assert (len(sent) - 1) * (MiB // len(filler)) > CHUNK_ROWS
    assert (await my_status(running, first))["status"] == "green"
    late = await api.sign_in()
    bound = await api.bind(late, doc_number=unregistered, birth_date=birth_date)
    assert bound.status_code == 201, bound.text
    assert (await my_status(running, late))["status"] == "green"
    # The key names no batch: it can be used again.
    again = await push(running, key, "cases", head, idempotency_key="big")
    assert again["rows_accepted"] == 2
    assert again["codes_revoked"] == 0
    assert (await my_status(running, first))["status"] == "red"
    assert (await my_status(running, late))["status"] == "red"


async def test_a_batch_of_more_than_max_rows_is_refused_whole(app_with: StartApp):
    running = await app_with(max_rows=5)
    resident = await running.api.registered()
    key = await running.feed_key("cases")
    rows = [case_row(resident, today(running).isoformat())]
    rows += [case_row(random_prc_id()[0], days_ago(running, 1)) for _ in range(5)]

    refused = await post(running, key, "cases", ndjson(*rows), idempotency_key="six")

    assert error_code(refused) == (413, "batch_too_large")
    assert (await my_status(running, resident))["status"] == "green"
    # Blank lines are not rows: five rows among them fit.
    five = ndjson(*rows[:3], "", *rows[3:5], " ")
    taken = await push(running, key, "cases", five, idempotency_key="six")
    assert (taken["rows_total"], taken["rows_accepted"]) == (5, 5)
    assert (await my_status(running, resident))["status"] == "red"


@pytest.mark.parametrize(
    ("copy_per_chunk", "chunks"),
    [
        (False, 1),
        # One direct COPY per write chunk: the first commits into the table, the second meets its
        # row and falls back to the merge, which must still keep the batch's last row of a key.
        (True, 1),
        # The same, with COPYs after the one that meets its row (queued, or not yet begun): they
        # are merged too, none lost.
        (True, 3),
    ],
    ids=["one-copy", "a-copy-per-chunk", "copies-after-the-fallback"],
)
async def test_a_batch_larger_than_one_write_chunk_is_applied_whole(
    running: RunningApp,
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    copy_per_chunk: bool,
    chunks: int,
):
    if copy_per_chunk:
        monkeypatch.setattr(repository, "SEGMENT_ROWS", CHUNK_ROWS)
    resident, last = await api.registered(), await api.registered()
    key = await running.feed_key("nat-results")
    sampled = running.context.clock.now().replace(microsecond=0) - dt.timedelta(hours=6)
    others = [
        # Nobody registered: thousands of random IDs would otherwise now and then be someone's
        # in the database every test shares.
        nat(random_prc_id(region=NOBODYS_REGION)[0], sampled - dt.timedelta(seconds=i))
        for i in range(chunks * CHUNK_ROWS + 10)
    ]
    # The same test twice, first negative, then -- one write chunk later -- corrected to positive;
    # and, in the batch's last chunk, someone else's positive result.
    rows = [
        nat(resident, sampled, "negative"),
        *others[:CHUNK_ROWS],
        nat(resident, sampled, "positive"),
        *others[CHUNK_ROWS:],
        nat(last, sampled, "positive"),
    ]

    # In pieces, as a network delivers it: rows are written a chunk at a time as they come.
    body = ndjson(*rows)
    pieces = [body[i : i + 64 * 1024] for i in range(0, len(body), 64 * 1024)]
    response = await post(running, key, "nat-results", _chunks(*pieces))

    assert response.status_code == 201, response.text
    batch = response.json()
    assert (batch["rows_total"], batch["rows_accepted"]) == (len(rows), len(rows))
    assert batch["persons_recomputed"] == 2
    for person in (resident, last):
        status = await my_status(running, person)
        assert status["status"] == "red"
        assert status["reason_codes"] == ["positive_nat"]
        assert status["nat"]["latest_result"] == "positive"


@pytest.mark.parametrize("content_type", [NDJSON, "application/ndjson; charset=utf-8"])
async def test_ndjson_with_a_bom_and_crlf_line_endings_is_read(
    running: RunningApp, api: Api, content_type: str
):
    resident = await api.registered()
    key = await running.feed_key("cases")
    lines = [
        json.dumps(case_row(resident, days_ago(running, 1))),
        json.dumps(case_row(random_prc_id()[0], days_ago(running, 2))),
    ]
    body = "\ufeff" + "\r\n".join(lines) + "\r\n"

    batch = await push(running, key, "cases", body.encode(), content_type=content_type)

    assert batch["errors"] == []
    assert (batch["rows_total"], batch["rows_accepted"]) == (2, 2)
    await _cases_seen(running, resident)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_is_taken_and_one_byte_more_is_not(
    app_with: StartApp, streamed: bool
):
    limit = 64 * 1024
    running = await app_with(max_body_bytes=limit)
    resident = await running.api.registered()
    key = await running.feed_key("cases")
    row = ndjson(case_row(resident, today(running).isoformat()))

    def body(size: int) -> bytes | AsyncIterator[bytes]:
        pad = size - len(row)  # blank lines: read, but not rows
        whole = row + (b" " * 1023 + b"\n") * (pad // 1024) + b" " * (pad % 1024)
        assert len(whole) == size
        if not streamed:
            return whole
        return _chunks(*(whole[i : i + 8192] for i in range(0, size, 8192)))

    over = await post(running, key, "cases", body(limit + 1))
    assert error_code(over) == (413, "payload_too_large")
    assert (await my_status(running, resident))["status"] == "green"

    exact = await post(running, key, "cases", body(limit))
    assert exact.status_code == 201, exact.text
    assert exact.json()["rows_total"] == 1
    assert (await my_status(running, resident))["status"] == "red"


def _json_lines() -> list[bytes]:
    """Lines the standard library and orjson may read differently, or not at all."""
    lines = [
        json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")
        for v in (
            {"lab": "实验室", "doc_number": "\ud800"},
            {"lab": "\U0001f600"},
        )
    ]
    return [
        *lines,
        b'{"dose": 1180591620717411303424}',  # past 64 bits: orjson reads a float
        b'{"dose": -9223372036854775809}',
        b'{"dose": 18446744073709551615}',
        b'{"dose": 1e999}',
        b'{"dose": NaN}',
        b'{"dose": -Infinity}',
        b'{"dose": 1.0}',
        b'{"dose": -0}',
        b'{"a": 1, "a": 2}',
        b'{"a": {"b": [1, 2.5, 99999999999999999999999]}}',
        b'{"a": "\\ud83d\\ude00", "b": "\\u0000"}',
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
        b'{"a": "\xff"}',
        b'{"a": "\x01"}',
        b'\xef\xbb\xbf{"a": 1}',
        b'  {"a": 1}\t ',
        b'{"a": 1}\r',
        b'{"a": 1} x',
        b'{"a": 1,}',
        b"[1]",
        b'"text"',
        b"null",
        b"[" * 5000,
        b'{"a":' * 3000,
    ]


Outcomes = tuple[list[tuple[Any, ...]], list[tuple[int, list[tuple[str | None, str]]]]]


async def _as_the_service_does(body: bytes, kind: FeedKind) -> Outcomes:
    """The tuples the service's reader accepts, in order, and each rejected row's number and
    problems (field, reason)."""
    spec = SPECS[kind]
    accepted: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, list[tuple[str | None, str]]]] = []

    def full(line: Line) -> tuple[Any, ...] | None:
        number, values, problem = line
        try:
            if values is not None:
                return check_fully(spec, values, CONTEXT)
            assert problem is not None
            problems = [problem]
        except RowRejected as exc:
            problems = exc.problems
        rejected.append((number, [(p.field, p.reason) for p in problems]))
        return None

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    async for _, taken in read_rows(pieces(), "ndjson", spec, CONTEXT, full):
        accepted += taken
    return accepted, rejected


def _as_the_standard_library_does(body: bytes, kind: FeedKind) -> Outcomes:
    """The same, read line by line with the standard library alone and checked fully: what the
    feed format (docs/FEEDS.md) says a line is."""
    spec = SPECS[kind]
    accepted: list[tuple[Any, ...]] = []
    rejected: list[tuple[int, list[tuple[str | None, str]]]] = []
    for number, raw in enumerate(body.split(b"\n")[:-1], 1):
        try:
            text = raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            rejected.append((number, [(None, "encoding")]))
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            values = json.loads(text)
        except (ValueError, RecursionError):
            values = None
        if not isinstance(values, dict):
            rejected.append((number, [(None, "format")]))
            continue
        try:
            accepted.append(check_fully(spec, values, CONTEXT))
        except RowRejected as exc:
            rejected.append((number, [(p.field, p.reason) for p in exc.problems]))
    return accepted, rejected


@pytest.mark.parametrize("kind", list(FeedKind))
async def test_the_service_reads_and_checks_rows_as_the_standard_library_and_full_checks_do(
    kind: FeedKind,
):
    # Rows are read by orjson and taken by the plain path in one pass; anything else is read
    # again by json.loads and checked fully. Every row of every kind's variants, and odd lines,
    # must come out accepted with the same tuple, in the same order, or rejected the same way.
    lines = [json.dumps(v).encode() for v in _variants(kind)] + _json_lines()
    body = b"\n".join(lines) + b"\n"

    ours = await _as_the_service_does(body, kind)

    assert ours == _as_the_standard_library_does(body, kind)
    accepted, rejected = ours
    assert len(accepted) > 10
    assert len(rejected) > 10
