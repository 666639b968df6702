"""The plain path of each feed kind against the full checks: it takes the usual row, and whatever
it takes, the full checks accept with the same tuple. Whatever it leaves goes to the full checks
(test_parse compares the service's reader with them), so a bad row's problems never depend on
it."""

from __future__ import annotations

import datetime as dt
import functools
import itertools
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from yuekang.feeds.rows import (
    SPECS,
    FeedKind,
    KindSpec,
    RowContext,
    RowRejected,
    check_fully,
    check_plainly,
)
from yuekang.pii import BlindIndex
from yuekang.residents.documents import DocType, local_date, mod11_2_check
from yuekang.residents.service import doc_index

NOW = dt.datetime(2024, 6, 15, 4, 0, tzinfo=dt.UTC)
CONTEXT = RowContext(
    now=NOW,
    today=local_date(NOW),
    person=functools.partial(doc_index, BlindIndex(b"plain path key" * 3)),
)


def _prc(body17: str) -> str:
    return body17 + mod11_2_check(body17)


PRC = _prc("44030519900101123")
PRC_X = next(n for n in (_prc(f"11010519491231{i:03d}") for i in range(100)) if n.endswith("X"))

# Values every field may be tried with: of the wrong type, empty, padded, unprintable, too long.
ODD: list[Any] = [
    None,
    "",
    " ",
    0,
    1,
    True,
    1.5,
    [],
    ["x"],
    {},
    {"a": 1},
    "\x00",
    "\ud800",
    "x" * 200,
    "\u3000",
]

DOC_NUMBERS: list[Any] = [
    PRC,
    PRC_X,
    PRC_X[:-1] + "x",
    f" {PRC}",
    f"{PRC} ",
    PRC[:-1] + ("0" if PRC[-1] != "0" else "1"),  # check digit
    _prc("99010519800101001"),  # region
    _prc("81000019800101001"),  # a permit's region
    _prc("71010519800101001"),
    _prc("11010520990101001"),  # born in the future
    _prc("11010518990101001"),  # before 1900
    _prc("11010519800230001"),  # 30 February
    _prc("11010519800101001")[:17],
    "１１０１０５１９８００１０１００１" + "X",  # full-width
    "A123456(3)",
    "A1234563",
    "H12345678",
    "E12345678",
    "1234567" + "８",
    PRC + "0",
    "1" * 33,
]
DOC_TYPES: list[Any] = ["prc_id", "residence_permit", "hkid", "passport", "PRC_ID", " prc_id"]
INSTANTS: list[Any] = [
    "2024-06-15T09:00:00+08:00",
    "2024-06-15T01:00:00Z",
    "2024-06-15T01:00:00z",
    "2024-06-15t01:00:00.123456789+00:00",
    "2024-06-15T01:00:00.5+00:00",
    "2024-06-15T04:04:59+00:00",
    "2024-06-15T04:05:00+00:00",
    "2024-06-15T04:05:01+00:00",  # past the leeway
    "2019-11-30T23:59:59+08:00",  # before the earliest
    "2019-12-01T00:00:00+08:00",
    "2024-06-15T09:00:00",
    "2024-06-15 09:00:00+08:00",
    "2024-02-30T09:00:00+08:00",
    "2024-06-15T25:00:00+08:00",
    "2024-06-15T09:00:00+24:00",
    " 2024-06-15T09:00:00+08:00",
    "2024-06-15T09:00:00+0800",
    "9999-12-31T23:59:59-23:59",
]
DATES: list[Any] = [
    "2024-06-15",
    "2024-06-16",  # tomorrow (in UTC+8 it is 15 June at noon)
    "2024-06-14",
    "2019-12-01",
    "2019-11-30",
    "2024-02-30",
    "2024-6-15",
    " 2024-06-15",
    "20240615",
    "2024-06-15T00:00",
    "2099-01-01",
]
REGIONS: list[Any] = ["440305", "110000", "999999", " 440305", "４４０３０５", "44030", "4403051"]
TEXTS: list[Any] = ["Lab 1", " Lab 1 ", "lab-01", "实验室", *("x" * n for n in (64, 65, 128, 129))]

