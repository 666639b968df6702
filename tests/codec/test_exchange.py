"""The Guangdong ⇄ Macao exchange codec: packages (signed, then encrypted) and request proofs.

Interop is checked against independent implementations: joserfc and PyJWT directly, and one
decryption written from the module docstring alone with ``cryptography`` primitives. Forged inputs
are built by hand here (inner JWS signed with :meth:`SigningKey.sign`, encrypted with joserfc), not
with :func:`seal_package`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from codec.forge import DROP, b64, compact_json, unb64
from yuekang.codec.errors import InvalidKey
from yuekang.codec.exchange import (
    EXCHANGE_ERRORS,
    MAX_LIFETIME,
    MAX_PACKAGE_CHARS,
    MAX_PROOF_CHARS,
    REQUEST_WINDOW,
    REQUIRED_CLAIMS,
    BadSenderSignature,
    DecryptionFailed,
    EncryptionKey,
    EncryptionPublicKey,
    ExchangeError,
    OpenedPackage,
    PackageExpired,
    PackageLifetimeTooLong,
    PackageMalformed,
    PackageNotYetValid,
    RequestMismatch,
    RequestTooOld,
    RetiredSenderKey,
    SignatureMalformed,
    SignatureMissing,
    UnknownSenderKey,
    WrongAudience,
    WrongIssuer,
    WrongRecipientKey,
    body_hash,
    new_jti,
    open_package,
    seal_package,
    sign_request,
    verify_request,
)
from yuekang.codec.keys import SigningKey, VerificationKey, b64url_decode, b64url_encode, thumbprint

GD: Final = "yk:gd"
MO: Final = "yk:mo"
IAT: Final = 1_764_100_000
EXP: Final = IAT + 300
NOW: Final = IAT + 100
JTI: Final = "ZXhjaGFuZ2UtcGFja2FnZQ"
LEEWAY: Final = 60
JWE_ALGS: Final = ["ECDH-ES", "A256GCM"]
METHOD: Final = "POST"
PATH: Final = "/v1/exchange/packages?batch=7"
BODY: Final = b'{"package":"eyJ..."}'
IDK: Final = "0b3a7c1e-6a55-4a0e-9f0b-1b2a3c4d5e6f"


def node_id(value: object) -> str:
    """A test id from a value's repr, in characters a node id on a command line survives (a
    bracket or a quote in it keeps ``pytest FILE::test[id]`` from finding the test)."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", repr(value)).strip("-")[:50]


@dataclass(frozen=True)
class Parties:
    """Macao seals to Guangdong. ``sender`` is Macao's signing key, ``recipient`` Guangdong's
    current encryption key; ``old_recipient`` is one Guangdong no longer holds, ``stranger`` a
    signing key nobody trusts."""

    sender: SigningKey
    recipient: EncryptionKey
    old_recipient: EncryptionKey
    stranger: SigningKey
    ed_sender: SigningKey

    @property
    def sender_keys(self) -> dict[str, VerificationKey]:
        return {
            k.kid: dataclasses.replace(k.public(), issuer=MO) for k in (self.sender, self.ed_sender)
        }

    @property
    def decryption_keys(self) -> dict[str, EncryptionKey]:
        return {self.recipient.kid: self.recipient}


@pytest.fixture(scope="module")
def parties() -> Parties:
    return Parties(
        sender=SigningKey.generate("ES256"),
        recipient=EncryptionKey.generate(),
        old_recipient=EncryptionKey.generate(),
        stranger=SigningKey.generate("ES256"),
        ed_sender=SigningKey.generate("EdDSA"),
    )


def claims(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "iss": MO,
        "aud": GD,
        "iat": IAT,
        "exp": EXP,
        "jti": JTI,
        "typ": "conversion.request",
        "doc": {"type": "MO-BIR", "number": "1234567(8)"},
        "name": "陳大文",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not DROP}


def seal(parties: Parties, **overrides: Any) -> str:
    return seal_package(
        claims(**overrides), signer=parties.sender, recipient=parties.recipient.public()
    )


def open_(text: Any, parties: Parties, **overrides: Any) -> OpenedPackage:
    arguments: dict[str, Any] = {
        "decryption_keys": parties.decryption_keys,
        "sender_keys": parties.sender_keys,
        "retired_sender_kids": (),
        "issuer": MO,
        "audience": GD,
        "now": NOW,
        "leeway": LEEWAY,
    }
    arguments.update(overrides)
    return open_package(text, **arguments)


def inner_jws(
    signer: SigningKey,
    payload: bytes | dict[str, Any] | None = None,
    **header: Any,
) -> str:
    """An inner JWS built by hand: ``header`` overrides the documented one (DROP removes)."""
    head: dict[str, Any] = {"alg": "ES256", "kid": signer.kid, "typ": "yk-exchange+jws"}
    head.update(header)
    head = {k: v for k, v in head.items() if v is not DROP}
    body = claims() if payload is None else payload
    signing_input = (
        b64(compact_json(head)) + "." + b64(body if isinstance(body, bytes) else compact_json(body))
    )
    return signing_input + "." + b64(signer.sign(signing_input.encode("ascii")))


