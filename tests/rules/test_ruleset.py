"""Rule sets as data: the default loads, thresholds are parameters, and a broken rule set is
refused with every problem named."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from yuekang.rules import (
    CaseCategory,
    CaseFact,
    Facts,
    NatFact,
    RiskArea,
    RuleSetError,
    Status,
    TravelFact,
    default_rule_set,
    evaluate,
    explain,
    parse_rule_set,
)
from yuekang.rules.ruleset import LANGUAGES

TZ = dt.timezone(dt.timedelta(hours=8))
D = dt.date(2021, 6, 1)
DEFAULT = default_rule_set()
Document = dict[str, Any]


def day(n: int) -> dt.date:
    return D + dt.timedelta(days=n)


def at(n: int, h: int = 0) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(h), TZ)


def last(n: int) -> dt.datetime:
    return at(n + 1) - dt.timedelta(microseconds=1)


def case(category: str, start: int) -> CaseFact:
    return CaseFact(CaseCategory(category), day(start), None, at(-60))


def negative(n: int, h: int = 9) -> NatFact:
    return NatFact(at(n, h), "negative", at(n, h) + dt.timedelta(hours=6))


def document() -> Document:
    """A fresh, mutable copy of the default rule set's document."""
    return copy.deepcopy(DEFAULT.document())


def rule(doc: Document, rule_id: str) -> Document:
    found: Document = next(r for r in doc["rules"] if r["id"] == rule_id)
    return found


def test_default_rule_set() -> None:
    assert DEFAULT.version == "gd-2021.3"
    assert DEFAULT.utc_offset_hours == 8
    assert DEFAULT.nat_display_hours == [24, 48, 72, 168]
    assert DEFAULT.reasons() == [
        "confirmed_case",
        "positive_nat",
        "suspected_case",
        "close_contact",
        "high_risk_area_arrival",
        "centralised_isolation",
        "home_isolation",
        "secondary_contact",
        "risk_city_arrival",
    ]
    assert {r.id: r.status for r in DEFAULT.rules} == {
        "confirmed": "red",
        "positive_test": "red",
        "suspected": "red",
        "close_contact": "red",
        "high_risk_arrival": "red",
        "centralised_isolation": "red",
        "home_isolation": "red",
        "secondary_contact": "yellow",
        "risk_city_arrival": "yellow",
    }


@pytest.mark.parametrize("language", LANGUAGES)
def test_default_rule_set_speaks_every_language(language: str) -> None:
    texts = [r.explain.text(language) for r in DEFAULT.rules]
    texts += [DEFAULT.explanations.green.text(language)]
    texts += [DEFAULT.explanations.override.text(language)]
    assert all(text.strip() for text in texts)
    assert len(set(texts)) == len(texts)


# Thresholds are parameters: change one in the document and the decisions follow.

Mutation = Callable[[Document], None]


def set_in(rule_id: str, *path: str, value: Any) -> Mutation:
    def mutate(doc: Document) -> None:
        target = rule(doc, rule_id)
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def set_top(key: str, value: Any) -> Mutation:
    def mutate(doc: Document) -> None:
        doc[key] = value

    return mutate


def drop_rule(rule_id: str) -> Mutation:
    def mutate(doc: Document) -> None:
        doc["rules"] = [r for r in doc["rules"] if r["id"] != rule_id]

    return mutate


RISK_CITY = Facts(
    travel=(TravelFact("440111", day(0), at(-60)),),
    risk_areas=(RiskArea("440106", "medium", day(-60), None),),
)
HIGH_RISK = Facts(
    travel=(TravelFact("440106", day(0), at(-60)),),
    risk_areas=(RiskArea("440106", "high", day(-60), None),),
)
SECONDARY = Facts(cases=(case("secondary_contact", 0),))


