"""The offline verifier: verdicts, never exceptions, revocation, the JSON shape."""

from __future__ import annotations

import dataclasses
import inspect
import json
import random
from typing import Any

import pytest

from codec.forge import (
    ATTACKS,
    EXP,
    IAT,
    ISSUER,
    JTI,
    NAME,
    NOW,
    Attack,
    Trust,
    b64,
    flip_char,
    valid,
)
from yuekang.codec.healthcode import HealthCodeClaims, sign_health_code
from yuekang.codec.jwks import build_jwks
from yuekang.codec.keys import SigningKey
from yuekang.codec.reasons import MESSAGES, Reason
from yuekang.rules.policy import default_policies, parse_policies
from yuekang.verifier import DEFAULT_LEEWAY, Verdict, Verifier, _valid_verdict, policy_decision

VERDICT_KEYS = {
    "assurance",
    "origin",
    "source",
    "verdict",
    "status",
    "reasons",
    "code_id",
    "issuer",
    "kid",
    "masked_name",
    "issued_at",
    "expires_at",
    "warnings",
}


def assert_invalid(verdict: Verdict, reason: str) -> None:
    assert verdict.verdict == "invalid"
    assert verdict.valid is False
    assert verdict.reasons == (Reason(reason),)
    assert [r.value for r in verdict.reasons] == [reason]
    # nothing from an unverified code may reach the screen
    assert verdict.status is None
    assert verdict.code_id is None
    assert verdict.masked_name is None
    assert verdict.issuer is None
    assert verdict.kid is None
    assert verdict.issued_at is None and verdict.expires_at is None


# ---------------------------------------------------------------------------- valid


@pytest.mark.parametrize("st", ["green", "yellow", "red"])
def test_valid_code(verifier: Verifier, any_key: SigningKey, st: str) -> None:
    verdict = verifier.verify(valid(any_key, st=st), now=NOW)

    assert verdict.verdict == "valid"
    assert verdict.valid is True
    assert verdict.reasons == ()
    assert verdict.status == st
    assert verdict.code_id == JTI
    assert verdict.issuer == ISSUER
    assert verdict.kid == any_key.kid
    assert verdict.masked_name == NAME
    assert (verdict.issued_at, verdict.expires_at) == (IAT, EXP)


def test_red_code_is_valid_but_red(verifier: Verifier, any_key: SigningKey) -> None:
    # "valid" means authentic; whether to let the holder through is the status' business.
    verdict = verifier.verify(valid(any_key, st="red"), now=NOW)

    assert verdict.valid and verdict.status == "red"


def test_verifier_holds_the_jwks_keys(verifier: Verifier, trust: Trust) -> None:
    assert set(verifier.keys) == {trust.es.kid, trust.ed.kid}
    assert {k.issuer for k in verifier.keys.values()} == {ISSUER}


def test_from_jwks_accepts_a_json_round_tripped_document(
    jwks: dict[str, Any], trust: Trust
) -> None:
    verifier = Verifier.from_jwks(json.loads(json.dumps(jwks)))

    assert verifier.verify(valid(trust.ed), now=NOW).valid


@pytest.mark.parametrize(
    ("ia", "assurance"),
    [(1, "proofed"), (2, "counter"), (3, "dependant"), (4, "partner"), (None, None), (9, None)],
)
def test_the_verdict_says_how_the_holder_was_proved(
    verifier: Verifier, any_key: SigningKey, ia: int | None, assurance: str | None
) -> None:
    # A code without the claim (issued before proofing) or with a value this verifier does not
    # know has an unknown assurance, which no policy condition on assurance accepts.
    claims = HealthCodeClaims(iss=ISSUER, jti=JTI, iat=IAT, exp=EXP, st="green", nm=NAME, ia=ia)

    verdict = verifier.verify(sign_health_code(claims, any_key), now=NOW)

    assert verdict.valid and verdict.assurance == assurance
    assert verdict.to_dict()["assurance"] == assurance


def test_codes_of_sign_health_code_verify(verifier: Verifier, any_key: SigningKey) -> None:
    claims = HealthCodeClaims(iss=ISSUER, jti=JTI, iat=IAT, exp=EXP, st="yellow", nm=NAME)

    verdict = verifier.verify(sign_health_code(claims, any_key), now=NOW)

    assert verdict.valid and verdict.status == "yellow"


