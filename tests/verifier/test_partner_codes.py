"""Macao codes and converted codes at an offline checkpoint: the bundle lists Macao as an issuer
with its keys and colour table, and verdicts say where each code came from."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets

import base45
import pytest

from codec.forge import IAT, NOW, Trust, valid
from yuekang.codec.bundle import (
    BundleIssuer,
    BundleKey,
    MalformedBundle,
    TrustBundle,
    bundle_payload,
    read_bundle,
    sign_bundle,
)
from yuekang.codec.formats import PartnerCode
from yuekang.codec.keys import SigningKey, VerificationKey, b64url_encode
from yuekang.codec.macao import MacaoCodeClaims, sign_macao_code, source_digest
from yuekang.rules.policy import default_policies
from yuekang.verifier import TrustStore, policy_decision

DAY = 86_400
COLOURS = {"verde": "green", "amarelo": "yellow", "vermelho": "red"}
MACAO_TIME = dt.timezone(dt.timedelta(hours=8))


@pytest.fixture(scope="module")
def anchor() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="module")
def macao_key() -> SigningKey:
    return SigningKey.generate("ES256")


def macao_code(key: SigningKey, colour: str = "verde", **changes: object) -> str:
    claims = MacaoCodeClaims(
        iss="MO",
        cti=secrets.token_urlsafe(16),
        iat=IAT,
        exp=IAT + 6 * 3600,
        cor=colour,  # type: ignore[arg-type]
        nome="陳*文",
        tdoc="BIR",
        tan=dt.datetime.fromtimestamp(NOW, MACAO_TIME).date().isoformat(),
    )
    return sign_macao_code(dataclasses.replace(claims, **changes), key)


def issuer(key: VerificationKey, **changes: object) -> BundleIssuer:
    base = BundleIssuer(id="macao", issuer="MO", format="MO1", keys=(key,), colours=COLOURS)
    return dataclasses.replace(base, **changes)


def store(anchor: SigningKey, trust: Trust, *issuers: BundleIssuer) -> TrustStore:
    bundle = TrustBundle(
        issuer="yk:gd",
        version=1,
        issued_at=IAT - 3600,
        expires_at=IAT + DAY,
        grace=3 * DAY,
        keys=(BundleKey(trust.es.public(), "active", IAT - 30 * DAY, IAT + 60 * DAY),),
        revoked={},
        policies=default_policies().document(),
        issuers=issuers,
    )
    return TrustStore(anchor.public()).load(sign_bundle(bundle, anchor), now=NOW)


def macao_public(key: SigningKey, **changes: object) -> VerificationKey:
    public = dataclasses.replace(key.public(), issuer="MO")
    return dataclasses.replace(public, **changes)


def test_a_macao_code_is_judged_offline_and_marked_issued_by_macao(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey
) -> None:
    held = store(anchor, trust, issuer(macao_public(macao_key)))
    text = macao_code(macao_key)

    verdict = held.verify(text, now=NOW)

    assert verdict.valid and verdict.status == "green"
    assert verdict.origin == "issued_by_macao"
    assert (verdict.issuer, verdict.masked_name) == ("MO", "陳*文")
    data = verdict.to_dict("en")
    assert data["origin"] == "issued_by_macao" and data["source"] is None
    # a test on today's date counts as at most a day old: a border gate asking for 48 hours lets
    # the person through
    assert verdict.negative_within_hours is not None and verdict.negative_within_hours <= 24
    assert policy_decision(verdict, held.policy("border")).verdict == "allow"


@pytest.mark.parametrize(("colour", "status"), [("amarelo", "yellow"), ("vermelho", "red")])
def test_macao_colours_map_through_the_bundle_table(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey, colour: str, status: str
) -> None:
    held = store(anchor, trust, issuer(macao_public(macao_key)))

    verdict = held.verify(macao_code(macao_key, colour), now=NOW)

    assert verdict.valid and verdict.status == status
    assert policy_decision(verdict, held.policy("venue")).verdict == "deny"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("no issuer in the bundle", "untrusted_issuer"),
        ("unknown key", "unknown_key"),
        ("retired key", "key_not_valid"),
        ("expired", "expired"),
        ("tampered", "bad_signature"),
        ("other issuer", "untrusted_issuer"),
    ],
)
def test_macao_codes_that_must_not_pass(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey, case: str, reason: str
) -> None:
    partner = issuer(macao_public(macao_key))
    text = macao_code(macao_key)
    if case == "no issuer in the bundle":
        held = store(anchor, trust)
    elif case == "retired key":
        held = store(anchor, trust, issuer(macao_public(macao_key, compromised=True)))
    else:
        held = store(anchor, trust, partner)
    if case == "unknown key":
        text = macao_code(SigningKey.generate("ES256"))
    elif case == "expired":
        text = macao_code(macao_key, iat=NOW - 7 * 3600, exp=NOW - 3600)
    elif case == "tampered":
        raw = bytearray(base45.b45decode(text.removeprefix("MO1:")))
        raw[-1] ^= 0x01  # the last byte of the signature
        text = "MO1:" + base45.b45encode(bytes(raw)).decode()
    elif case == "other issuer":
        text = macao_code(macao_key, iss="HK")

    verdict = held.verify(text, now=NOW)

    assert verdict.verdict == "invalid"
    assert [r.value for r in verdict.reasons] == [reason]


def test_a_converted_code_is_marked_with_its_source(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey
) -> None:
    held = store(anchor, trust, issuer(macao_public(macao_key)))
    source = macao_code(macao_key)
    src = ["MO", macao_key.kid, source_digest(source)]
    text = valid(trust.es, src=src, nt=48)

    verdict = held.verify(text, now=NOW)

    assert verdict.valid and verdict.origin == "converted_from_macao"
    assert verdict.to_dict()["source"] == {
        "issuer": "MO",
        "kid": macao_key.kid,
        "digest": source_digest(source),
    }
    assert held.verify(valid(trust.es), now=NOW).origin == "guangdong"


def test_the_issuers_section_survives_signing(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey
) -> None:
    retired = macao_public(SigningKey.generate("ES256"), compromised=True, not_after=IAT + DAY)
    bundle = TrustBundle(
        issuer="yk:gd",
        version=3,
        issued_at=IAT,
        expires_at=IAT + DAY,
        grace=DAY,
        keys=(),
        revoked={},
        issuers=(issuer(macao_public(macao_key)), issuer(retired, id="old")),
    )

    read = read_bundle(sign_bundle(bundle, anchor), anchor.public())

    assert [p.id for p in read.issuers] == ["macao", "old"]
    assert read.issuers[0].colours == COLOURS
    assert read.issuers[0].keys[0].kid == macao_key.kid and not read.issuers[0].keys[0].compromised
    assert read.issuers[1].keys[0].compromised and read.issuers[1].keys[0].not_after == IAT + DAY


@pytest.mark.parametrize(
    "entry",
    [
        {"id": "macao", "issuer": "MO", "format": "MO1", "keys": [], "colours": {"verde": "blue"}},
        {"id": "macao", "issuer": "MO", "format": "MO1", "keys": [{"kty": "EC"}], "colours": {}},
        {"id": "macao", "issuer": "MO", "keys": [], "colours": {}},
        "macao",
    ],
)
def test_a_malformed_issuers_section_is_refused(anchor: SigningKey, entry: object) -> None:
    payload = bundle_payload(
        TrustBundle(
            issuer="yk:gd",
            version=1,
            issued_at=IAT,
            expires_at=IAT + 1,
            grace=0,
            keys=(),
            revoked={},
        )
    )
    payload["issuers"] = [entry]
    header = {"alg": anchor.alg, "kid": anchor.kid, "typ": "yk-bundle+jws"}
    signing_input = (
        b64url_encode(json.dumps(header).encode())
        + "."
        + b64url_encode(json.dumps(payload).encode())
    )
    text = signing_input + "." + b64url_encode(anchor.sign(signing_input.encode()))

    with pytest.raises(MalformedBundle):
        read_bundle(text, anchor.public())


def test_a_macao_tests_age_counts_from_the_start_of_its_day_in_macao() -> None:
    # A Macao code carries the day of its test, not the hour: the age is counted from that
    # day's midnight in Macao (UTC+8), so a test can only look older than it was, never fresher.
    macao_midnight = int(dt.datetime(2026, 12, 7, tzinfo=MACAO_TIME).timestamp())

    def hours(day: str | None, now: int) -> int | None:
        tested_on = None if day is None else dt.date.fromisoformat(day)
        code = PartnerCode("MO", "c", "k", "d", 0, 1, "verde", "陳**", "BIR", tested_on, 8)
        return code.hours_since_test(now)

    assert hours("2026-12-07", macao_midnight) == 0
    assert hours("2026-12-07", macao_midnight + 3599) == 0
    assert hours("2026-12-07", macao_midnight + 3600) == 1
    assert hours("2026-12-06", macao_midnight + 47 * 3600) == 71
    # A device clock behind the test's day (a test dated "tomorrow" by the clock): not negative.
    assert hours("2026-12-08", macao_midnight) == 0
    assert hours(None, macao_midnight) is None


def test_a_refused_macao_code_is_explained_to_a_technician(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey
) -> None:
    recognised = store(anchor, trust, issuer(macao_public(macao_key)))
    unmapped = store(anchor, trust, issuer(macao_public(macao_key), colours={"verde": "green"}))

    not_recognised = store(anchor, trust).verify(macao_code(macao_key), now=NOW)
    expired = recognised.verify(macao_code(macao_key, iat=NOW - 7200, exp=NOW - 3600), now=NOW)
    grey = unmapped.verify(macao_code(macao_key, "amarelo"), now=NOW)

    assert not_recognised.detail == "this device was not told to recognise Macao codes"
    assert (expired.detail, expired.origin) == ("the code has expired", "issued_by_macao")
    assert (grey.verdict, [r.value for r in grey.reasons]) == ("invalid", ["malformed"])
    assert grey.detail == "colour 'amarelo' is not in the partner's mapping table"


def test_a_macao_code_gets_the_devices_clock_leeway(
    anchor: SigningKey, trust: Trust, macao_key: SigningKey
) -> None:
    # Handheld clocks drift: the device's leeway (120 s) applies to Macao codes as to ours.
    held = store(anchor, trust, issuer(macao_public(macao_key)))
    expired_90_seconds_ago = macao_code(macao_key, exp=NOW - 90)

    assert held.verify(expired_90_seconds_ago, now=NOW).valid
    assert not held.verify(expired_90_seconds_ago, now=NOW + 31).valid