def encrypt(plaintext: str | bytes, recipient: EncryptionPublicKey, **header: Any) -> str:
    """A JWE made by joserfc directly, with the documented header (overridable)."""
    protected: dict[str, Any] = {
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "kid": recipient.kid,
        "cty": "JWT",
        "typ": "yk-exchange+jwe",
    }
    protected.update(header)
    key = ECKey.import_key(recipient.to_jwk())
    return jwe.encrypt_compact(protected, plaintext, key, algorithms=JWE_ALGS)


def segments(text: str) -> list[str]:
    return text.split(".")


def header_of(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(unb64(segments(text)[0]))
    return value


def with_segment(text: str, index: int, value: str) -> str:
    parts = segments(text)
    parts[index] = value
    return ".".join(parts)


def flip_byte(segment: str, index: int = 0) -> str:
    raw = bytearray(b64url_decode(segment))
    raw[index] ^= 0x01
    return b64url_encode(bytes(raw))


def reheader(text: str, **changes: Any) -> str:
    """Re-encode the protected header with ``changes`` (DROP removes a member)."""
    head = header_of(text)
    head.update(changes)
    head = {k: v for k, v in head.items() if v is not DROP}
    return with_segment(text, 0, b64(compact_json(head)))


def raises(error: type[ExchangeError], call: Callable[[], object]) -> ExchangeError:
    with pytest.raises(error) as info:
        call()
    assert info.value.code == error.code
    assert EXCHANGE_ERRORS[error.code] is error
    return info.value


# --- encryption keys ------------------------------------------------------------------------------


def test_encryption_jwk_round_trip_and_kid(parties: Parties) -> None:
    public = parties.recipient.public()
    jwk = public.to_jwk()

    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "enc", "ECDH-ES")
    assert EncryptionPublicKey.from_jwk(jwk) == public
    assert jwk["kid"] == b64url_encode(b64url_decode(thumbprint(jwk))[:16])
    # joserfc computes the same RFC 7638 thumbprint independently.
    full = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")}).thumbprint()
    assert jwk["kid"] == b64url_encode(b64url_decode(full)[:16])


def test_encryption_jwk_without_optional_members_loads(parties: Parties) -> None:
    jwk = {
        k: v
        for k, v in parties.recipient.public().to_jwk().items()
        if k not in ("kid", "use", "alg")
    }
    assert EncryptionPublicKey.from_jwk(jwk).kid == parties.recipient.kid


@pytest.mark.parametrize(
    "change",
    [
        {"kty": "OKP"},
        {"crv": "P-384"},
        {"use": "sig"},
        {"alg": "ES256"},
        {"alg": "ECDH-ES+A256KW"},
        {"kid": "AAAAAAAAAAAAAAAAAAAAAA"},
        {"d": "AAAA"},
        {"x": "AAAA"},
        {"y": 7},
        {"x": DROP},
    ],
    ids=node_id,
)
def test_encryption_jwk_refusals(parties: Parties, change: dict[str, Any]) -> None:
    jwk = parties.recipient.public().to_jwk()
    jwk.update(change)
    jwk = {k: v for k, v in jwk.items() if v is not DROP}
    with pytest.raises(InvalidKey):
        EncryptionPublicKey.from_jwk(jwk)


def test_encryption_jwk_off_curve_point_refused(parties: Parties) -> None:
    jwk = parties.recipient.public().to_jwk()
    jwk["y"] = jwk["x"]
    with pytest.raises(InvalidKey):
        EncryptionPublicKey.from_jwk(jwk)


def test_encryption_key_must_be_p256() -> None:
    with pytest.raises(InvalidKey):
        EncryptionKey.from_private_key(ec.generate_private_key(ec.SECP384R1()))


# --- packages: round trip and interop -------------------------------------------------------------


def test_round_trip(parties: Parties) -> None:
    opened = open_(seal(parties), parties)

    assert opened.claims == claims()
    assert opened.sender_kid == parties.sender.kid
    assert opened.recipient_kid == parties.recipient.kid


def test_package_headers_are_as_documented(parties: Parties) -> None:
    package = seal(parties)
    head = header_of(package)
    epk = head.pop("epk")

    assert head == {
        "alg": "ECDH-ES",
        "enc": "A256GCM",
        "kid": parties.recipient.kid,
        "cty": "JWT",
        "typ": "yk-exchange+jwe",
    }
    assert set(epk) == {"kty", "crv", "x", "y"}
    assert segments(package)[1] == ""
    assert len(unb64(segments(package)[2])) == 12
    assert len(unb64(segments(package)[4])) == 16


def test_each_package_has_a_fresh_ephemeral_key(parties: Parties) -> None:
    assert header_of(seal(parties))["epk"] != header_of(seal(parties))["epk"]


