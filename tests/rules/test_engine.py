"""The rules engine under the default rule set (gd-2021): which colour, why, until when, in words.

Every table row is one situation a resident could be in. Days are counted from ``D`` (2021-06-01)
in local time (UTC+8, the rule set's ``utc_offset_hours``): ``at(3, 9)`` is 09:00 on D+3 and
``last(13)`` the final microsecond of D+13.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import pytest

from yuekang.rules import (
    CaseCategory,
    CaseFact,
    Decision,
    Facts,
    NatFact,
    Override,
    RiskArea,
    Status,
    TravelFact,
    VaccinationFact,
    default_rule_set,
    evaluate,
    explain,
    negative_within_hours,
)
from yuekang.rules.facts import NatResult, RiskLevel
from yuekang.rules.ruleset import RuleSet, parse_rule_set

RULES = default_rule_set()
TZ = dt.timezone(dt.timedelta(hours=8))
D = dt.date(2021, 6, 1)

GZ_TIANHE = "440106"
GZ_BAIYUN = "440111"
GZ_CITY = "440100"
GD_PROVINCE = "440000"
SZ_NANSHAN = "440305"
BJ_DONGCHENG = "110101"

Fact = CaseFact | NatFact | TravelFact | RiskArea | VaccinationFact | Override


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=TZ)


def utc(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, mi, tzinfo=dt.UTC)


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def at(n: int, h: int = 0, mi: int = 0) -> dt.datetime:
    """``h:mi`` local time on day D+n."""
    return dt.datetime.combine(day(n), dt.time(h, mi), TZ)


def last(n: int) -> dt.datetime:
    """The last moment of local day D+n."""
    return at(n + 1) - dt.timedelta(microseconds=1)


EARLY = at(-60)
"""When facts were received unless a test says otherwise: long before everything else."""


def case(
    category: str, start: int, end: int | None = None, *, received: dt.datetime = EARLY
) -> CaseFact:
    return CaseFact(
        category=CaseCategory(category),
        start=day(start),
        end=None if end is None else day(end),
        received_at=received,
    )


def released(n: int) -> CaseFact:
    return case("released", n)


def nat(sampled: dt.datetime | int, result: NatResult = "negative") -> NatFact:
    """A test sampled at ``sampled`` (or 09:00 on day D+``sampled``), received 6 hours later."""
    when = at(sampled, 9) if isinstance(sampled, int) else sampled
    return NatFact(sampled_at=when, result=result, received_at=when + dt.timedelta(hours=6))


def positive(sampled: dt.datetime | int) -> NatFact:
    return nat(sampled, "positive")


def trip(region: str, n: int, *, received: dt.datetime = EARLY) -> TravelFact:
    return TravelFact(region=region, date=day(n), received_at=received)


def area(
    region: str, level: RiskLevel, valid_from: int = -60, valid_to: int | None = None
) -> RiskArea:
    return RiskArea(
        region=region,
        level=level,
        valid_from=day(valid_from),
        valid_to=None if valid_to is None else day(valid_to),
    )


def dose(n: int) -> VaccinationFact:
    return VaccinationFact(dose=n, date=day(-100 + 30 * n), product="CoronaVac")


def override(
    status: Status = "green",
    granted: dt.datetime = at(1, 12),
    expires: dt.datetime | None = None,
    reason: str = "appeal accepted",
) -> Override:
    return Override(status=status, reason=reason, granted_at=granted, expires_at=expires)


def facts(*items: Fact) -> Facts:
    overrides = [i for i in items if isinstance(i, Override)]
    return Facts(
        cases=tuple(i for i in items if isinstance(i, CaseFact)),
        nats=tuple(i for i in items if isinstance(i, NatFact)),
        vaccinations=tuple(i for i in items if isinstance(i, VaccinationFact)),
        travel=tuple(i for i in items if isinstance(i, TravelFact)),
        risk_areas=tuple(i for i in items if isinstance(i, RiskArea)),
        override=overrides[0] if overrides else None,
    )


def decide(items: tuple[Fact, ...], now: dt.datetime) -> Decision:
    return evaluate(facts(*items), now=now, rules=RULES)


# Every rule of the default set, on its own.

RULE_CASES = [
    pytest.param((), at(0), "green", [], id="no-facts"),
    pytest.param((case("confirmed", 0),), at(0), "red", ["confirmed_case"], id="confirmed"),
    pytest.param(
        (case("confirmed", 0),), at(365), "red", ["confirmed_case"], id="confirmed-never-lapses"
    ),
    pytest.param((case("asymptomatic", 0),), at(3), "red", ["confirmed_case"], id="asymptomatic"),
    pytest.param((positive(0),), at(0, 9), "red", ["positive_nat"], id="positive-nat"),
    pytest.param((positive(0),), at(365), "red", ["positive_nat"], id="positive-nat-never-lapses"),
    pytest.param((case("suspected", 0),), at(3), "red", ["suspected_case"], id="suspected"),
    pytest.param((case("close_contact", 0),), at(3), "red", ["close_contact"], id="close-contact"),
    pytest.param(
        (trip(GZ_TIANHE, 0), area(GZ_TIANHE, "high")),
        at(3),
        "red",
        ["high_risk_area_arrival", "risk_city_arrival"],
        id="high-risk-arrival",
    ),
    pytest.param(
        (case("centralised_isolation", 0),),
        at(30),
        "red",
        ["centralised_isolation"],
        id="centralised-isolation",
    ),
    pytest.param(
        (case("home_isolation", 0),), at(30), "red", ["home_isolation"], id="home-isolation"
    ),
    pytest.param(
        (case("secondary_contact", 0),),
        at(3),
        "yellow",
        ["secondary_contact"],
        id="secondary-contact",
    ),
    pytest.param(
        (trip(GZ_BAIYUN, 0), area(GZ_TIANHE, "medium")),
        at(3),
        "yellow",
        ["risk_city_arrival"],
        id="risk-city-arrival",
    ),
    pytest.param((released(0),), at(3), "green", [], id="release-alone"),
    pytest.param((nat(0), nat(1)), at(3), "green", [], id="negative-tests"),
    pytest.param((dose(1), dose(2)), at(3), "green", [], id="vaccinated"),
    pytest.param((trip(GZ_BAIYUN, 0),), at(3), "green", [], id="travel-without-risk-area"),
]


@pytest.mark.parametrize(("items", "now", "status", "reasons"), RULE_CASES)
def test_each_rule(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons
    assert decision.rule_set_version == "gd-2021.3"


# Windows: for each, the day before it starts, its first moment, its last moment, the day after.


def window(
    name: str,
    items: tuple[Fact, ...],
    first: int,
    last_day: int,
    status: Status,
    *reasons: str,
) -> Iterator[object]:
    """Rows for a finding holding from local day D+first through D+last_day."""
    yield pytest.param(items, last(first - 1), "green", [], id=f"{name}-day-before")
    yield pytest.param(items, at(first), status, [*reasons], id=f"{name}-first-day")
    yield pytest.param(items, last(last_day), status, [*reasons], id=f"{name}-last-day")
    yield pytest.param(items, at(last_day + 1), "green", [], id=f"{name}-day-after")


WINDOWS = [
    # 14-day lapses: starting on D, holding through D+13, gone at midnight starting D+14.
    *window("close-contact-14-days", (case("close_contact", 0),), 0, 13, "red", "close_contact"),
    *window(
        "secondary-contact-14-days",
        (case("secondary_contact", 0),),
        0,
        13,
        "yellow",
        "secondary_contact",
    ),
    *window(
        "risk-city-14-days",
        (trip(GZ_BAIYUN, 0), area(GZ_TIANHE, "medium")),
        0,
        13,
        "yellow",
        "risk_city_arrival",
    ),
    *window(
        "high-risk-14-days",
        (trip(GZ_TIANHE, 0), area(GZ_CITY, "high")),
        0,
        13,
        "red",
        "high_risk_area_arrival",
        "risk_city_arrival",
    ),
    # End dates are inclusive.
    *window("home-isolation-end", (case("home_isolation", 0, 6),), 0, 6, "red", "home_isolation"),
    *window(
        "centralised-isolation-end",
        (case("centralised_isolation", 2, 22),),
        2,
        22,
        "red",
        "centralised_isolation",
    ),
    *window("confirmed-end", (case("confirmed", 0, 9),), 0, 9, "red", "confirmed_case"),
    *window(
        "close-contact-end-first", (case("close_contact", 0, 3),), 0, 3, "red", "close_contact"
    ),
    *window(
        "close-contact-lapse-first", (case("close_contact", 0, 20),), 0, 13, "red", "close_contact"
    ),
    # A release dated R ends what started on or before it, at midnight starting R.
    *window(
        "confirmed-released",
        (case("confirmed", 0), released(10)),
        0,
        9,
        "red",
        "confirmed_case",
    ),
    *window(
        "suspected-released", (case("suspected", 0), released(3)), 0, 2, "red", "suspected_case"
    ),
    *window(
        "close-contact-released",
        (case("close_contact", 0), released(5)),
        0,
        4,
        "red",
        "close_contact",
    ),
    *window(
        "secondary-contact-released",
        (case("secondary_contact", 0), released(1)),
        0,
        0,
        "yellow",
        "secondary_contact",
    ),
    *window(
        "home-isolation-released-before-end",
        (case("home_isolation", 0, 20), released(5)),
        0,
        4,
        "red",
        "home_isolation",
    ),
    *window(
        "home-isolation-ends-before-release",
        (case("home_isolation", 0, 3), released(5)),
        0,
        3,
        "red",
        "home_isolation",
    ),
    *window(
        "release-before-start-does-not-count",
        (released(-1), case("centralised_isolation", 0, 9)),
        0,
        9,
        "red",
        "centralised_isolation",
    ),
    *window(
        "isolation-released-out-of-order",
        (released(12), case("centralised_isolation", 0), released(4)),
        0,
        3,
        "red",
        "centralised_isolation",
    ),
]


@pytest.mark.parametrize(("items", "now", "status", "reasons"), WINDOWS)
def test_windows(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons


HIGH_RISK = (trip(GZ_TIANHE, 0), area(GZ_CITY, "high"))
SECOND_EPISODE = (case("confirmed", 0), released(3), case("confirmed", 10), released(20))


@pytest.mark.parametrize(
    ("items", "now", "status", "reasons"),
    [
        pytest.param(
            (*HIGH_RISK, released(2)),
            at(5),
            "red",
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="release-does-not-end-travel",
        ),
        pytest.param(SECOND_EPISODE, last(2), "red", ["confirmed_case"], id="episode-1-last-day"),
        pytest.param(SECOND_EPISODE, at(3), "green", [], id="episode-1-released"),
        pytest.param(SECOND_EPISODE, last(9), "green", [], id="between-episodes"),
        pytest.param(SECOND_EPISODE, at(10), "red", ["confirmed_case"], id="episode-2-starts"),
        pytest.param(SECOND_EPISODE, last(19), "red", ["confirmed_case"], id="episode-2-last-day"),
        pytest.param(SECOND_EPISODE, at(20), "green", [], id="episode-2-released"),
        # A positive test is red from the moment it was sampled.
        pytest.param((positive(at(0, 10)),), at(0, 9, 59), "green", [], id="nat-before-sample"),
        pytest.param((positive(at(0, 10)),), at(0, 10), "red", ["positive_nat"], id="nat-sampled"),
        pytest.param(
            (positive(0), released(5)), last(4), "red", ["positive_nat"], id="nat-release-eve"
        ),
        pytest.param((positive(0), released(5)), at(5), "green", [], id="nat-released"),
        # A release and a positive on the same day: whichever was reported later wins.
        pytest.param(
            (positive(0), released(0)),
            at(1),
            "red",
            ["positive_nat"],
            id="nat-after-a-release-reported-that-morning",
        ),
        pytest.param(
            (positive(0), case("released", 0, received=at(0, 20))),
            at(1),
            "green",
            [],
            id="nat-released-that-evening",
        ),
        pytest.param(
            (case("confirmed", 0, received=at(0, 12)), released(0)),
            at(1),
            "red",
            ["confirmed_case"],
            id="case-confirmed-after-a-same-day-release",
        ),
        pytest.param(
            (released(-1), positive(0)),
            at(5),
            "red",
            ["positive_nat"],
            id="nat-after-release-still-red",
        ),
        # 2021-06-01 16:30 UTC is 00:30 on 2021-06-02 local: after the release dated D.
        pytest.param(
            (positive(utc(2021, 6, 1, 16, 30)), released(0)),
            at(2),
            "red",
            ["positive_nat"],
            id="nat-release-uses-local-sample-day",
        ),
    ],
)
def test_more_windows(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons


# Clearing a yellow: 2 negative tests on distinct local days, sampled from its start until the
# midnight starting start+3; a positive test sampled after the start stops the clearing.

SECONDARY = case("secondary_contact", 0)
RISK_CITY = (trip(GZ_BAIYUN, 0), area(GZ_TIANHE, "medium"))


@pytest.mark.parametrize(
    ("items", "now", "status", "reasons"),
    [
        pytest.param((SECONDARY,), at(2), "yellow", ["secondary_contact"], id="untested"),
        pytest.param((SECONDARY, nat(0)), at(2), "yellow", ["secondary_contact"], id="one-test"),
        pytest.param(
            (SECONDARY, nat(0), nat(1)),
            at(1, 8, 59),
            "yellow",
            ["secondary_contact"],
            id="before-second-test",
        ),
        pytest.param((SECONDARY, nat(0), nat(1)), at(1, 9), "green", [], id="at-second-test"),
        pytest.param((SECONDARY, nat(at(0)), nat(1)), at(2), "green", [], id="test-at-start"),
        pytest.param(
            (SECONDARY, nat(last(-1)), nat(1)),
            at(2),
            "yellow",
            ["secondary_contact"],
            id="test-before-start",
        ),
        pytest.param(
            (SECONDARY, nat(1), nat(last(2))), at(3), "green", [], id="test-last-moment-of-window"
        ),
        pytest.param(
            (SECONDARY, nat(1), nat(at(3))),
            at(3, 12),
            "yellow",
            ["secondary_contact"],
            id="test-day-after-window",
        ),
        pytest.param(
            (SECONDARY, nat(1), nat(at(3))),
            last(13),
            "yellow",
            ["secondary_contact"],
            id="late-test-leaves-14-days",
        ),
        pytest.param(
            (SECONDARY, nat(at(0, 8)), nat(at(0, 20))),
            at(2),
            "yellow",
            ["secondary_contact"],
            id="same-local-day",
        ),
        # 17:00 and 15:00 UTC on different UTC days, both on 2021-06-01 local.
        pytest.param(
            (SECONDARY, nat(utc(2021, 5, 31, 17)), nat(utc(2021, 6, 1, 15))),
            at(2),
            "yellow",
            ["secondary_contact"],
            id="same-local-day-different-utc-days",
        ),
        # 15:00 and 16:30 UTC on 2021-06-01: 23:00 on D and 00:30 on D+1 local.
        pytest.param(
            (SECONDARY, nat(utc(2021, 6, 1, 15)), nat(utc(2021, 6, 1, 16, 30))),
            at(1, 12),
            "green",
            [],
            id="distinct-local-days-same-utc-day",
        ),
        pytest.param((SECONDARY, nat(0), nat(1), nat(2)), at(2, 12), "green", [], id="three-tests"),
        pytest.param(
            (SECONDARY, nat(0), positive(1), nat(2)),
            at(3),
            "red",
            ["positive_nat", "secondary_contact"],
            id="positive-between-negatives",
        ),
        pytest.param(
            (SECONDARY, positive(0), nat(1), nat(2)),
            at(3),
            "red",
            ["positive_nat", "secondary_contact"],
            id="positive-then-negatives",
        ),
        pytest.param(
            (SECONDARY, positive(-1), nat(0), nat(1)),
            at(2),
            "red",
            ["positive_nat"],
            id="positive-before-start-does-not-block",
        ),
        pytest.param((*RISK_CITY, nat(0), nat(1)), at(2), "green", [], id="risk-city-cleared"),
        pytest.param(
            (*RISK_CITY, nat(1), nat(last(2))), at(3), "green", [], id="risk-city-last-moment"
        ),
        pytest.param(
            (*RISK_CITY, nat(1), nat(at(3))),
            at(3, 12),
            "yellow",
            ["risk_city_arrival"],
            id="risk-city-too-late",
        ),
        pytest.param(
            (*RISK_CITY, nat(-2), nat(-1)),
            at(1),
            "yellow",
            ["risk_city_arrival"],
            id="risk-city-tests-before-trip",
        ),
        pytest.param(
            (*RISK_CITY, positive(0), nat(1), nat(2)),
            at(3),
            "red",
            ["positive_nat", "risk_city_arrival"],
            id="risk-city-positive",
        ),
    ],
)
def test_clearing(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons


# Risk areas: the place and the day of the trip against the area's region, level and validity.


@pytest.mark.parametrize(
    ("place", "trip_day", "risk_area", "reasons"),
    [
        pytest.param(
            GZ_TIANHE,
            0,
            area(GZ_TIANHE, "high"),
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="high-same-district",
        ),
        pytest.param(
            GZ_BAIYUN, 0, area(GZ_TIANHE, "high"), ["risk_city_arrival"], id="high-same-city"
        ),
        pytest.param(
            GZ_BAIYUN,
            0,
            area(GZ_CITY, "high"),
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="high-whole-city",
        ),
        pytest.param(
            SZ_NANSHAN,
            0,
            area(GD_PROVINCE, "high"),
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="high-whole-province",
        ),
        pytest.param(SZ_NANSHAN, 0, area(GZ_TIANHE, "high"), [], id="high-other-city"),
        pytest.param(BJ_DONGCHENG, 0, area(GZ_TIANHE, "high"), [], id="high-other-province"),
        pytest.param(
            GZ_CITY,
            0,
            area(GZ_TIANHE, "high"),
            ["risk_city_arrival"],
            id="city-visit-district-area",
        ),
        pytest.param(
            GZ_TIANHE,
            0,
            area(GZ_TIANHE, "medium"),
            ["risk_city_arrival"],
            id="medium-same-district",
        ),
        pytest.param(
            GZ_BAIYUN, 0, area(GZ_TIANHE, "medium"), ["risk_city_arrival"], id="medium-same-city"
        ),
        pytest.param(
            SZ_NANSHAN,
            0,
            area(GD_PROVINCE, "medium"),
            ["risk_city_arrival"],
            id="medium-whole-province",
        ),
        pytest.param(SZ_NANSHAN, 0, area(GZ_TIANHE, "medium"), [], id="medium-other-city"),
        pytest.param(GZ_TIANHE, 0, area(GZ_TIANHE, "low"), [], id="low-never-triggers"),
        pytest.param(GZ_TIANHE, -1, area(GZ_TIANHE, "high", 0), [], id="day-before-valid-from"),
        pytest.param(
            GZ_TIANHE,
            0,
            area(GZ_TIANHE, "high", 0),
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="on-valid-from",
        ),
        pytest.param(
            GZ_TIANHE,
            5,
            area(GZ_TIANHE, "high", 0, 5),
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="on-valid-to",
        ),
        pytest.param(GZ_TIANHE, 6, area(GZ_TIANHE, "high", 0, 5), [], id="day-after-valid-to"),
        pytest.param(
            GZ_TIANHE,
            100,
            area(GZ_TIANHE, "high", 0),
            ["high_risk_area_arrival", "risk_city_arrival"],
            id="open-ended-area",
        ),
        pytest.param(
            GZ_BAIYUN, 6, area(GZ_TIANHE, "medium", 0, 5), [], id="medium-day-after-valid-to"
        ),
    ],
)
def test_risk_areas(place: str, trip_day: int, risk_area: RiskArea, reasons: list[str]) -> None:
    decision = decide((trip(place, trip_day), risk_area), at(trip_day, 12))
    assert decision.reason_codes == reasons
    expected: Status = "red" if "high_risk_area_arrival" in reasons else "yellow"
    assert decision.status == (expected if reasons else "green")


def test_high_and_medium_areas_on_one_trip() -> None:
    decision = decide(
        (trip(GZ_BAIYUN, 0), area(GZ_TIANHE, "medium"), area(GZ_BAIYUN, "high")), at(1)
    )
    assert decision.status == "red"
    assert decision.reason_codes == ["high_risk_area_arrival", "risk_city_arrival"]
    assert [f.params["level"] for f in decision.findings] == ["high", "high"]


# Combinations.


@pytest.mark.parametrize(
    ("items", "now", "status", "reasons"),
    [
        pytest.param(
            (case("confirmed", 0), case("secondary_contact", 0)),
            at(1),
            "red",
            ["confirmed_case", "secondary_contact"],
            id="red-and-yellow",
        ),
        pytest.param(
            (case("secondary_contact", 0), case("confirmed", 2)),
            at(3),
            "red",
            ["confirmed_case", "secondary_contact"],
            id="worst-first-not-oldest-first",
        ),
        pytest.param(
            (case("close_contact", 3), case("suspected", 1)),
            at(4),
            "red",
            ["suspected_case", "close_contact"],
            id="equal-status-oldest-first",
        ),
        pytest.param(
            (case("close_contact", 0), case("close_contact", 3)),
            at(4),
            "red",
            ["close_contact"],
            id="reason-listed-once",
        ),
        pytest.param(
            (case("close_contact", 0), case("close_contact", 3)),
            at(15),
            "red",
            ["close_contact"],
            id="later-episode-outlasts-earlier",
        ),
        pytest.param(
            (case("secondary_contact", 0), *RISK_CITY),
            at(1),
            "yellow",
            ["secondary_contact", "risk_city_arrival"],
            id="two-yellows",
        ),
        pytest.param(
            (case("close_contact", 0), case("secondary_contact", 0), nat(0), nat(1)),
            at(2),
            "red",
            ["close_contact"],
            id="tests-clear-yellow-not-red",
        ),
    ],
)
def test_combinations(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons
    assert decision.findings[0].status == status


def test_same_reason_twice_is_two_findings() -> None:
    decision = decide((case("close_contact", 0), case("close_contact", 3)), at(4))
    assert [f.since for f in decision.findings] == [at(0), at(3)]


# Two yellows, each cleared by its own tests: secondary contact on D (tests D, D+1) and a
# risk-city trip on D+5 (tests D+6, D+7).
TWO_YELLOWS = (
    case("secondary_contact", 0),
    trip(GZ_BAIYUN, 5),
    area(GZ_TIANHE, "medium"),
    nat(0),
    nat(1),
    nat(6),
    nat(7),
)
# The same, but the only tests fall after the secondary contact's clearing window.
ONLY_SECOND_CLEARED = (
    case("secondary_contact", 0),
    trip(GZ_BAIYUN, 5),
    area(GZ_TIANHE, "medium"),
    nat(5),
    nat(6),
)


@pytest.mark.parametrize(
    ("items", "now", "status", "reasons"),
    [
        pytest.param(TWO_YELLOWS, at(0, 12), "yellow", ["secondary_contact"], id="first-yellow"),
        pytest.param(TWO_YELLOWS, at(1, 9), "green", [], id="first-cleared"),
        pytest.param(TWO_YELLOWS, at(5), "yellow", ["risk_city_arrival"], id="second-yellow"),
        pytest.param(
            TWO_YELLOWS, at(7, 8, 59), "yellow", ["risk_city_arrival"], id="second-one-test"
        ),
        pytest.param(TWO_YELLOWS, at(7, 9), "green", [], id="second-cleared"),
        pytest.param(
            ONLY_SECOND_CLEARED,
            at(5, 12),
            "yellow",
            ["secondary_contact", "risk_city_arrival"],
            id="both-pending",
        ),
        pytest.param(
            ONLY_SECOND_CLEARED,
            at(6, 12),
            "yellow",
            ["secondary_contact"],
            id="second-cleared-first-still-yellow",
        ),
        pytest.param(
            ONLY_SECOND_CLEARED, last(13), "yellow", ["secondary_contact"], id="first-last-day"
        ),
        pytest.param(ONLY_SECOND_CLEARED, at(14), "green", [], id="first-lapsed"),
    ],
)
def test_two_yellows_clear_independently(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons


# Overrides: an accepted appeal covers the facts known when it was granted, not later ones.

APPEAL = (
    case("close_contact", 0, received=at(0, 10)),
    override("green", granted=at(1, 12)),
    case("close_contact", 5, received=at(5, 8)),
)


@pytest.mark.parametrize(
    ("items", "now", "status", "reasons"),
    [
        pytest.param(APPEAL, at(1, 11, 59), "red", ["close_contact"], id="before-grant"),
        pytest.param(APPEAL, at(1, 12), "green", ["override"], id="at-grant"),
        pytest.param(APPEAL, at(4), "green", ["override"], id="covered"),
        pytest.param(APPEAL, at(5), "red", ["close_contact", "override"], id="new-contact"),
        pytest.param(
            APPEAL, last(18), "red", ["close_contact", "override"], id="new-contact-last-day"
        ),
        pytest.param(APPEAL, at(19), "green", ["override"], id="new-contact-lapsed"),
        pytest.param(
            (case("close_contact", 0, received=at(1, 12)), override("green", granted=at(1, 12))),
            at(2),
            "green",
            ["override"],
            id="fact-received-at-grant-is-covered",
        ),
        pytest.param(
            (
                case("close_contact", 0, received=at(1, 12) + dt.timedelta(microseconds=1)),
                override("green", granted=at(1, 12)),
            ),
            at(2),
            "red",
            ["close_contact", "override"],
            id="fact-received-after-grant-counts",
        ),
        pytest.param(
            (case("close_contact", 0), override("green", expires=at(5))),
            last(4),
            "green",
            ["override"],
            id="last-moment-before-expiry",
        ),
        pytest.param(
            (case("close_contact", 0), override("green", expires=at(5))),
            at(5),
            "red",
            ["close_contact"],
            id="expired",
        ),
        pytest.param(
            (case("confirmed", 0), override("yellow")),
            at(2),
            "yellow",
            ["override"],
            id="downgrade-to-yellow",
        ),
        pytest.param((override("red"),), at(2), "red", ["override"], id="upgrade-to-red"),
        pytest.param(
            (case("secondary_contact", 0), override("red")),
            at(2),
            "red",
            ["override"],
            id="red-override-replaces-yellow",
        ),
        pytest.param(
            (case("secondary_contact", 0), override("green"), positive(2)),
            at(3),
            "red",
            ["positive_nat", "override"],
            id="new-positive-after-grant",
        ),
        pytest.param(
            (*HIGH_RISK, override("green")),
            at(2),
            "green",
            ["override"],
            id="covers-travel",
        ),
    ],
)
def test_override(
    items: tuple[Fact, ...], now: dt.datetime, status: Status, reasons: list[str]
) -> None:
    decision = decide(items, now)
    assert decision.status == status
    assert decision.reason_codes == reasons


# valid_until: the first moment the decision could change with no new fact.


@pytest.mark.parametrize(
    ("items", "now", "valid_until"),
    [
        pytest.param((), at(0), None, id="green-stays-green"),
        pytest.param((case("confirmed", 0),), at(1), None, id="confirmed-open-ended"),
        pytest.param((positive(0),), at(1), None, id="positive-open-ended"),
        pytest.param((positive(0), released(5)), at(1), at(5), id="positive-released"),
        pytest.param((case("close_contact", 0),), at(1), at(14), id="close-contact-lapse"),
        pytest.param((case("close_contact", 0),), last(13), at(14), id="close-contact-last-day"),
        pytest.param((case("close_contact", 0),), at(14), None, id="close-contact-over"),
        pytest.param((case("home_isolation", 0, 6),), at(1), at(7), id="end-date"),
        pytest.param((case("confirmed", 0), released(10)), at(1), at(10), id="release"),
        pytest.param(HIGH_RISK, at(1), at(14), id="travel-lapse"),
        pytest.param((case("home_isolation", 5, 9),), at(0), at(5), id="future-start"),
        pytest.param((case("home_isolation", 5, 9),), at(5), at(10), id="future-start-then-end"),
        pytest.param(
            (case("close_contact", 2), case("secondary_contact", 0)),
            at(3),
            at(14),
            id="yellow-under-red-ends-first",
        ),
        pytest.param((case("secondary_contact", 0), nat(0)), at(1), at(14), id="pending-clearing"),
        pytest.param(
            (case("close_contact", 0), override("green", expires=at(8))),
            at(2),
            at(8),
            id="override-expiry",
        ),
        pytest.param(
            (case("close_contact", 0), override("green")), at(2), None, id="override-open-ended"
        ),
        pytest.param((nat(0), dose(1), dose(2)), at(1), None, id="tests-and-doses-change-nothing"),
    ],
)
def test_valid_until(
    items: tuple[Fact, ...], now: dt.datetime, valid_until: dt.datetime | None
) -> None:
    assert decide(items, now).valid_until == valid_until


# The NAT summary shown with the code.

NOW = at(10, 12)


@pytest.mark.parametrize(
    ("nats", "result", "sampled_at", "within"),
    [
        pytest.param((), None, None, None, id="never-tested"),
        pytest.param((nat(NOW),), "negative", NOW, 24, id="just-sampled"),
        pytest.param((nat(NOW - dt.timedelta(hours=24)),), "negative", None, 24, id="24h"),
        pytest.param(
            (nat(NOW - dt.timedelta(hours=24, seconds=1)),), "negative", None, 48, id="24h-1s"
        ),
        pytest.param((nat(NOW - dt.timedelta(hours=25)),), "negative", None, 48, id="25h"),
        pytest.param((nat(NOW - dt.timedelta(hours=48)),), "negative", None, 48, id="48h"),
        pytest.param((nat(NOW - dt.timedelta(hours=49)),), "negative", None, 72, id="49h"),
        pytest.param((nat(NOW - dt.timedelta(hours=72)),), "negative", None, 72, id="72h"),
        pytest.param((nat(NOW - dt.timedelta(hours=73)),), "negative", None, 168, id="73h"),
        pytest.param((nat(NOW - dt.timedelta(hours=168)),), "negative", None, 168, id="168h"),
        pytest.param((nat(NOW - dt.timedelta(hours=169)),), "negative", None, None, id="169h"),
        pytest.param((positive(NOW - dt.timedelta(hours=2)),), "positive", None, None, id="pos"),
        pytest.param(
            (positive(NOW - dt.timedelta(hours=30)), nat(NOW - dt.timedelta(hours=2))),
            "negative",
            NOW - dt.timedelta(hours=2),
            24,
            id="negative-after-positive",
        ),
        pytest.param(
            (nat(NOW - dt.timedelta(hours=30)), positive(NOW - dt.timedelta(hours=2))),
            "positive",
            NOW - dt.timedelta(hours=2),
            None,
            id="positive-after-negative",
        ),
        pytest.param(
            (nat(NOW - dt.timedelta(hours=30)), nat(NOW + dt.timedelta(hours=1))),
            "negative",
            NOW - dt.timedelta(hours=30),
            48,
            id="future-test-ignored",
        ),
        pytest.param(
            (nat(NOW - dt.timedelta(hours=5)), positive(NOW - dt.timedelta(hours=5))),
            "positive",
            NOW - dt.timedelta(hours=5),
            None,
            id="same-moment-positive-wins",
        ),
    ],
)
def test_nat_summary(
    nats: tuple[NatFact, ...],
    result: str | None,
    sampled_at: dt.datetime | None,
    within: int | None,
) -> None:
    summary = decide(nats, NOW).nat
    assert summary.latest_result == result
    assert summary.negative_within_hours == within
    if sampled_at is not None:
        assert summary.latest_sampled_at == sampled_at
    if result is None:
        assert summary.latest_sampled_at is None


@pytest.mark.parametrize(
    ("doses", "count", "last_on"),
    [
        pytest.param((), 0, None, id="none"),
        pytest.param((dose(1),), 1, day(-70), id="one"),
        pytest.param((dose(1), dose(2)), 2, day(-40), id="two"),
        pytest.param((dose(2), dose(1), dose(1)), 2, day(-40), id="duplicate-report"),
        pytest.param((dose(1), dose(2), dose(3)), 3, day(-10), id="booster"),
    ],
)
def test_vaccination(
    doses: tuple[VaccinationFact, ...], count: int, last_on: dt.date | None
) -> None:
    decision = decide(doses, at(0))
    assert decision.vaccine_doses == count
    assert decision.last_vaccinated_on == last_on
    assert decision.status == "green"


@pytest.mark.parametrize(
    ("sampled_at", "result", "within"),
    [
        pytest.param(NOW - dt.timedelta(hours=24), "negative", 24, id="24h"),
        pytest.param(NOW - dt.timedelta(hours=25), "negative", 48, id="25h"),
        pytest.param(NOW - dt.timedelta(hours=169), "negative", None, id="169h"),
        pytest.param(NOW - dt.timedelta(hours=1), "positive", None, id="positive"),
        pytest.param(NOW + dt.timedelta(hours=1), "negative", None, id="sampled-later"),
        pytest.param(None, None, None, id="never-tested"),
    ],
)
def test_negative_within_hours(
    sampled_at: dt.datetime | None, result: str | None, within: int | None
) -> None:
    assert (
        negative_within_hours(sampled_at, result, now=NOW, buckets=RULES.nat_display_hours)
        == within
    )


# Explanations.

LANGUAGES = ("zh-Hans", "zh-Hant", "en", "pt")
GREEN = {
    "zh-Hans": "未发现风险，绿码。",
    "zh-Hant": "未發現風險，綠碼。",
    "en": "No risk found: green.",
    "pt": "Nenhum risco encontrado: verde.",
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_explain_green(language: str) -> None:
    decision = decide((nat(0),), at(1))
    assert explain(decision.findings, RULES, language) == [GREEN[language]]


# (situation, facts, now, the words each language must contain in the first -- worst -- sentence)
EXPLAINED = [
    ("confirmed", (case("confirmed", 0),), at(3), {lang: ["2021-06-01"] for lang in LANGUAGES}),
    (
        "positive-local-sample-day",
        # 17:00 UTC on 2021-06-01 is 01:00 on 2021-06-02 in Guangdong.
        (positive(utc(2021, 6, 1, 17)),),
        at(3),
        {lang: ["2021-06-02"] for lang in LANGUAGES},
    ),
    ("suspected", (case("suspected", 0),), at(3), {lang: ["2021-06-01"] for lang in LANGUAGES}),
    (
        "close-contact",
        (case("close_contact", 0),),
        at(3),
        {lang: ["2021-06-01", "2021-06-14"] for lang in LANGUAGES},
    ),
    (
        "close-contact-end-date",
        (case("close_contact", 0, 3),),
        at(3),
        {lang: ["2021-06-01", "2021-06-04"] for lang in LANGUAGES},
    ),
    (
        "close-contact-released",
        (case("close_contact", 0), released(5)),
        at(3),
        {lang: ["2021-06-01", "2021-06-05"] for lang in LANGUAGES},
    ),
    (
        "high-risk-arrival",
        (trip(GZ_TIANHE, 0), area(GZ_TIANHE, "high")),
        at(3),
        {
            "zh-Hans": ["2021-06-01", "广东省广州市天河区", "2021-06-14"],
            "zh-Hant": ["2021-06-01", "广东省广州市天河区", "2021-06-14"],
            "en": ["2021-06-01", "广东省广州市天河区", "440106", "2021-06-14"],
            "pt": ["2021-06-01", "440106", "2021-06-14"],
        },
    ),
    (
        "centralised-isolation",
        (case("centralised_isolation", 0),),
        at(3),
        {lang: ["2021-06-01"] for lang in LANGUAGES},
    ),
    (
        "home-isolation",
        (case("home_isolation", 0),),
        at(3),
        {lang: ["2021-06-01"] for lang in LANGUAGES},
    ),
    (
        "secondary-contact",
        (case("secondary_contact", 0), nat(0)),
        at(1),
        {
            "zh-Hans": ["2021-06-01", "3 天内", "已完成 1/2", "2021-06-14"],
            "zh-Hant": ["2021-06-01", "3 天內", "已完成 1/2", "2021-06-14"],
            "en": ["2021-06-01", "within 3 days", "(1/2 done)", "2021-06-14"],
            "pt": ["2021-06-01", "em 3 dias", "(1/2 feitos)", "2021-06-14"],
        },
    ),
    (
        "risk-city-arrival",
        (trip(GZ_BAIYUN, 0), area(GZ_TIANHE, "medium")),
        at(1),
        {
            "zh-Hans": ["2021-06-01", "广东省广州市白云区", "已完成 0/2", "2021-06-14"],
            "zh-Hant": ["2021-06-01", "广东省广州市白云区", "已完成 0/2", "2021-06-14"],
            "en": ["2021-06-01", "广东省广州市白云区", "440111", "(0/2 done)", "2021-06-14"],
            "pt": ["2021-06-01", "440111", "(0/2 feitos)", "2021-06-14"],
        },
    ),
    (
        "override",
        (case("close_contact", 0), override("green", granted=at(1, 12))),
        at(3),
        {
            # The operator's note is for staff: the resident's sentence does not quote it.
            "zh-Hans": ["工作人员已复核（2021-06-02）"],
            "zh-Hant": ["工作人員已覆核（2021-06-02）"],
            "en": ["Reviewed by staff on 2021-06-02"],
            "pt": ["Revisto por funcionários em 2021-06-02"],
        },
    ),
]


@pytest.mark.parametrize(
    ("items", "now", "language", "words"),
    [
        pytest.param(items, now, language, words[language], id=f"{name}-{language}")
        for name, items, now, words in EXPLAINED
        for language in LANGUAGES
    ],
)
def test_explain_mentions_dates_and_places(
    items: tuple[Fact, ...], now: dt.datetime, language: str, words: list[str]
) -> None:
    decision = decide(items, now)
    sentences = explain(decision.findings, RULES, language)
    assert len(sentences) == len(decision.findings)
    for word in words:
        assert word in sentences[0]
    assert not any("{" in sentence or "}" in sentence for sentence in sentences)


def test_explain_languages_differ() -> None:
    decision = decide((case("close_contact", 0),), at(3))
    sentences = {explain(decision.findings, RULES, language)[0] for language in LANGUAGES}
    assert len(sentences) == len(LANGUAGES)


@pytest.mark.parametrize("language", ["fr", "", "zh", "zh-Hans-CN"])
def test_explain_unknown_language_falls_back_to_simplified_chinese(language: str) -> None:
    decision = decide((case("close_contact", 0),), at(3))
    assert explain(decision.findings, RULES, language) == [
        "您被判定为密切接触者（2021-06-01 起，至 2021-06-14 止）。"
    ]
    assert explain(decide((), at(3)).findings, RULES, language) == [GREEN["zh-Hans"]]


def test_explain_one_sentence_per_finding_worst_first() -> None:
    decision = decide((case("secondary_contact", 0), case("confirmed", 2)), at(3))
    assert explain(decision.findings, RULES, "en") == [
        "You were reported as a confirmed or asymptomatic case on 2021-06-03.",
        "You were at the same place and time as a case on 2021-06-01. 2 negative tests on "
        "separate days within 3 days turn the code green (0/2 done); otherwise it lasts until "
        "2021-06-14.",
    ]


def test_explain_override_and_new_fact() -> None:
    decision = decide(APPEAL, at(6))
    assert explain(decision.findings, RULES, "en") == [
        "You were identified as a close contact on 2021-06-06; this lasts until 2021-06-19.",
        "Reviewed by staff on 2021-06-02",
    ]


@pytest.mark.parametrize(
    ("area_received", "expected"),
    [
        pytest.param(at(1, 11), "green", id="area-known-when-the-appeal-was-accepted"),
        pytest.param(at(1, 13), "red", id="area-declared-after-the-appeal"),
    ],
)
def test_a_risk_area_declared_after_an_override_still_counts(
    area_received: dt.datetime, expected: str
) -> None:
    known_area = dataclasses.replace(area("440104", "high"), received_at=area_received)
    facts = Facts(
        travel=(trip("440104", 0),), risk_areas=(known_area,), override=override(granted=at(1, 12))
    )

    decision = evaluate(facts, now=at(2), rules=RULES)

    assert decision.status == expected


def _with_rule(rule_id: str, **when_and_clear: object) -> RuleSet:
    """The default rule set with one rule's ``when`` or ``clear_after`` changed."""
    rules = []
    for rule in RULES.rules:
        if rule.id == rule_id:
            when = rule.when.model_copy(update=when_and_clear.get("when", {}))
            clear = (
                rule.clear_after.model_copy(update=when_and_clear["clear_after"])
                if "clear_after" in when_and_clear and rule.clear_after is not None
                else rule.clear_after
            )
            rule = rule.model_copy(update={"when": when, "clear_after": clear})
        rules.append(rule)
    return RULES.model_copy(update={"rules": rules})


