"""The green-to-green conditions of a conversion (docs/EXCHANGE.md, section 3), as a table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from yuekang.exchange.conditions import refusals, start_of_day
from yuekang.rules.ruleset import ConversionConditions

UTC8 = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2020, 5, 20, 15, 30, tzinfo=UTC8)
TODAY = NOW.date()
WEEK = ConversionConditions(nat_window_hours=168, no_travel_days=14)


def check(conditions: ConversionConditions = WEEK, **facts: Any) -> list[str]:
    values: dict[str, Any] = {
        "status": "green",
        "nat_sampled_at": NOW - dt.timedelta(days=1),
        "nat_result": "negative",
        "outside_region_days": [],
        "now": NOW,
        "today": TODAY,
    }
    values.update(facts)
    return refusals(conditions, **values)


def test_green_with_a_recent_negative_test_and_no_travel_passes():
    assert check() == []


@pytest.mark.parametrize("status", ["yellow", "red", "none", ""])
def test_a_status_that_is_not_green_is_refused(status: str):
    assert check(status=status) == ["source_not_green"]


@pytest.mark.parametrize(
    ("sampled_at", "result"),
    [(None, None), (None, "negative"), (NOW - dt.timedelta(hours=1), None)],
    ids=["none", "no-time", "no-result"],
)
def test_no_test_is_nat_missing(sampled_at: dt.datetime | None, result: str | None):
    assert check(nat_sampled_at=sampled_at, nat_result=result) == ["nat_missing"]


def test_a_positive_test_is_refused_however_recent():
    assert check(nat_sampled_at=NOW, nat_result="positive") == ["nat_not_negative"]


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (dt.timedelta(0), []),
        (dt.timedelta(hours=167, minutes=59, seconds=59), []),
        (dt.timedelta(hours=168), []),
        (dt.timedelta(hours=168, seconds=1), ["nat_too_old"]),
        (dt.timedelta(days=30), ["nat_too_old"]),
    ],
    ids=["just-now", "inside", "at-the-edge", "one-second-beyond", "a-month"],
)
def test_the_nat_window_includes_its_edge(age: dt.timedelta, expected: list[str]):
    assert check(nat_sampled_at=NOW - age) == expected


def test_the_nat_window_follows_the_rule_set():
    two_days = ConversionConditions(nat_window_hours=48, no_travel_days=14)
    assert check(two_days, nat_sampled_at=NOW - dt.timedelta(hours=48)) == []
    assert check(two_days, nat_sampled_at=NOW - dt.timedelta(hours=48, seconds=1)) == [
        "nat_too_old"
    ]


def test_a_test_sampled_in_the_future_is_not_accepted():
    assert check(nat_sampled_at=NOW + dt.timedelta(seconds=1)) == ["nat_too_old"]


@pytest.mark.parametrize(
    ("days_ago", "expected"),
    [
        (0, ["travel_outside_region"]),
        (1, ["travel_outside_region"]),
        (13, ["travel_outside_region"]),
        (14, []),
        (15, []),
    ],
    ids=["today", "yesterday", "last-day-of-window", "just-outside", "long-ago"],
)
def test_the_travel_window_is_the_last_14_days(days_ago: int, expected: list[str]):
    day = TODAY - dt.timedelta(days=days_ago)
    assert check(outside_region_days=[day]) == expected


def test_any_one_day_outside_within_the_window_is_enough():
    days = [TODAY - dt.timedelta(days=n) for n in (40, 20, 3)]
    assert check(outside_region_days=days) == ["travel_outside_region"]
    assert check(outside_region_days=iter(days)) == ["travel_outside_region"]


def test_no_travel_days_zero_switches_the_travel_condition_off():
    anywhere = ConversionConditions(nat_window_hours=168, no_travel_days=0)
    assert check(anywhere, outside_region_days=[TODAY]) == []


def test_every_condition_not_met_is_listed_in_the_documented_order():
    assert check(
        status="red",
        nat_sampled_at=NOW - dt.timedelta(days=8),
        outside_region_days=[TODAY],
    ) == ["source_not_green", "nat_too_old", "travel_outside_region"]
    assert check(status="yellow", nat_sampled_at=None, nat_result=None) == [
        "source_not_green",
        "nat_missing",
    ]
    assert check(nat_result="positive", outside_region_days=[TODAY]) == [
        "nat_not_negative",
        "travel_outside_region",
    ]


# --- start_of_day ------------------------------------------------------------------------------


def test_start_of_day_is_local_midnight():
    start = start_of_day(dt.date(2020, 5, 20), 8)
    assert start == dt.datetime(2020, 5, 20, tzinfo=UTC8)
    assert start == dt.datetime(2020, 5, 19, 16, tzinfo=dt.UTC)
    assert start.utcoffset() == dt.timedelta(hours=8)


def test_start_of_day_follows_the_offset():
    assert start_of_day(dt.date(2020, 5, 20), 0) == dt.datetime(2020, 5, 20, tzinfo=dt.UTC)
    assert start_of_day(dt.date(2020, 5, 20), -5) == dt.datetime(2020, 5, 20, 5, tzinfo=dt.UTC)


def test_a_test_known_by_its_date_counts_from_the_start_of_that_day():
    # Sampled "7 days ago" as a date: at 15:30 that is already more than 168 hours ago.
    week_ago = start_of_day(TODAY - dt.timedelta(days=7), 8)
    assert check(nat_sampled_at=week_ago) == ["nat_too_old"]
    six_days = start_of_day(TODAY - dt.timedelta(days=6), 8)
    assert check(nat_sampled_at=six_days) == []
    # At exactly midnight, a test of 7 days ago is right at the edge, and still counts.
    midnight = dt.datetime.combine(TODAY, dt.time(), UTC8)
    assert check(nat_sampled_at=week_ago, now=midnight) == []
