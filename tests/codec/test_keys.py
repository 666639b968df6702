"""Keys: RFC 7638 thumbprints and key ids, JWK import rules, raw signatures, PEM storage."""

from __future__ import annotations

import base64
import itertools
import os
import random
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jwk import ECKey, OKPKey

from codec.forge import b64, unb64
from yuekang.codec.errors import InvalidKey
from yuekang.codec.keys import (
    P256_ORDER,
    SigningKey,
    VerificationKey,
    _der_signature,
    algorithm_for,
    b64url_decode,
    b64url_encode,
    generate_private_key,
    is_high_s,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
    public_jwk,
    thumbprint,
)

# RFC 8037 appendix A.2 / A.3
RFC8037_JWK = {"crv": "Ed25519", "kty": "OKP", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
# RFC 8037 appendix A.4
RFC8037_SIGNING_INPUT = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = (
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


# ---------------------------------------------------------------------------- thumbprints


def test_rfc8037_thumbprint_vector() -> None:
    assert thumbprint(RFC8037_JWK) == RFC8037_THUMBPRINT


def test_rfc8037_key_id_is_first_128_bits_of_thumbprint() -> None:
    public = ed25519.Ed25519PublicKey.from_public_bytes(unb64(RFC8037_JWK["x"]))
    expected = b64(unb64(RFC8037_THUMBPRINT)[:16])

    assert expected == "kPrK_qmxVWaYVA9wwBF6Ig"
    assert key_id(public) == expected
    assert len(key_id(public)) == 22
    assert VerificationKey.from_jwk(RFC8037_JWK).kid == expected


def test_rfc8037_signature_vector(fixed_ed_key: SigningKey) -> None:
    assert public_jwk(fixed_ed_key.private_key.public_key()) == RFC8037_JWK
    assert b64(fixed_ed_key.sign(RFC8037_SIGNING_INPUT)) == RFC8037_SIGNATURE
    assert fixed_ed_key.public().verify(unb64(RFC8037_SIGNATURE), RFC8037_SIGNING_INPUT)


@pytest.mark.parametrize("extra", [{"kid": "anything"}, {"alg": "EdDSA", "use": "sig"}, {"d": "x"}])
def test_thumbprint_uses_only_required_members(extra: dict[str, str]) -> None:
    assert thumbprint({**RFC8037_JWK, **extra}) == RFC8037_THUMBPRINT


@pytest.mark.parametrize(
    "jwk", [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}, {"kty": "oct", "k": "c2"}]
)
def test_thumbprint_refuses_other_key_types(jwk: dict[str, str]) -> None:
    with pytest.raises(InvalidKey, match=r"^unsupported key type$"):
        thumbprint(jwk)


def test_thumbprint_names_the_member_a_jwk_lacks() -> None:
    ec_jwk = SigningKey.generate("ES256").public().to_jwk()
    del ec_jwk["y"]

    with pytest.raises(InvalidKey, match=r"^JWK lacks 'y'$"):
        thumbprint(ec_jwk)


def _joserfc_thumbprint(jwk: dict[str, str]) -> str:
    key = ECKey.import_key(jwk) if jwk["kty"] == "EC" else OKPKey.import_key(jwk)
    return str(key.thumbprint())


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
@pytest.mark.parametrize("attempt", range(5))
def test_thumbprint_agrees_with_joserfc(alg: Any, attempt: int) -> None:
    key = SigningKey.generate(alg)
    jwk = public_jwk(key.private_key.public_key())

    reference = _joserfc_thumbprint(jwk)

    assert thumbprint(jwk) == reference
    assert key.kid == b64(unb64(reference)[:16])


def test_p256_coordinates_keep_leading_zero_bytes() -> None:
    # RFC 7518 6.2.1.2: x and y are the full 32 bytes even when the integer is shorter; a key
    # that dropped the zero would get a different thumbprint than every other JOSE library.
    for _ in range(20_000):
        private = ec.generate_private_key(ec.SECP256R1())
        if private.public_key().public_numbers().x < 1 << 248:
            break
    else:
        pytest.fail("no key with a short x coordinate found")
    jwk = public_jwk(private.public_key())

    assert len(unb64(jwk["x"])) == 32 and unb64(jwk["x"])[0] == 0
    assert len(jwk["x"]) == len(jwk["y"]) == 43
    assert thumbprint(jwk) == _joserfc_thumbprint(jwk)
    assert VerificationKey.from_jwk(jwk).kid == SigningKey.from_private_key(private).kid


# ---------------------------------------------------------------------------- signatures


def test_es256_signature_is_raw_r_s_and_verifies_as_der(es_key: SigningKey) -> None:
    message = b"header.payload"

    signature = es_key.sign(message)

    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    public = es_key.private_key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, message, ec.ECDSA(hashes.SHA256()))  # raises if wrong
    assert es_key.public().verify(signature, message)


