"""Row by row: a bad row is reported by line, field and reason, and the good rows of the same
batch are applied all the same."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from conftest import RunningApp
from feeds.feedkit import (
    CSV,
    StartApp,
    csv_body,
    days_ago,
    local_time,
    my_status,
    nat,
    ndjson,
    problems,
    push,
    risk_area,
    today,
    travel,
    vaccination,
)
from feeds.feedkit import case as case_row
from support.api import Api, Resident, random_prc_id
from yuekang.residents.documents import mod11_2_check


def _someone() -> str:
    """A valid document number of someone not registered."""
    return random_prc_id()[0]


def _wrong_check_digit() -> str:
    number = _someone()
    return number[:17] + ("0" if number[17] != "0" else "1")


def _with_check(body17: str) -> str:
    return body17 + mod11_2_check(body17)


@dataclass
class Row:
    """What a table row needs at run time."""

    running: RunningApp
    resident: Resident

    @property
    def today(self) -> dt.date:
        return today(self.running)

    @property
    def now(self) -> dt.datetime:
        return self.running.context.clock.now()

    def day(self, delta: int) -> str:
        return (self.today + dt.timedelta(days=delta)).isoformat()


Check = Callable[[RunningApp, Resident], Awaitable[None]]


async def _turned_red(running: RunningApp, resident: Resident) -> None:
    status = await my_status(running, resident)
    assert status["status"] == "red"
    assert status["reason_codes"] == ["close_contact"]


async def _test_shows(running: RunningApp, resident: Resident) -> None:
    status = await my_status(running, resident)
    assert status["nat"] is not None
    assert status["nat"]["latest_result"] == "negative"
    assert status["nat"]["negative_within_hours"] == 24


async def _dose_shows(running: RunningApp, resident: Resident) -> None:
    status = await my_status(running, resident)
    assert status["vaccination"]["doses"] == 1


GOOD: dict[str, tuple[Callable[[Row], dict[str, Any]], Check]] = {
    "cases": (lambda r: case_row(r.resident, r.day(0)), _turned_red),
    "nat-results": (
        lambda r: nat(r.resident, r.now.replace(microsecond=0) - dt.timedelta(hours=2)),
        _test_shows,
    ),
    "vaccinations": (lambda r: vaccination(r.resident, 1, r.day(-30)), _dose_shows),
}

BAD_ROWS: list[Any] = [
    # kind, the bad line (a dict, or raw str/bytes), the problems on that line: (field, reason)
    pytest.param(
        "cases",
        lambda r: {**case_row(_someone(), r.day(0)), "ward": "3"},
        [("ward", "unknown_field")],
        id="extra-key",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_wrong_check_digit(), r.day(0)),
        [("doc_number", "check_digit")],
        id="check-digit",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_with_check("99010519800101001"), r.day(0)),
        [("doc_number", "region")],
        id="document-region",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_with_check("11010520990101001"), r.day(0)),
        [("doc_number", "date")],
        id="document-birth-date",
    ),
    pytest.param(
        "cases",
        lambda r: case_row("1101051980", r.day(0)),
        [("doc_number", "format")],
        id="document-format",
    ),
    pytest.param(
        "cases",
        lambda r: case_row("1" * 33, r.day(0)),
        [("doc_number", "too_long")],
        id="document-too-long",
    ),
    pytest.param(
        "cases",
        lambda r: {**case_row(_someone(), r.day(0)), "doc_number": 110105198001010011},
        [("doc_number", "format")],
        id="document-not-a-string",
    ),
    pytest.param(
        "cases",
        lambda r: {**case_row(_someone(), r.day(0)), "doc_type": "id_card"},
        [("doc_type", "unknown_value")],
        id="unknown-doc-type",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_someone(), r.day(1)),
        [("start_date", "future")],
        id="start-tomorrow",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_someone(), r.day(-1), end=r.day(-3)),
        [("end_date", "order")],
        id="end-before-start",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_someone(), "2019-11-30"),
        [("start_date", "too_old")],
        id="before-december-2019",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_someone(), "2024-02-30"),
        [("start_date", "format")],
        id="no-such-day",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_someone(), "30/01/2024"),
        [("start_date", "format")],
        id="not-iso-date",
    ),
    pytest.param(
        "cases",
        lambda r: case_row(_someone(), r.day(0), category="contact"),
        [("category", "unknown_value")],
        id="unknown-category",
    ),
    pytest.param(
        "cases",
        lambda r: {k: v for k, v in case_row(_someone(), r.day(0)).items() if k != "category"},
        [("category", "missing")],
        id="missing-category",
    ),
    pytest.param(
        "cases",
        lambda r: {
            **case_row(_wrong_check_digit(), r.day(2), category="contact"),
            "note": "x",
        },
        [
            ("note", "unknown_field"),
            ("doc_number", "check_digit"),
            ("category", "unknown_value"),
            ("start_date", "future"),
        ],
        id="every-problem-of-a-row",
    ),
    pytest.param("cases", lambda r: '{"doc_type": "prc_id", ', [(None, "format")], id="bad-json"),
    pytest.param("cases", lambda r: '["prc_id"]', [(None, "format")], id="json-not-an-object"),
    pytest.param(
        "cases",
        lambda r: b'{"doc_type": "prc_id", "doc_number": "\xff\xfe"}',
        [(None, "encoding")],
        id="bad-utf8",
    ),
    pytest.param(
        "nat-results",
        lambda r: nat(_someone(), r.now + dt.timedelta(hours=1)),
        [("sampled_at", "future")],
        id="sampled-an-hour-ahead",
    ),
    pytest.param(
        "nat-results",
        lambda r: nat(_someone(), "2024-03-01T10:00:00"),
        [("sampled_at", "format")],
        id="sampled-without-offset",
    ),
    pytest.param(
        "nat-results",
        lambda r: nat(_someone(), "2019-11-30T10:00:00Z"),
        [("sampled_at", "too_old")],
        id="sampled-too-old",
    ),
    pytest.param(
        "nat-results",
        lambda r: nat(_someone(), r.now - dt.timedelta(hours=1), result="inconclusive"),
        [("result", "unknown_value")],
        id="unknown-result",
    ),
    pytest.param(
        "nat-results",
        lambda r: {**nat(_someone(), r.now - dt.timedelta(hours=1)), "lab": "L" * 129},
        [("lab", "too_long")],
        id="lab-too-long",
    ),
    pytest.param(
        "vaccinations",
        lambda r: vaccination(_someone(), 11, r.day(-1)),
        [("dose", "out_of_range")],
        id="dose-11",
    ),
    pytest.param(
        "vaccinations",
        lambda r: vaccination(_someone(), 0, r.day(-1)),
        [("dose", "out_of_range")],
        id="dose-0",
    ),
    pytest.param(
        "vaccinations",
        lambda r: vaccination(_someone(), "two", r.day(-1)),
        [("dose", "format")],
        id="dose-not-a-number",
    ),
    pytest.param(
        "vaccinations",
        # Past 64 bits: a whole number still, however the line is first read.
        lambda r: vaccination(_someone(), 2**70, r.day(-1)),
        [("dose", "out_of_range")],
        id="dose-past-64-bits",
    ),
    pytest.param(
        "vaccinations",
        lambda r: vaccination(_someone(), 1, r.day(1)),
        [("date", "future")],
        id="vaccinated-tomorrow",
    ),
]


@pytest.mark.parametrize(("kind", "bad", "expected"), BAD_ROWS)
async def test_a_bad_row_is_reported_and_the_good_rows_are_applied(
    running: RunningApp, api: Api, kind, bad, expected
):
    resident = await api.registered()
    row = Row(running, resident)
    good, applied = GOOD[kind]
    key = await running.feed_key(kind)

    batch = await push(running, key, kind, ndjson(bad(row), good(row)))

    assert problems(batch) == [(1, field, reason) for field, reason in expected]
    assert (batch["rows_total"], batch["rows_accepted"], batch["rows_rejected"]) == (2, 1, 1)
    assert batch["errors_truncated"] is False
    assert all(e["message"] for e in batch["errors"])
    assert batch["persons_recomputed"] == 1
    await applied(running, resident)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        pytest.param(lambda r: f"prc_id,{_someone()},close_contact", (None, "format"), id="3-of-4"),
        pytest.param(
            lambda r: f"prc_id,{_someone()},close_contact,{r.day(0)},,x",
            (None, "format"),
            id="6-of-5",
        ),
        pytest.param(
            lambda r: f"prc_id,{_wrong_check_digit()},close_contact,{r.day(0)},",
            ("doc_number", "check_digit"),
            id="check-digit",
        ),
        pytest.param(
            lambda r: f"prc_id,{_someone()},close_contact,{r.day(1)},",
            ("start_date", "future"),
            id="start-tomorrow",
        ),
        pytest.param(
            lambda r: f"prc_id,{_someone()},close_contact,{r.day(-1)},{r.day(-2)}",
            ("end_date", "order"),
            id="end-before-start",
        ),
        pytest.param(
            lambda r: b"prc_id,\xff\xfe,close_contact,2024-01-01,",
            (None, "encoding"),
            id="bad-utf8",
        ),
    ],
)
async def test_a_bad_csv_record_is_reported_by_its_line(
    running: RunningApp, api: Api, bad, expected
):
    resident = await api.registered()
    row = Row(running, resident)
    key = await running.feed_key("cases")
    header = "doc_type,doc_number,category,start_date,end_date"
    good = f"prc_id,{resident.doc_number},close_contact,{row.day(0)},"
    line = bad(row)
    body = b"\n".join(
        [header.encode(), line if isinstance(line, bytes) else line.encode(), good.encode()]
    )

    batch = await push(running, key, "cases", body + b"\n", content_type=CSV)

    assert problems(batch) == [(2, *expected)]
    assert (batch["rows_total"], batch["rows_accepted"], batch["rows_rejected"]) == (2, 1, 1)
    await _turned_red(running, resident)


async def test_an_unknown_region_in_travel_is_reported_and_the_other_trips_count(
    running: RunningApp, api: Api
):
    # Shenzhen (4403xx) is this test's city.
    resident = await api.registered()
    key = await running.feed_key()
    await push(
        running,
        key,
        "risk-areas",
        ndjson(risk_area("440304", "medium", days_ago(running, 10))),
        idempotency_key="areas",
    )

    batch = await push(
        running,
        key,
        "travel",
        ndjson(
            travel(resident, "990000", days_ago(running, 1)),
            travel(resident, "4403", days_ago(running, 1)),
            travel(resident, "440305", days_ago(running, 1)),
        ),
        idempotency_key="trips",
    )

    assert problems(batch) == [
        (1, "region_code", "unknown_region"),
        (2, "region_code", "unknown_region"),
    ]
    assert (batch["rows_accepted"], batch["rows_rejected"]) == (1, 2)
    status = await my_status(running, resident)
    assert status["status"] == "yellow"
    assert status["reason_codes"] == ["risk_city_arrival"]


async def test_an_unknown_region_in_risk_areas_is_reported_and_the_other_areas_count(
    running: RunningApp, api: Api
):
    # Chengdu (5101xx) is this test's city.
    resident = await api.registered()
    key = await running.feed_key()
    await push(
        running,
        key,
        "travel",
        ndjson(travel(resident, "510104", days_ago(running, 1))),
        idempotency_key="trips",
    )
    assert (await my_status(running, resident))["status"] == "green"

    batch = await push(
        running,
        key,
        "risk-areas",
        ndjson(
            risk_area("990000", "high", days_ago(running, 5)),
            risk_area("510107", "medium", days_ago(running, 5)),
            risk_area("510107", "severe", days_ago(running, 4)),
            risk_area("510107", "medium", days_ago(running, 2), valid_to=days_ago(running, 4)),
        ),
        idempotency_key="areas",
    )

    assert problems(batch) == [
        (1, "region_code", "unknown_region"),
        (3, "level", "unknown_value"),
        (4, "valid_to", "order"),
    ]
    assert (batch["rows_accepted"], batch["rows_rejected"]) == (1, 3)
    assert batch["statuses_changed"] == 1
    status = await my_status(running, resident)
    assert status["status"] == "yellow"
    assert status["reason_codes"] == ["risk_city_arrival"]


async def test_only_the_first_errors_are_listed_and_every_bad_row_is_counted(
    app_with: StartApp,
):
    running = await app_with(max_reported_errors=3)
    resident = await running.api.registered()
    key = await running.feed_key("cases")
    bad = [case_row(_someone(), days_ago(running, -1)) for _ in range(10)]

    batch = await push(
        running, key, "cases", ndjson(*bad, case_row(resident, today(running).isoformat()))
    )

    assert problems(batch) == [(n, "start_date", "future") for n in (1, 2, 3)]
    assert batch["errors_truncated"] is True
    assert (batch["rows_total"], batch["rows_accepted"], batch["rows_rejected"]) == (11, 1, 10)
    await _turned_red(running, resident)

    exactly = await push(running, key, "cases", ndjson(*bad[:3]), idempotency_key="three")
    assert len(exactly["errors"]) == 3
    assert exactly["errors_truncated"] is False


async def test_dates_are_local_dates_in_utc_plus_8(running: RunningApp, api: Api, clock):
    # 20:00 UTC is 04:00 the next day in Guangzhou: "today" is the local day.
    now = clock.now()
    evening = dt.datetime.combine(now.date(), dt.time(20), dt.UTC)
    clock.set(evening if evening > now else evening + dt.timedelta(days=1))
    utc_day = clock.now().date()
    local_day = utc_day + dt.timedelta(days=1)
    resident = await api.registered()
    key = await running.feed_key()

    batch = await push(
        running,
        key,
        "cases",
        ndjson(
            case_row(_someone(), (local_day + dt.timedelta(days=1)).isoformat()),
            case_row(resident, local_day.isoformat()),
        ),
    )

    assert problems(batch) == [(1, "start_date", "future")]
    assert batch["rows_accepted"] == 1
    assert (await my_status(running, resident))["status"] == "red"

    # A lab's clock may be a few minutes ahead; an hour is a mistake.
    tests = await push(
        running,
        key,
        "nat-results",
        ndjson(
            nat(resident, clock.now() + dt.timedelta(minutes=4)),
            nat(_someone(), clock.now() + dt.timedelta(minutes=6)),
            nat(_someone(), local_time(local_day, 5)),
        ),
        idempotency_key="nat",
    )
    assert problems(tests) == [(2, "sampled_at", "future"), (3, "sampled_at", "future")]


async def test_csv_and_ndjson_report_the_same_problems(running: RunningApp):
    key = await running.feed_key("vaccinations")
    someone = _someone()
    tomorrow = days_ago(running, -1)
    rows = [
        vaccination(someone, 1, days_ago(running, 40)),
        vaccination(_wrong_check_digit(), 2, tomorrow),
        vaccination(someone, 12, days_ago(running, 10)),
    ]
    as_json = await push(running, key, "vaccinations", ndjson(*rows), idempotency_key="json")
    columns = ("doc_type", "doc_number", "dose", "date", "product")
    records = [",".join(str(r[c]) for c in columns) for r in rows]
    as_csv = await push(
        running,
        key,
        "vaccinations",
        csv_body(",".join(columns), *records),
        idempotency_key="csv",
        content_type=CSV,
    )

    assert problems(as_json) == [
        (2, "doc_number", "check_digit"),
        (2, "date", "future"),
        (3, "dose", "out_of_range"),
    ]
    assert problems(as_csv) == [
        (row + 1, field, reason) for row, field, reason in problems(as_json)
    ]
    for key_ in ("rows_total", "rows_accepted", "rows_rejected"):
        assert as_csv[key_] == as_json[key_]


async def test_rows_are_numbered_by_line_blank_lines_included(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key("cases")
    bad = case_row(_someone(), days_ago(running, -1))
    good = case_row(resident, today(running).isoformat())

    as_json = await push(running, key, "cases", ndjson("", bad, "   ", good, bad))
    header = "doc_type,doc_number,category,start_date"
    record = ",".join(str(bad[c]) for c in header.split(","))
    as_csv = await push(
        running,
        key,
        "cases",
        csv_body(header, "", record, "", record),
        content_type=CSV,
        idempotency_key="csv",
    )

    assert problems(as_json) == [(2, "start_date", "future"), (5, "start_date", "future")]
    assert problems(as_csv) == [(3, "start_date", "future"), (5, "start_date", "future")]
    assert (as_json["rows_total"], as_json["rows_accepted"]) == (3, 1)
    assert (as_csv["rows_total"], as_csv["rows_accepted"]) == (2, 0)
    await _turned_red(running, resident)


async def test_the_earliest_day_is_a_local_day_for_sample_times(running: RunningApp):
    key = await running.feed_key("nat-results")
    batch = await push(
        running,
        key,
        "nat-results",
        ndjson(
            nat(_someone(), "2019-12-01T07:00:00+08:00"),
            nat(_someone(), "2019-11-30T23:59:00+08:00"),
        ),
    )
    assert problems(batch) == [(2, "sampled_at", "too_old")]


def _huge(digits: str) -> str:
    return digits * 5000  # more digits than Python converts to int by default (4300)


def _json_with(row: dict[str, Any], field: str, raw: str) -> str:
    """The row as a JSON line whose ``field`` is the JSON text ``raw``."""
    return json.dumps({**row, field: "@"}, ensure_ascii=False).replace('"@"', raw)


HOSTILE: list[Any] = [
    # kind, the bad line, the (field, reason) pairs a fix may report for it ("*": any field)
    pytest.param(
        "vaccinations",
        lambda r: ndjson(_json_with(vaccination(_someone(), 1, r.day(-1)), "dose", _huge("9"))),
        {(None, "format"), ("dose", "out_of_range"), ("dose", "format")},
        id="json-integer-of-5000-digits",
    ),
    pytest.param(
        "vaccinations",
        lambda r: ndjson(vaccination(_someone(), _huge("9"), r.day(-1))),
        {("dose", "out_of_range"), ("dose", "format")},
        id="dose-string-of-5000-digits",
    ),
    pytest.param(
        "nat-results",
        lambda r: ndjson(nat(_someone(), "0001-01-01T00:00:00+01:00")),
        {("sampled_at", "too_old"), ("sampled_at", "format")},
        id="sampled-at-year-1-east-of-utc",
    ),
    pytest.param(
        "nat-results",
        lambda r: ndjson(nat(_someone(), "9999-12-31T23:00:00-05:00")),
        {("sampled_at", "future"), ("sampled_at", "format")},
        id="sampled-at-year-9999-west-of-utc",
    ),
    pytest.param(
        "nat-results",
        lambda r: ndjson('{"\\ud800": 1}'),
        {("*", "unknown_field"), (None, "format"), (None, "encoding")},
        id="unpaired-surrogate-in-a-key",
    ),
    pytest.param(
        "nat-results",
        lambda r: ndjson(
            _json_with(nat(_someone(), r.now - dt.timedelta(hours=1)), "lab", '"\\ud800 lab"')
        ),
        {("lab", "format"), (None, "format"), (None, "encoding")},
        id="unpaired-surrogate-in-a-value",
    ),
]


@pytest.mark.parametrize(("kind", "bad", "accepted"), HOSTILE)
async def test_an_unreadable_value_is_a_row_error_not_a_failed_batch(
    running: RunningApp, api: Api, kind, bad, accepted
):
    resident = await api.registered()
    row = Row(running, resident)
    good, applied = GOOD[kind]
    key = await running.feed_key(kind)

    batch = await push(running, key, kind, bad(row) + ndjson(good(row)))

    assert (batch["rows_accepted"], batch["rows_rejected"]) == (1, 1)
    # One bad line; it may have several problems (an unknown key and the fields it lacks).
    assert {e["row"] for e in batch["errors"]} == {1}
    field, reason = batch["errors"][0]["field"], batch["errors"][0]["reason"]
    assert any(f in ("*", field) and r == reason for f, r in accepted), batch["errors"]
    await applied(running, resident)


async def test_row_errors_never_repeat_a_document_number(running: RunningApp):
    key = await running.feed_key("cases")
    numbers = [_wrong_check_digit(), _someone(), _with_check("99010519800101001")]
    rows = [
        case_row(numbers[0], days_ago(running, 1)),
        case_row(numbers[1], days_ago(running, -1), category="contact"),
        case_row(numbers[2], days_ago(running, 1)),
    ]

    batch = await push(running, key, "cases", ndjson(*rows))
    stored = await running.client.get(
        f"/v1/feeds/batches/{batch['batch_id']}", headers={"Authorization": f"Bearer {key}"}
    )

    assert batch["rows_rejected"] == 3
    assert len(batch["errors"]) == 4
    for number in numbers:
        assert number not in str(batch)
        assert number[6:14] not in stored.text  # not even the birth date inside it