FIELDS: dict[FeedKind, dict[str, list[Any]]] = {
    FeedKind.NAT_RESULTS: {
        "doc_type": DOC_TYPES,
        "doc_number": DOC_NUMBERS,
        "sampled_at": INSTANTS,
        "result": ["negative", "positive", "Negative", " negative", "unknown"],
        "lab": TEXTS,
    },
    FeedKind.CASES: {
        "doc_type": DOC_TYPES,
        "doc_number": DOC_NUMBERS,
        "category": ["close_contact", "confirmed", "Confirmed", " confirmed", "other"],
        "start_date": DATES,
        "end_date": DATES,
    },
    FeedKind.VACCINATIONS: {
        "doc_type": DOC_TYPES,
        "doc_number": DOC_NUMBERS,
        "dose": [1, 10, 0, 11, "1", " 2", "10", "011", -1, 2**70, False],
        "date": DATES,
        "product": TEXTS,
    },
    FeedKind.RISK_AREAS: {
        "region_code": REGIONS,
        "level": ["high", "medium", "low", "High", " low", "none"],
        "valid_from": DATES,
        "valid_to": DATES,
    },
    FeedKind.TRAVEL: {
        "doc_type": DOC_TYPES,
        "doc_number": DOC_NUMBERS,
        "region_code": REGIONS,
        "date": DATES,
    },
}


Check = Callable[[KindSpec, Mapping[str, Any], RowContext], tuple[Any, ...]]


def _outcome(
    check: Check, kind: FeedKind, values: dict[str, Any]
) -> tuple[Any, ...] | list[tuple[Any, ...]]:
    """What ``check`` answers: the tuple, or every problem found."""
    try:
        return check(SPECS[kind], values, CONTEXT)
    except RowRejected as exc:
        return [(p.field, p.reason, p.message) for p in exc.problems]


def _full(kind: FeedKind, values: dict[str, Any]) -> tuple[Any, ...] | list[tuple[Any, ...]]:
    return _outcome(check_fully, kind, values)


def _plain(kind: FeedKind, values: dict[str, Any]) -> tuple[Any, ...] | None:
    return check_plainly(SPECS[kind], values, CONTEXT)


def _usual(kind: FeedKind) -> dict[str, Any]:
    """The row every field's first value makes: one the plain path is meant to take."""
    return {name: choices[0] for name, choices in FIELDS[kind].items()}


def _variants(kind: FeedKind) -> list[dict[str, Any]]:
    fields = FIELDS[kind]
    base = _usual(kind)
    rows: list[dict[str, Any]] = [base]
    for name, choices in fields.items():
        for value in [*choices, *ODD]:
            rows.append({**base, name: value})
        rows.append({k: v for k, v in base.items() if k != name})
    rows.append({**base, "extra": "1"})
    rows.append({**base, 7: "1"})
    rows.append({})
    # Pairs of fields changed together: orders of dates, a number with each document type.
    names = list(fields)
    for first, second in itertools.combinations(names, 2):
        for a, b in itertools.product(fields[first][:6], fields[second][:6]):
            rows.append({**base, first: a, second: b})
    return rows


@pytest.mark.parametrize("kind", list(FIELDS))
def test_the_plain_path_agrees_with_the_full_checks(kind: FeedKind) -> None:
    taken = 0
    for values in _variants(kind):
        full = _full(kind, values)
        plain = _plain(kind, values)
        if plain is not None:
            taken += 1
            assert plain == full, values
            # What lets orjson read lines for it (feeds.parse): a float is never taken.
            assert {type(v) for v in values.values()} <= {str, int}, values
    assert taken > 10


@pytest.mark.parametrize("kind", list(FIELDS))
def test_the_usual_row_takes_the_plain_path(kind: FeedKind) -> None:
    base = _usual(kind)
    assert _plain(kind, base) is not None
    assert _plain(kind, base) == _full(kind, base)


def test_the_plain_path_takes_a_lower_case_x_and_an_absent_optional_date() -> None:
    nat = _usual(FeedKind.NAT_RESULTS)
    row = {**nat, "doc_number": PRC_X[:-1] + "x"}
    plain = _plain(FeedKind.NAT_RESULTS, row)
    assert plain is not None
    assert plain[0] == CONTEXT.person(DocType.PRC_ID, PRC_X)
    case = _usual(FeedKind.CASES)
    del case["end_date"]
    assert _plain(FeedKind.CASES, case) is not None