def test_es256_signatures_are_randomised(es_key: SigningKey) -> None:
    assert es_key.sign(b"m") != es_key.sign(b"m")


def test_eddsa_signature_verifies_with_cryptography(ed_key: SigningKey) -> None:
    signature = ed_key.sign(b"header.payload")

    assert len(signature) == 64
    public = ed_key.private_key.public_key()
    assert isinstance(public, ed25519.Ed25519PublicKey)
    public.verify(signature, b"header.payload")
    with pytest.raises(InvalidSignature):
        public.verify(signature, b"header.payloaD")


def test_der_signature_is_refused(es_key: SigningKey) -> None:
    private = es_key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    der = private.sign(b"m", ec.ECDSA(hashes.SHA256()))

    assert len(der) != 64
    assert es_key.public().verify(der, b"m") is False


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_verify_refuses_wrong_message_lengths_and_swaps(alg: Any) -> None:
    key = SigningKey.generate(alg)
    public = key.public()
    signature = key.sign(b"m")

    assert public.verify(signature, b"m") is True
    assert public.verify(signature, b"n") is False
    assert public.verify(signature[:63], b"m") is False
    assert public.verify(signature + b"\x00", b"m") is False
    # A zero byte before s is stripped by a DER encoder as a leading zero: 65 bytes, same (r, s).
    assert public.verify(signature[:32] + b"\x00" + signature[32:], b"m") is False
    assert public.verify(signature[32:] + signature[:32], b"m") is False
    assert public.verify(bytes(64), b"m") is False
    assert SigningKey.generate(alg).public().verify(signature, b"m") is False


def test_signing_key_public_half_matches(any_key: SigningKey) -> None:
    public = any_key.public()

    assert (public.kid, public.alg) == (any_key.kid, any_key.alg)
    assert public.kid == key_id(any_key.private_key.public_key())
    assert public.issuer is None and public.compromised is False


def test_only_p256_and_ed25519_keys_are_usable() -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(InvalidKey, match=r"^only P-256 EC keys are supported$"):
        SigningKey.from_private_key(p384)
    with pytest.raises(InvalidKey, match=r"^only P-256 EC keys are supported$"):
        public_jwk(p384.public_key())
    with pytest.raises(InvalidKey, match=r"^only P-256 EC keys are supported$"):
        algorithm_for(p384)
    with pytest.raises(InvalidKey, match=r"^unsupported key type 'EC'/'P-384'$"):
        VerificationKey.from_jwk({**SigningKey.generate().public().to_jwk(), "crv": "P-384"})
    with pytest.raises(InvalidKey, match=r"^unsupported algorithm 'RS256'$"):
        generate_private_key("RS256")  # type: ignore[arg-type]


def test_a_key_made_without_naming_an_algorithm_is_es256() -> None:
    # ES256 is what every checkpoint's verifier and the browser's WebCrypto support.
    key = SigningKey.generate()

    assert key.alg == "ES256"
    assert isinstance(key.private_key, ec.EllipticCurvePrivateKey)


def test_the_lower_s_is_ours_up_to_half_the_order() -> None:
    r = (1).to_bytes(32, "big")
    half = P256_ORDER // 2

    assert not is_high_s(r + half.to_bytes(32, "big"))
    assert is_high_s(r + (half + 1).to_bytes(32, "big"))


