"""Checkpoint policies, one table: what each kind of place says to each kind of verified code."""

from __future__ import annotations

import copy

import pytest

from yuekang.rules import RuleSetError
from yuekang.rules.policy import decide, default_policies, parse_policies

POLICIES = default_policies()


@pytest.mark.parametrize(
    ("place", "status", "nat", "assurance", "verdict", "reason"),
    [
        ("venue", "green", None, "proofed", "allow", "green"),
        ("venue", "green", None, None, "allow", "green"),
        ("venue", "yellow", 24, "proofed", "deny", "not_green"),
        ("venue", "red", 24, "proofed", "deny", "not_green"),
        ("transport", "green", None, "dependant", "allow", "green"),
        ("transport", "yellow", None, "proofed", "manual_check", "yellow"),
        ("transport", "red", None, "proofed", "deny", "not_green"),
        ("border", "green", 24, "proofed", "allow", "green_with_recent_test"),
        ("border", "green", 48, "proofed", "allow", "green_with_recent_test"),
        ("border", "green", 48, "counter", "allow", "green_with_recent_test"),
        ("border", "green", 48, "partner", "allow", "green_with_recent_test"),
        # A family member's code, or one from before proofing: an officer checks the document.
        ("border", "green", 48, "dependant", "manual_check", "identity_check"),
        ("border", "green", 48, None, "manual_check", "identity_check"),
        ("border", "green", 72, "proofed", "deny", "no_recent_test"),
        ("border", "green", None, "proofed", "deny", "no_recent_test"),
        ("border", "yellow", 24, "proofed", "deny", "not_green"),
        ("border", "red", 24, "proofed", "deny", "not_green"),
    ],
)
def test_default_policies(
    place: str, status: str, nat: int | None, assurance: str | None, verdict: str, reason: str
):
    decision = decide(
        POLICIES.for_place(place),  # type: ignore[arg-type]
        status=status,
        negative_within_hours=nat,
        doses=None,
        assurance=assurance,
    )
    assert (decision.verdict, decision.reason) == (verdict, reason)


def test_the_border_window_is_a_parameter() -> None:
    # The seven-day rule of some periods: change one number.
    document = copy.deepcopy(POLICIES.document())
    document["border"]["clauses"][0]["when"]["negative_test_within_hours"] = 168
    seven_days = parse_policies(document).border
    assert decide(
        seven_days, status="green", negative_within_hours=168, doses=None, assurance="proofed"
    ).verdict == ("allow")


def test_a_dose_condition() -> None:
    document = copy.deepcopy(POLICIES.document())
    document["venue"]["clauses"][0]["when"]["min_doses"] = 2
    venue = parse_policies(document).venue
    assert decide(venue, status="green", negative_within_hours=None, doses=1).verdict == "deny"
    assert decide(venue, status="green", negative_within_hours=None, doses=3).verdict == "allow"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["venue"]["clauses"][0].update(verdict="maybe"), "verdict"),
        (lambda d: d.pop("border"), "border"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(status=["blue"]), "status"),
        (lambda d: d["venue"].update(extra=1), "extra"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(assurance=["trusted"]), "assurance"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(assurance=[]), "assurance"),
    ],
)
def test_invalid_policies_are_refused_with_the_problem(change, problem: str) -> None:
    document = copy.deepcopy(POLICIES.document())
    change(document)
    with pytest.raises(RuleSetError) as refused:
        parse_policies(document)
    assert any(problem in p for p in refused.value.problems)