@pytest.mark.parametrize(
    ("mutation", "facts", "now", "default_status", "changed_status"),
    [
        pytest.param(
            set_in("close_contact", "when", "lasts_days", value=7),
            Facts(cases=(case("close_contact", 0),)),
            at(7),
            "red",
            "green",
            id="close-contact-7-days-day-after",
        ),
        pytest.param(
            set_in("close_contact", "when", "lasts_days", value=7),
            Facts(cases=(case("close_contact", 0),)),
            last(6),
            "red",
            "red",
            id="close-contact-7-days-last-day",
        ),
        pytest.param(
            set_in("close_contact", "when", "lasts_days", value=21),
            Facts(cases=(case("close_contact", 0),)),
            at(20),
            "green",
            "red",
            id="close-contact-21-days",
        ),
        pytest.param(
            set_in("secondary_contact", "when", "lasts_days", value=7),
            SECONDARY,
            at(7),
            "yellow",
            "green",
            id="secondary-contact-7-days",
        ),
        pytest.param(
            set_in("high_risk_arrival", "when", "lasts_days", value=7),
            HIGH_RISK,
            at(7),
            "red",
            "yellow",  # the risk-city yellow still holds its 14 days
            id="high-risk-7-days",
        ),
        pytest.param(
            set_in("risk_city_arrival", "when", "lasts_days", value=7),
            RISK_CITY,
            at(7),
            "yellow",
            "green",
            id="risk-city-7-days",
        ),
        pytest.param(
            set_in("secondary_contact", "clear_after", "negative_tests", value=3),
            Facts(cases=SECONDARY.cases, nats=(negative(0), negative(1))),
            at(2),
            "green",
            "yellow",
            id="three-tests-needed-two-done",
        ),
        pytest.param(
            set_in("secondary_contact", "clear_after", "negative_tests", value=3),
            Facts(cases=SECONDARY.cases, nats=(negative(0), negative(1), negative(2))),
            at(2, 12),
            "green",
            "green",
            id="three-tests-needed-three-done",
        ),
        pytest.param(
            set_in("secondary_contact", "clear_after", "negative_tests", value=1),
            Facts(cases=SECONDARY.cases, nats=(negative(0),)),
            at(1),
            "yellow",
            "green",
            id="one-test-needed",
        ),
        pytest.param(
            set_in("risk_city_arrival", "clear_after", "within_days", value=5),
            Facts(
                travel=RISK_CITY.travel,
                risk_areas=RISK_CITY.risk_areas,
                nats=(negative(1), negative(4, 23)),
            ),
            at(5),
            "yellow",
            "green",
            id="five-day-clearing-window",
        ),
        pytest.param(
            set_in("risk_city_arrival", "when", "levels", value=["high"]),
            RISK_CITY,
            at(1),
            "yellow",
            "green",
            id="medium-areas-no-longer-yellow",
        ),
        pytest.param(
            set_in("secondary_contact", "status", value="red"),
            SECONDARY,
            at(1),
            "yellow",
            "red",
            id="secondary-contact-red",
        ),
        pytest.param(
            drop_rule("suspected"),
            Facts(cases=(case("suspected", 0),)),
            at(1),
            "red",
            "green",
            id="rule-removed",
        ),
        pytest.param(
            set_top("utc_offset_hours", 0),
            Facts(cases=(case("close_contact", 0),)),
            # 05:00 on D+14 in UTC+8 is still D+13 in UTC, so the contact still holds there.
            at(14, 5),
            "green",
            "red",
            id="days-in-utc",
        ),
    ],
)
def test_thresholds_are_parameters(
    mutation: Mutation,
    facts: Facts,
    now: dt.datetime,
    default_status: Status,
    changed_status: Status,
) -> None:
    doc = document()
    mutation(doc)
    changed = parse_rule_set(doc)
    assert changed != DEFAULT
    assert evaluate(facts, now=now, rules=DEFAULT).status == default_status
    assert evaluate(facts, now=now, rules=changed).status == changed_status


@pytest.mark.parametrize(
    ("hours", "age", "within"),
    [
        pytest.param([12, 36], 12, 12, id="12h"),
        pytest.param([12, 36], 25, 36, id="25h"),
        pytest.param([12, 36], 37, None, id="37h"),
        pytest.param([24, 48, 72, 168, 336], 200, 336, id="14-days"),
    ],
)
def test_nat_display_hours_are_parameters(hours: list[int], age: int, within: int | None) -> None:
    doc = document()
    doc["nat_display_hours"] = hours
    rules = parse_rule_set(doc)
    now = at(10, 12)
    facts = Facts(nats=(NatFact(now - dt.timedelta(hours=age), "negative", now),))
    assert evaluate(facts, now=now, rules=rules).nat.negative_within_hours == within


