"""An online scan records the decision of its checkpoint's kind, decided for every kind before
the kind is read; those decisions are remembered by the facts they depend on. They must be the
ones each place's policy gives, for every combination of facts."""

from __future__ import annotations

import itertools

from yuekang.checkpoints.service import apply_policy, decisions_everywhere
from yuekang.codec.reasons import Reason
from yuekang.rules.policy import PLACE_KINDS
from yuekang.verifier import Verdict


def test_the_remembered_decisions_are_each_places_own():
    facts = itertools.product(
        ("green", "yellow", "red"),
        (None, 0, 24, 47, 48, 49, 72, 200),
        (None, 0, 1, 2, 3),
        (None, "unverified", "verified", "counter", "guardian", "partner"),
    )
    seen = set()
    for status, hours, doses, assurance in facts:
        verdict = Verdict(
            "valid", status=status, negative_within_hours=hours, doses=doses, assurance=assurance
        )
        everywhere = decisions_everywhere(verdict)
        for kind in PLACE_KINDS:
            assert everywhere[kind] == apply_policy(verdict, kind=kind), (verdict, kind)
            seen.add(everywhere[kind].verdict)
    assert seen == {"allow", "deny", "manual_check"}  # the grid reaches every decision


def test_a_code_that_is_not_valid_is_denied_everywhere_with_its_reason():
    for verdict in (
        Verdict("invalid", (Reason.REVOKED,)),
        Verdict("cannot_verify", (Reason.NO_TRUST,)),
    ):
        everywhere = decisions_everywhere(verdict)
        for kind in PLACE_KINDS:
            assert everywhere[kind] == apply_policy(verdict, kind=kind)
            assert everywhere[kind].verdict == "deny"
