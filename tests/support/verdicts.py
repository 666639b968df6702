"""How a row of the shared verdict table (``tests/vectors/verdicts.json``) is answered by the
Python verifier: written once for the generator (``tests/vectors/make_verdicts.py``) and the test
that holds the verifier to the table (``tests/verifier/test_vectors.py``)."""

from __future__ import annotations

from typing import Any

from yuekang.codec.bundle import BadBundleSignature, BundleError, MalformedBundle
from yuekang.codec.keys import VerificationKey
from yuekang.rules.policy import as_place_kind
from yuekang.rules.ruleset import RuleSetError
from yuekang.verifier import TrustStore, policy_decision
from yuekang.verifier.trust import BundleRollback, DeltaMismatch, OtherIssuer

LOAD_ERRORS: dict[type[BundleError], str] = {
    BadBundleSignature: "bad_signature",
    MalformedBundle: "malformed",
    BundleRollback: "rollback",
    DeltaMismatch: "delta_mismatch",
    OtherIssuer: "other_issuer",
}


def trust_store(anchor: dict[str, Any], texts: list[str], now: int) -> TrustStore:
    """A store pinned to the ``anchor`` JWK with the bundle ``texts`` loaded in order at ``now``,
    as a checkpoint loads them at start-up."""
    store = TrustStore(VerificationKey.from_jwk(anchor))
    for text in texts:
        store = store.load(text, now=now)
    return store


def judge(store: TrustStore, code: str, now: int, place: str) -> dict[str, Any]:
    """What a checkpoint answers for ``code`` at ``place``: the verdict and the decision, the
    CLI's way (``cannot_verify`` with the first reason when the store cannot judge, and with
    ``bad_policy`` when the bundle's policies do not validate: signed, but by a server of another
    version, so the device decides nothing -- the CLI exits 4, the page says so)."""
    verdict = store.verify(code, now=now)
    if verdict.verdict == "cannot_verify":
        decision, decision_reason = "cannot_verify", verdict.reasons[0].value
    else:
        try:
            outcome = policy_decision(verdict, store.policy(as_place_kind(place)))
        except RuleSetError:
            decision, decision_reason = "cannot_verify", "bad_policy"
        else:
            decision, decision_reason = outcome.verdict, outcome.reason
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
        "source": verdict.to_dict()["source"],
        "assurance": verdict.to_dict()["assurance"],
        "decision": decision,
        "decision_reason": decision_reason,
    }


def load_outcome(anchor: dict[str, Any], texts: list[str], now: int) -> dict[str, Any]:
    """What loading ``texts`` in order comes to: the error's name, or the version and the number
    of revoked codes the store ends with."""
    try:
        store = trust_store(anchor, texts, now)
    except BundleError as exc:
        return {"error": LOAD_ERRORS[type(exc)], "version": None, "revoked": None}
    assert store.bundle is not None
    return {"error": None, "version": store.bundle.version, "revoked": len(store.revoked)}