def test_explanations_are_parameters() -> None:
    doc = document()
    rule(doc, "close_contact")["explain"]["en"] = "Close contact from {since} to {until}."
    rules = parse_rule_set(doc)
    decision = evaluate(Facts(cases=(case("close_contact", 0),)), now=at(1), rules=rules)
    assert explain(decision.findings, rules, "en") == [
        "Close contact from 2021-06-01 to 2021-06-14."
    ]


def test_version_is_reported() -> None:
    doc = document()
    doc["version"] = "gd-2021.2"
    decision = evaluate(Facts(), now=at(0), rules=parse_rule_set(doc))
    assert decision.rule_set_version == "gd-2021.2"


# Invalid rule sets are refused, every problem named.


def broken(mutation: Mutation) -> Document:
    doc = document()
    mutation(doc)
    return doc


def _unknown_field(doc: Document) -> None:
    rule(doc, "confirmed")["colour"] = "red"


def _unknown_top_level_field(doc: Document) -> None:
    doc["author"] = "someone"


def _unknown_fact(doc: Document) -> None:
    rule(doc, "confirmed")["when"]["fact"] = "weather"


def _unknown_category(doc: Document) -> None:
    rule(doc, "confirmed")["when"]["categories"] = ["zombie"]


def _missing_language(doc: Document) -> None:
    del rule(doc, "close_contact")["explain"]["pt"]


def _missing_green_language(doc: Document) -> None:
    del doc["explanations"]["green"]["zh-Hant"]


def _unknown_placeholder(doc: Document) -> None:
    rule(doc, "close_contact")["explain"]["en"] = "Close contact ({colour})."


def _travel_placeholder_in_case_rule(doc: Document) -> None:
    rule(doc, "confirmed")["explain"]["zh-Hans"] = "您到访了 {region_name}。"


def _clearing_placeholder_without_clearing(doc: Document) -> None:
    rule(doc, "close_contact")["explain"]["pt"] = "Testes: {tests_done}"


def _placeholder_in_green(doc: Document) -> None:
    doc["explanations"]["green"]["en"] = "Green since {since}."


def _unclosed_placeholder(doc: Document) -> None:
    rule(doc, "confirmed")["explain"]["en"] = "Confirmed on {since"


def _duplicate_id(doc: Document) -> None:
    rule(doc, "suspected")["id"] = "confirmed"


def _duplicate_reason(doc: Document) -> None:
    rule(doc, "suspected")["reason"] = "confirmed_case"


def _released_starts(doc: Document) -> None:
    rule(doc, "confirmed")["when"]["categories"] = ["confirmed", "released"]


def _hours(hours: list[int]) -> Mutation:
    return set_top("nat_display_hours", hours)


def _empty_rules(doc: Document) -> None:
    doc["rules"] = []


def _zero_days(doc: Document) -> None:
    rule(doc, "close_contact")["when"]["lasts_days"] = 0


def _travel_without_lapse(doc: Document) -> None:
    del rule(doc, "high_risk_arrival")["when"]["lasts_days"]


def _low_level(doc: Document) -> None:
    rule(doc, "risk_city_arrival")["when"]["levels"] = ["low"]


def _green_rule(doc: Document) -> None:
    rule(doc, "confirmed")["status"] = "green"


def _bad_reason(doc: Document) -> None:
    rule(doc, "confirmed")["reason"] = "Confirmed Case"