def test_a_finding_ends_when_it_lapses_even_if_the_tests_clear_it_later() -> None:
    # Two days of yellow for a secondary contact, clearable by two tests within three days: tests
    # on day 1 and in the late evening of day 2 clear it after it has lapsed, and it still ends at
    # the lapse, not at the later clearing.
    secondary = next(r for r in RULES.rules if "secondary_contact" in str(r.when))
    rules = _with_rule(secondary.id, when={"lasts_days": 2})
    items = (case("secondary_contact", 0), nat(1), nat(at(2, 22)))
    decision = evaluate(facts(*items), now=at(2, 12), rules=rules)
    assert decision.status == "green"


def test_a_release_reported_with_the_case_ends_it() -> None:
    # On the case's start day, a release reported before the case belongs to an earlier episode
    # (the case is new); one reported with it, at the same instant or later, ends it.
    contact = case("close_contact", 0, received=at(0, 10))
    before = case("released", 0, received=at(0, 9))
    same_instant = case("released", 0, received=at(0, 10))
    assert decide((contact, before), at(1)).reason_codes == ["close_contact"]
    assert decide((contact, same_instant), at(1)).status == "green"


# What the findings carry into explanations, and rule sets unlike the default one.


def test_a_case_finding_names_its_category() -> None:
    decision = decide((SECONDARY,), at(1))
    assert [f.params["category"] for f in decision.findings] == ["secondary_contact"]