# ---------------------------------------------------------------------------- invalid


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_gives_an_invalid_verdict(verifier: Verifier, trust: Trust, attack: Attack) -> None:
    verdict = verifier.verify(attack.build(trust), now=NOW)

    assert_invalid(verdict, attack.reason)


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(None, id="none"),
        pytest.param(0, id="int"),
        pytest.param(3.5, id="float"),
        pytest.param(b"YK1:abc.def.ghi", id="bytes"),
        pytest.param(bytearray(b"YK1:"), id="bytearray"),
        pytest.param(["YK1:a.b.c"], id="list"),
        pytest.param({"qr": "YK1:a.b.c"}, id="dict"),
        pytest.param(object(), id="object"),
        pytest.param("\x00" * 100, id="nul-bytes"),
        pytest.param("YK1:\ud800.\udfff.x", id="lone-surrogates"),
        pytest.param("YK1:" + "." * 4000, id="dots"),
        pytest.param("🙂" * 1000, id="emoji"),
    ],
)
def test_junk_is_malformed_and_never_raises(verifier: Verifier, junk: Any) -> None:
    assert_invalid(verifier.verify(junk, now=NOW), "malformed")


def test_ten_kilobytes_of_random_bytes(verifier: Verifier) -> None:
    junk = random.Random(7).randbytes(10_240).decode("latin-1")

    assert_invalid(verifier.verify(junk, now=NOW), "malformed")
    assert_invalid(verifier.verify("YK1:" + junk, now=NOW), "malformed")