def test_package_opens_with_joserfc_and_pyjwt(parties: Parties) -> None:
    package = seal(parties)
    decrypted = jwe.decrypt_compact(
        package, ECKey.import_key(parties.recipient.private_key), algorithms=JWE_ALGS
    )
    assert decrypted.plaintext is not None
    inner = decrypted.plaintext.decode("ascii")
    sender_jwk = parties.sender.public().to_jwk()

    assert jwt.get_unverified_header(inner) == {
        "alg": "ES256",
        "kid": parties.sender.kid,
        "typ": "yk-exchange+jws",
    }
    by_pyjwt = jwt.decode(
        inner,
        jwt.PyJWK(sender_jwk).key,
        algorithms=["ES256"],
        audience=GD,
        issuer=MO,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert by_pyjwt == claims()
    by_joserfc = jws.deserialize_compact(inner, ECKey.import_key(sender_jwk), algorithms=["ES256"])
    assert json.loads(by_joserfc.payload) == claims()


def test_package_decrypts_from_the_docstring_alone(parties: Parties) -> None:
    """ECDH-ES + Concat KDF + AES-GCM exactly as the module docstring spells them, with
    ``cryptography`` primitives: the documentation is enough to build the other side."""
    package = seal(parties)
    header_segment, _, iv, ciphertext, tag = segments(package)
    epk = header_of(package)["epk"]
    ephemeral = ec.EllipticCurvePublicNumbers(
        int.from_bytes(unb64(epk["x"]), "big"),
        int.from_bytes(unb64(epk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    z = parties.recipient.private_key.exchange(ec.ECDH(), ephemeral)

    def len32(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data

    other_info = len32(b"A256GCM") + len32(b"") + len32(b"") + struct.pack(">I", 256)
    cek = ConcatKDFHash(hashes.SHA256(), 32, other_info).derive(z)
    plaintext = AESGCM(cek).decrypt(
        unb64(iv), unb64(ciphertext) + unb64(tag), header_segment.encode("ascii")
    )

    jws_header, payload, _ = plaintext.decode("ascii").split(".")
    assert json.loads(unb64(jws_header))["typ"] == "yk-exchange+jws"
    assert json.loads(unb64(payload)) == claims()


def test_package_built_by_pyjwt_and_joserfc_opens(parties: Parties) -> None:
    inner = jwt.encode(
        claims(),
        parties.sender.private_key,
        algorithm="ES256",
        headers={"kid": parties.sender.kid, "typ": "yk-exchange+jws"},
    )
    package = encrypt(inner, EncryptionPublicKey.from_jwk(parties.recipient.public().to_jwk()))

    opened = open_(package, parties)
    assert opened.claims == claims()
    assert opened.sender_kid == parties.sender.kid


def test_package_built_by_joserfc_alone_opens(parties: Parties) -> None:
    inner = jws.serialize_compact(
        {"alg": "ES256", "kid": parties.sender.kid, "typ": "yk-exchange+jws"},
        json.dumps(claims()).encode("utf-8"),
        ECKey.import_key(parties.sender.private_key),
        algorithms=["ES256"],
    )
    assert open_(encrypt(inner, parties.recipient.public()), parties).claims == claims()


def test_package_size_for_a_600_byte_claim_set(parties: Parties) -> None:
    padded = claims(note="")
    padded["note"] = "x" * (600 - len(compact_json(padded)))
    assert len(compact_json(padded)) == 600

    package = seal_package(padded, signer=parties.sender, recipient=parties.recipient.public())
    # protected header ~310, ciphertext = 4/3 of (95 + 800 + 86 + 2), IV 16, tag 22.
    assert 1600 < len(package) < 1700


# --- packages: refusals ---------------------------------------------------------------------------

Build = Callable[[Parties], str]


def _forged_header(**changes: Any) -> Build:
    return lambda p: reheader(seal(p), **changes)


def _epk(p: Parties, **changes: Any) -> dict[str, Any]:
    epk: dict[str, Any] = header_of(seal(p))["epk"]
    epk.update(changes)
    return {k: v for k, v in epk.items() if v is not DROP}


def _reordered_header(p: Parties) -> str:
    package = seal(p)
    head = header_of(package)
    return with_segment(package, 0, b64(compact_json(dict(reversed(head.items())))))


def _other_epk(p: Parties) -> str:
    return reheader(seal(p), epk=header_of(seal(p))["epk"])


def _off_curve_epk(p: Parties) -> str:
    package = seal(p)
    epk = header_of(package)["epk"]
    return reheader(package, epk={**epk, "y": epk["x"]})


def _wrong_key_under_our_kid(p: Parties) -> str:
    """Encrypted to another key but labelled with ours: the header is as sent, only the key is
    wrong, and that surfaces as a failed tag."""
    return encrypt(inner_jws(p.sender), p.old_recipient.public(), kid=p.recipient.kid)


def _segment(index: int, change: Callable[[str], str]) -> Build:
    def build(p: Parties) -> str:
        package = seal(p)
        return with_segment(package, index, change(segments(package)[index]))

    return build


PACKAGE_REFUSALS: Final[list[tuple[str, Build, type[ExchangeError]]]] = [
    # the outer structure
    ("four segments", lambda p: seal(p).rsplit(".", 1)[0], PackageMalformed),
    ("six segments", lambda p: seal(p) + ".", PackageMalformed),
    (
        "request proof",
        lambda p: sign_request(
            signer=p.sender,
            issuer=MO,
            method=METHOD,
            path=PATH,
            body=BODY,
            idempotency_key=None,
            now=NOW,
        ),
        PackageMalformed,
    ),
    ("header not JSON", _segment(0, lambda s: b64(b"[" + unb64(s)[1:])), PackageMalformed),
    ("header padded base64", _segment(0, lambda s: s + "="), PackageMalformed),
    ("header JSON array", _segment(0, lambda s: b64(b"[1]")), PackageMalformed),
    (
        "header duplicate member",
        _segment(0, lambda s: b64(b'{"alg":"dir",' + unb64(s)[1:])),
        PackageMalformed,
    ),
    ("alg dir", _forged_header(alg="dir"), PackageMalformed),
    ("alg RSA-OAEP", _forged_header(alg="RSA-OAEP"), PackageMalformed),
    ("alg ECDH-ES+A256KW", _forged_header(alg="ECDH-ES+A256KW"), PackageMalformed),
    ("alg none", _forged_header(alg="none"), PackageMalformed),
    ("enc A128GCM", _forged_header(enc="A128GCM"), PackageMalformed),
    ("enc A256CBC-HS512", _forged_header(enc="A256CBC-HS512"), PackageMalformed),
    ("typ JWT", _forged_header(typ="JWT"), PackageMalformed),
    ("typ missing", _forged_header(typ=DROP), PackageMalformed),
    ("cty missing", _forged_header(cty=DROP), PackageMalformed),
    ("cty lower case", _forged_header(cty="jwt"), PackageMalformed),
    ("zip", _forged_header(zip="DEF"), PackageMalformed),
    ("crit", _forged_header(crit=["exp"]), PackageMalformed),
    ("apu", _forged_header(apu="QQ"), PackageMalformed),
    ("kid missing", _forged_header(kid=DROP), PackageMalformed),
    ("kid not a string", _forged_header(kid=7), PackageMalformed),
    ("epk missing", _forged_header(epk=DROP), PackageMalformed),
    (
        "epk OKP",
        lambda p: reheader(seal(p), epk=_epk(p, kty="OKP", crv="X25519", y=DROP)),
        PackageMalformed,
    ),
    ("epk P-384", lambda p: reheader(seal(p), epk=_epk(p, crv="P-384")), PackageMalformed),
    ("epk with d", lambda p: reheader(seal(p), epk=_epk(p, d="AAAA")), PackageMalformed),
    ("epk short x", lambda p: reheader(seal(p), epk=_epk(p, x="AAAA")), PackageMalformed),
    ("encrypted key present", _segment(1, lambda s: b64(bytes(40))), PackageMalformed),
    ("IV 11 bytes", _segment(2, lambda s: b64(unb64(s)[:11])), PackageMalformed),
    ("IV not base64url", _segment(2, lambda s: s[:-1] + "+"), PackageMalformed),
    ("ciphertext empty", _segment(3, lambda s: ""), PackageMalformed),
    ("tag 15 bytes", _segment(4, lambda s: b64(unb64(s)[:15])), PackageMalformed),
    ("tag non-canonical", _segment(4, lambda s: s[:-1] + chr(ord(s[-1]) ^ 1)), PackageMalformed),
    # whom it is for
    (
        "old recipient key",
        lambda p: seal_package(claims(), signer=p.sender, recipient=p.old_recipient.public()),
        WrongRecipientKey,
    ),
    # tampering caught by the AES-GCM tag
    ("header reordered", _reordered_header, DecryptionFailed),
    ("epk of another package", _other_epk, DecryptionFailed),
    ("epk off the curve", _off_curve_epk, DecryptionFailed),
    ("other key under our kid", _wrong_key_under_our_kid, DecryptionFailed),
    ("IV byte flipped", _segment(2, flip_byte), DecryptionFailed),
    ("ciphertext byte flipped", _segment(3, flip_byte), DecryptionFailed),
    ("ciphertext last byte flipped", _segment(3, lambda s: flip_byte(s, -1)), DecryptionFailed),
    ("tag byte flipped", _segment(4, flip_byte), DecryptionFailed),
    ("ciphertext truncated", _segment(3, lambda s: b64(unb64(s)[:-1])), DecryptionFailed),
    # the inner JWS's structure
    (
        "inner two segments",
        lambda p: encrypt(inner_jws(p.sender).rsplit(".", 1)[0], p.recipient.public()),
        PackageMalformed,
    ),
    (
        "inner not ASCII",
        lambda p: encrypt("ü" + inner_jws(p.sender), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "inner typ JWT",
        lambda p: encrypt(inner_jws(p.sender, typ="JWT"), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "inner typ request",
        lambda p: encrypt(inner_jws(p.sender, typ="yk-request+jws"), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "inner extra header",
        lambda p: encrypt(inner_jws(p.sender, jku="https://x"), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "inner kid missing",
        lambda p: encrypt(inner_jws(p.sender, kid=DROP), p.recipient.public()),
        PackageMalformed,
    ),
    # who signed it
    (
        "unknown sender",
        lambda p: encrypt(inner_jws(p.stranger), p.recipient.public()),
        UnknownSenderKey,
    ),
    (
        "forged with our sender's kid",
        lambda p: encrypt(inner_jws(p.stranger, kid=p.sender.kid), p.recipient.public()),
        BadSenderSignature,
    ),
    (
        "inner alg EdDSA",
        lambda p: encrypt(inner_jws(p.sender, alg="EdDSA"), p.recipient.public()),
        BadSenderSignature,
    ),
    (
        "inner alg none",
        lambda p: encrypt(
            inner_jws(p.sender, alg="none").rsplit(".", 1)[0] + ".", p.recipient.public()
        ),
        BadSenderSignature,
    ),
    (
        "inner alg HS256",
        lambda p: encrypt(inner_jws(p.sender, alg="HS256"), p.recipient.public()),
        BadSenderSignature,
    ),
    (
        "EdDSA sender key",
        lambda p: encrypt(inner_jws(p.ed_sender, alg="EdDSA"), p.recipient.public()),
        BadSenderSignature,
    ),
    (
        "claims altered after signing",
        lambda p: encrypt(
            ".".join(
                [
                    segments(inner_jws(p.sender))[0],
                    b64(compact_json(claims(aud=MO))),
                    segments(inner_jws(p.sender))[2],
                ]
            ),
            p.recipient.public(),
        ),
        BadSenderSignature,
    ),
    # what the signed claims say
    (
        "claims not JSON",
        lambda p: encrypt(inner_jws(p.sender, b"not json"), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "claims a JSON array",
        lambda p: encrypt(inner_jws(p.sender, b"[1,2]"), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "claims duplicate member",
        lambda p: encrypt(
            inner_jws(p.sender, compact_json(claims())[:-1] + b',"aud":"yk:zz"}'),
            p.recipient.public(),
        ),
        PackageMalformed,
    ),
    (
        "claims NaN",
        lambda p: encrypt(
            inner_jws(p.sender, compact_json(claims())[:-1] + b',"x":NaN}'), p.recipient.public()
        ),
        PackageMalformed,
    ),
    (
        "claims UTF-16",
        lambda p: encrypt(
            inner_jws(p.sender, compact_json(claims()).decode().encode("utf-16")),
            p.recipient.public(),
        ),
        PackageMalformed,
    ),
    (
        "exp before iat",
        lambda p: encrypt(inner_jws(p.sender, claims(exp=IAT)), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "iat a string",
        lambda p: encrypt(inner_jws(p.sender, claims(iat=str(IAT))), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "iat a bool",
        lambda p: encrypt(inner_jws(p.sender, claims(iat=True)), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "iat a float",
        lambda p: encrypt(inner_jws(p.sender, claims(iat=IAT + 0.5)), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "exp negative",
        lambda p: encrypt(inner_jws(p.sender, claims(iat=-700, exp=-600)), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "aud a list",
        lambda p: encrypt(inner_jws(p.sender, claims(aud=[GD])), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "jti not base64url",
        lambda p: encrypt(inner_jws(p.sender, claims(jti="a/b")), p.recipient.public()),
        PackageMalformed,
    ),
    (
        "typ empty",
        lambda p: encrypt(inner_jws(p.sender, claims(typ="")), p.recipient.public()),
        PackageMalformed,
    ),
    ("wrong issuer", lambda p: seal(p, iss="yk:hk"), WrongIssuer),
    ("wrong audience", lambda p: seal(p, aud="yk:hk"), WrongAudience),
    ("expired", lambda p: seal(p, iat=NOW - 400, exp=NOW - LEEWAY), PackageExpired),
    ("not yet valid", lambda p: seal(p, iat=NOW + LEEWAY + 1, exp=NOW + 400), PackageNotYetValid),
    (
        "lifetime too long",
        lambda p: encrypt(
            inner_jws(p.sender, claims(exp=IAT + MAX_LIFETIME + 1)), p.recipient.public()
        ),
        PackageLifetimeTooLong,
    ),
]


@pytest.mark.parametrize(
    ("build", "error"),
    [pytest.param(build, error, id=name) for name, build, error in PACKAGE_REFUSALS],
)
def test_package_refusals(parties: Parties, build: Build, error: type[ExchangeError]) -> None:
    package = build(parties)
    raises(error, lambda: open_(package, parties))


def test_hand_built_package_opens(parties: Parties) -> None:
    """The forging helpers make valid packages when nothing is changed, so each refusal above is
    down to its one change."""
    assert (
        open_(encrypt(inner_jws(parties.sender), parties.recipient.public()), parties).claims
        == claims()
    )


def test_deeply_nested_claims_are_malformed_not_a_crash(parties: Parties) -> None:
    nested = b"[" * 15_000 + b"]" * 15_000
    package = encrypt(inner_jws(parties.sender, nested), parties.recipient.public())
    assert len(package) < MAX_PACKAGE_CHARS
    raises(PackageMalformed, lambda: open_(package, parties))


def test_deeply_nested_proof_claims_are_malformed(parties: Parties) -> None:
    text = hand_proof(parties.sender, b"[" * 3000 + b"]" * 3000)
    raises(SignatureMalformed, lambda: verify(text, parties))


@pytest.mark.parametrize("name", REQUIRED_CLAIMS)
def test_each_required_claim_is_required(parties: Parties, name: str) -> None:
    package = encrypt(inner_jws(parties.sender, claims(**{name: DROP})), parties.recipient.public())
    raises(PackageMalformed, lambda: open_(package, parties))


@pytest.mark.parametrize(
    "text", [None, b"a.b.c.d.e", 42, "", "....", "a" * (MAX_PACKAGE_CHARS + 1)]
)
def test_not_a_package(parties: Parties, text: Any) -> None:
    raises(PackageMalformed, lambda: open_(text, parties))


def test_oversize_package_refused_before_parsing(parties: Parties) -> None:
    package = seal(parties)
    padded = with_segment(
        package, 3, segments(package)[3] + "A" * (MAX_PACKAGE_CHARS - len(package) + 4)
    )
    raises(PackageMalformed, lambda: open_(padded, parties))


def test_retired_sender(parties: Parties) -> None:
    raises(
        RetiredSenderKey,
        lambda: open_(seal(parties), parties, retired_sender_kids={parties.sender.kid}),
    )


def test_compromised_sender_is_treated_as_retired(parties: Parties) -> None:
    keys = parties.sender_keys
    keys[parties.sender.kid] = dataclasses.replace(keys[parties.sender.kid], compromised=True)
    raises(RetiredSenderKey, lambda: open_(seal(parties), parties, sender_keys=keys))


def test_issuer_argument_must_match(parties: Parties) -> None:
    raises(WrongIssuer, lambda: open_(seal(parties), parties, issuer="yk:hk"))


def test_issuer_must_be_the_sender_keys_issuer(parties: Parties) -> None:
    """Macao's key cannot sign for another issuer, even one we would accept packages from."""
    package = encrypt(inner_jws(parties.sender, claims(iss="yk:hk")), parties.recipient.public())
    raises(WrongIssuer, lambda: open_(package, parties, issuer="yk:hk"))


def test_unbound_sender_key_is_checked_against_the_issuer_argument_only(parties: Parties) -> None:
    keys = {parties.sender.kid: parties.sender.public()}
    assert open_(seal(parties), parties, sender_keys=keys).claims["iss"] == MO


def test_old_decryption_key_still_opens_while_held(parties: Parties) -> None:
    package = seal_package(
        claims(), signer=parties.sender, recipient=parties.old_recipient.public()
    )
    held = {**parties.decryption_keys, parties.old_recipient.kid: parties.old_recipient}
    assert open_(package, parties, decryption_keys=held).recipient_kid == parties.old_recipient.kid


@pytest.mark.parametrize(
    ("now", "error"),
    [
        (EXP + LEEWAY - 1, None),
        (EXP + LEEWAY, PackageExpired),
        (IAT - LEEWAY, None),
        (IAT - LEEWAY - 1, PackageNotYetValid),
    ],
)
def test_validity_boundaries(parties: Parties, now: int, error: type[ExchangeError] | None) -> None:
    package = seal(parties)
    if error is None:
        assert open_(package, parties, now=now).claims["jti"] == JTI
    else:
        raises(error, lambda: open_(package, parties, now=now))


def test_lifetime_boundary(parties: Parties) -> None:
    assert open_(seal(parties, exp=IAT + MAX_LIFETIME), parties).claims["exp"] == IAT + MAX_LIFETIME


def test_checks_run_in_the_documented_order(parties: Parties) -> None:
    forged = encrypt(inner_jws(parties.stranger, claims(aud="yk:hk")), parties.recipient.public())
    raises(UnknownSenderKey, lambda: open_(forged, parties, now=EXP + 10_000))
    expired_elsewhere = seal(parties, aud="yk:hk")
    raises(WrongAudience, lambda: open_(expired_elsewhere, parties, now=EXP + 10_000))
    raises(WrongIssuer, lambda: open_(seal(parties, aud="yk:hk"), parties, issuer="yk:hk"))


# --- sealing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": DROP},
        {"jti": DROP},
        {"typ": DROP},
        {"aud": ""},
        {"iat": "now"},
        {"exp": IAT},
        {"exp": IAT + MAX_LIFETIME + 1},
        {"jti": "not a jti"},
        {"score": float("nan")},
        {"blob": "x" * MAX_PACKAGE_CHARS},
    ],
    ids=node_id,
)
def test_seal_refuses_what_open_would(parties: Parties, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        seal(parties, **overrides)


def test_seal_needs_an_es256_signer(parties: Parties) -> None:
    with pytest.raises(InvalidKey):
        seal_package(claims(), signer=parties.ed_sender, recipient=parties.recipient.public())


def test_new_jti_is_128_random_bits() -> None:
    jti = new_jti()
    assert len(b64url_decode(jti)) == 16
    assert jti != new_jti()


def test_error_codes_are_stable() -> None:
    assert set(EXCHANGE_ERRORS) == {
        "package_malformed",
        "wrong_recipient_key",
        "decryption_failed",
        "unknown_sender_key",
        "retired_sender_key",
        "bad_signature",
        "wrong_issuer",
        "wrong_audience",
        "package_expired",
        "package_not_yet_valid",
        "package_lifetime_too_long",
        "signature_missing",
        "signature_malformed",
        "request_mismatch",
        "request_too_old",
    }


# --- request proofs -------------------------------------------------------------------------------


def proof(parties: Parties, signer: SigningKey | None = None, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "signer": signer or parties.sender,
        "issuer": MO,
        "method": METHOD,
        "path": PATH,
        "body": BODY,
        "idempotency_key": IDK,
        "now": NOW,
        "jti": JTI,
    }
    arguments.update(overrides)
    return sign_request(**arguments)


def verify(text: Any, parties: Parties, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "keys": parties.sender_keys,
        "retired_kids": (),
        "method": METHOD,
        "path": PATH,
        "body": BODY,
        "idempotency_key": IDK,
        "now": NOW,
    }
    arguments.update(overrides)
    return verify_request(text, **arguments)


def hand_proof(signer: SigningKey, payload: bytes | dict[str, Any], **header: Any) -> str:
    head: dict[str, Any] = {"alg": "ES256", "kid": signer.kid, "typ": "yk-request+jws"}
    head.update(header)
    head = {k: v for k, v in head.items() if v is not DROP}
    body = payload if isinstance(payload, bytes) else compact_json(payload)
    signing_input = b64(compact_json(head)) + "." + b64(body)
    return signing_input + "." + b64(signer.sign(signing_input.encode("ascii")))


def proof_claims(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "iss": MO,
        "htm": METHOD,
        "htu": PATH,
        "iat": NOW,
        "jti": JTI,
        "bh": body_hash(BODY),
        "idk": IDK,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not DROP}


def test_valid_request_proof(parties: Parties) -> None:
    result = verify(proof(parties), parties)

    assert (result.issuer, result.kid, result.jti, result.iat) == (MO, parties.sender.kid, JTI, NOW)


def test_request_proof_verifies_with_pyjwt(parties: Parties) -> None:
    text = proof(parties)
    assert jwt.get_unverified_header(text) == {
        "alg": "ES256",
        "kid": parties.sender.kid,
        "typ": "yk-request+jws",
    }
    decoded = jwt.decode(
        text,
        jwt.PyJWK(parties.sender.public().to_jwk()).key,
        algorithms=["ES256"],
        options={"verify_iat": False},
    )
    assert decoded == proof_claims()
    assert decoded["bh"] == b64(hashlib.sha256(BODY).digest())


def test_request_proof_from_pyjwt_verifies(parties: Parties) -> None:
    text = jwt.encode(
        proof_claims(),
        parties.sender.private_key,
        algorithm="ES256",
        headers={"kid": parties.sender.kid, "typ": "yk-request+jws"},
    )
    assert verify(text, parties).jti == JTI


def test_default_jti_is_fresh(parties: Parties) -> None:
    first = verify(proof(parties, jti=None), parties)
    second = verify(proof(parties, jti=None), parties)
    assert first.jti != second.jti
    assert len(b64url_decode(first.jti)) == 16


def test_empty_body_and_no_idempotency_key(parties: Parties) -> None:
    text = proof(parties, method="GET", path="/v1/exchange/keys", body=b"", idempotency_key=None)
    assert (
        verify(
            text, parties, method="GET", path="/v1/exchange/keys", body=b"", idempotency_key=None
        ).iat
        == NOW
    )


@pytest.mark.parametrize(
    "actual",
    [
        {"method": "PUT"},
        {"method": "post"},
        {"path": "/v1/exchange/packages?batch=8"},
        {"path": "/v1/exchange/packages"},
        {"path": "/v1/exchange/packages/?batch=7"},
        {"body": BODY[:-1] + b" "},
        {"body": BODY + b"\n"},
        {"body": b""},
        {"idempotency_key": IDK.upper()},
        {"idempotency_key": None},
    ],
    ids=node_id,
)
def test_request_mismatch(parties: Parties, actual: dict[str, Any]) -> None:
    raises(RequestMismatch, lambda: verify(proof(parties), parties, **actual))


def test_idempotency_key_where_none_was_signed(parties: Parties) -> None:
    raises(RequestMismatch, lambda: verify(proof(parties, idempotency_key=None), parties))


@pytest.mark.parametrize(
    ("now", "ok"),
    [
        (NOW + REQUEST_WINDOW, True),
        (NOW + REQUEST_WINDOW + 1, False),
        (NOW - REQUEST_WINDOW, True),
        (NOW - REQUEST_WINDOW - 1, False),
    ],
)
def test_request_window_boundaries(parties: Parties, now: int, ok: bool) -> None:
    if ok:
        assert verify(proof(parties), parties, now=now).iat == NOW
    else:
        raises(RequestTooOld, lambda: verify(proof(parties), parties, now=now))


@pytest.mark.parametrize("text", [None, ""])
def test_request_signature_missing(parties: Parties, text: str | None) -> None:
    raises(SignatureMissing, lambda: verify(text, parties))


REQUEST_REFUSALS: Final[list[tuple[str, Callable[[Parties], Any], type[ExchangeError]]]] = [
    ("garbage", lambda p: "garbage", SignatureMalformed),
    ("bytes", lambda p: proof(p).encode(), SignatureMalformed),
    ("four segments", lambda p: proof(p) + ".", SignatureMalformed),
    ("oversize", lambda p: proof(p) + "A" * MAX_PROOF_CHARS, SignatureMalformed),
    ("header not JSON", lambda p: b64(b"{") + proof(p)[proof(p).index(".") :], SignatureMalformed),
    (
        "package typ",
        lambda p: hand_proof(p.sender, proof_claims(), typ="yk-exchange+jws"),
        SignatureMalformed,
    ),
    ("typ missing", lambda p: hand_proof(p.sender, proof_claims(), typ=DROP), SignatureMalformed),
    (
        "extra header",
        lambda p: hand_proof(p.sender, proof_claims(), jwk={"kty": "EC"}),
        SignatureMalformed,
    ),
    ("signature padded", lambda p: proof(p) + "==", SignatureMalformed),
    ("claims not JSON", lambda p: hand_proof(p.sender, b"{"), SignatureMalformed),
    ("htm missing", lambda p: hand_proof(p.sender, proof_claims(htm=DROP)), SignatureMalformed),
    (
        "iat a string",
        lambda p: hand_proof(p.sender, proof_claims(iat=str(NOW))),
        SignatureMalformed,
    ),
    ("idk missing", lambda p: hand_proof(p.sender, proof_claims(idk=DROP)), SignatureMalformed),
    ("idk a number", lambda p: hand_proof(p.sender, proof_claims(idk=7)), SignatureMalformed),
    (
        "jti not base64url",
        lambda p: hand_proof(p.sender, proof_claims(jti="a b")),
        SignatureMalformed,
    ),
    ("unknown key", lambda p: proof(p, signer=p.stranger), UnknownSenderKey),
    (
        "forged with our kid",
        lambda p: hand_proof(p.stranger, proof_claims(), kid=p.sender.kid),
        BadSenderSignature,
    ),
    ("alg EdDSA", lambda p: hand_proof(p.sender, proof_claims(), alg="EdDSA"), BadSenderSignature),
    (
        "EdDSA key",
        lambda p: hand_proof(p.ed_sender, proof_claims(), alg="EdDSA"),
        BadSenderSignature,
    ),
    (
        "claims altered",
        lambda p: ".".join(
            [
                segments(proof(p))[0],
                b64(compact_json(proof_claims(htu="/v1/admin"))),
                segments(proof(p))[2],
            ]
        ),
        BadSenderSignature,
    ),
    ("another issuer's name", lambda p: proof(p, issuer=GD), WrongIssuer),
]


@pytest.mark.parametrize(
    ("build", "error"),
    [pytest.param(build, error, id=name) for name, build, error in REQUEST_REFUSALS],
)
def test_request_refusals(
    parties: Parties, build: Callable[[Parties], Any], error: type[ExchangeError]
) -> None:
    text = build(parties)
    raises(error, lambda: verify(text, parties))


def test_hand_built_proof_verifies(parties: Parties) -> None:
    assert verify(hand_proof(parties.sender, proof_claims()), parties).kid == parties.sender.kid


def test_retired_request_key(parties: Parties) -> None:
    raises(
        RetiredSenderKey, lambda: verify(proof(parties), parties, retired_kids=[parties.sender.kid])
    )


def test_package_inner_jws_is_not_a_request_proof(parties: Parties) -> None:
    inner = jwe.decrypt_compact(
        seal(parties), ECKey.import_key(parties.recipient.private_key), algorithms=JWE_ALGS
    )
    assert inner.plaintext is not None
    raises(SignatureMalformed, lambda: verify(inner.plaintext.decode(), parties))


@pytest.mark.parametrize(
    "overrides",
    [{"path": "v1/x"}, {"method": ""}, {"issuer": ""}, {"jti": "not/ok"}, {"now": -1}],
    ids=node_id,
)
def test_sign_request_refuses_bad_arguments(parties: Parties, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        proof(parties, **overrides)


def test_sign_request_needs_es256(parties: Parties) -> None:
    with pytest.raises(InvalidKey):
        proof(parties, signer=parties.ed_sender)


# --- fuzzing --------------------------------------------------------------------------------------

_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00é"


def mutate(text: str, rng: random.Random) -> str:
    """One random structural or character-level change."""
    choice = rng.randrange(7)
    i = rng.randrange(len(text))
    if choice == 0:
        return text[:i] + rng.choice(_ALPHABET) + text[i + 1 :]
    if choice == 1:
        return text[:i] + text[i + 1 :]
    if choice == 2:
        return text[:i] + rng.choice(_ALPHABET) + text[i:]
    if choice == 3:
        return text[:i]
    parts = text.split(".")
    j, k = rng.randrange(len(parts)), rng.randrange(len(parts))
    if choice == 4:
        parts[j], parts[k] = parts[k], parts[j]
    elif choice == 5:
        parts.insert(j, parts[k])
    else:
        try:
            raw = bytearray(unb64(parts[j]))
        except ValueError:  # an earlier mutation broke the segment's base64
            return text
        if raw:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        parts[j] = b64(bytes(raw))
    return ".".join(parts)


def test_fuzzed_packages_raise_only_exchange_errors(parties: Parties) -> None:
    rng = random.Random(20251126)
    original = seal(parties)
    for _ in range(400):
        text = original
        for _ in range(rng.randrange(1, 4)):
            text = mutate(text, rng) or text
        try:
            open_(text, parties)
        except ExchangeError:
            continue
        assert text == original, f"a mutated package opened: {text!r}"


def test_fuzzed_inner_jws_raise_only_exchange_errors(parties: Parties) -> None:
    """Mutations under the encryption, which the outer fuzz cannot reach."""
    rng = random.Random(7)
    original = inner_jws(parties.sender)
    for _ in range(200):
        text = mutate(original, rng) or original
        try:
            open_(encrypt(text.encode("utf-8"), parties.recipient.public()), parties)
        except ExchangeError:
            continue
        assert text == original, f"a mutated inner JWS opened: {text!r}"


def test_fuzzed_request_proofs_raise_only_exchange_errors(parties: Parties) -> None:
    rng = random.Random(9449)
    original = proof(parties)
    for _ in range(300):
        text = original
        for _ in range(rng.randrange(1, 4)):
            text = mutate(text, rng) or text
        try:
            verify(text, parties)
        except ExchangeError:
            continue
        assert text == original, f"a mutated proof verified: {text!r}"


def test_each_refusal_has_the_status_the_protocol_gives_it() -> None:
    # One table for both sides: docs/EXCHANGE.md section 7 is what partners implement.
    documented: dict[str, int] = {}
    doc = Path(__file__).resolve().parents[2] / "docs" / "EXCHANGE.md"
    for line in doc.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 3 and cells[1].isdigit():
            for code in re.findall(r"`([a-z_]+)`", cells[0]):
                documented[code] = int(cells[1])
    assert {code: cls.status for code, cls in EXCHANGE_ERRORS.items()} == {
        code: documented[code] for code in EXCHANGE_ERRORS
    }
