"""Write ``verdicts.json``: one table of verdicts that every verifier of ours must give.

Run it with the project's Python (``.venv/bin/python tests/vectors/make_verdicts.py``) to
regenerate the table; the file is committed. Keys are fixed (the codec tests' golden keys and
more fixed scalars) so the keys, key ids and bundle payloads are the same every run; ECDSA
signatures are randomised, so the signature characters change and the verdicts do not.

The table is read by ``tests/verifier/test_vectors.py`` (the Python ``TrustStore`` and
``policy_decision``) and ``tests/web/test_verify_vectors.py`` (the browser's ``verify.js`` in
Chromium): both must give exactly the expected answers.

Layout::

    {"anchors": {name: public JWK},
     "bundles": {name: compact JWS text},
     "cases": [{"name", "anchor", "bundles": [names loaded in order], "now", "place", "code",
                "expect": {verdict, reasons, warnings, status, code_id, issuer, kid, masked_name,
                           issued_at, expires_at, origin, source, assurance, decision,
                           decision_reason}}],
     "loads": [{"name", "anchor", "bundles", "now",
                "expect": {"error": null | "bad_signature" | "malformed" | "rollback" |
                                    "delta_mismatch" | "other_issuer",
                           "version": int | null, "revoked": int}}],
     "policy_facts": [{status, negative_within_hours, doses, assurance}],
     "policies": [{"name", "document": policies document, "place",
                   "expect": {"error": bool,
                              "decisions": [{verdict, reason} for each policy fact] | null}}]}

A case's bundles are loaded at the case's ``now`` (as a checkpoint does at start-up), then its code
is judged at that ``now``; the decision is the CLI's: ``cannot_verify`` with the first reason when
the store cannot judge, ``cannot_verify`` with ``bad_policy`` when the bundle's policies do not
validate, otherwise ``policy_decision`` with the place's policy from the bundle. A policies row is
one document validated (``parse_policies``; ``parsePolicy`` in the page) and, when it is accepted,
the place's decision (``decide``) for each of the policy facts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent / "src"))

import base45  # noqa: E402
import cbor2  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519  # noqa: E402

from codec.forge import (  # noqa: E402
    ATTACKS,
    DROP,
    EXP,
    IAT,
    ISSUER,
    NOW,
    Trust,
    b64,
    claims,
    compact_json,
    flip_char,
    forge,
    header,
    high_s,
    parts,
    segment,
    valid,
    with_parts,
)
from support.verdicts import judge, load_outcome, trust_store  # noqa: E402
from yuekang.codec.bundle import (  # noqa: E402
    BundleIssuer,
    BundleKey,
    TrustBundle,
    bucket,
    bundle_payload,
    sign_bundle,
)
from yuekang.codec.hongkong import HongKongCodeClaims, sign_hongkong_code  # noqa: E402
from yuekang.codec.keys import (  # noqa: E402
    SigningKey,
    b64url_decode,
)
from yuekang.codec.macao import MacaoCodeClaims, sign_macao_code  # noqa: E402
from yuekang.rules.policy import decide, default_policies, parse_policies  # noqa: E402
from yuekang.rules.ruleset import RuleSetError  # noqa: E402

OUT = Path(__file__).with_name("verdicts.json")
DAY = 86_400
ISSUED = IAT - 3600
GRACE = 3 * DAY
RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
REVOKED_JTI = "cmV2b2tlZC1jb2RlLWlkMQ"
DELTA_REVOKED_JTI = "ZGVsdGEtcmV2b2tlZC1pMQ"
MACAO_TIME = dt.timezone(dt.timedelta(hours=8))


def p256(scalar: int) -> SigningKey:
    return SigningKey.from_private_key(ec.derive_private_key(scalar, ec.SECP256R1()))


def ed(seed_byte: int) -> SigningKey:
    return SigningKey.from_private_key(
        ed25519.Ed25519PrivateKey.from_private_bytes(bytes([seed_byte]) * 32)
    )


TRUST = Trust(
    es=p256(0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF),
    ed=SigningKey.from_private_key(
        ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(RFC8037_D))
    ),
    attacker=p256(0xBAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0BAD0),
)
ANCHOR = p256(0xA11C40A11C40A11C40A11C40A11C40A11C40A11C40A11C40A11C40A11C40A11C)
ED_ANCHOR = ed(0x5A)
OTHER_ANCHOR = p256(0x07E407E407E407E407E407E407E407E407E407E407E407E407E407E407E407E4)
PENDING = p256(0x9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D9E9D)
LATE = ed(0x1A)
"""A key whose window starts ten days after the codes here: they lie outside it."""
MACAO = p256(0x3AC03AC03AC03AC03AC03AC03AC03AC03AC03AC03AC03AC03AC03AC03AC03AC0)
MACAO_RETIRED = p256(0x3E713E713E713E713E713E713E713E713E713E713E713E713E713E713E713E71)
HONG_KONG = p256(0x4B104B104B104B104B104B104B104B104B104B104B104B104B104B104B104B10)


def _bundle(version: int, **changes: Any) -> TrustBundle:
    base = TrustBundle(
        issuer=ISSUER,
        version=version,
        issued_at=ISSUED,
        expires_at=ISSUED + DAY,
        grace=GRACE,
        keys=(
            BundleKey(TRUST.es.public(), "active", IAT - 30 * DAY, IAT + 60 * DAY),
            BundleKey(TRUST.ed.public(), "active", IAT - 30 * DAY, IAT + 60 * DAY),
            BundleKey(PENDING.public(), "pending", IAT - DAY, IAT + 90 * DAY),
            BundleKey(LATE.public(), "active", IAT + 10 * DAY, IAT + 90 * DAY),
        ),
        revoked={bucket(EXP): frozenset({REVOKED_JTI})},
        policies=default_policies().document(),
        issuers=(
            BundleIssuer(
                id="macao",
                issuer="MO",
                format="MO1",
                keys=(
                    dataclasses.replace(MACAO.public(), issuer="MO"),
                    dataclasses.replace(MACAO_RETIRED.public(), issuer="MO", compromised=True),
                ),
                colours={"verde": "green", "amarelo": "yellow", "vermelho": "red"},
            ),
            BundleIssuer(
                id="hongkong",
                issuer="HK",
                format="HK1",
                keys=(dataclasses.replace(HONG_KONG.public(), issuer="HK"),),
                colours={"green": "green", "amber": "yellow", "red": "red"},
            ),
        ),
    )
    return dataclasses.replace(base, **changes)


def _policies(change: Any) -> dict[str, Any]:
    """The default policies document with ``change`` (a function of the document) applied."""
    document = json.loads(json.dumps(default_policies().document()))
    change(document)
    return dict(document)


def _condition(place: str, clause: int, **values: Any) -> Any:
    """A change setting conditions of one clause of the place's policy (DROP removes one)."""

    def change(document: dict[str, Any]) -> None:
        when = document[place]["clauses"][clause]["when"]
        when.update(values)
        for name in [n for n, v in when.items() if v is DROP]:
            del when[name]

    return change