def _zero_tests(doc: Document) -> None:
    rule(doc, "secondary_contact")["clear_after"]["negative_tests"] = 0


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        pytest.param(broken(_unknown_field), "rules.0.colour", id="unknown-field"),
        pytest.param(broken(_unknown_top_level_field), "author", id="unknown-top-level-field"),
        pytest.param(broken(_unknown_fact), "'weather'", id="unknown-fact"),
        pytest.param(broken(_unknown_category), "rules.0.when.case.categories", id="category"),
        pytest.param(broken(_missing_language), "rules.3.explain.pt", id="missing-language"),
        pytest.param(
            broken(_missing_green_language),
            "explanations.green.zh-Hant",
            id="missing-green-language",
        ),
        pytest.param(
            broken(_unknown_placeholder),
            "rule close_contact: en: unknown placeholder(s) ['colour']",
            id="unknown-placeholder",
        ),
        pytest.param(
            broken(_travel_placeholder_in_case_rule),
            "rule confirmed: zh-Hans: unknown placeholder(s) ['region_name']",
            id="placeholder-of-another-fact",
        ),
        pytest.param(
            broken(_clearing_placeholder_without_clearing),
            "rule close_contact: pt: unknown placeholder(s) ['tests_done']",
            id="clearing-placeholder-without-clearing",
        ),
        pytest.param(
            broken(_placeholder_in_green),
            "explanations.green: en: unknown placeholder(s) ['since']",
            id="placeholder-in-green",
        ),
        pytest.param(broken(_unclosed_placeholder), "rule confirmed: en:", id="unclosed-brace"),
        pytest.param(
            broken(_duplicate_id), "rule ids must be unique: ['confirmed']", id="duplicate-id"
        ),
        pytest.param(
            broken(_duplicate_reason),
            "rule reasons must be unique: ['confirmed_case']",
            id="duplicate-reason",
        ),
        pytest.param(broken(_released_starts), "'released' ends episodes", id="released-starts"),
        pytest.param(broken(_hours([24, 24, 48])), "nat_display_hours", id="hours-repeated"),
        pytest.param(broken(_hours([48, 24])), "nat_display_hours", id="hours-decreasing"),
        pytest.param(broken(_hours([0, 24])), "nat_display_hours", id="hours-zero"),
        pytest.param(broken(_hours([])), "nat_display_hours", id="hours-empty"),
        pytest.param(broken(set_top("version", "gd 2021!")), "version", id="version-space"),
        pytest.param(broken(set_top("version", "../gd")), "version", id="version-path"),
        pytest.param(broken(set_top("version", "")), "version", id="version-empty"),
        pytest.param(broken(set_top("utc_offset_hours", 15)), "utc_offset_hours", id="offset"),
        pytest.param(broken(_empty_rules), "rules", id="empty-rules"),
        pytest.param(broken(_zero_days), "lasts_days", id="zero-days"),
        pytest.param(broken(_travel_without_lapse), "lasts_days", id="travel-without-lapse"),
        pytest.param(broken(_low_level), "levels", id="low-level-rule"),
        pytest.param(broken(_green_rule), "rules.0.status", id="green-rule"),
        pytest.param(broken(_bad_reason), "rules.0.reason", id="reason-slug"),
        pytest.param(broken(_zero_tests), "negative_tests", id="zero-tests"),
    ],
)
def test_invalid_rule_set(doc: Document, problem: str) -> None:
    with pytest.raises(RuleSetError) as raised:
        parse_rule_set(doc)
    assert any(problem in p for p in raised.value.problems), raised.value.problems
    assert str(raised.value).startswith("invalid rule set: ")


@pytest.mark.parametrize(
    ("text", "fmt", "problem"),
    [
        pytest.param('version = "gd-2021.1"\nrules = [', "toml", "not valid TOML", id="toml"),
        pytest.param(b"version = \xff", "toml", "not valid TOML", id="toml-not-utf8"),
        pytest.param('{"version": ', "json", "not valid JSON", id="json"),
        pytest.param("[1, 2]", "json", "table (object)", id="json-array"),
        pytest.param("", "json", "not valid JSON", id="json-empty"),
        pytest.param('version = "gd-2021.1"', "toml", "explanations", id="toml-incomplete"),
    ],
)
def test_unparseable_rule_set(text: str | bytes, fmt: str, problem: str) -> None:
    with pytest.raises(RuleSetError) as raised:
        parse_rule_set(text, fmt=fmt)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_every_problem_is_listed() -> None:
    doc = document()
    _duplicate_id(doc)
    doc["nat_display_hours"] = [48, 24]
    _unknown_placeholder(doc)
    with pytest.raises(RuleSetError) as raised:
        parse_rule_set(doc)
    message = " ".join(raised.value.problems)
    assert "rule ids must be unique" in message
    assert "nat_display_hours" in message
    assert "['colour']" in message