def test_a_medium_risk_area_alone_is_reported_as_medium() -> None:
    decision = decide(RISK_CITY, at(1))
    assert [(f.reason, f.params["level"]) for f in decision.findings] == [
        ("risk_city_arrival", "medium")
    ]


def test_an_override_is_a_finding_of_its_own() -> None:
    granted = at(1, 12)
    decision = decide((case("confirmed", 0), override(granted=granted)), at(2))
    assert decision.status == "green"
    [finding] = decision.findings
    assert (finding.rule_id, finding.reason, finding.since, finding.received_at) == (
        "override", "override", granted, granted
    )  # fmt: skip
    assert finding.params == {"reason": "appeal accepted"}


def test_a_trip_outside_risk_areas_does_not_hide_a_later_one() -> None:
    decision = decide((trip(BJ_DONGCHENG, 0), trip(GZ_TIANHE, 1), area(GZ_CITY, "high")), at(2))
    assert [(f.reason, f.params["region"]) for f in decision.findings] == [
        ("high_risk_area_arrival", GZ_TIANHE),
        ("risk_city_arrival", GZ_TIANHE),
    ]


def test_a_contact_released_the_day_it_was_reported_does_not_hide_a_later_one() -> None:
    # The first episode ends the moment it starts (released that day, reported after it); the
    # second, days later, still counts.
    first = case("close_contact", 0, received=at(0, 8))
    release = dataclasses.replace(released(0), received_at=at(0, 10))
    second = case("close_contact", 5, received=at(5, 8))
    decision = decide((first, release, second), at(6))
    assert [(f.reason, f.since) for f in decision.findings] == [("close_contact", at(5))]


