"""The ``YK1:`` wire format: golden vectors, round trips, size budget, attacks, time, interop."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import secrets
import time
from typing import Any

import jwt
import pytest
import zxingcpp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as jose_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, KeySet
from PIL import Image

from codec.forge import (
    ATTACKS,
    DROP,
    EXP,
    IAT,
    ISSUER,
    JTI,
    NAME,
    NOW,
    Attack,
    Trust,
    b64,
    claims,
    compact_json,
    forge,
    header,
    padded_to,
    parts,
    public_pem,
    segment,
    unb64,
    valid,
    with_parts,
)
from yuekang.codec.errors import (
    BadSignature,
    CodeTooLarge,
    ExpiredCode,
    InvalidCode,
    KeyNotValid,
    MalformedCode,
    NotYetValid,
    UntrustedIssuer,
)
from yuekang.codec.healthcode import (
    _CANONICAL_CLAIMS_RE,
    MAX_INPUT_CHARS,
    PREFIX,
    QR_TEXT_BUDGET,
    QR_TEXT_BUDGET_CONVERTED,
    QR_TEXT_TYPICAL,
    HealthCodeClaims,
    _claim_fields,
    _claims,
    _json_object,
    read_health_code,
    read_health_code_fields,
    sign_health_code,
)
from yuekang.codec.jwks import build_jwks
from yuekang.codec.keys import (
    P256_ORDER,
    SigningKey,
    VerificationKey,
    b64url_decode,
    b64url_encode,
)
from yuekang.health_codes.qr import qr_version, render_png

GOLDEN_CLAIMS = HealthCodeClaims(iss=ISSUER, jti=JTI, iat=IAT, exp=EXP, st="green", nm=NAME)
GOLDEN_PAYLOAD_JSON = (
    '{"iss":"yk:gd","jti":"ZXhhbXBsZS1jb2RlLWlkMQ","iat":1764100000,"exp":1764103600,'
    '"st":"green","nm":"张*三"}'
).encode()
GOLDEN_PAYLOAD = (
    "eyJpc3MiOiJ5azpnZCIsImp0aSI6IlpYaGhiWEJzWlMxamIyUmxMV2xrTVEiLCJpYXQiOjE3NjQxMDAwMDAsImV4cC"
    "I6MTc2NDEwMzYwMCwic3QiOiJncmVlbiIsIm5tIjoi5bygKuS4iSJ9"
)
GOLDEN_ES256_KID = "D8HvZq-fumkXpCwYIpjAPg"
GOLDEN_ES256_HEADER = "eyJhbGciOiJFUzI1NiIsImtpZCI6IkQ4SHZacS1mdW1rWHBDd1lJcGpBUGcifQ"
GOLDEN_EDDSA_KID = "kPrK_qmxVWaYVA9wwBF6Ig"  # RFC 8037 A.3 thumbprint, first 128 bits
GOLDEN_EDDSA_TEXT = (
    "YK1:eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SWcifQ"
    ".eyJpc3MiOiJ5azpnZCIsImp0aSI6IlpYaGhiWEJzWlMxamIyUmxMV2xrTVEiLCJpYXQiOjE3NjQxMDAwMDAsImV4cC"
    "I6MTc2NDEwMzYwMCwic3QiOiJncmVlbiIsIm5tIjoi5bygKuS4iSJ9"
    ".Jjxnye583pQvgQKRTFbTEn0ZBgcmeWkKiL9nXVMSODERdTqUKKwuyOA_Sau_Mc7khDIa0A-cpEHN6B7dPIDTBQ"
)


def read(text: Any, keys: dict[str, VerificationKey], now: int = NOW, leeway: int = 60) -> Any:
    return read_health_code(text, keys, now=now, leeway=leeway)


def now_claims(st: Any = "green", nm: str = NAME, lifetime: int = 3600) -> HealthCodeClaims:
    iat = int(time.time())
    return HealthCodeClaims(
        iss=ISSUER, jti=secrets.token_urlsafe(16), iat=iat, exp=iat + lifetime, st=st, nm=nm
    )


# ---------------------------------------------------------------------------- golden vectors


def test_golden_es256_header_and_payload(fixed_es_key: SigningKey) -> None:
    text = sign_health_code(GOLDEN_CLAIMS, fixed_es_key)

    head, payload, signature = parts(text)
    assert fixed_es_key.kid == GOLDEN_ES256_KID
    assert head == GOLDEN_ES256_HEADER
    assert unb64(head) == b'{"alg":"ES256","kid":"D8HvZq-fumkXpCwYIpjAPg"}'
    assert payload == GOLDEN_PAYLOAD
    assert unb64(payload) == GOLDEN_PAYLOAD_JSON
    assert len(text) == 298
    # The signature is randomised: check it with cryptography directly, not with our codec.
    raw = unb64(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = fixed_es_key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))


def test_golden_es256_kid_is_the_joserfc_thumbprint_prefix(fixed_es_key: SigningKey) -> None:
    jwk = fixed_es_key.public().to_jwk()
    reference = ECKey.import_key({k: jwk[k] for k in ("crv", "kty", "x", "y")}).thumbprint()

    assert b64(unb64(reference)[:16]) == GOLDEN_ES256_KID


def test_golden_eddsa_full_text(fixed_ed_key: SigningKey) -> None:
    text = sign_health_code(GOLDEN_CLAIMS, fixed_ed_key)

    assert text == GOLDEN_EDDSA_TEXT
    head, payload, signature = parts(text)
    assert unb64(head) == b'{"alg":"EdDSA","kid":"kPrK_qmxVWaYVA9wwBF6Ig"}'
    assert unb64(payload) == GOLDEN_PAYLOAD_JSON
    public = fixed_ed_key.private_key.public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(unb64(signature), f"{head}.{payload}".encode())


@pytest.mark.parametrize("text", [GOLDEN_EDDSA_TEXT])
def test_golden_eddsa_text_reads_back(text: str, fixed_ed_key: SigningKey) -> None:
    keys = {GOLDEN_EDDSA_KID: fixed_ed_key.public()}

    code = read(text, keys)

    assert code.claims == GOLDEN_CLAIMS
    assert (code.kid, code.alg) == (GOLDEN_EDDSA_KID, "EdDSA")


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("st", ["green", "yellow", "red"])
def test_round_trip(any_key: SigningKey, trusted: dict[str, VerificationKey], st: Any) -> None:
    original = dataclasses.replace(GOLDEN_CLAIMS, st=st)

    code = read(sign_health_code(original, any_key), trusted)

    assert code.claims == original
    assert (code.kid, code.alg) == (any_key.kid, any_key.alg)


def test_hand_built_code_reads_back(
    any_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    # The forge builds the documented format without sign_health_code; both must agree.
    assert read(valid(any_key), trusted).claims == GOLDEN_CLAIMS


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"st": "blue"}, r"^unknown status 'blue'$"),
        ({"exp": IAT}, r"^a code must expire after it is issued$"),
        ({"exp": IAT - 1}, r"^a code must expire after it is issued$"),
    ],
)
def test_sign_refuses_invalid_claims(
    es_key: SigningKey, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sign_health_code(dataclasses.replace(GOLDEN_CLAIMS, **changes), es_key)


def test_payload_has_exactly_the_documented_claims(any_key: SigningKey) -> None:
    text = sign_health_code(now_claims(), any_key)

    payload = json.loads(unb64(parts(text)[1]))

    assert list(payload) == ["iss", "jti", "iat", "exp", "st", "nm"]
    with_summaries = dataclasses.replace(now_claims(), nt=48, vx=3)
    payload = json.loads(unb64(parts(sign_health_code(with_summaries, any_key))[1]))
    assert list(payload) == ["iss", "jti", "iat", "exp", "st", "nm", "nt", "vx"]
    converted = dataclasses.replace(now_claims(), nt=48, src=("MO", "k" * 22, "d" * 22), ia=4)
    payload = json.loads(unb64(parts(sign_health_code(converted, any_key))[1]))
    assert payload["src"] == ["MO", "k" * 22, "d" * 22]
    assert list(payload)[-2:] == ["src", "ia"]
    assert {f.name for f in dataclasses.fields(HealthCodeClaims)} == {*payload, "vx"}
    for personal in ("name", "full_name", "doc", "document", "birth", "dob", "phone"):
        assert not any(personal in key for key in payload)


def test_payload_is_compact_utf8_json(es_key: SigningKey) -> None:
    payload = unb64(parts(sign_health_code(GOLDEN_CLAIMS, es_key))[1])

    assert b" " not in payload
    assert NAME.encode("utf-8") in payload  # not \u-escaped: escapes would cost 12 bytes/char


# ---------------------------------------------------------------------------- size


@pytest.mark.parametrize("st", ["green", "yellow", "red"])
def test_typical_code_fits_qr_version_13(any_key: SigningKey, st: Any) -> None:
    claims_ = now_claims(st)
    assert len(claims_.jti) == 22

    text = sign_health_code(claims_, any_key)

    assert len(text) <= QR_TEXT_BUDGET
    assert qr_version(text) <= 13
    if st == "green":
        assert len(text) == 298  # the length the design documents for a typical code


def test_typical_code_survives_a_qr_round_trip(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    text = sign_health_code(now_claims("yellow"), es_key)
    image = Image.open(io.BytesIO(render_png(text, "yellow"))).convert("L")

    (barcode,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)

    assert barcode.text == text
    assert int(barcode.extra["Version"]) <= 13
    assert read(barcode.text, trusted, now=int(time.time())).claims.st == "yellow"


def _claims_with_payload_bytes(size: int) -> HealthCodeClaims:
    base = len(compact_json(claims(nm="")))
    named = dataclasses.replace(GOLDEN_CLAIMS, nm="x" * (size - base))
    assert len(named.to_json()) == size
    return named


def test_largest_payload_of_version_13(any_key: SigningKey) -> None:
    # 154 fixed characters + 176 for a 132-byte payload = 330 <= 331.
    text = sign_health_code(_claims_with_payload_bytes(132), any_key)

    assert len(text) == 330 <= QR_TEXT_TYPICAL
    assert qr_version(text) == 13


def test_largest_payload_that_fits_the_budget(any_key: SigningKey) -> None:
    # 154 fixed characters + 207 for a 155-byte payload = 361 <= 362, version 14.
    text = sign_health_code(_claims_with_payload_bytes(155), any_key)

    assert len(text) == 361
    assert qr_version(text) == 14


def test_one_byte_more_is_too_large(any_key: SigningKey) -> None:
    # A 156-byte payload needs 208 base64url characters: 362, and 157 needs 210: 364 > 362.
    sign_health_code(_claims_with_payload_bytes(156), any_key)
    with pytest.raises(CodeTooLarge):
        sign_health_code(_claims_with_payload_bytes(157), any_key)


def test_long_masked_name_is_too_large(any_key: SigningKey) -> None:
    with pytest.raises(CodeTooLarge, match="budget"):
        sign_health_code(now_claims(nm="欧阳" + "*" * 60 + "娜娜"), any_key)


def test_too_large_claims_are_refused_before_signing(
    es_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bytes] = []
    real_sign = SigningKey.sign

    def counting_sign(self: SigningKey, message: bytes) -> bytes:
        calls.append(message)
        return real_sign(self, message)

    monkeypatch.setattr(SigningKey, "sign", counting_sign)
    with pytest.raises(CodeTooLarge):
        sign_health_code(now_claims(nm="x" * 200), es_key)
    assert calls == []


# ---------------------------------------------------------------------------- attacks


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.id for a in ATTACKS])
def test_attack_is_refused_with_its_reason(
    attack: Attack, trust: Trust, trusted: dict[str, VerificationKey]
) -> None:
    text = attack.build(trust)

    with pytest.raises(InvalidCode) as raised:
        read(text, trusted)

    assert type(raised.value) is attack.error
    assert raised.value.reason == attack.reason


def test_attack_table_reasons_cover_the_format_checks() -> None:
    assert {a.reason for a in ATTACKS} == {
        "algorithm_not_allowed",
        "unknown_key",
        "malformed",
        "bad_signature",
        "unsupported_version",
    }


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/chain.pem"},
        {"jku": "http://127.0.0.1:1/jwks.json", "x5u": "http://127.0.0.1:1/c.pem"},
        {"typ": "JWT", "cty": "JWT"},
        {"x5c": ["MIIB"], "x5t": "AAAA"},
    ],
)
def test_extra_header_members_are_ignored_and_nothing_is_fetched(
    extra: dict[str, Any],
    trust: Trust,
    trusted: dict[str, VerificationKey],
    no_network: list[str],
) -> None:
    text = forge(header(trust.es, **extra), claims(), trust.es)

    assert read(text, trusted).claims == GOLDEN_CLAIMS
    assert no_network == []


def test_embedded_jwk_of_our_own_key_is_ignored(
    trust: Trust, trusted: dict[str, VerificationKey], no_network: list[str]
) -> None:
    # An embedded jwk changes nothing, even when it names the right key: the verifier's own key
    # checks the signature.
    text = forge(header(trust.es, jwk=trust.attacker.public().to_jwk()), claims(), trust.es)

    assert read(text, trusted).kid == trust.es.kid
    assert no_network == []


def test_embedded_jwk_attack_fetches_nothing(
    trust: Trust, trusted: dict[str, VerificationKey], no_network: list[str]
) -> None:
    text = forge(
        header(trust.es, jwk=trust.attacker.public().to_jwk(), jku="https://evil.example/k"),
        claims(),
        trust.attacker,
    )

    with pytest.raises(BadSignature):
        read(text, trusted)
    assert no_network == []


def test_unknown_claims_are_ignored(
    any_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    text = valid(any_key, origin="yk:mo", nat="neg", doses=3)

    assert read(text, trusted).claims == GOLDEN_CLAIMS


def test_a_converted_code_keeps_its_source_and_may_use_the_larger_budget(
    any_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    source = ("MO", "A" * 22, "B" * 22)
    claims = dataclasses.replace(GOLDEN_CLAIMS, nt=168, src=source)

    text = sign_health_code(claims, any_key)

    assert QR_TEXT_BUDGET < len(text) <= QR_TEXT_BUDGET_CONVERTED
    assert read(text, trusted).claims.src == source


@pytest.mark.parametrize(
    "src", [["MO", "k"], ["MO", "k", 3], "MO.k.d", ["MO", "", "d"], ["MO", "k", "d" * 65]]
)
def test_a_malformed_source_claim_is_refused(
    src: Any, any_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    with pytest.raises(MalformedCode, match="src"):
        read(valid(any_key, src=src), trusted)


def test_input_of_exactly_max_chars_is_read(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    text = padded_to(es_key, MAX_INPUT_CHARS)

    assert len(text) == MAX_INPUT_CHARS
    assert read(text, trusted).claims == GOLDEN_CLAIMS


@pytest.mark.parametrize("junk", [None, 42, b"YK1:", ["YK1:a.b.c"], {"qr": "YK1:"}])
def test_non_text_input_is_malformed(junk: Any, trusted: dict[str, VerificationKey]) -> None:
    with pytest.raises(MalformedCode):
        read(junk, trusted)


def test_bytes_of_a_valid_code_are_not_accepted(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    with pytest.raises(MalformedCode):
        read(valid(es_key).encode(), trusted)


@pytest.mark.parametrize("where", ["header-array", "header-member"])
def test_deeply_nested_header_is_malformed(
    where: str, es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    nested = b"[" * 2500 if where == "header-array" else b'{"alg":"ES256","x":' + b"[" * 2500
    text = with_parts(b64(nested), segment(claims()), b64(bytes(64)))
    assert len(text) <= MAX_INPUT_CHARS

    with pytest.raises(MalformedCode):
        read(text, trusted)


def test_signature_spelling_is_not_malleable(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    # The last of the 86 characters carries 4 unused bits: re-spelling them must not give a
    # second valid text for the same code.
    head, payload, signature = parts(valid(es_key))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    for low_bits in range(4):
        candidate = alphabet[(last & ~0b11) | low_bits]
        if candidate == signature[-1]:
            continue
        text = with_parts(head, payload, signature[:-1] + candidate)
        with pytest.raises(InvalidCode):
            read(text, trusted)


# ---------------------------------------------------------------------------- check order


@pytest.mark.parametrize(
    ("build", "keys_change", "now", "reason"),
    [
        pytest.param(
            lambda t: forge(header(t.es, alg="none", kid="nobody"), claims(), None),
            {},
            NOW,
            "algorithm_not_allowed",
            id="alg-before-kid",
        ),
        pytest.param(
            lambda t: forge(header(t.attacker), claims(exp=IAT + 1), t.attacker),
            {},
            NOW,
            "unknown_key",
            id="key-before-time",
        ),
        pytest.param(
            lambda t: _tamper_sig(valid(t.es, iss="yk:mo")),
            {"compromised": True},
            NOW,
            "bad_signature",
            id="signature-before-issuer-and-key",
        ),
        pytest.param(
            lambda t: valid(t.es, iss="yk:mo"),
            {"compromised": True},
            EXP + 10_000,
            "untrusted_issuer",
            id="issuer-before-key-validity-and-time",
        ),
        pytest.param(
            lambda t: valid(t.es),
            {"compromised": True},
            EXP + 10_000,
            "key_not_valid",
            id="key-validity-before-time",
        ),
        pytest.param(
            lambda t: valid(t.es, st="blue"),
            {},
            EXP + 10_000,
            "malformed",
            id="claims-before-time",
        ),
    ],
)
def test_first_failing_check_decides_the_reason(
    build: Any, keys_change: dict[str, Any], now: int, reason: str, trust: Trust
) -> None:
    keys = {k: dataclasses.replace(v, **keys_change) for k, v in trust.keys.items()}

    with pytest.raises(InvalidCode) as raised:
        read(build(trust), keys, now=now)

    assert raised.value.reason == reason


def _tamper_sig(text: str) -> str:
    head, payload, _ = parts(text)
    return with_parts(head, payload, b64(bytes(64)))


# ---------------------------------------------------------------------------- time


@pytest.mark.parametrize("leeway", [0, 60, 300])
def test_expiry_boundary(
    any_key: SigningKey, trusted: dict[str, VerificationKey], leeway: int
) -> None:
    text = valid(any_key)

    assert read(text, trusted, now=EXP + leeway - 1, leeway=leeway).claims.exp == EXP
    with pytest.raises(ExpiredCode) as raised:
        read(text, trusted, now=EXP + leeway, leeway=leeway)
    assert raised.value.reason == "expired"


@pytest.mark.parametrize("leeway", [0, 60, 300])
def test_not_yet_valid_boundary(
    any_key: SigningKey, trusted: dict[str, VerificationKey], leeway: int
) -> None:
    text = valid(any_key)

    assert read(text, trusted, now=IAT - leeway, leeway=leeway).claims.iat == IAT
    with pytest.raises(NotYetValid) as raised:
        read(text, trusted, now=IAT - leeway - 1, leeway=leeway)
    assert raised.value.reason == "not_yet_valid"


def test_default_leeway_is_60_seconds(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    text = valid(es_key)

    read_health_code(text, trusted, now=EXP + 59)
    with pytest.raises(ExpiredCode):
        read_health_code(text, trusted, now=EXP + 60)


# ---------------------------------------------------------------------------- issuer and key


def _bound(key: SigningKey, **fields: Any) -> dict[str, VerificationKey]:
    return {key.kid: dataclasses.replace(key.public(), **fields)}


def test_issuer_mismatch(any_key: SigningKey) -> None:
    with pytest.raises(UntrustedIssuer) as raised:
        read(valid(any_key, iss="yk:mo"), _bound(any_key, issuer="yk:gd"))

    assert raised.value.reason == "untrusted_issuer"


def test_key_without_issuer_accepts_any_issuer(any_key: SigningKey) -> None:
    assert read(valid(any_key, iss="yk:mo"), _bound(any_key, issuer=None)).claims.iss == "yk:mo"


def test_compromised_key(any_key: SigningKey) -> None:
    with pytest.raises(KeyNotValid) as raised:
        read(valid(any_key), _bound(any_key, issuer=ISSUER, compromised=True))

    assert raised.value.reason == "key_not_valid"


@pytest.mark.parametrize("leeway", [0, 60])
def test_key_not_before_boundary(any_key: SigningKey, leeway: int) -> None:
    text = valid(any_key)

    read(text, _bound(any_key, not_before=IAT + leeway), leeway=leeway)
    with pytest.raises(KeyNotValid) as raised:
        read(text, _bound(any_key, not_before=IAT + leeway + 1), leeway=leeway)
    assert raised.value.reason == "key_not_valid"


@pytest.mark.parametrize("leeway", [0, 60])
def test_key_not_after_boundary(any_key: SigningKey, leeway: int) -> None:
    text = valid(any_key)

    read(text, _bound(any_key, not_after=EXP - leeway), leeway=leeway)
    with pytest.raises(KeyNotValid) as raised:
        read(text, _bound(any_key, not_after=EXP - leeway - 1), leeway=leeway)
    assert raised.value.reason == "key_not_valid"


# ---------------------------------------------------------------------------- interop


def _current_claims() -> HealthCodeClaims:
    return now_claims("yellow")


def _as_dict(c: HealthCodeClaims) -> dict[str, Any]:
    """The claims as they appear in the token: optional summaries are left out when empty."""
    return {k: v for k, v in dataclasses.asdict(c).items() if v is not None}


def test_pyjwt_verifies_our_codes(any_key: SigningKey) -> None:
    original = _current_claims()
    token = sign_health_code(original, any_key).removeprefix(PREFIX)

    decoded = jwt.decode(token, public_pem(any_key), algorithms=[any_key.alg])

    assert decoded == _as_dict(original)
    assert jwt.get_unverified_header(token) == {"alg": any_key.alg, "kid": any_key.kid}


def test_pyjwt_rejects_our_tampered_code(es_key: SigningKey) -> None:
    head, _, signature = parts(sign_health_code(_current_claims(), es_key))
    token = f"{head}.{segment(claims(st='red'))}.{signature}"

    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, public_pem(es_key), algorithms=["ES256"])


@pytest.mark.filterwarnings("ignore::joserfc.errors.SecurityWarning")
def test_joserfc_verifies_our_codes_with_our_jwks(trust: Trust) -> None:
    jwks = build_jwks(ISSUER, [trust.es.public(), trust.ed.public()])
    key_set = KeySet.import_key_set(json.loads(json.dumps(jwks)))
    for key in (trust.es, trust.ed):
        original = _current_claims()
        token = sign_health_code(original, key).removeprefix(PREFIX)

        decoded = jose_jwt.decode(token, key_set, algorithms=[key.alg])

        assert decoded.claims == _as_dict(original)
        assert decoded.header["kid"] == key.kid


def test_joserfc_warns_that_eddsa_is_deprecated(ed_key: SigningKey) -> None:
    # Interop note: joserfc follows RFC 9864, which deprecates "EdDSA" for "Ed25519".
    key_set = KeySet.import_key_set(build_jwks(ISSUER, [ed_key.public()]))
    token = sign_health_code(_current_claims(), ed_key).removeprefix(PREFIX)

    with pytest.warns(SecurityWarning):
        jose_jwt.decode(token, key_set, algorithms=["EdDSA"])


def _low_s(token: str) -> str:
    """The token with its ES256 signature in the low-s form we make: PyJWT signs with whichever
    ``s`` OpenSSL gives, and half of the time that is the high one, which our codes refuse."""
    head, signature = token.rsplit(".", 1)
    raw = b64url_decode(signature)
    s = int.from_bytes(raw[32:], "big")
    low = min(s, P256_ORDER - s)
    return head + "." + b64url_encode(raw[:32] + low.to_bytes(32, "big"))


def test_pyjwt_token_is_accepted(any_key: SigningKey, trusted: dict[str, VerificationKey]) -> None:
    original = _current_claims()
    token = jwt.encode(
        _as_dict(original), any_key.private_key, algorithm=any_key.alg, headers={"kid": any_key.kid}
    )
    assert jwt.get_unverified_header(token)["typ"] == "JWT"  # pyjwt adds typ: ignored by us
    if any_key.alg == "ES256":
        token = _low_s(token)

    code = read(PREFIX + token, trusted, now=original.iat)

    assert code.claims == original
    assert code.kid == any_key.kid


def test_pyjwt_token_without_prefix_is_malformed(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    token = jwt.encode(
        _as_dict(_current_claims()),
        es_key.private_key,
        algorithm="ES256",
        headers={"kid": es_key.kid},
    )

    with pytest.raises(MalformedCode):
        read(token, trusted)


# ----------------------------------------------------------------- NAT and vaccination summaries


def test_the_largest_code_with_both_summaries_fits_the_qr_budget(any_key: SigningKey) -> None:
    # The longest of everything a code can hold: yellow, a masked name of two four-byte
    # characters, "negative within 168 hours", ten doses, an assurance: version 14.
    claims = dataclasses.replace(now_claims("yellow", nm="𠀀*𠀁"), nt=168, vx=10, ia=4)
    text = sign_health_code(claims, any_key)
    assert len(text.encode()) <= QR_TEXT_BUDGET
    assert qr_version(text) == 14
    assert read_health_code(text, {any_key.kid: any_key.public()}, now=claims.iat)


def test_every_usual_code_with_its_assurance_stays_in_version_13(any_key: SigningKey) -> None:
    # Yellow, a three-character name of the Basic Multilingual Plane, the longest test bucket,
    # a one-digit dose count and the assurance: the most an ordinary code usually carries.
    claims = dataclasses.replace(now_claims("yellow", nm="欧*娜"), nt=168, vx=9, ia=4)
    text = sign_health_code(claims, any_key)
    assert len(text.encode()) <= QR_TEXT_TYPICAL
    assert qr_version(text) == 13


@pytest.mark.parametrize(
    ("claim", "value"),
    [("nt", "48"), ("nt", -1), ("nt", True), ("vx", 1.5), ("vx", 100000), ("vx", [3])],
)
def test_a_summary_claim_of_the_wrong_type_is_malformed(
    es_key: SigningKey, claim: str, value: object
) -> None:
    text = valid(es_key, **{claim: value})
    with pytest.raises(MalformedCode, match=claim):
        read_health_code(text, {es_key.kid: es_key.public()}, now=IAT)


def test_summary_claims_come_back_from_a_signed_code(es_key: SigningKey) -> None:
    text = valid(es_key, nt=48, vx=3)
    verified = read_health_code(text, {es_key.kid: es_key.public()}, now=IAT)
    assert (verified.claims.nt, verified.claims.vx) == (48, 3)


# ---------------------------------------------------------------- the canonical-claims fast path


def _general_way(payload: bytes) -> str:
    """What the general parse (``json.loads`` and the claim checks) answers, as a ``repr`` so
    that ``1`` and ``True``, or ``1`` and ``1.0``, stay apart."""
    try:
        return repr(_claims(_json_object(b64(payload), "payload")))
    except MalformedCode as exc:
        return f"MalformedCode({exc})"


def _fast_way(payload: bytes) -> str:
    try:
        return repr(_claim_fields(b64(payload)))
    except MalformedCode as exc:
        return f"MalformedCode({exc})"


_CANONICAL = compact_json(claims())
_SRC_OK = ["MO", "k" * 22, "d" * 64]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_CANONICAL, id="canonical"),
        pytest.param(compact_json(claims(nt=48)), id="nt"),
        pytest.param(compact_json(claims(vx=3)), id="vx"),
        pytest.param(compact_json(claims(nt=0, vx=0)), id="zero-summaries"),
        pytest.param(compact_json(claims(nt=9999, vx=9999)), id="largest-summaries"),
        pytest.param(compact_json(claims(nt=10000)), id="nt-too-large"),
        pytest.param(compact_json(claims(nt=None)), id="nt-null"),
        pytest.param(compact_json(claims(vx=3, nt=48)), id="summaries-swapped"),
        pytest.param(compact_json(claims(src=_SRC_OK)), id="src"),
        pytest.param(compact_json(claims(nt=24, vx=2, src=_SRC_OK)), id="everything"),
        pytest.param(compact_json(claims(src=["MO", "k", "d" * 65])), id="src-part-too-long"),
        pytest.param(compact_json(claims(src=["MO", "", "d"])), id="src-part-empty"),
        pytest.param(compact_json(claims(src=["MO", "k"])), id="src-two-parts"),
        pytest.param(compact_json(claims(src=["MO", "k", 3])), id="src-number"),
        pytest.param(compact_json(claims(iat=0, exp=1)), id="zero-seconds"),
        pytest.param(compact_json(claims(exp=10**18 - 1)), id="eighteen-digits"),
        pytest.param(compact_json(claims(exp=10**18)), id="nineteen-digits"),
        pytest.param(compact_json(claims(exp=10**40)), id="forty-digits"),
        pytest.param(compact_json(claims(iat=-1)), id="negative"),
        pytest.param(compact_json(claims(iat=True)), id="bool-seconds"),
        pytest.param(compact_json(claims(iat=1.0)), id="float-seconds"),
        pytest.param(_CANONICAL.replace(b'"iat":', b'"iat":0'), id="leading-zero"),
        pytest.param(_CANONICAL.replace(b'"iat":1764100000', b'"iat":1.7641e9'), id="exponent"),
        pytest.param(compact_json(claims(st="blue")), id="unknown-status"),
        pytest.param(compact_json(claims(iss="")), id="empty-issuer"),
        pytest.param(compact_json(claims(nm=DROP)), id="no-name"),
        pytest.param(compact_json(claims(nm=7)), id="numeric-name"),
        pytest.param(compact_json(claims(x="unknown")), id="unknown-claim"),
        pytest.param(compact_json({"x": 1, **claims()}), id="unknown-claim-first"),
        pytest.param(compact_json(dict(reversed(claims().items()))), id="reversed-order"),
        pytest.param(json.dumps(claims(), ensure_ascii=True).encode(), id="spaces-and-escapes"),
        pytest.param(
            json.dumps(claims(), separators=(",", ":")).encode(), id="unicode-escaped-name"
        ),
        pytest.param(compact_json(claims(nm='张"三')), id="escaped-quote"),
        pytest.param(compact_json(claims(nm="张\\三")), id="escaped-backslash"),
        pytest.param(compact_json(claims(nm="张\n三")), id="escaped-newline"),
        pytest.param(_CANONICAL.replace(b"*", b"\n"), id="raw-newline-in-name"),
        pytest.param(_CANONICAL.replace(b"*", b"\x00"), id="raw-nul-in-name"),
        pytest.param(_CANONICAL.replace(b"*", b"\x7f"), id="raw-delete-in-name"),
        pytest.param(_CANONICAL.replace(b"*", b"\\ud800"), id="lone-surrogate-escape"),
        pytest.param(_CANONICAL.replace(b"*", "\u2028".encode()), id="line-separator"),
        pytest.param(_CANONICAL.replace(b"*", "𠀀".encode()), id="four-byte-character"),
        pytest.param(_CANONICAL.replace(b'"st":"green"', b'"st":"red","st":"green"'), id="dup"),
        pytest.param(_CANONICAL + b"\n", id="trailing-newline"),
        pytest.param(b" " + _CANONICAL, id="leading-space"),
        pytest.param("\ufeff".encode() + _CANONICAL, id="bom"),
        pytest.param(_CANONICAL + b"{}", id="extra-data"),
        pytest.param(_CANONICAL[:-1], id="truncated"),
        pytest.param(_CANONICAL.replace("张".encode(), b"\xe5\xbc"), id="broken-utf8"),
        pytest.param(b"[1,2,3]", id="array"),
        pytest.param(b"", id="empty"),
    ],
)
def test_the_claims_fast_path_answers_as_json_loads_would(payload: bytes) -> None:
    assert _fast_way(payload) == _general_way(payload)


def test_the_claims_fast_path_answers_as_json_loads_would_for_random_claims() -> None:
    rng = random.Random(5)
    pools: dict[str, list[Any]] = {
        "iss": ["yk:gd", "", "MO", 'a"b', "a\\b", "é", None, 1],
        "jti": [JTI, "", "x" * 100, "\x1f", "\x7f", None],
        "iat": [IAT, 0, -1, True, 1.5, 10**18, 10**19, "1", None],
        "exp": [EXP, 1, 10**18 - 1, False, None],
        "st": ["green", "yellow", "red", "Green", "", None, 0],
        "nm": [NAME, "张*三" * 30, "\u2028", "a\tb", "𠀀*𠀁", "", None],
        "nt": [24, 0, 9999, 10000, -1, True, None, "48"],
        "vx": [3, 0, 9999, 10000, 2.0, None],
        "src": [_SRC_OK, ["MO", "k", "d" * 65], ["a", "b"], "MO", None, [1, 2, 3]],
        "zz": [1, "unknown"],
    }
    for _ in range(3_000):
        body = {
            name: rng.choice(values)
            for name, values in pools.items()
            if rng.random() < (0.97 if name in ("iss", "jti", "iat", "exp", "st", "nm") else 0.4)
        }
        body = {k: v for k, v in body.items() if v is not None or rng.random() < 0.5}
        if rng.random() < 0.1:
            body = dict(rng.sample(list(body.items()), len(body)))
        payload = json.dumps(body, ensure_ascii=rng.random() < 0.2, separators=(",", ":")).encode()
        assert _fast_way(payload) == _general_way(payload), payload


@pytest.mark.parametrize(
    "made",
    [
        pytest.param(GOLDEN_CLAIMS, id="plain"),
        pytest.param(dataclasses.replace(GOLDEN_CLAIMS, nt=168, vx=10), id="summaries"),
        pytest.param(dataclasses.replace(GOLDEN_CLAIMS, nt=0, vx=1), id="small-summaries"),
        pytest.param(dataclasses.replace(GOLDEN_CLAIMS, nm="𠀀*𠀁", st="red"), id="red-astral"),
        pytest.param(
            dataclasses.replace(GOLDEN_CLAIMS, src=("MO", "k" * 22, "d" * 22)), id="converted"
        ),
    ],
)
def test_what_we_sign_takes_the_fast_path(made: HealthCodeClaims) -> None:
    # The fast path only pays off if the codes we issue match it: to_json and the pattern must
    # move together.
    assert _CANONICAL_CLAIMS_RE.fullmatch(made.to_json().decode()) is not None
    assert HealthCodeClaims(*_claim_fields(b64(made.to_json()))) == made


def test_an_escaped_spelling_reads_back_the_same_claims(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    escaped = json.dumps(claims(), separators=(",", ":")).encode()  # \u5f20*\u4e09
    assert b"\\u" in escaped
    text = forge(header(es_key), escaped, es_key)
    assert read(text, trusted).claims == read(valid(es_key), trusted).claims


def test_read_health_code_fields_are_read_health_codes_claims(
    any_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    text = valid(any_key, nt=72, vx=2, src=_SRC_OK)
    fields, kid, alg = read_health_code_fields(text, trusted, now=NOW, leeway=60)
    code = read_health_code(text, trusted, now=NOW)
    assert (HealthCodeClaims(*fields), kid, alg) == (code.claims, code.kid, code.alg)
    assert code.claims.src == tuple(_SRC_OK)


def test_our_signatures_are_low_s_and_a_high_s_spelling_is_refused(
    es_key: SigningKey, trusted: dict[str, VerificationKey]
) -> None:
    # ECDSA's (r, n - s) verifies as well as (r, s): the second spelling of every code. We sign
    # with the lower s, and refuse the higher, so a code text has one spelling.
    half = (P256_ORDER // 2).to_bytes(32, "big")
    texts = [sign_health_code(now_claims(), es_key) for _ in range(40)]
    assert all(b64url_decode(text.split(".")[2])[32:] <= half for text in texts)
    text = texts[0]
    head, signature = text.rsplit(".", 1)
    raw = b64url_decode(signature)
    flipped = raw[:32] + (P256_ORDER - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    public = trusted[es_key.kid]
    assert public.verify(flipped, head.removeprefix("YK1:").encode())  # valid ECDSA all the same
    with pytest.raises(BadSignature, match="high-s"):
        read(head + "." + b64url_encode(flipped), trusted)


def _converted_with_payload_bytes(size: int) -> HealthCodeClaims:
    source = ("MO", "A" * 22, "B" * 22)
    base = len(dataclasses.replace(GOLDEN_CLAIMS, nm="", src=source).to_json())
    claims = dataclasses.replace(GOLDEN_CLAIMS, nm="x" * (size - base), src=source)
    assert len(claims.to_json()) == size
    return claims


def test_the_converted_budget_is_exactly_version_15(any_key: SigningKey) -> None:
    # 154 fixed characters + 258 for a 193-byte payload = 412, version 15's capacity at level M;
    # one byte more needs 259 characters.
    text = sign_health_code(_converted_with_payload_bytes(193), any_key)
    assert len(text) == QR_TEXT_BUDGET_CONVERTED == 412
    assert qr_version(text) == 15
    with pytest.raises(CodeTooLarge, match="412"):
        sign_health_code(_converted_with_payload_bytes(194), any_key)