# ---------------------------------------------------------------------------- JWK import


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_jwk_round_trip(alg: Any) -> None:
    key = SigningKey.generate(alg).public()
    jwk = key.to_jwk()

    loaded = VerificationKey.from_jwk(jwk, issuer="yk:gd")

    assert (loaded.kid, loaded.alg, loaded.issuer) == (key.kid, alg, "yk:gd")
    assert loaded.to_jwk() == jwk
    assert jwk["use"] == "sig" and jwk["alg"] == alg and jwk["kid"] == key.kid
    assert "d" not in jwk


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_jwk_without_kid_or_alg_is_accepted(alg: Any) -> None:
    key = SigningKey.generate(alg)

    loaded = VerificationKey.from_jwk(public_jwk(key.private_key.public_key()))

    assert (loaded.kid, loaded.alg) == (key.kid, alg)


def _ec_jwk() -> dict[str, Any]:
    return SigningKey.generate("ES256").public().to_jwk()


def _okp_jwk() -> dict[str, Any]:
    return SigningKey.generate("EdDSA").public().to_jwk()


def _with(jwk: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = {**jwk, **changes}
    return {k: v for k, v in out.items() if v is not None}


BAD_JWKS = [
    pytest.param(lambda: _with(_ec_jwk(), alg="EdDSA"), id="ec-key-alg-eddsa"),
    pytest.param(lambda: _with(_okp_jwk(), alg="ES256"), id="okp-key-alg-es256"),
    pytest.param(lambda: _with(_ec_jwk(), alg="ES384"), id="ec-key-alg-es384"),
    pytest.param(lambda: _with(_ec_jwk(), alg="none"), id="ec-key-alg-none"),
    pytest.param(lambda: _with(_ec_jwk(), kid=_okp_jwk()["kid"]), id="kid-of-another-key"),
    pytest.param(lambda: _with(_ec_jwk(), kid="../../etc/passwd"), id="kid-arbitrary"),
    pytest.param(
        lambda: (lambda j: _with(j, kid=thumbprint(j)))(_ec_jwk()), id="kid-full-thumbprint"
    ),
    pytest.param(lambda: _with(_ec_jwk(), x=b64(b"\x01" * 31)), id="ec-x-31-bytes"),
    pytest.param(lambda: _with(_ec_jwk(), x=b64(b"\x01" * 33)), id="ec-x-33-bytes"),
    pytest.param(lambda: _with(_ec_jwk(), y=b64(b"\x01" * 31)), id="ec-y-31-bytes"),
    pytest.param(lambda: {k: v for k, v in _ec_jwk().items() if k != "y"}, id="ec-y-missing"),
    pytest.param(lambda: _with(_okp_jwk(), x=b64(b"\x01" * 31)), id="okp-x-31-bytes"),
    pytest.param(lambda: _with(_okp_jwk(), x=b64(b"\x01" * 57)), id="okp-x-ed448-length"),
    pytest.param(lambda: _with(_ec_jwk(), x=b64((1).to_bytes(32, "big"))), id="ec-point-off-curve"),
    pytest.param(lambda: _with(_ec_jwk(), x=_ec_jwk()["x"] + "="), id="ec-x-padded"),
    pytest.param(lambda: {"kty": "RSA", "n": b64(b"\x01" * 256), "e": "AQAB"}, id="kty-rsa"),
    pytest.param(lambda: {"kty": "oct", "k": b64(b"secret")}, id="kty-oct"),
    pytest.param(lambda: _with(_ec_jwk(), crv="P-384"), id="ec-crv-p384"),
    pytest.param(lambda: _with(_okp_jwk(), crv="X25519"), id="okp-crv-x25519"),
    pytest.param(lambda: _with(_okp_jwk(), crv="Ed448"), id="okp-crv-ed448"),
    pytest.param(lambda: {k: v for k, v in _ec_jwk().items() if k != "kty"}, id="kty-missing"),
    pytest.param(lambda: {k: v for k, v in _ec_jwk().items() if k != "crv"}, id="crv-missing"),
    pytest.param(lambda: _with(_ec_jwk(), x=12345), id="ec-x-integer"),
    pytest.param(lambda: {**_ec_jwk(), "x": None}, id="ec-x-null"),
    pytest.param(lambda: _with(_ec_jwk(), y=[1, 2]), id="ec-y-list"),
    pytest.param(lambda: _with(_okp_jwk(), x={"b": 1}), id="okp-x-object"),
    pytest.param(lambda: _with(_okp_jwk(), x=list(range(32))), id="okp-x-list-of-bytes"),
]


@pytest.mark.parametrize("make", BAD_JWKS)
def test_from_jwk_refuses(make: Any) -> None:
    with pytest.raises(InvalidKey):
        VerificationKey.from_jwk(make())


# ---------------------------------------------------------------------------- PEM


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_pem_round_trip_with_passphrase(alg: Any) -> None:
    private = generate_private_key(alg)

    pem = private_key_to_pem(private, b"correct horse battery staple")
    loaded = private_key_from_pem(pem, b"correct horse battery staple")

    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_id(loaded.public_key()) == key_id(private.public_key())
    assert (
        SigningKey.from_private_key(loaded)
        .public()
        .verify(SigningKey.from_private_key(private).sign(b"m"), b"m")
    )


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_pem_wrong_passphrase(alg: Any) -> None:
    pem = private_key_to_pem(generate_private_key(alg), b"correct horse battery staple")

    # What the operator reads in the log when the key passphrase is not the keys' one.
    with pytest.raises(
        InvalidKey, match=r"^cannot decrypt the private key: wrong passphrase or bad PEM$"
    ):
        private_key_from_pem(pem, b"correct horse battery stapler")


def test_pem_unencrypted_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    with pytest.raises(InvalidKey):
        private_key_from_pem(pem, b"passphrase")


@pytest.mark.parametrize(
    "private",
    [
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="p384"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="rsa"),
    ],
)
def test_pem_of_other_key_types_is_refused(private: Any) -> None:
    pem = private().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )

    with pytest.raises(InvalidKey, match=r"^unsupported private key type$"):
        private_key_from_pem(pem, b"passphrase")