def _venue_assurance_policy(document: dict[str, Any]) -> None:
    """A venue that lets in green codes proved at a counter or held for a family member, and sends
    every other green code to a person: the condition as a bundle carries it, not the defaults'."""
    venue = document["venue"]
    venue["clauses"] = [
        {"when": {"status": ["green"], "assurance": ["counter", "dependant"]},
         "verdict": "allow", "reason": "green"},
        {"when": {"status": ["green"]}, "verdict": "manual_check", "reason": "identity_check"},
    ]  # fmt: skip


BAD_ASSURANCE = _condition("border", 0, assurance=["proofed", "trusted"])


def _tampered(text: str) -> str:
    """The bundle with one revocation removed from its payload, signature kept."""
    head, payload, signature = text.split(".")
    document = json.loads(b64url_decode(payload))
    document["revoked"] = []
    return f"{head}.{segment(document)}.{signature}"


def bundles() -> dict[str, str]:
    v5 = sign_bundle(_bundle(5), ANCHOR)
    return {
        "v5": v5,
        "v4": sign_bundle(_bundle(4), ANCHOR),
        "v6-delta-on-5": sign_bundle(
            _bundle(6, base=5, revoked={bucket(EXP): frozenset({DELTA_REVOKED_JTI})}), ANCHOR
        ),
        "v7-delta-on-3": sign_bundle(_bundle(7, base=3, revoked={}), ANCHOR),
        "v9-other-issuer": sign_bundle(_bundle(9, issuer="yk:other", keys=()), ANCHOR),
        "v5-tampered": _tampered(v5),
        "v5-other-anchor": sign_bundle(_bundle(5), OTHER_ANCHOR),
        "v5-ed-anchor": sign_bundle(_bundle(5), ED_ANCHOR),
        "v5-no-macao": sign_bundle(_bundle(5, issuers=()), ANCHOR),
        "v5-macao-without-red": sign_bundle(
            _bundle(
                5,
                issuers=(
                    dataclasses.replace(
                        _bundle(5).issuers[0], colours={"verde": "green", "amarelo": "yellow"}
                    ),
                ),
            ),
            ANCHOR,
        ),
        "v8-forged-kid": _sign_payload(
            {**bundle_payload(_bundle(8)), "keys": [_forged_kid_key()]}, ANCHOR
        ),
        "v8-bad-ids": _sign_payload(
            {**bundle_payload(_bundle(8)), "revoked": [{"until": bucket(EXP), "ids": "AAAA"}]},
            ANCHOR,
        ),
        "v8-float-version": _sign_payload({**bundle_payload(_bundle(8)), "version": 8.0}, ANCHOR),
        "v5-venue-assurance": sign_bundle(
            _bundle(5, policies=_policies(_venue_assurance_policy)), ANCHOR
        ),
        # Signed, but its policies do not validate (a level this verifier does not know).
        "v5-bad-assurance": sign_bundle(_bundle(5, policies=_policies(BAD_ASSURANCE)), ANCHOR),
        "two-parts": ".".join(v5.split(".")[:2]),
    }


