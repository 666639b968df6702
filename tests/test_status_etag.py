"""The status page's ETag is made from the answer's inputs, not from the answer
(health_status.endpoints.status_etag), so that a 304 costs less than a 200. It must still change
whenever the answer does: every input varied on its own, and the clock moving a test's display
bucket."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from yuekang.health_status.endpoints import status_answer, status_etag
from yuekang.rules.ruleset import default_rule_set

NOW = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True)
class Facts:
    status: str = "green"
    reason_codes: list[str] = dataclasses.field(default_factory=list)
    findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    valid_until: dt.datetime | None = NOW + dt.timedelta(days=1)
    updated_at: dt.datetime = NOW - dt.timedelta(hours=1)
    rule_set_version: str | None = None
    nat_sampled_at: dt.datetime | None = NOW - dt.timedelta(hours=10)
    nat_result: str | None = "negative"
    vaccine_doses: int = 2
    vaccinated_on: dt.date | None = dt.date(2021, 6, 1)


CONTACT = {
    "rule": "close-contact",
    "reason": "close_contact",
    "status": "red",
    "since": (NOW - dt.timedelta(days=2)).isoformat(),
    "until": (NOW + dt.timedelta(days=12)).isoformat(),
    "params": {},
}

VARIANTS = {
    "status": "yellow",
    "reason_codes": ["close_contact"],
    "findings": [CONTACT],
    "valid_until": NOW + dt.timedelta(days=2),
    "updated_at": NOW - dt.timedelta(minutes=5),
    "rule_set_version": "another",
    "nat_sampled_at": NOW - dt.timedelta(hours=30),
    "nat_result": "positive",
    "vaccine_doses": 3,
    "vaccinated_on": dt.date(2022, 1, 1),
}


def both(facts: Facts, **given: Any) -> tuple[str, str]:
    arguments: dict[str, Any] = {
        "rules": default_rule_set(),
        "language": "zh-Hans",
        "now": NOW,
        "hotline": None,
        **given,
    }
    answer = status_answer(facts, **arguments).model_dump_json()  # type: ignore[arg-type]
    return answer, status_etag(facts, **arguments)  # type: ignore[arg-type]


def test_every_field_of_the_answer_is_covered():
    assert set(VARIANTS) == {f.name for f in dataclasses.fields(Facts)}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_change_of_any_fact_changes_the_tag_with_the_answer(name: str):
    base = Facts()
    changed = dataclasses.replace(base, **{name: VARIANTS[name]})
    answer, etag = both(base)
    other_answer, other_etag = both(changed)
    assert other_answer != answer  # the fact shows in the answer...
    assert other_etag != etag  # ...and so in the tag


@pytest.mark.parametrize(
    "given",
    [{"language": "en"}, {"hotline": "12320"}, {"now": NOW + dt.timedelta(hours=20)}],
    ids=["language", "hotline", "clock moving the test's bucket"],
)
def test_the_language_the_hotline_and_the_clock_change_the_tag_with_the_answer(
    given: dict[str, Any],
):
    answer, etag = both(Facts())
    other_answer, other_etag = both(Facts(), **given)
    assert other_answer != answer
    assert other_etag != etag


def test_the_clock_within_a_bucket_keeps_the_tag():
    # The answer is the same a minute later: a poll gets its 304.
    assert both(Facts()) == both(Facts(), now=NOW + dt.timedelta(minutes=1))


def test_rules_of_the_same_version_with_other_texts_change_the_tag_with_the_answer():
    rules = default_rule_set()
    document = rules.document()
    document["explanations"]["green"] = {
        language: "Other words." for language in document["explanations"]["green"]
    }
    reworded = type(rules).model_validate(document)
    assert reworded.version == rules.version
    answer, etag = both(Facts(), rules=rules)
    other_answer, other_etag = both(Facts(), rules=reworded)
    assert other_answer != answer
    assert other_etag != etag
