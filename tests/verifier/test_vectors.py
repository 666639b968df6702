"""The shared verdict table (``tests/vectors/verdicts.json``) against the Python verifier.

The browser scanner's ``verify.js`` is held to the same table in ``tests/web/
test_verify_vectors.py``: one table, two implementations, the same answers. Regenerate the table
with ``.venv/bin/python tests/vectors/make_verdicts.py`` when the verifier changes on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.verdicts import LOAD_ERRORS, judge, load_outcome, trust_store
from yuekang.rules.policy import decide, parse_policies
from yuekang.rules.ruleset import RuleSetError

TABLE: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "verdicts.json").read_text(encoding="utf-8")
)


def _texts(names: list[str]) -> list[str]:
    return [TABLE["bundles"][name] for name in names]


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_the_python_verifier_gives_the_tables_answer(case: dict[str, Any]) -> None:
    store = trust_store(TABLE["anchors"][case["anchor"]], _texts(case["bundles"]), case["now"])
    assert judge(store, case["code"], case["now"], case["place"]) == case["expect"]


@pytest.mark.parametrize("load", TABLE["loads"], ids=[c["name"] for c in TABLE["loads"]])
def test_the_python_trust_store_loads_bundles_as_the_table_says(load: dict[str, Any]) -> None:
    anchor = TABLE["anchors"][load["anchor"]]
    assert load_outcome(anchor, _texts(load["bundles"]), load["now"]) == load["expect"]


@pytest.mark.parametrize("row", TABLE["policies"], ids=[r["name"] for r in TABLE["policies"]])
def test_python_validates_and_decides_policies_as_the_table_says(row: dict[str, Any]) -> None:
    try:
        policy = parse_policies(row["document"]).for_place(row["place"])
    except RuleSetError:
        assert row["expect"] == {"error": True, "decisions": None}
        return
    decisions = [decide(policy, **facts) for facts in TABLE["policy_facts"]]
    assert row["expect"] == {
        "error": False,
        "decisions": [{"verdict": d.verdict, "reason": d.reason} for d in decisions],
    }


def test_the_table_covers_what_a_checkpoint_meets() -> None:
    seen = {reason for case in TABLE["cases"] for reason in case["expect"]["reasons"]}
    seen |= {w for case in TABLE["cases"] for w in case["expect"]["warnings"]}
    decisions = {case["expect"]["decision"] for case in TABLE["cases"]}
    assert seen == {
        "malformed", "unsupported_version", "unknown_key", "algorithm_not_allowed",
        "bad_signature", "expired", "not_yet_valid", "revoked", "untrusted_issuer",
        "key_not_valid", "trust_stale", "trust_expired", "wrong_clock", "no_trust",
    }  # fmt: skip
    assert decisions == {"allow", "deny", "manual_check", "cannot_verify"}
    # Every identity assurance a code can carry, and none, reaches a verdict and a border.
    assurances = {case["expect"]["assurance"] for case in TABLE["cases"]}
    assert assurances == {"proofed", "counter", "dependant", "partner", None}
    at_border = {
        (case["expect"]["assurance"], case["expect"]["decision_reason"])
        for case in TABLE["cases"]
        if case["place"] == "border" and case["bundles"] == ["v5"]
    }
    assert {
        ("proofed", "green_with_recent_test"), ("counter", "green_with_recent_test"),
        ("partner", "green_with_recent_test"), ("dependant", "identity_check"),
        (None, "identity_check"),
    } <= at_border  # fmt: skip
    assert {case["expect"]["decision_reason"] for case in TABLE["cases"]} >= {"bad_policy"}
    assert {row["expect"]["error"] for row in TABLE["policies"]} == {True, False}
    assert {load["expect"]["error"] for load in TABLE["loads"]} == {None, *LOAD_ERRORS.values()}