def _forged_kid_key() -> dict[str, Any]:
    """Our key under another key's id: a bundle may not rename a key."""
    jwk = {**TRUST.es.public().to_jwk(), "state": "active", "nbf": IAT - DAY, "exp": IAT + DAY}
    jwk["kid"] = TRUST.ed.kid
    return jwk


def _sign_payload(payload: dict[str, Any], anchor: SigningKey) -> str:
    head = segment({"alg": anchor.alg, "kid": anchor.kid, "typ": "yk-bundle+jws"})
    signing_input = head + "." + segment(payload)
    return signing_input + "." + b64(anchor.sign(signing_input.encode("ascii")))


def macao(key: SigningKey = MACAO, **changes: Any) -> str:
    code = MacaoCodeClaims(
        iss="MO",
        cti="bWFjYW8tY29kZS1pZC0wMQ",
        iat=IAT,
        exp=IAT + 6 * 3600,
        cor="verde",
        nome="陳*文",
        tdoc="BIR",
        tan=dt.datetime.fromtimestamp(NOW, MACAO_TIME).date().isoformat(),
    )
    return sign_macao_code(dataclasses.replace(code, **changes), key)


MACAO_TAN = dt.datetime.fromtimestamp(NOW, MACAO_TIME).date().isoformat()


def hongkong(key: SigningKey = HONG_KONG, **changes: Any) -> str:
    code = HongKongCodeClaims(
        iss="HK",
        jti="aG9uZy1rb25nLWNvZGUtMQ",
        iat=IAT,
        exp=IAT + 24 * 3600,
        st="green",
        nm="陳*文",
        dt="HKID",
        nat=MACAO_TAN,
    )
    return sign_hongkong_code(dataclasses.replace(code, **changes), key)


def hk_jws(
    header: Any = None, payload: Any = None, *, signer: SigningKey = HONG_KONG, raw: str = ""
) -> str:
    """An HK1 code made by hand, signed over whatever header and payload it is given."""
    head = segment(
        {"alg": "ES256", "kid": signer.kid, "typ": "hk-health-code"} if header is None else header
    )
    body = raw or segment(_hk_payload() if payload is None else payload)
    signing_input = f"{head}.{body}"
    return f"HK1:{signing_input}.{b64(signer.sign(signing_input.encode('ascii')))}"


def _hk_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": "HK", "jti": "aG9uZy1rb25nLWNvZGUtMQ", "iat": IAT, "exp": IAT + 3600,
        "st": "green", "nm": "陳*文", "dt": "HKID", "nat": MACAO_TAN,
    }  # fmt: skip
    for name, value in changes.items():
        if value is DROP:
            payload.pop(name)
        else:
            payload[name] = value
    return payload


def _high_s(text: str) -> str:
    """The same HK1 code with its signature's other spelling, (r, n - s)."""
    head, body, signature = text[4:].split(".")
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    return f"HK1:{head}.{body}.{b64(raw[:32] + (order - s).to_bytes(32, 'big'))}"


def cose(
    *,
    protected: Any = None,
    unprotected: Any = None,
    claims: Any = None,
    signer: SigningKey = MACAO,
    wrap: Any = None,
    raw: bytes | None = None,
) -> str:
    """A Macao code built by hand (cbor2 and base45), so that what the reference signer never
    writes can be tested: ``None`` takes the usual member, and ``wrap`` turns the signed
    COSE_Sign1 members into the item that is encoded (another tag, no tag, ...)."""
    kid = b64url_decode(signer.kid)
    protected_bytes = cbor2.dumps({1: -7, 4: kid} if protected is None else protected)
    if isinstance(protected, bytes):
        protected_bytes = protected
    payload = cbor2.dumps(_macao_claims() if claims is None else claims)
    to_sign = cbor2.dumps(["Signature1", protected_bytes, b"", payload])
    members = [protected_bytes, {} if unprotected is None else unprotected, payload,
               signer.sign(to_sign)]  # fmt: skip
    item = cbor2.CBORTag(18, members) if wrap is None else wrap(members)
    encoded = cbor2.dumps(item) if raw is None else raw
    return "MO1:" + base45.b45encode(encoded).decode("ascii")


def _indefinite_sign1() -> str:
    """The COSE_Sign1 array with an indefinite length: valid CBOR, read as any other."""
    text = cose()
    encoded = base45.b45decode(text[4:])
    assert encoded[:2] == b"\xd2\x84"
    return "MO1:" + base45.b45encode(b"\xd2\x9f" + encoded[2:] + b"\xff").decode("ascii")


def _macao_health(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"cor": "verde", "tan": MACAO_TAN, "nome": "陳*文", "tdoc": "BIR"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not DROP}


def _macao_claims(**changes: Any) -> dict[Any, Any]:
    body: dict[Any, Any] = {
        1: "MO", 4: IAT + 6 * 3600, 6: IAT, 7: b"macao-code-id-01", -65537: _macao_health(),
    }  # fmt: skip
    body.update({int(k.removeprefix("c").replace("_", "-")): v for k, v in changes.items()})
    return {k: v for k, v in body.items() if v is not DROP}