def test_pem_garbage_is_refused() -> None:
    with pytest.raises(InvalidKey):
        private_key_from_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n", b"passphrase")


# ---------------------------------------------------------------------------- base64url


@pytest.mark.parametrize("length", [1, 2, 3])
def test_b64url_encodes_every_final_character(length: int) -> None:
    # Every value of the last byte, so every character of the alphabet ends some text.
    for last in range(256):
        data = bytes(length - 1) + bytes([last])
        assert b64url_encode(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("length", range(0, 70))
def test_b64url_round_trip_without_padding(length: int) -> None:
    data = os.urandom(length)

    text = b64url_encode(data)

    assert "=" not in text and "+" not in text and "/" not in text
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert b64url_decode(text) == data


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("AA==", id="padding"),
        pytest.param("AAA=", id="one-padding-char"),
        pytest.param("A", id="impossible-length-1"),
        pytest.param("AAAAA", id="impossible-length-5"),
        pytest.param("AA!A", id="bang"),
        pytest.param("AA A", id="space"),
        pytest.param("AAA\n", id="newline"),
        pytest.param("ab+/", id="standard-alphabet"),
        pytest.param("+/+/", id="only-standard-alphabet"),
        pytest.param("AB", id="non-zero-padding-bits-1-byte"),
        pytest.param("AAB", id="non-zero-padding-bits-2-bytes"),
        pytest.param("ＡＢＣＤ", id="fullwidth-letters"),
    ],
)
def test_b64url_decode_refuses(text: str) -> None:
    # One spelling per byte string: anything else would let a code be re-spelled.
    with pytest.raises(ValueError):
        b64url_decode(text)


@pytest.mark.parametrize(
    "text",
    [pytest.param(b"AAAA", id="bytes"), pytest.param(None, id="none"), pytest.param(7, id="int")],
)
def test_b64url_decode_wants_text(text: Any) -> None:
    with pytest.raises(TypeError):
        b64url_decode(text)


