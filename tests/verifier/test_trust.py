"""The checkpoint's trust store: a pinned anchor, bundles that only move forward, and verdicts
that say so when the device cannot be trusted to judge."""

from __future__ import annotations

import dataclasses

import pytest

from codec.forge import EXP, IAT, ISSUER, JTI, NOW, Trust, flip_char, valid
from yuekang.codec.bundle import (
    BadBundleSignature,
    BundleKey,
    TrustBundle,
    bucket,
    sign_bundle,
)
from yuekang.codec.keys import SigningKey
from yuekang.verifier import TrustStore, Verdict
from yuekang.verifier.trust import BundleRollback, DeltaMismatch, OtherIssuer

DAY = 86_400
ISSUED = IAT - 3600
GRACE = 3 * DAY


@pytest.fixture(scope="module")
def anchor() -> SigningKey:
    return SigningKey.generate("ES256")


def bundle(trust: Trust, version: int = 1, **changes: object) -> TrustBundle:
    base = TrustBundle(
        issuer=ISSUER,
        version=version,
        issued_at=ISSUED,
        expires_at=ISSUED + DAY,
        grace=GRACE,
        keys=(BundleKey(trust.es.public(), "active", IAT - 30 * DAY, IAT + 60 * DAY),),
        revoked={},
        policies={},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def store(anchor: SigningKey, trust: Trust, **changes: object) -> TrustStore:
    return TrustStore(anchor.public()).load(sign_bundle(bundle(trust, **changes), anchor), now=NOW)


def reasons(verdict: Verdict) -> list[str]:
    return [r.value for r in verdict.reasons]


def test_a_fresh_store_judges_codes(anchor: SigningKey, trust: Trust) -> None:
    held = store(anchor, trust)
    assert held.freshness(NOW) == "fresh"
    assert held.verify(valid(trust.es), now=NOW).valid
    assert reasons(held.verify(valid(trust.attacker), now=NOW)) == ["unknown_key"]
    assert reasons(held.verify(valid(trust.es, iat=IAT - 7200, exp=IAT - 300), now=NOW)) == [
        "expired"
    ]


def test_revoked_codes_are_refused_offline(anchor: SigningKey, trust: Trust) -> None:
    held = store(anchor, trust, revoked={bucket(EXP): frozenset({JTI})})
    verdict = held.verify(valid(trust.es), now=NOW)
    assert verdict.verdict == "invalid"
    assert reasons(verdict) == ["revoked"]
    assert verdict.masked_name is not None  # still shown, so the gate knows whose code it was


def test_no_bundle_means_cannot_verify(anchor: SigningKey, trust: Trust) -> None:
    verdict = TrustStore(anchor.public()).verify(valid(trust.es), now=NOW)
    assert (verdict.verdict, reasons(verdict)) == ("cannot_verify", ["no_trust"])


def test_a_tampered_bundle_is_refused_and_the_store_is_unchanged(
    anchor: SigningKey, trust: Trust
) -> None:
    held = store(anchor, trust)
    revoking = sign_bundle(bundle(trust, 2, revoked={bucket(EXP): frozenset({JTI})}), anchor)
    with pytest.raises(BadBundleSignature):
        held.load(flip_char(revoking, len(revoking) // 2), now=NOW)
    with pytest.raises(BadBundleSignature):
        held.load(sign_bundle(bundle(trust, 2), SigningKey.generate("ES256")), now=NOW)
    assert held.bundle is not None and held.bundle.version == 1


def test_an_older_bundle_is_a_rollback(anchor: SigningKey, trust: Trust) -> None:
    newer = store(anchor, trust, version=5, revoked={bucket(EXP): frozenset({JTI})})
    older = sign_bundle(bundle(trust, 4), anchor)  # signed genuinely, but it un-revokes JTI
    # What `yuekang checkpoint sync` prints when it refuses the older bundle.
    with pytest.raises(BundleRollback, match=r"^bundle version 4 is older than the 5 held$"):
        newer.load(older, now=NOW)
    assert reasons(newer.verify(valid(trust.es), now=NOW)) == ["revoked"]
    assert newer.load(sign_bundle(bundle(trust, 5), anchor), now=NOW) is newer


def test_a_bundle_of_another_issuer_is_refused(anchor: SigningKey, trust: Trust) -> None:
    with pytest.raises(OtherIssuer, match=r"^the bundle is for 'yk:mo', not 'yk:gd'$"):
        store(anchor, trust).load(sign_bundle(bundle(trust, 2, issuer="yk:mo"), anchor), now=NOW)


@pytest.mark.parametrize(
    ("now", "freshness", "verdict", "expected"),
    [
        (ISSUED + DAY, "fresh", "valid", []),
        (ISSUED + DAY + 1, "stale", "valid", []),
        (ISSUED + DAY + GRACE, "stale", "valid", []),
        (ISSUED + DAY + GRACE + 1, "expired", "cannot_verify", ["trust_expired"]),
        (ISSUED - 121, "wrong_clock", "cannot_verify", ["wrong_clock"]),
        (ISSUED - 120, "fresh", None, None),
    ],
)
def test_freshness_decides_what_a_verdict_can_say(
    anchor: SigningKey,
    trust: Trust,
    now: int,
    freshness: str,
    verdict: str | None,
    expected: list[str] | None,
) -> None:
    held = store(anchor, trust)
    code = valid(trust.es, iat=now - 60, exp=now + 3600)
    assert held.freshness(now) == freshness
    judged = held.verify(code, now=now)
    if verdict is not None:
        assert (judged.verdict, reasons(judged)) == (verdict, expected)
    warned = [w.value for w in judged.warnings]
    assert warned == (["trust_stale"] if freshness == "stale" else [])


def test_a_key_rotation_after_the_last_sync_still_verifies(
    anchor: SigningKey, trust: Trust
) -> None:
    # The checkpoint synced while the new key was only published (pending); the issuer then
    # activated it and signs with it. The checkpoint, offline since, must accept those codes.
    pending = BundleKey(trust.ed.public(), "pending", IAT, IAT + 90 * DAY)
    old = BundleKey(trust.es.public(), "active", IAT - 30 * DAY, IAT + 60 * DAY)
    held = store(anchor, trust, keys=(old, pending))
    after_rotation = valid(trust.ed, iat=IAT + 600, exp=IAT + 4200)
    assert held.verify(after_rotation, now=IAT + 700).valid
    # ... but not a code the new key claims to have signed before its window opened.
    early = valid(trust.ed, iat=IAT - 3600, exp=IAT)
    assert reasons(held.verify(early, now=IAT - 3500)) == ["key_not_valid"]


def test_a_key_withdrawn_as_compromised_verifies_nothing(anchor: SigningKey, trust: Trust) -> None:
    held = store(anchor, trust)
    assert held.verify(valid(trust.es), now=NOW).valid
    # The next bundle simply no longer lists it.
    ed_only = (BundleKey(trust.ed.public(), "active", IAT - DAY, IAT + DAY),)
    after = held.load(sign_bundle(bundle(trust, 2, keys=ed_only), anchor), now=NOW)
    assert reasons(after.verify(valid(trust.es), now=NOW)) == ["unknown_key"]


def test_a_delta_adds_revocations_on_top_of_its_base(anchor: SigningKey, trust: Trust) -> None:
    other = "b3RoZXItY29kZS1pZC0xMg"
    held = store(anchor, trust, version=3, revoked={bucket(EXP): frozenset({other})})
    delta = bundle(trust, 4, base=3, revoked={bucket(EXP): frozenset({JTI})})
    updated = held.load(sign_bundle(delta, anchor), now=NOW)
    assert updated.revoked == {other, JTI}
    assert updated.bundle is not None and updated.bundle.version == 4
    with pytest.raises(
        DeltaMismatch, match=r"^a delta from version 3 needs that version; held: 2$"
    ):
        store(anchor, trust, version=2).load(sign_bundle(delta, anchor), now=NOW)
    with pytest.raises(
        DeltaMismatch, match=r"^a delta from version 3 needs that version; held: none$"
    ):
        TrustStore(anchor.public()).load(sign_bundle(delta, anchor), now=NOW)


def test_a_store_keeps_its_leeway_across_syncs(anchor: SigningKey, trust: Trust) -> None:
    # A device configured for exact clocks stays so after each bundle it loads.
    strict = TrustStore(anchor.public(), leeway=0).load(sign_bundle(bundle(trust), anchor), now=NOW)
    expired_a_second_ago = valid(trust.es, exp=NOW - 1)

    assert reasons(strict.verify(expired_a_second_ago, now=NOW)) == ["expired"]
    assert store(anchor, trust).verify(expired_a_second_ago, now=NOW).valid


def test_revocations_of_codes_long_expired_are_dropped(anchor: SigningKey, trust: Trust) -> None:
    old_hour = bucket(IAT - 2 * 3600)
    held = store(anchor, trust, revoked={old_hour: frozenset({JTI}), bucket(EXP): frozenset()})
    assert held.revoked == frozenset()


def test_a_code_revoked_a_minute_before_its_expiry_stays_revoked(
    anchor: SigningKey, trust: Trust
) -> None:
    # Entries of hours that have passed are pruned when a bundle loads -- past ones only, with
    # the clock leeway on the safe side: an entry whose hour is about to end still counts.
    until = bucket(EXP)
    now = until - 60
    code = valid(trust.es, iat=until - 3000, exp=until)
    loaded = TrustStore(anchor.public()).load(
        sign_bundle(
            bundle(
                trust, issued_at=now - 600, expires_at=now + DAY, revoked={until: frozenset({JTI})}
            ),
            anchor,
        ),
        now=now,
    )
    assert reasons(loaded.verify(code, now=now)) == ["revoked"]


def test_a_delta_brings_revocations_of_an_hour_its_base_did_not_have(
    anchor: SigningKey, trust: Trust
) -> None:
    held = store(anchor, trust, version=3)
    later = bucket(EXP) + 3600
    delta = bundle(trust, 4, base=3, revoked={later: frozenset({JTI})})
    updated = held.load(sign_bundle(delta, anchor), now=NOW)
    assert updated.revoked == {JTI}
    assert updated.bundle is not None and updated.bundle.base is None


def test_revocations_are_kept_until_their_hour_plus_the_leeway_has_passed(
    anchor: SigningKey, trust: Trust
) -> None:
    until = bucket(EXP)

    def kept(now: int) -> bool:
        revoked = {until: frozenset({JTI})}
        loaded = TrustStore(anchor.public()).load(
            sign_bundle(
                bundle(trust, issued_at=now - 600, expires_at=now + DAY, revoked=revoked), anchor
            ),
            now=now,
        )
        return JTI in loaded.revoked

    leeway = TrustStore(anchor.public()).leeway
    assert [kept(until + leeway - 1), kept(until + leeway)] == [True, False]