def _nested_header() -> str:
    """A header nested 2,000 levels deep: Python's parser gives up (malformed) long before."""
    head = b'{"alg":"ES256","kid":"' + TRUST.es.kid.encode() + b'","x":'
    head += b"[" * 2000 + b"]" * 2000 + b"}"
    return forge(head, claims(), TRUST.es)


def code_cases() -> list[dict[str, Any]]:
    """(name, code, now, place, bundles) for every case."""
    es, ed_key = TRUST.es, TRUST.ed
    main = ["v5"]
    cases: list[dict[str, Any]] = []

    def add(
        name: str, code: str, *, now: int = NOW, place: str = "venue", loaded: list[str] = main
    ) -> None:
        cases.append({"name": name, "bundles": loaded, "now": now, "place": place, "code": code})

    add("valid-es256-green-venue", valid(es))
    add("valid-eddsa-green-venue", valid(ed_key))
    add("valid-es256-green-transport", valid(es), place="transport")
    add("valid-pending-key", valid(PENDING))
    for status in ("yellow", "red"):
        for place in ("venue", "transport", "border"):
            add(f"{status}-at-{place}", valid(es, st=status), place=place)
    add("green-no-test-at-border", valid(es), place="border")
    for hours in (24, 48, 72, 168):
        add(f"green-nt{hours}-at-border", valid(ed_key, nt=hours), place="border")
    add("green-nt24-vx3-at-venue", valid(es, nt=24, vx=3))
    add("yellow-nt24-at-border", valid(es, st="yellow", nt=24), place="border")
    add(
        "converted-from-macao",
        valid(es, src=["MO", MACAO.kid, "c291cmNlLWRpZ2VzdC0wMQ"]),
    )
    add(
        "converted-from-unknown-partner",
        valid(es, src=["HK", MACAO.kid, "c291cmNlLWRpZ2VzdC0wMQ"]),
        loaded=["v5-no-macao"],
    )
    add("unknown-claim-ignored", valid(es, zz="later"))
    add("non-bmp-name", valid(es, nm="𠀋*三"))
    add("expired", valid(es, iat=IAT - 7200, exp=IAT - 300))
    add("expired-just-within-leeway", valid(es), now=EXP + 119)
    add("expired-at-leeway", valid(es), now=EXP + 120)
    add("not-yet-valid", valid(es, iat=NOW + 121, exp=NOW + 3600))
    add("not-yet-valid-within-leeway", valid(es, iat=NOW + 120, exp=NOW + 3600))
    add("revoked", valid(es, jti=REVOKED_JTI))
    add("revoked-at-border", valid(es, jti=REVOKED_JTI, nt=24), place="border")
    add("revoked-by-delta", valid(es, jti=DELTA_REVOKED_JTI), loaded=["v5", "v6-delta-on-5"])
    add("not-revoked-before-delta", valid(es, jti=DELTA_REVOKED_JTI))
    add("forged-signature", with_parts(*parts(valid(es))[:2], flip_char(parts(valid(es))[2], 10)))
    add("high-s-signature", high_s(valid(es)))
    add(
        "tampered-payload",
        with_parts(
            parts(valid(es))[0],
            segment(claims(st="green", nm="李*四")),
            parts(valid(es, st="red"))[2],
        ),
    )
    add("unknown-key", valid(TRUST.attacker))
    add("alg-none", forge(header(es, alg="none"), claims(), None))
    add("alg-mismatch", forge(header(ed_key, alg="ES256"), claims(), es))
    add("crit-header", forge(header(es, crit=["exp"]), claims(), es))
    add("malformed-base64", with_parts(parts(valid(es))[0] + "=", *parts(valid(es))[1:]))
    add("yk2-prefix", "YK2:" + valid(es)[4:])
    add("untrusted-issuer", valid(es, iss="yk:other"))
    add("key-outside-window", valid(LATE))
    add("code-outlives-key", valid(es, exp=IAT + 61 * DAY))
    add("deeply-nested-header", _nested_header())
    add(
        "iat-integral-float",
        forge(
            header(es), compact_json(claims()).replace(str(IAT).encode(), f"{IAT}.0".encode()), es
        ),
    )
    add(
        "iat-exponent",
        forge(header(es), compact_json(claims()).replace(str(IAT).encode(), b"1.7641e9"), es),
    )
    add("nt-too-large", valid(es, nt=10_000))
    add("src-not-a-triple", valid(es, src=["MO", MACAO.kid]))
    # Identity assurance (the ia claim): the border lets in green with a recent test when the
    # holder's identity was proved against the registry, at a counter or by a partner; a family
    # member's code, or one that does not say, goes to an officer who checks the document.
    for ia in (1, 2, 3, 4):
        add(f"green-nt24-ia{ia}-at-border", valid(ed_key, nt=24, ia=ia), place="border")
    add("green-nt48-ia1-vx3-at-border", valid(es, nt=48, vx=3, ia=1), place="border")
    add("green-nt72-ia1-at-border", valid(es, nt=72, ia=1), place="border")
    add("green-no-test-ia1-at-border", valid(es, ia=1), place="border")
    add("yellow-nt24-ia1-at-border", valid(es, st="yellow", nt=24, ia=1), place="border")
    add("green-ia3-at-venue", valid(es, ia=3))
    add("yellow-ia3-at-transport", valid(es, st="yellow", ia=3), place="transport")
    # Values no level stands for are an unknown assurance, like a code without the claim.
    for ia in (0, 9, 9999):
        add(f"green-nt24-ia{ia}-at-border", valid(es, nt=24, ia=ia), place="border")
    add("ia-null-is-no-claim", valid(es, nt=24, ia=None), place="border")
    # Not a small non-negative integer: the code is malformed, whatever else it says.
    for name, value in (
        ("string", "1"), ("true", True), ("false", False), ("negative", -1), ("fraction", 1.5),
        ("integral-float", 1.0), ("too-large", 10_000), ("list", [1]), ("object", {"level": 1}),
    ):  # fmt: skip
        add(f"ia-{name}", valid(es, nt=24, ia=value), place="border")
    add(
        "ia-exponent",
        forge(header(es), compact_json(claims(ia=1)).replace(b'"ia":1', b'"ia":1e0'), es),
    )
    add(
        "ia-leading-zero",
        forge(header(es), compact_json(claims(ia=1)).replace(b'"ia":1', b'"ia":01'), es),
    )
    # Another order, spacing or escapes than the signer's: the general parse, the same answer.
    add("ia-before-nt", valid(es, ia=1, nt=24), place="border")
    add(
        "ia-spaced-json",
        forge(header(es), json.dumps(claims(nt=24, ia=2)).encode(), es),
        place="border",
    )
    add(
        "converted-with-ia",
        valid(es, nt=24, src=["MO", MACAO.kid, "c291cmNlLWRpZ2VzdC0wMQ"], ia=4),
        place="border",
    )
    add("revoked-with-ia", valid(es, jti=REVOKED_JTI, nt=24, ia=1), place="border")
    add("unknown-claim-after-ia", valid(es, ia=1, zz="later"))
    # The condition as a bundle's own policy has it.
    for ia in (2, 3, 1):
        add(f"venue-assurance-ia{ia}", valid(es, ia=ia), loaded=["v5-venue-assurance"])
    add("venue-assurance-no-ia", valid(es), loaded=["v5-venue-assurance"])
    add("venue-assurance-macao", macao(), loaded=["v5-venue-assurance"])
    add("venue-assurance-at-border", valid(es, nt=24, ia=3), place="border",
        loaded=["v5-venue-assurance"])  # fmt: skip
    # Policies with a level this verifier does not know: signed, but nothing is decided with them,
    # at any place, whatever the code.
    for place in ("border", "venue"):
        add(f"bad-assurance-policy-at-{place}", valid(es, nt=24, ia=1), place=place,
            loaded=["v5-bad-assurance"])  # fmt: skip
    add("bad-assurance-policy-forged-code", valid(TRUST.attacker), loaded=["v5-bad-assurance"])
    # The store's own state.
    stale_now = ISSUED + DAY + 3600
    add(
        "stale-bundle-warns",
        valid(es, iat=stale_now - 100, exp=stale_now + 3500),
        now=stale_now,
    )
    # Revocation groups whose hour has passed are dropped on load, whatever codes they list.
    add(
        "revocation-group-past-its-hour-is-dropped",
        valid(es, jti=REVOKED_JTI, iat=stale_now - 3000, exp=EXP + DAY),
        now=stale_now,
    )
    expired_now = ISSUED + DAY + GRACE + 1
    add("expired-bundle", valid(es, iat=expired_now - 100, exp=expired_now + 3500), now=expired_now)
    add("wrong-clock", valid(es), now=ISSUED - 121)
    add(
        "clock-within-leeway-of-bundle",
        valid(es, iat=ISSUED - 200),
        now=ISSUED - 120,
        place="transport",
    )
    add("no-bundle", valid(es), loaded=[])
    add("ed-anchor-bundle", valid(es), loaded=["v5-ed-anchor"])
    # Hong Kong codes (HK1: compact JWS), read by the format the bundle's issuer names.
    add("hongkong-green", hongkong())
    add("hongkong-amber-at-transport", hongkong(st="amber"), place="transport")
    add("hongkong-green-at-border", hongkong(), place="border")
    add("hongkong-no-test-at-border", hongkong(nat=None), place="border")
    add("hongkong-not-recognised-here", hongkong(), loaded=["v5-no-macao"])
    add("hongkong-unknown-key", hongkong(TRUST.attacker))
    add("hongkong-expired", hongkong(iat=IAT - 3 * DAY, exp=IAT - 2 * DAY))
    add("hongkong-not-yet-valid", hongkong(iat=NOW + 3600, exp=NOW + 7200))
    add("hongkong-version-2", "HK2:" + hongkong()[4:])
    add("hongkong-forged", hongkong()[:-2] + ("AA" if not hongkong().endswith("AA") else "BB"))
    add("hongkong-high-s", _high_s(hongkong()))
    add("hongkong-two-segments", "HK1:" + ".".join(hongkong()[4:].split(".")[:2]))
    add("hongkong-hand-made", hk_jws())
    hk_header = {"alg": "ES256", "kid": HONG_KONG.kid, "typ": "hk-health-code"}
    add("hongkong-alg-es384", hk_jws({**hk_header, "alg": "ES384"}))
    add("hongkong-typ-other", hk_jws({**hk_header, "typ": "JWT"}))
    add("hongkong-header-extra", hk_jws({**hk_header, "x5u": "https://x"}))
    add("hongkong-kid-number", hk_jws({**hk_header, "kid": 7}))
    add("hongkong-signed-with-our-key", hk_jws({**hk_header, "kid": TRUST.es.kid}, signer=TRUST.es))
    add("hongkong-iat-float", hk_jws(payload=_hk_payload(iat=float(IAT))))
    add("hongkong-iat-true", hk_jws(payload=_hk_payload(iat=True)))
    add("hongkong-exp-before-iat", hk_jws(payload=_hk_payload(exp=IAT - 1)))
    add("hongkong-exp-huge", hk_jws(payload=_hk_payload(exp=2**41)))
    add("hongkong-member-missing", hk_jws(payload=_hk_payload(nat=DROP)))
    add("hongkong-member-extra", hk_jws(payload={**_hk_payload(), "vx": 3}))
    add("hongkong-colour-yellow", hk_jws(payload=_hk_payload(st="yellow")))
    add("hongkong-doc-type-other", hk_jws(payload=_hk_payload(dt="BIR")))
    add("hongkong-name-empty", hk_jws(payload=_hk_payload(nm="")))
    add("hongkong-name-101", hk_jws(payload=_hk_payload(nm="陳" * 101)))
    add("hongkong-nat-not-a-date", hk_jws(payload=_hk_payload(nat="2025-02-30")))
    add("hongkong-nat-compact", hk_jws(payload=_hk_payload(nat="20251125")))
    add("hongkong-nat-year-zero", hk_jws(payload=_hk_payload(nat="0000-01-01")))
    add("hongkong-payload-not-json", hk_jws(raw=b64(b"{not json")))
    add("hongkong-payload-array", hk_jws(raw=segment([1, 2])))  # type: ignore[arg-type]
    add("hongkong-payload-bad-utf8", hk_jws(raw=b64(b'{"iss": "\xff"}')))
    add("hongkong-jti-short", hk_jws(payload=_hk_payload(jti="aG9uZy1rb25n")))
    add("hongkong-jti-not-base64url", hk_jws(payload=_hk_payload(jti="aG9uZy1rb25nLWNvZGUtM/")))
    add("hongkong-issuer-other", hk_jws(payload=_hk_payload(iss="MO")))
    add("hongkong-over-2048", hongkong() + "A" * 2048)

    # What a hostile review found the two readers disagreeing on: text that is not UTF-8 JSON
    # (UTF-16, a BOM, NaN), a character outside base64url, years before 100.
    def utf(document: dict[str, Any], encoding: str = "utf-8", bom: bytes = b"") -> str:
        return b64(bom + json.dumps(document, ensure_ascii=False).encode(encoding))

    green = hongkong()
    green_head, green_body, green_signature = green[4:].split(".")
    add("hongkong-nat-year-0050", hk_jws(payload=_hk_payload(nat="0050-06-01")))
    add("hongkong-payload-utf16", hk_jws(raw=utf(_hk_payload(), "utf-16")))
    add("hongkong-payload-utf8-bom", hk_jws(raw=utf(_hk_payload(), bom=b"\xef\xbb\xbf")))
    add(
        "hongkong-payload-nan",
        hk_jws(
            raw=b64(
                compact_json(_hk_payload()).replace(b'"iat":' + str(IAT).encode(), b'"iat":NaN')
            )
        ),
    )
    add("hongkong-header-utf16", f"HK1:{utf(hk_header, 'utf-16')}.{green_body}.{green_signature}")
    nan_header = b'{"alg":NaN,"kid":"' + HONG_KONG.kid.encode() + b'","typ":"hk-health-code"}'
    add("hongkong-header-alg-nan", f"HK1:{b64(nan_header)}.{green_body}.{green_signature}")
    add("hongkong-non-ascii-payload", f"HK1:{green_head}.{green_body}\u00e9.{green_signature}")
    add("macao-tan-year-0050", cose(claims=_macao_claims(c_65537=_macao_health(tan="0050-06-01"))))
    add("yk-header-alg-nan", forge(b'{"alg":NaN,"kid":"' + es.kid.encode() + b'"}', claims(), es))
    # Macao codes (MO1: CBOR/COSE, base45).
    add("macao-green", macao())
    add("macao-yellow-at-transport", macao(cor="amarelo"), place="transport")
    add("macao-green-at-border", macao(), place="border")
    add("macao-retired-key", macao(MACAO_RETIRED))
    add("macao-unknown-key", macao(TRUST.attacker))
    add("macao-expired", macao(iat=IAT - 8 * 3600, exp=IAT - 7 * 3600))
    add("macao-not-recognised-here", macao(), loaded=["v5-no-macao"])
    add("macao-version-2", "MO2:" + macao()[4:])
    add("macao-forged", macao()[:-2] + ("00" if not macao().endswith("00") else "11"))
    add("macao-hand-made", cose())
    add("macao-trailing-newline", cose() + "\n")
    add("macao-over-range-triplet", "MO1:GGW")
    add("macao-empty", "MO1:")
    add("macao-version-10", "MO10:" + cose()[4:])
    add("macao-lowercase-base45", cose().lower().replace("mo1:", "MO1:"))
    add("macao-trailing-bytes", cose(raw=base45.b45decode(cose()[4:]) + b"\x00"))
    add("macao-untagged", cose(wrap=lambda members: members))
    add("macao-cwt-tag-61", cose(wrap=lambda m: cbor2.CBORTag(61, cbor2.CBORTag(18, m))))
    add("macao-self-described", cose(wrap=lambda m: cbor2.CBORTag(55799, cbor2.CBORTag(18, m))))
    add("macao-three-members", cose(wrap=lambda members: cbor2.CBORTag(18, members[:3])))
    add("macao-unprotected-not-a-map", cose(unprotected=[]))
    add("macao-indefinite-array", _indefinite_sign1())
    kid = b64url_decode(MACAO.kid)
    add("macao-alg-es384", cose(protected={1: -35, 4: kid}))
    add("macao-alg-text", cose(protected={1: "ES256", 4: kid}))
    add("macao-alg-float", cose(protected={1: -7.0, 4: kid}))
    add("macao-alg-under-true-key", cose(protected={True: -7, 4: kid}))
    add("macao-protected-empty", cose(protected=b""))
    add("macao-crit", cose(protected={1: -7, 2: [4], 4: kid}))
    add("macao-kid-15-bytes", cose(protected={1: -7, 4: kid[:15]}))
    add("macao-kid-text", cose(protected={1: -7, 4: MACAO.kid}))
    add("macao-unprotected-alg-ignored", cose(unprotected={1: -35, 4: b"x" * 16}))
    add("macao-eddsa-key-kid", cose(protected={1: -7, 4: b64url_decode(TRUST.ed.kid)}))
    add("macao-signed-by-attacker", cose(signer=TRUST.attacker,
                                          protected={1: -7, 4: kid}))  # fmt: skip
    add("macao-iat-true", cose(claims=_macao_claims(c6=True)))
    add("macao-iat-float", cose(claims=_macao_claims(c6=float(IAT))))
    bignum = cbor2.CBORTag(2, IAT.to_bytes(4, "big"))
    add("macao-iat-bignum-tag", cose(claims=_macao_claims(c6=bignum)))
    add("macao-iat-negative", cose(claims=_macao_claims(c6=-1)))
    add("macao-exp-huge", cose(claims=_macao_claims(c4=2**64)))
    add("macao-iss-as-float-key", cose(claims={**_macao_claims(), 1.0: "HK"}))
    add("macao-iss-other", cose(claims=_macao_claims(c1="HK")))
    add("macao-cti-short", cose(claims=_macao_claims(c7=b"short")))
    add("macao-no-health", cose(claims=_macao_claims(c_65537=DROP)))
    add("macao-tan-null", cose(claims=_macao_claims(c_65537=_macao_health(tan=None))))
    add("macao-tan-not-a-date", cose(claims=_macao_claims(c_65537=_macao_health(tan="2025-02-30"))))
    add("macao-tan-compact", cose(claims=_macao_claims(c_65537=_macao_health(tan="20251125"))))
    add(
        "macao-no-tan-at-border",
        cose(claims=_macao_claims(c_65537=_macao_health(tan=DROP))),
        place="border",
    )
    add(
        "macao-old-tan-at-border",
        cose(claims=_macao_claims(c_65537=_macao_health(tan="2025-11-20"))),
        place="border",
    )
    add("macao-colour-blue", cose(claims=_macao_claims(c_65537=_macao_health(cor="azul"))))
    add("macao-tdoc-unknown", cose(claims=_macao_claims(c_65537=_macao_health(tdoc="X"))))
    add("macao-nome-65-chars", cose(claims=_macao_claims(c_65537=_macao_health(nome="陳" * 65))))
    add(
        "macao-red-colour-missing-from-table",
        cose(claims=_macao_claims(c_65537=_macao_health(cor="vermelho"))),
        loaded=["v5-macao-without-red"],
    )
    add("macao-not-yet-valid", cose(claims=_macao_claims(c6=NOW + 121, c4=NOW + 3600)))
    for attack in ATTACKS:
        add(f"attack-{attack.id}", attack.build(TRUST))
    return cases


