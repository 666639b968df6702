"""Checkpoint policies, one table: what each kind of place says to each kind of verified code."""

from __future__ import annotations

import copy
import json

import pytest

from yuekang.rules import RuleSetError
from yuekang.rules.policy import as_place_kind, decide, default_policies, parse_policies

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

    def verdict(doses: int | None) -> str:
        return decide(venue, status="green", negative_within_hours=None, doses=doses).verdict

    # Exactly the doses asked for pass; one fewer, or a code without a dose claim, do not.
    assert [verdict(d) for d in (None, 0, 1, 2, 3)] == ["deny", "deny", "deny", "allow", "allow"]
    document["venue"]["clauses"][0]["when"]["min_doses"] = 1
    one_dose = parse_policies(document).venue
    assert decide(one_dose, status="green", negative_within_hours=None, doses=None).verdict == (
        "deny"
    )


def test_a_test_window_is_inclusive_and_needs_a_test() -> None:
    border = POLICIES.border
    outcomes = [
        decide(border, status="green", negative_within_hours=h, doses=None, assurance="proofed")
        for h in (None, 24, 48, 72)
    ]
    assert [o.verdict for o in outcomes] == ["deny", "allow", "allow", "deny"]


@pytest.mark.parametrize("kind", ["venue", "transport", "border"])
def test_a_kind_of_place_is_one_of_three(kind: str) -> None:
    assert as_place_kind(kind) == kind
    assert POLICIES.for_place(as_place_kind(kind)) is getattr(POLICIES, kind)


@pytest.mark.parametrize("kind", ["Venue", "airport", "", "border "])
def test_an_unknown_kind_of_place_is_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown kind of place"):
        as_place_kind(kind)


def test_policies_that_are_not_toml_are_refused() -> None:
    with pytest.raises(RuleSetError) as refused:
        parse_policies('version = "x"\n[venue')
    assert any("not valid TOML" in p for p in refused.value.problems)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d["venue"]["clauses"][0].update(verdict="maybe"), "verdict"),
        (lambda d: d.pop("border"), "border"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(status=["blue"]), "status"),
        (lambda d: d["venue"].update(extra=1), "extra"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(assurance=["trusted"]), "assurance"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(assurance=[]), "assurance"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(status=[]), "status"),
        (
            lambda d: d["venue"]["clauses"][0]["when"].update(negative_test_within_hours=0),
            "negative_test_within_hours",
        ),
        (
            lambda d: d["venue"]["clauses"][0]["when"].update(negative_test_within_hours=721),
            "negative_test_within_hours",
        ),
        (lambda d: d["venue"]["clauses"][0]["when"].update(min_doses=0), "min_doses"),
        (lambda d: d["venue"]["clauses"][0]["when"].update(min_doses=11), "min_doses"),
        (lambda d: d["venue"]["clauses"][0].update(reason="Not-A-Code"), "reason"),
        (lambda d: d["venue"]["default"].update(reason="x"), "reason"),
        (lambda d: d["venue"].update(clauses=d["venue"]["clauses"] * 51), "clauses"),
        (lambda d: d["venue"].update(description="x" * 301), "description"),
        (lambda d: d.update(version="with spaces"), "version"),
    ],
)
def test_invalid_policies_are_refused_with_the_problem(change, problem: str) -> None:
    document = copy.deepcopy(POLICIES.document())
    change(document)
    with pytest.raises(RuleSetError) as refused:
        parse_policies(document)
    assert any(problem in p for p in refused.value.problems)


def test_a_refused_policy_names_where_the_problem_is() -> None:
    document = copy.deepcopy(POLICIES.document())
    document["venue"]["clauses"][0]["verdict"] = "maybe"
    with pytest.raises(RuleSetError) as refused:
        parse_policies(document)
    assert [p.split(":")[0] for p in refused.value.problems] == ["venue.clauses.0.verdict"]


def test_the_document_checkpoints_receive_holds_only_what_was_written() -> None:
    # Conditions left out stay out (no nulls for a device to misread), and it reads back as it was.
    document = POLICIES.document()
    assert document["venue"]["clauses"][0] == {
        "when": {"status": ["green"]},
        "verdict": "allow",
        "reason": "green",
    }
    assert "null" not in json.dumps(document)
    assert parse_policies(json.loads(json.dumps(document))) == POLICIES