_OPEN_ENDED = """
version = "open-ended-1"
description = "one rule: cleared by a negative test whenever it comes, lasting until then"
utc_offset_hours = 8
nat_display_hours = [24]
[explanations.green]
zh-Hans = "绿码"
zh-Hant = "綠碼"
en = "green"
pt = "verde"
[explanations.override]
zh-Hans = "复核 {reason}"
zh-Hant = "覆核 {reason}"
en = "reviewed {reason}"
pt = "revisto {reason}"
[[rules]]
id = "contact"
status = "yellow"
reason = "secondary_contact"
when = { fact = "case", categories = ["secondary_contact"] }
clear_after = { negative_tests = 1 }
explain.zh-Hans = "至[{until}] 天数[{within_days}]"
explain.zh-Hant = "至[{until}] 天數[{within_days}]"
explain.en = "until[{until}] within[{within_days}]"
explain.pt = "ate[{until}] dias[{within_days}]"
"""


def test_a_rule_without_a_deadline_or_a_lapse_is_cleared_by_a_late_test() -> None:
    rules = parse_rule_set(_OPEN_ENDED)

    untested = evaluate(facts(SECONDARY), now=at(10), rules=rules)
    tested = evaluate(facts(SECONDARY, nat(9)), now=at(10), rules=rules)

    assert untested.status == "yellow"
    assert explain(untested.findings, rules, "en") == ["until[] within[]"]
    assert (tested.status, tested.findings) == ("green", ())