def load_cases() -> list[dict[str, Any]]:
    def case(name: str, loaded: list[str], anchor: str = "main") -> dict[str, Any]:
        return {"name": name, "anchor": anchor, "bundles": loaded, "now": NOW}

    return [
        case("full-bundle", ["v5"]),
        case("delta-on-its-base", ["v5", "v6-delta-on-5"]),
        case("same-version-again", ["v5", "v5"]),
        case("newer-then-older-is-a-rollback", ["v5", "v4"]),
        case("delta-on-another-base", ["v5", "v7-delta-on-3"]),
        case("delta-without-a-base", ["v6-delta-on-5"]),
        case("another-issuer", ["v5", "v9-other-issuer"]),
        case("tampered", ["v5-tampered"]),
        case("signed-by-another-anchor", ["v5-other-anchor"]),
        case("ed25519-anchor", ["v5-ed-anchor"], anchor="ed"),
        case("key-under-another-kid", ["v8-forged-kid"]),
        case("revocation-ids-not-16-bytes", ["v8-bad-ids"]),
        case("float-version", ["v8-float-version"]),
        case("two-parts", ["two-parts"]),
        case("tampered-after-a-good-one", ["v5", "v5-tampered"]),
        # Policies are the rules engine's to validate, when a decision needs them: the bundle loads.
        case("policies-with-an-unknown-assurance", ["v5-bad-assurance"]),
    ]