def _reference_b64url_decode(text: str) -> bytes | None:
    """The decoder as first written with :mod:`base64`: ``None`` where it refuses."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == text else None


def _decode_or_none(text: str) -> bytes | None:
    try:
        return b64url_decode(text)
    except ValueError:
        return None


def test_b64url_decode_agrees_with_the_base64_module_on_every_short_text() -> None:
    # Every text of up to four characters over letters with and without trailing bits, both
    # alphabets' extra characters, padding, junk and non-ASCII: the cases a strictness bug hides in.
    alphabet = "AQgwBz9-_+/=! \né"
    for length in range(5):
        for letters in itertools.product(alphabet, repeat=length):
            text = "".join(letters)
            assert _decode_or_none(text) == _reference_b64url_decode(text), repr(text)


def test_b64url_decode_agrees_with_the_base64_module_on_random_texts() -> None:
    rng = random.Random(7)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for _ in range(20_000):
        text = "".join(rng.choices(alphabet, k=rng.randrange(0, 90)))
        if rng.random() < 0.2:
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice("+/=.\x00 é") + text[at:]
        assert _decode_or_none(text) == _reference_b64url_decode(text), repr(text)


# ---------------------------------------------------------------------------- DER for ES256

_EDGE_INTEGERS = [
    0,
    1,
    0x7F,
    0x80,
    0xFF,
    0x0100,
    0x7FFF,
    0x8000,
    2**247 - 1,  # a whole leading zero byte, high bit clear after it
    2**247,
    2**248 - 1,  # a leading zero byte, then the high bit set
    2**255 - 1,
    2**255,
    2**256 - 1,
]


@pytest.mark.parametrize("r", _EDGE_INTEGERS)
@pytest.mark.parametrize("s", _EDGE_INTEGERS)
def test_der_signature_is_what_cryptography_encodes(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert _der_signature(raw) == encode_dss_signature(r, s)


def test_der_signature_is_what_cryptography_encodes_for_random_integers() -> None:
    rng = random.Random(11)
    for _ in range(5_000):
        # Random widths too, so short integers (leading zero bytes) come up often.
        r, s = (rng.getrandbits(rng.choice([256, 256, 255, 249, 248, 200, 8])) for _ in "rs")
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert _der_signature(raw) == encode_dss_signature(r, s)


def test_es256_signatures_with_short_or_high_integers_verify(es_key: SigningKey) -> None:
    # About one signature in 128 has an r or s with a leading zero byte, and half have the top
    # bit set: the two cases where the DER integer is not simply the 32 bytes.
    public = es_key.public()
    seen = {"short": 0, "high": 0}
    for n in range(5_000):
        message = b"code %d" % n
        signature = es_key.sign(message)
        halves = (signature[:32], signature[32:])
        if any(half[0] == 0 for half in halves):
            seen["short"] += 1
        elif any(half[0] & 0x80 for half in halves):
            seen["high"] += 1
        else:
            continue
        assert public.verify(signature, message)
        assert not public.verify(signature, message + b"!")
        if min(seen.values()) >= 3:
            break
    assert min(seen.values()) >= 3, seen


@pytest.mark.parametrize("width", [31, 33])
def test_an_ec_coordinate_has_exactly_32_bytes(width: int) -> None:
    # A point whose x starts with a zero byte could be written in 31 bytes, or padded to 33:
    # the same key under another spelling (another thumbprint input). Only 32 bytes load.
    while True:
        key = ec.generate_private_key(ec.SECP256R1())
        x = key.public_key().public_numbers().x.to_bytes(32, "big")
        if x[0] == 0:
            break
    jwk = _with(
        SigningKey.from_private_key(key).public().to_jwk(),
        x=b64(x[1:] if width == 31 else b"\x00" + x),
        kid=None,
    )
    with pytest.raises(InvalidKey, match="32 bytes"):
        VerificationKey.from_jwk(jwk)