def test_every_field_problem_is_listed() -> None:
    doc = document()
    doc["version"] = "bad version"
    _unknown_field(doc)
    _missing_language(doc)
    with pytest.raises(RuleSetError) as raised:
        parse_rule_set(doc)
    assert sorted(p.split(":")[0] for p in raised.value.problems) == [
        "rules.0.colour",
        "rules.3.explain.pt",
        "version",
    ]


# The canonical JSON form.


def test_canonical_json_round_trips() -> None:
    text = DEFAULT.canonical_json()
    again = parse_rule_set(text, fmt="json")
    assert again == DEFAULT
    assert again.canonical_json() == text
    assert parse_rule_set(text.encode(), fmt="json") == DEFAULT


def test_canonical_json_round_trips_a_changed_rule_set() -> None:
    doc = document()
    del rule(doc, "secondary_contact")["clear_after"]["within_days"]
    rule(doc, "positive_test")["when"]["lasts_days"] = 28
    changed = parse_rule_set(doc)
    assert parse_rule_set(changed.canonical_json(), fmt="json") == changed
    assert changed.canonical_json() != DEFAULT.canonical_json()


def test_canonical_json_is_canonical() -> None:
    text = DEFAULT.canonical_json()
    assert text == json.dumps(
        json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert "粤康码" in text  # not escaped
    reordered = dict(reversed(list(DEFAULT.document().items())))
    assert parse_rule_set(reordered).canonical_json() == text


def test_rule_set_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid rule set"):
        parse_rule_set(broken(_empty_rules))


def test_a_rule_cannot_take_the_override_id() -> None:
    doc = document()
    rule(doc, "confirmed")["id"] = "override"
    with pytest.raises(RuleSetError) as refused:
        parse_rule_set(doc)
    assert any("'override' is reserved" in p for p in refused.value.problems)


@pytest.mark.parametrize(
    "template",
    ["{}", "{0}", "{since:%Y}", "{since!r}", "{since:>999999999}", "{since.year}", "{x[0]}"],
)
def test_explanations_take_plain_placeholders_only(template: str) -> None:
    # Each of these would fail, or allocate without bound, when a resident opens their status.
    doc = document()
    rule(doc, "close_contact")["explain"]["en"] = f"Close contact {template}"
    with pytest.raises(RuleSetError) as refused:
        parse_rule_set(doc)
    assert any("plain names" in p for p in refused.value.problems)


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_a_document_nested_without_end_is_refused_not_crashed(fmt: str) -> None:
    text = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RuleSetError):
        parse_rule_set(text if fmt == "json" else f"a = {text}", fmt=fmt)


def test_exchange_terms_are_looked_up_by_partner() -> None:
    rules = default_rule_set()
    macao = rules.exchange.terms("macao")
    assert macao is not None
    assert macao.mapping == "gd-mo-2020"
    assert rules.exchange.terms("hongkong") is None
    assert rules.exchange.terms("model_fields") is None


def test_a_partner_added_later_gets_its_terms_from_the_rule_set() -> None:
    document = default_rule_set().model_dump(mode="json")
    document["exchange"]["hongkong"] = {
        "mapping": "gd-hk-2022",
        "home_regions": ["44", "81"],
        "inbound": {"nat_window_hours": 72},
    }

    rules = parse_rule_set(document)

    terms = rules.exchange.terms("hongkong")
    assert terms is not None
    assert (terms.mapping, terms.inbound.nat_window_hours) == ("gd-hk-2022", 72)
    assert terms.outbound.nat_window_hours == 168  # what is not given has its default
    document["exchange"]["Hong Kong"] = document["exchange"].pop("hongkong")
    with pytest.raises(RuleSetError):
        parse_rule_set(document)