ASSURANCES = ("proofed", "counter", "dependant", "partner", None)


def policy_facts() -> list[dict[str, Any]]:
    """What a policy is asked about: every assurance with each test summary, green, and some
    codes of the other colours."""
    facts = [
        {"status": "green", "negative_within_hours": hours, "doses": None, "assurance": assurance}
        for assurance in ASSURANCES
        for hours in (24, 48, 72, 168, None)
    ]
    facts += [
        {"status": status, "negative_within_hours": 24, "doses": 2, "assurance": assurance}
        for status in ("yellow", "red")
        for assurance in ("proofed", "dependant", None)
    ]
    return facts


def policy_rows() -> list[dict[str, Any]]:
    """Policies documents, each validated and (when accepted) asked about :func:`policy_facts` at a
    place: the assurance condition's grammar is pydantic's, and the page must refuse what it
    refuses."""
    rows: list[dict[str, Any]] = []

    def add(name: str, change: Any = None, place: str = "border") -> None:
        document = _policies(change or (lambda _: None))
        facts = policy_facts()
        try:
            policy = parse_policies(document).for_place(place)  # type: ignore[arg-type]
        except RuleSetError:
            expect: dict[str, Any] = {"error": True, "decisions": None}
        else:
            decisions = [dataclasses.asdict(decide(policy, **fact)) for fact in facts]
            expect = {"error": False, "decisions": decisions}
        rows.append({"name": name, "document": document, "place": place, "expect": expect})

    add("default-border")
    add("default-venue", place="venue")
    add("default-transport", place="transport")
    add("assurance-null-is-no-condition", _condition("border", 0, assurance=None))
    add("assurance-dropped", _condition("border", 0, assurance=DROP))
    add("assurance-one-level", _condition("border", 0, assurance=["dependant"]))
    add("assurance-every-level", _condition("border", 0, assurance=list(ASSURANCES[:4])))
    add("assurance-repeated-level", _condition("border", 0, assurance=["partner", "partner"]))
    add("assurance-alone", _condition("border", 0, status=DROP, negative_test_within_hours=DROP))
    add("assurance-at-venue", _venue_assurance_policy, place="venue")
    # Refused: the whole document, whichever place is asked for.
    add("assurance-unknown-level", _condition("border", 0, assurance=["proofed", "trusted"]))
    add("assurance-unknown-level-asked-at-venue", BAD_ASSURANCE, place="venue")
    add("assurance-empty", _condition("border", 0, assurance=[]))
    add("assurance-a-string", _condition("border", 0, assurance="proofed"))
    add("assurance-a-number", _condition("border", 0, assurance=[1]))
    add("assurance-capitalised", _condition("border", 0, assurance=["Proofed"]))
    add("assurance-null-level", _condition("border", 0, assurance=[None]))
    add("assurance-an-object", _condition("border", 0, assurance={"proofed": True}))
    add("assurances-misspelt", _condition("border", 0, assurances=["proofed"]))
    add("assurance-in-transport", _condition("transport", 1, assurance=["unknown"]), "transport")
    return rows


def anchors() -> dict[str, Any]:
    return {"main": ANCHOR.public().to_jwk(), "ed": ED_ANCHOR.public().to_jwk()}


def main() -> None:
    texts = bundles()
    keys = anchors()
    cases = []
    for case in code_cases():
        anchor = "ed" if case["bundles"] == ["v5-ed-anchor"] else "main"
        store = trust_store(keys[anchor], [texts[name] for name in case["bundles"]], case["now"])
        cases.append(
            {
                **case,
                "anchor": anchor,
                "expect": judge(store, case["code"], case["now"], case["place"]),
            }
        )
    loads = []
    for load in load_cases():
        loads.append(
            {
                **load,
                "expect": load_outcome(
                    keys[load["anchor"]], [texts[name] for name in load["bundles"]], load["now"]
                ),
            }
        )
    policies = policy_rows()
    document = {
        "generated_by": "tests/vectors/make_verdicts.py",
        "leeway": 120,
        "anchors": keys,
        "bundles": texts,
        "cases": cases,
        "loads": loads,
        "policy_facts": policy_facts(),
        "policies": policies,
    }
    OUT.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(cases)} cases, {len(loads)} loads, {len(policies)} policies")


if __name__ == "__main__":
    main()