@pytest.mark.parametrize("seed", range(20))
def test_short_random_junk_never_raises(verifier: Verifier, seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/:YK1 \n"
    for _ in range(50):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        text = rng.choice(["", "YK1:", "YK2:", "yk1:"]) + body

        verdict = verifier.verify(text, now=NOW)

        assert verdict.verdict == "invalid" and len(verdict.reasons) == 1


def test_every_single_character_change_is_caught(verifier: Verifier, any_key: SigningKey) -> None:
    text = valid(any_key)
    seen: set[str] = set()
    for index in range(len(text)):
        if text[index] == ".":
            continue
        altered = (
            flip_char(text, index)
            if index >= 4
            else text[:index] + chr(ord(text[index]) ^ 1) + text[index + 1 :]
        )

        verdict = verifier.verify(altered, now=NOW)

        assert verdict.verdict == "invalid", (index, altered)
        seen.update(r.value for r in verdict.reasons)
    assert "bad_signature" in seen and "malformed" in seen


def test_unknown_issuer_via_argument(jwks: dict[str, Any], trust: Trust) -> None:
    verifier = Verifier.from_jwks(jwks, issuer="yk:mo")

    assert_invalid(verifier.verify(valid(trust.es), now=NOW), "untrusted_issuer")
    assert verifier.verify(valid(trust.es, iss="yk:mo"), now=NOW).valid


def test_code_from_another_issuer(verifier: Verifier, trust: Trust) -> None:
    assert_invalid(verifier.verify(valid(trust.es, iss="yk:mo"), now=NOW), "untrusted_issuer")


def test_code_signed_by_a_key_outside_the_jwks(trust: Trust) -> None:
    verifier = Verifier.from_jwks(build_jwks(ISSUER, [trust.es.public()]))

    assert_invalid(verifier.verify(valid(trust.ed), now=NOW), "unknown_key")


# ---------------------------------------------------------------------------- time


def test_default_leeway(verifier: Verifier, trust: Trust) -> None:
    text = valid(trust.es)

    assert DEFAULT_LEEWAY == 120
    assert verifier.verify(text, now=EXP + DEFAULT_LEEWAY - 1).valid
    assert_invalid(verifier.verify(text, now=EXP + DEFAULT_LEEWAY), "expired")
    assert verifier.verify(text, now=IAT - DEFAULT_LEEWAY).valid
    assert_invalid(verifier.verify(text, now=IAT - DEFAULT_LEEWAY - 1), "not_yet_valid")


@pytest.mark.parametrize("leeway", [0, 30])
def test_custom_leeway(jwks: dict[str, Any], trust: Trust, leeway: int) -> None:
    verifier = Verifier.from_jwks(jwks, leeway=leeway)
    text = valid(trust.ed)

    assert verifier.verify(text, now=EXP + leeway - 1).valid
    assert_invalid(verifier.verify(text, now=EXP + leeway), "expired")
    assert_invalid(verifier.verify(text, now=IAT - leeway - 1), "not_yet_valid")


# ---------------------------------------------------------------------------- revocation


def test_revoked_code_is_invalid_but_keeps_display_fields(
    verifier: Verifier, any_key: SigningKey
) -> None:
    verdict = verifier.verify(valid(any_key), now=NOW, revoked={JTI})

    assert verdict.verdict == "invalid"
    assert verdict.valid is False
    assert verdict.reasons == (Reason.REVOKED,)
    assert verdict.status == "green"
    assert verdict.code_id == JTI
    assert verdict.masked_name == NAME
    assert verdict.kid == any_key.kid
    assert (verdict.issued_at, verdict.expires_at) == (IAT, EXP)


@pytest.mark.parametrize("revoked", [set(), {"other-code-id"}, [JTI[:-1]], (JTI.lower(),)])
def test_other_revocations_do_not_matter(verifier: Verifier, trust: Trust, revoked: Any) -> None:
    assert verifier.verify(valid(trust.es), now=NOW, revoked=revoked).valid


def test_revocation_does_not_mask_the_first_failure(verifier: Verifier, trust: Trust) -> None:
    verdict = verifier.verify(valid(trust.es), now=EXP + 10_000, revoked={JTI})

    assert_invalid(verdict, "expired")


def test_revocation_list_is_checked_for_the_signed_jti_only(
    verifier: Verifier, trust: Trust
) -> None:
    # A forged code re-using a revoked jti is reported as forged, not as revoked.
    text = valid(trust.attacker)

    assert_invalid(verifier.verify(text, now=NOW, revoked={JTI}), "unknown_key")


# ---------------------------------------------------------------------------- to_dict


def test_to_dict_of_a_valid_verdict(verifier: Verifier, trust: Trust) -> None:
    data = verifier.verify(valid(trust.es, st="yellow"), now=NOW).to_dict()

    assert data == {
        "verdict": "valid",
        "status": "yellow",
        "reasons": [],
        "code_id": JTI,
        "issuer": ISSUER,
        "kid": trust.es.kid,
        "masked_name": NAME,
        "issued_at": IAT,
        "expires_at": EXP,
        "warnings": [],
        "origin": "guangdong",
        "source": None,
        "assurance": None,
    }
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


@pytest.mark.parametrize(
    ("language", "text"),
    [
        (None, "签名无效，疑似伪造或篡改"),
        ("zh-Hans", "签名无效，疑似伪造或篡改"),
        ("zh-Hant", "簽名無效，疑似偽造或篡改"),
        ("en", "Invalid signature: forged or altered"),
        ("pt", "Assinatura inválida: falsificado ou alterado"),
        ("fr", "签名无效，疑似伪造或篡改"),
    ],
)
def test_to_dict_of_an_invalid_verdict(
    verifier: Verifier, trust: Trust, language: str | None, text: str
) -> None:
    # our header and payload, the signature of another of our codes
    forged = verifier.verify(valid(trust.es)[:-86] + valid(trust.es, st="red")[-86:], now=NOW)

    data = forged.to_dict() if language is None else forged.to_dict(language)

    assert set(data) == VERDICT_KEYS
    assert data["verdict"] == "invalid"
    assert data["reasons"] == [{"code": "bad_signature", "message": text}]
    assert all(data[k] is None for k in VERDICT_KEYS - {"verdict", "reasons", "warnings"})
    assert data["warnings"] == []


@pytest.mark.parametrize("language", ["zh-Hans", "zh-Hant", "en", "pt"])
def test_to_dict_of_a_revoked_verdict(verifier: Verifier, trust: Trust, language: str) -> None:
    data = verifier.verify(valid(trust.ed), now=NOW, revoked={JTI}).to_dict(language)

    assert data["verdict"] == "invalid"
    assert data["reasons"] == [{"code": "revoked", "message": MESSAGES[Reason.REVOKED][language]}]
    assert (data["status"], data["code_id"], data["masked_name"]) == ("green", JTI, NAME)


def test_verdict_is_immutable(verifier: Verifier, trust: Trust) -> None:
    verdict = verifier.verify(valid(trust.es), now=NOW)

    with pytest.raises(AttributeError):
        verdict.verdict = "valid"  # type: ignore[misc]


def test_deeply_nested_header_does_not_raise(verifier: Verifier) -> None:
    text = "YK1:" + b64(b"[" * 2500) + ".e30." + b64(bytes(64))

    assert_invalid(verifier.verify(text, now=NOW), "malformed")


# ---------------------------------------------------------------------------- the verdict itself


_VALID_FIELDS: dict[str, Any] = {
    "status": "yellow",
    "code_id": JTI,
    "issuer": ISSUER,
    "kid": "some-kid",
    "masked_name": NAME,
    "issued_at": IAT,
    "expires_at": EXP,
    "negative_within_hours": 48,
    "doses": 3,
    "origin": "converted_from_macao",
    "source": ("MO", "k" * 22, "d" * 22),
    "assurance": "partner",
}


def test_the_hot_path_verdict_is_the_constructed_one() -> None:
    fast = _valid_verdict(**_VALID_FIELDS)
    built = Verdict(verdict="valid", **_VALID_FIELDS)

    assert type(fast) is Verdict
    assert fast == built and hash(fast) == hash(built) and repr(fast) == repr(built)
    # every slot written: reading one that was not would raise AttributeError
    assert all(getattr(fast, f.name) == getattr(built, f.name) for f in dataclasses.fields(Verdict))
    assert fast.to_dict() == built.to_dict()
    assert fast.revoked() == built.revoked()
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.status = "green"  # type: ignore[misc]


def test_warnings_read_like_reasons_in_the_asked_language() -> None:
    stale = Verdict(verdict="valid", status="green", warnings=(Reason.TRUST_STALE,))

    assert stale.to_dict("en")["warnings"] == [
        {"code": "trust_stale", "message": MESSAGES[Reason.TRUST_STALE]["en"]}
    ]
    assert stale.to_dict()["warnings"][0]["message"] == MESSAGES[Reason.TRUST_STALE]["zh-Hans"]


def test_a_verdict_invalid_without_a_reason_is_still_denied() -> None:
    # Another verifier's verdict may carry no reason; a checkpoint still says no.
    decision = policy_decision(Verdict(verdict="invalid"), default_policies().for_place("venue"))

    assert (decision.verdict, decision.reason) == ("deny", "invalid")


def test_the_hot_path_verdict_knows_every_field() -> None:
    # It writes the slots itself, so a new Verdict field (or a __post_init__) must reach it too.
    defaults = {"verdict", "reasons", "warnings", "detail"}
    assert (
        set(inspect.signature(_valid_verdict).parameters)
        == {f.name for f in dataclasses.fields(Verdict)} - defaults
    )
    assert not hasattr(Verdict, "__post_init__")
    assert {f.name: f.default for f in dataclasses.fields(Verdict) if f.name in defaults} == {
        "verdict": dataclasses.MISSING,
        "reasons": (),
        "warnings": (),
        "detail": None,
    }


@pytest.mark.parametrize("nt", [None, 0, 168])
def test_a_verified_code_gives_the_constructed_verdict(
    verifier: Verifier, any_key: SigningKey, nt: int | None
) -> None:
    verdict = verifier.verify(valid(any_key, nt=nt, vx=2), now=NOW)

    assert verdict == Verdict(
        verdict="valid",
        status="green",
        code_id=JTI,
        issuer=ISSUER,
        kid=any_key.kid,
        masked_name=NAME,
        issued_at=IAT,
        expires_at=EXP,
        negative_within_hours=nt,
        doses=2,
        origin="guangdong",
    )


def test_a_policy_decides_with_the_codes_dose_count(verifier: Verifier, trust: Trust) -> None:
    policy = parse_policies(
        {
            **default_policies().document(),
            "venue": {
                "clauses": [{"when": {"min_doses": 2}, "verdict": "allow", "reason": "doses"}],
                "default": {"verdict": "deny", "reason": "too_few_doses"},
            },
        }
    ).venue
    decisions = [
        policy_decision(verifier.verify(valid(trust.es, **claims), now=NOW), policy).verdict
        for claims in ({}, {"vx": 1}, {"vx": 2})
    ]
    assert decisions == ["deny", "deny", "allow"]


@pytest.mark.parametrize("extra", [{}, {"zz": "a claim of a later version"}])
def test_a_source_part_of_one_character_is_read(
    verifier: Verifier, trust: Trust, extra: dict[str, str]
) -> None:
    # With an unknown claim the payload is read the general way rather than by the canonical
    # pattern: both read the same.
    verdict = verifier.verify(valid(trust.es, src=["M", "k", "d"], **extra), now=NOW)
    assert verdict.valid and verdict.source == ("M", "k", "d")
