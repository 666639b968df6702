"""The shared verdict table (``tests/vectors/verdicts.json``) against the Python verifier.

The browser scanner's ``verify.js`` is held to the same table in ``tests/web/
test_verify_vectors.py``: one table, two implementations, the same answers. Regenerate the table
with ``.venv/bin/python tests/vectors/make_verdicts.py`` when the verifier changes on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from yuekang.codec.bundle import BadBundleSignature, BundleError, MalformedBundle
from yuekang.codec.keys import VerificationKey
from yuekang.verifier import TrustStore, policy_decision
from yuekang.verifier.trust import BundleRollback, DeltaMismatch, OtherIssuer

TABLE: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "verdicts.json").read_text(encoding="utf-8")
)
ERRORS: dict[type[BundleError], str] = {
    BadBundleSignature: "bad_signature",
    MalformedBundle: "malformed",
    BundleRollback: "rollback",
    DeltaMismatch: "delta_mismatch",
    OtherIssuer: "other_issuer",
}


def _store(anchor: str, bundles: list[str], now: int) -> TrustStore:
    store = TrustStore(VerificationKey.from_jwk(TABLE["anchors"][anchor]))
    for name in bundles:
        store = store.load(TABLE["bundles"][name], now=now)
    return store


def judge(case: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint answers for ``case``: the verdict and the place's decision."""
    now = case["now"]
    store = _store(case["anchor"], case["bundles"], now)
    verdict = store.verify(case["code"], now=now)
    if verdict.verdict == "cannot_verify":
        decision, decision_reason = "cannot_verify", verdict.reasons[0].value
    else:
        outcome = policy_decision(verdict, store.policy(case["place"]))
        decision, decision_reason = outcome.verdict, outcome.reason
    document = verdict.to_dict()
    return {
        "verdict": verdict.verdict,
        "reasons": [r.value for r in verdict.reasons],
        "warnings": [w.value for w in verdict.warnings],
        "status": verdict.status,
        "code_id": verdict.code_id,
        "issuer": verdict.issuer,
        "kid": verdict.kid,
        "masked_name": verdict.masked_name,
        "issued_at": verdict.issued_at,
        "expires_at": verdict.expires_at,
        "origin": verdict.origin,
        "source": document["source"],
        "decision": decision,
        "decision_reason": decision_reason,
    }


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_the_python_verifier_gives_the_tables_answer(case: dict[str, Any]) -> None:
    assert judge(case) == case["expect"]


@pytest.mark.parametrize("load", TABLE["loads"], ids=[c["name"] for c in TABLE["loads"]])
def test_the_python_trust_store_loads_bundles_as_the_table_says(load: dict[str, Any]) -> None:
    try:
        store = _store(load["anchor"], load["bundles"], load["now"])
    except BundleError as exc:
        outcome = {"error": ERRORS[type(exc)], "version": None, "revoked": None}
    else:
        assert store.bundle is not None
        outcome = {"error": None, "version": store.bundle.version, "revoked": len(store.revoked)}
    assert outcome == load["expect"]


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
    assert {load["expect"]["error"] for load in TABLE["loads"]} == {None, *ERRORS.values()}
