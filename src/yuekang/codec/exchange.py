"""The Guangdong ⇄ Macao exchange: conversion packages and signed server-to-server requests.

Two health-code services (say ``yk:gd`` and ``yk:mo``) exchange **packages** -- signed, then
encrypted messages such as a conversion request -- over HTTPS, and every HTTP request between them
carries a **request proof** in the ``Yuekang-Signature`` header. This module is the whole wire
format; it is pure (no settings, database, network or clock: callers pass ``now``) and the text
below is enough to implement the other side.

Conventions
===========

- JSON is UTF-8 (RFC 8259), any member order, no insignificant whitespace required. Duplicate member
  names, ``NaN``/``Infinity`` and a byte-order mark are refused everywhere.
- base64url is RFC 7515 section 2: URL-safe alphabet, **no padding**, and canonical (unused trailing
  bits zero). Anything else is refused.
- Times are integer UTC seconds since the epoch (JSON numbers without fraction or exponent).
- ``iss``/``aud`` are issuer identifiers such as ``"yk:gd"`` and ``"yk:mo"``; ``aud`` is a single
  string, never an array.
- Key ids (``kid``) are derived, never chosen: the first 16 bytes of the RFC 7638 SHA-256
  thumbprint of the public JWK, base64url (22 characters). A party never uses the same key pair for
  signing and for encryption (the thumbprint ignores ``use``, so the two would share a kid).

Keys
====

Each side publishes, out of band or in its JWKS:

- **signing keys** (ES256, P-256): ``{"kty":"EC","crv":"P-256","x","y","kid","alg":"ES256",
  "use":"sig"}`` -- see :mod:`yuekang.codec.keys`;
- **encryption keys** (ECDH-ES, P-256): ``{"kty":"EC","crv":"P-256","x","y","kid",
  "use":"enc","alg":"ECDH-ES"}`` -- :class:`EncryptionPublicKey`.

Rotation: a sender encrypts to the recipient's current encryption key; the recipient keeps old
decryption keys for as long as packages to them may still be in flight (:data:`MAX_LIFETIME` plus
leeway). A retired *signing* key stays listed so that its packages are refused with a precise code
(``retired_sender_key``) rather than ``unknown_sender_key``.

Packages (nested JWT: sign, then encrypt)
=========================================

A package is a JWE compact serialisation (RFC 7516) whose plaintext is a JWS compact serialisation
(RFC 7515)::

    BASE64URL(protected header) "." "" "." BASE64URL(IV) "." BASE64URL(ciphertext) "."
        BASE64URL(tag)                  (one line; the second segment is always empty)

**JWE protected header** -- exactly these six members, nothing else (no ``zip``, ``crit``,
``apu``, ``apv``, ``jku``...)::

    {"alg": "ECDH-ES",                  direct key agreement (RFC 7518 section 4.6), no key wrap
     "enc": "A256GCM",                  AES-256-GCM (RFC 7518 section 5.3)
     "kid": "<recipient encryption kid>",
     "cty": "JWT",                      the plaintext is itself a JWS (nested JWT, RFC 7519 5.2)
     "typ": "yk-exchange+jwe",
     "epk": {"kty": "EC", "crv": "P-256", "x": "...", "y": "..."}}   exactly these four members

Encryption, per RFC 7516 section 5.1 and RFC 7518 section 4.6:

1. Generate an ephemeral P-256 key pair; ``epk`` is its public half (32-byte coordinates).
2. Z = ECDH(ephemeral private, recipient public), the 32-byte x coordinate.
3. CEK = Concat KDF (NIST SP 800-56A, SHA-256) of Z with keydatalen = 256 and OtherInfo =
   ``len32("A256GCM") || "A256GCM" || len32("") || len32("") || uint32(256)`` -- AlgorithmID is the
   ``enc`` value because the mode is direct; PartyUInfo and PartyVInfo are empty (no apu/apv).
4. The JWE encrypted key is **empty** (the second segment is the empty string).
5. IV: 96 random bits. AAD: the ASCII bytes of the first segment exactly as sent.
6. AES-256-GCM over the plaintext; the tag is the full 128 bits.

**Inner JWS** (the plaintext, ASCII): header -- exactly these three members::

    {"alg": "ES256", "kid": "<sender signing kid>", "typ": "yk-exchange+jws"}

signature: ES256 as the 64-byte ``r || s`` (RFC 7518 section 3.4), never DER. Payload: the claims,
UTF-8 JSON object::

    {"iss": "yk:mo",                    the sender's issuer id
     "aud": "yk:gd",                    the recipient's issuer id
     "iat": 1764100000,                 when it was sealed
     "exp": 1764100300,                 0 < exp - iat <= MAX_LIFETIME (600 s)
     "jti": "<22 chars>",               16 random bytes, base64url; a replay cache key
     "typ": "conversion.request",       the message type; the body's meaning depends on it
     ...the body's members...}

``jti`` may be any 1-64 base64url characters on reading; :func:`new_jti` makes the recommended 16
random bytes. The audience is inside the signature so that a recipient cannot re-encrypt a package
it received and pass it to a third party as if it were addressed to them.

Opening a package
-----------------

:func:`open_package` checks, in this order, and stops at the first failure with the
:class:`ExchangeError` subclass whose ``code`` is shown (codes are API error codes: stable,
never renamed or reused):

1. ``package_malformed`` -- not a string, longer than :data:`MAX_PACKAGE_CHARS`, not five segments,
   the header not base64url JSON, a header member missing, extra or not exactly as above, a
   ``kid`` that is not 1-64 base64url characters, an ``epk`` that is not a P-256 JWK, a non-empty
   encrypted key, an IV not 12 bytes, a tag not 16 bytes, an empty ciphertext.
2. ``wrong_recipient_key`` -- the header ``kid`` is not one of our decryption keys: the sender
   encrypted to a key we never had or no longer keep (refetch our JWKS).
3. ``decryption_failed`` -- the AES-GCM tag does not verify: the header (including ``epk`` and
   ``kid``), IV, ciphertext or tag was altered, or it was encrypted to another key under our kid;
   also an ``epk`` point that is not on P-256.
4. ``package_malformed`` -- the plaintext is not a compact JWS with a header as above and base64url
   segments.
5. ``unknown_sender_key`` -- the inner ``kid`` is not one of the sender keys we trust.
6. ``retired_sender_key`` -- that key is retired (or marked compromised).
7. ``bad_signature`` -- the inner signature does not verify, or the inner ``alg`` is not ``ES256``
   or is not the algorithm of that key.
8. ``package_malformed`` -- the (now authenticated) payload is not a JSON object; ``iss``, ``aud``,
   ``jti``, ``typ`` are not non-empty strings (``jti`` 1-64 base64url characters); ``iat``,
   ``exp`` are not non-negative integers; or ``exp <= iat``.
9. ``wrong_issuer`` -- ``iss`` is not the issuer expected, or not the issuer the sender key is
   bound to (when the key is bound to one).
10. ``wrong_audience`` -- ``aud`` is not us.
11. ``package_expired`` -- ``now >= exp + leeway``.
12. ``package_not_yet_valid`` -- ``now < iat - leeway``.
13. ``package_lifetime_too_long`` -- ``exp - iat > MAX_LIFETIME``.

The claims are parsed only after the signature verified: nothing an anonymous party can encrypt to
us (ECDH-ES authenticates no one) is interpreted beyond its structure. Replay (a ``jti`` already
seen) is the caller's check: keep each ``jti`` until ``exp + leeway``.

Request proofs (server to server)
=================================

Every request between the two services carries the header ``Yuekang-Signature: <compact JWS>``,
modelled on DPoP proofs (RFC 9449) with the body bound in. JWS header -- exactly::

    {"alg": "ES256", "kid": "<sender signing kid>", "typ": "yk-request+jws"}

Payload, UTF-8 JSON object::

    {"iss": "yk:mo",                    the caller's issuer id
     "htm": "POST",                     the HTTP method, exactly as on the request line
     "htu": "/v1/exchange/packages?x=1", the request target in origin form: path and query exactly
                                        as on the request line (no scheme, host or fragment)
     "iat": 1764100000,
     "jti": "<22 chars>",               16 random bytes, base64url; a replay cache key
     "bh": "<43 chars>",                base64url(SHA-256(body bytes)); the empty body hashes too
     "idk": "<Idempotency-Key>" | null} the request's Idempotency-Key header value, or null

Other payload members are ignored. :func:`verify_request` checks, in this order:

1. ``signature_missing`` -- no header (``None``) or an empty one.
2. ``signature_malformed`` -- over :data:`MAX_PROOF_CHARS`, not three base64url segments, the
   header not exactly as above.
3. ``unknown_sender_key`` / ``retired_sender_key`` / ``bad_signature`` -- as for packages.
4. ``signature_malformed`` -- the payload is not a JSON object with the members above, typed as
   shown (``iat`` a non-negative integer, ``jti`` 1-64 base64url characters).
5. ``wrong_issuer`` -- ``iss`` is not the issuer the key is bound to (when it is bound to one).
6. ``request_mismatch`` -- ``htm``, ``htu``, ``bh`` or ``idk`` differs from the request received.
7. ``request_too_old`` -- ``|now - iat| > window`` (:data:`REQUEST_WINDOW`, 300 s), either way.

Replay (a ``jti`` already seen) is the caller's check: keep each ``jti`` until ``iat + window``.

Distinct ``typ`` values keep the three kinds of JWS apart: a package's inner JWS is never a valid
request proof, and neither is a health code.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from yuekang.codec.errors import CodecError, InvalidKey
from yuekang.codec.keys import (
    SigningKey,
    VerificationKey,
    b64url_decode,
    b64url_encode,
    is_b64url_id,
    key_id,
    public_jwk,
)

MAX_PACKAGE_CHARS: Final = 64 * 1024
MAX_LIFETIME: Final = 600
"""Seconds: a package may live at most 10 minutes (``exp - iat``)."""
REQUEST_PROOF_HEADER: Final = "Yuekang-Signature"
REQUEST_WINDOW: Final = 300
"""Seconds either side of ``now`` within which a request proof's ``iat`` must fall."""
MAX_PROOF_CHARS: Final = 8 * 1024

JWE_ALG: Final = "ECDH-ES"
JWE_ENC: Final = "A256GCM"
JWE_TYP: Final = "yk-exchange+jwe"
JWE_CTY: Final = "JWT"
PACKAGE_JWS_TYP: Final = "yk-exchange+jws"
REQUEST_JWS_TYP: Final = "yk-request+jws"
JWS_ALG: Final = "ES256"
JTI_BYTES: Final = 16

REQUIRED_CLAIMS: Final = ("iss", "aud", "iat", "exp", "jti", "typ")

# joserfc falls back to its default registry when ``algorithms`` is empty or None, so the allow
# list is spelled out at every call and never computed.
_JWE_ALGORITHMS: Final = (JWE_ALG, JWE_ENC)
_JWE_HEADER_MEMBERS: Final = frozenset({"alg", "enc", "kid", "cty", "typ", "epk"})
_EPK_MEMBERS: Final = frozenset({"kty", "crv", "x", "y"})
_JWS_HEADER_MEMBERS: Final = frozenset({"alg", "kid", "typ"})
_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16
_COORDINATE_BYTES: Final = 32


# --- errors -------------------------------------------------------------------------------------


class ExchangeError(CodecError):
    """A package or request proof that must not be accepted; ``code`` is the API error code and
    ``status`` the HTTP status the protocol answers it with (docs/EXCHANGE.md, section 7): one
    table for both sides of the exchange."""

    code: ClassVar[str] = "exchange_error"
    status: ClassVar[int] = 422


class PackageMalformed(ExchangeError):
    code = "package_malformed"
    status = 400


class WrongRecipientKey(ExchangeError):
    code = "wrong_recipient_key"


class DecryptionFailed(ExchangeError):
    code = "decryption_failed"


class UnknownSenderKey(ExchangeError):
    code = "unknown_sender_key"
    status = 401


class RetiredSenderKey(ExchangeError):
    code = "retired_sender_key"
    status = 401


class BadSenderSignature(ExchangeError):
    code = "bad_signature"
    status = 401


class WrongIssuer(ExchangeError):
    code = "wrong_issuer"


class WrongAudience(ExchangeError):
    code = "wrong_audience"


class PackageExpired(ExchangeError):
    code = "package_expired"


class PackageNotYetValid(ExchangeError):
    code = "package_not_yet_valid"


class PackageLifetimeTooLong(ExchangeError):
    code = "package_lifetime_too_long"


class SignatureMissing(ExchangeError):
    code = "signature_missing"
    status = 401


class SignatureMalformed(ExchangeError):
    code = "signature_malformed"
    status = 401


class RequestMismatch(ExchangeError):
    code = "request_mismatch"
    status = 401


class RequestTooOld(ExchangeError):
    code = "request_too_old"
    status = 401


EXCHANGE_ERRORS: Final[Mapping[str, type[ExchangeError]]] = {
    cls.code: cls
    for cls in (
        PackageMalformed,
        WrongRecipientKey,
        DecryptionFailed,
        UnknownSenderKey,
        RetiredSenderKey,
        BadSenderSignature,
        WrongIssuer,
        WrongAudience,
        PackageExpired,
        PackageNotYetValid,
        PackageLifetimeTooLong,
        SignatureMissing,
        SignatureMalformed,
        RequestMismatch,
        RequestTooOld,
    )
}
"""Every error code this module can raise, for API documentation and error mapping."""


# --- encryption keys ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """A P-256 private key we decrypt packages with (ECDH-ES), and its derived kid."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls.from_private_key(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_private_key(cls, key: ec.EllipticCurvePrivateKey) -> EncryptionKey:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, ec.SECP256R1
        ):
            raise InvalidKey("an encryption key must be a P-256 EC private key")
        return cls(kid=key_id(key.public_key()), private_key=key)

    def public(self) -> EncryptionPublicKey:
        return EncryptionPublicKey(kid=self.kid, public_key=self.private_key.public_key())


@dataclass(frozen=True, slots=True)
class EncryptionPublicKey:
    """A recipient's P-256 public key that packages are encrypted to."""

    kid: str
    public_key: ec.EllipticCurvePublicKey

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK with ``kid``, ``use`` and ``alg``, as published in a JWKS."""
        jwk: dict[str, Any] = dict(public_jwk(self.public_key))
        jwk.update({"kid": self.kid, "use": "enc", "alg": JWE_ALG})
        return jwk

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> EncryptionPublicKey:
        """Load a recipient's public JWK. ``use`` and ``alg`` may be absent but not different;
        ``kid``, when present, must be the thumbprint-derived id; private members are refused, as
        a JWKS carrying ``d`` has leaked its key."""
        if not isinstance(jwk, Mapping):
            raise InvalidKey("a JWK is a JSON object")
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise InvalidKey("an encryption key must be an EC P-256 JWK")
        if "d" in jwk:
            raise InvalidKey("a public JWK must not carry the private key")
        if jwk.get("use", "enc") != "enc":
            raise InvalidKey("the JWK is not an encryption key (use is not 'enc')")
        if jwk.get("alg", JWE_ALG) != JWE_ALG:
            raise InvalidKey(f"the JWK's alg is not {JWE_ALG!r}")
        try:
            public_key = _p256_point(jwk.get("x"), jwk.get("y"))
        except ValueError as exc:
            raise InvalidKey(f"malformed JWK: {exc}") from exc
        kid = key_id(public_key)
        if jwk.get("kid", kid) != kid:
            raise InvalidKey("JWK kid is not the thumbprint of its key")
        return cls(kid=kid, public_key=public_key)


def _p256_point(x: Any, y: Any) -> ec.EllipticCurvePublicKey:
    """The P-256 point with these base64url coordinates; ValueError if they are not 32 canonical
    bytes each or the point is not on the curve."""
    return ec.EllipticCurvePublicNumbers(
        _coordinate(x), _coordinate(y), ec.SECP256R1()
    ).public_key()


def _coordinate(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError("a coordinate is not a string")
    raw = b64url_decode(value)
    if len(raw) != _COORDINATE_BYTES:
        raise ValueError("a coordinate is not 32 bytes")
    return int.from_bytes(raw, "big")


def new_jti() -> str:
    """A fresh ``jti``: 16 random bytes, base64url."""
    return b64url_encode(secrets.token_bytes(JTI_BYTES))


# --- packages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenedPackage:
    claims: Mapping[str, Any]
    sender_kid: str
    recipient_kid: str


def seal_package(
    claims: Mapping[str, Any], *, signer: SigningKey, recipient: EncryptionPublicKey
) -> str:
    """Sign ``claims`` with ``signer`` (ES256), encrypt the JWS to ``recipient``.

    ``claims`` must hold the six required claims, well typed, with ``0 < exp - iat <=
    MAX_LIFETIME``; ValueError otherwise, or if the package would exceed
    :data:`MAX_PACKAGE_CHARS` -- we never produce what :func:`open_package` would refuse."""
    problem = _claims_problem(claims)
    if problem is not None:
        raise ValueError(problem)
    lifetime = claims["exp"] - claims["iat"]
    if lifetime > MAX_LIFETIME:
        raise ValueError(f"a package may live at most {MAX_LIFETIME} seconds")
    if any(not isinstance(name, str) for name in claims):
        raise ValueError("claim names must be strings")
    inner = _sign_jws(PACKAGE_JWS_TYP, dict(claims), signer)
    # joserfc adds ``epk`` to the header dict it is given; a fresh one keeps that side effect here.
    protected = {
        "alg": JWE_ALG,
        "enc": JWE_ENC,
        "kid": recipient.kid,
        "cty": JWE_CTY,
        "typ": JWE_TYP,
    }
    package = jwe.encrypt_compact(
        protected,
        inner.encode("ascii"),
        ECKey.import_key(recipient.public_key),
        algorithms=_JWE_ALGORITHMS,
    )
    if len(package) > MAX_PACKAGE_CHARS:
        raise ValueError(f"the package would exceed {MAX_PACKAGE_CHARS} characters")
    return package


def open_package(
    text: str,
    *,
    decryption_keys: Mapping[str, EncryptionKey],
    sender_keys: Mapping[str, VerificationKey],
    retired_sender_kids: Collection[str] = (),
    issuer: str,
    audience: str,
    now: int,
    leeway: int = 60,
) -> OpenedPackage:
    """Decrypt, verify and check a package; see the module docstring for the order of checks.

    ``decryption_keys`` and ``sender_keys`` are keyed by kid; ``issuer`` is the sender we expect
    and ``audience`` is us. Returns the claims; the ``jti`` replay check is the caller's."""
    if not isinstance(text, str) or len(text) > MAX_PACKAGE_CHARS:
        raise PackageMalformed(f"a package is a string of at most {MAX_PACKAGE_CHARS} characters")
    header = _jwe_header(text)
    recipient_kid = header["kid"]
    decryption_key = decryption_keys.get(recipient_kid)
    if decryption_key is None:
        raise WrongRecipientKey("the package is encrypted to a key we do not hold")
    inner = _decrypt(text, header, decryption_key)

    jws = _parse_jws(inner, PACKAGE_JWS_TYP, PackageMalformed)
    sender = _verify_jws(jws, sender_keys, retired_sender_kids)
    claims = _json_object(jws.payload, PackageMalformed, "the claims")
    problem = _claims_problem(claims)
    if problem is not None:
        raise PackageMalformed(problem)

    if claims["iss"] != issuer or (sender.issuer is not None and sender.issuer != claims["iss"]):
        raise WrongIssuer("the package is not from the expected issuer")
    if claims["aud"] != audience:
        raise WrongAudience("the package is addressed to someone else")
    iat, exp = claims["iat"], claims["exp"]
    if now >= exp + leeway:
        raise PackageExpired("the package has expired")
    if now < iat - leeway:
        raise PackageNotYetValid("the package was sealed in the future: check the clocks")
    if exp - iat > MAX_LIFETIME:
        raise PackageLifetimeTooLong(f"a package may live at most {MAX_LIFETIME} seconds")
    return OpenedPackage(claims=claims, sender_kid=sender.kid, recipient_kid=recipient_kid)


def _jwe_header(text: str) -> dict[str, Any]:
    """The validated protected header. Everything joserfc would otherwise judge leniently (or
    refuse with a bare ValueError) is settled here, so that what is left for it is cryptography."""
    segments = text.split(".")
    if len(segments) != 5:
        raise PackageMalformed("a package is a compact JWE: five dot-separated segments")
    header = _json_object(_b64(segments[0], PackageMalformed, "header"), PackageMalformed, "header")
    if set(header) != _JWE_HEADER_MEMBERS:
        raise PackageMalformed(f"the header must have exactly {sorted(_JWE_HEADER_MEMBERS)}")
    expected = {"alg": JWE_ALG, "enc": JWE_ENC, "typ": JWE_TYP, "cty": JWE_CTY}
    for name, value in expected.items():
        if header[name] != value:
            raise PackageMalformed(f"header {name!r} must be {value!r}")
    if not isinstance(header["kid"], str) or not is_b64url_id(header["kid"]):
        raise PackageMalformed("header 'kid' is not a key id")
    epk = header["epk"]
    if not isinstance(epk, dict) or set(epk) != _EPK_MEMBERS:
        raise PackageMalformed("'epk' must be a JWK with exactly kty, crv, x and y")
    if epk["kty"] != "EC" or epk["crv"] != "P-256":
        raise PackageMalformed("'epk' must be a P-256 EC key")
    for name in ("x", "y"):
        if (
            not isinstance(epk[name], str)
            or len(_b64(epk[name], PackageMalformed, f"epk {name}")) != _COORDINATE_BYTES
        ):
            raise PackageMalformed(f"'epk' {name} is not a 32-byte coordinate")
    if segments[1] != "":
        raise PackageMalformed("with ECDH-ES the encrypted key must be empty")
    if len(_b64(segments[2], PackageMalformed, "IV")) != _IV_BYTES:
        raise PackageMalformed("the IV must be 12 bytes")
    if not _b64(segments[3], PackageMalformed, "ciphertext"):
        raise PackageMalformed("the ciphertext is empty")
    if len(_b64(segments[4], PackageMalformed, "tag")) != _TAG_BYTES:
        raise PackageMalformed("the tag must be 16 bytes")
    return header


def _decrypt(text: str, header: Mapping[str, Any], key: EncryptionKey) -> str:
    try:
        _p256_point(header["epk"]["x"], header["epk"]["y"])
    except ValueError as exc:
        raise DecryptionFailed("the ephemeral key is not a point on P-256") from exc
    try:
        plaintext = jwe.decrypt_compact(
            text, ECKey.import_key(key.private_key), algorithms=_JWE_ALGORITHMS
        ).plaintext
    # ValueError: joserfc lets ``cryptography``'s refusals of a key through unwrapped.
    except (JoseError, ValueError) as exc:
        raise DecryptionFailed("the package does not decrypt: altered, or for another key") from exc
    if plaintext is None:  # joserfc's type allows it; a successful decryption never yields it
        raise DecryptionFailed("the package decrypted to nothing")
    try:
        return plaintext.decode("ascii")
    except UnicodeDecodeError as exc:
        raise PackageMalformed("the plaintext is not a compact JWS") from exc


# --- JWS, shared by packages and request proofs --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Jws:
    header: Mapping[str, Any]
    payload: bytes
    signature: bytes
    signing_input: bytes


def _sign_jws(typ: str, payload: Mapping[str, Any], signer: SigningKey) -> str:
    if signer.alg != JWS_ALG:
        raise InvalidKey(f"exchange messages are signed with {JWS_ALG}, not {signer.alg}")
    header = {"alg": JWS_ALG, "kid": signer.kid, "typ": typ}
    signing_input = b64url_encode(_json(header)) + "." + b64url_encode(_json(payload))
    return signing_input + "." + b64url_encode(signer.sign(signing_input.encode("ascii")))


def _parse_jws(text: str, typ: str, error: type[ExchangeError]) -> _Jws:
    segments = text.split(".")
    if len(segments) != 3:
        raise error("not a compact JWS: three dot-separated segments")
    header = _json_object(_b64(segments[0], error, "JWS header"), error, "JWS header")
    if set(header) != _JWS_HEADER_MEMBERS:
        raise error(f"the JWS header must have exactly {sorted(_JWS_HEADER_MEMBERS)}")
    if header["typ"] != typ:
        raise error(f"the JWS header 'typ' must be {typ!r}")
    if not isinstance(header["kid"], str) or not isinstance(header["alg"], str):
        raise error("the JWS header 'kid' and 'alg' must be strings")
    return _Jws(
        header=header,
        payload=_b64(segments[1], error, "JWS payload"),
        signature=_b64(segments[2], error, "JWS signature"),
        signing_input=(segments[0] + "." + segments[1]).encode("ascii"),
    )


def _verify_jws(
    jws: _Jws, keys: Mapping[str, VerificationKey], retired: Collection[str]
) -> VerificationKey:
    kid = jws.header["kid"]
    key = keys.get(kid)
    if key is None:
        raise UnknownSenderKey("signed with a key we do not know")
    if kid in retired or key.compromised:
        raise RetiredSenderKey("signed with a retired key")
    if jws.header["alg"] != JWS_ALG or key.alg != JWS_ALG:
        raise BadSenderSignature(f"only {JWS_ALG} with an {JWS_ALG} key is accepted")
    if not key.verify(jws.signature, jws.signing_input):
        raise BadSenderSignature("the signature does not verify")
    return key


def _b64(segment: str, error: type[ExchangeError], what: str) -> bytes:
    try:
        return b64url_decode(segment)
    except (ValueError, binascii.Error) as exc:
        raise error(f"the {what} is not base64url") from exc


def _json_object(raw: bytes, error: type[ExchangeError], what: str) -> dict[str, Any]:
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise error(f"{what}: not UTF-8 JSON") from exc
    if not isinstance(value, dict):
        raise error(f"{what}: not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a duplicated member; refusing is the safe reading.
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate member name")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def _is_time(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _claims_problem(claims: Mapping[str, Any]) -> str | None:
    """What is wrong with a package's claim set, or None. Lifetime over the limit is not a format
    problem: it has its own code."""
    if not isinstance(claims, Mapping):
        return "the claims are not an object"
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        return f"missing claims: {', '.join(missing)}"
    for name in ("iss", "aud", "typ"):
        if not _is_text(claims[name]):
            return f"'{name}' must be a non-empty string"
    if not isinstance(claims["jti"], str) or not is_b64url_id(claims["jti"]):
        return "'jti' must be 1-64 base64url characters"
    if not _is_time(claims["iat"]) or not _is_time(claims["exp"]):
        return "'iat' and 'exp' must be non-negative integers"
    if claims["exp"] <= claims["iat"]:
        return "'exp' must be after 'iat'"
    return None


# --- request proofs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestProof:
    issuer: str
    kid: str
    jti: str
    iat: int


def body_hash(body: bytes) -> str:
    """The ``bh`` claim: base64url of the SHA-256 of the exact body bytes."""
    return b64url_encode(hashlib.sha256(body).digest())


def sign_request(
    *,
    signer: SigningKey,
    issuer: str,
    method: str,
    path: str,
    body: bytes,
    idempotency_key: str | None,
    now: int,
    jti: str | None = None,
) -> str:
    """The ``Yuekang-Signature`` header value for one request. ``path`` is the request target as
    it will be sent (path and query); ``jti`` defaults to :func:`new_jti`."""
    if not _is_text(issuer) or not _is_text(method):
        raise ValueError("issuer and method must be non-empty strings")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError("path must be the request target in origin form, starting with '/'")
    if not _is_time(now):
        raise ValueError("now must be a non-negative integer")
    if jti is None:
        jti = new_jti()
    elif not is_b64url_id(jti):
        raise ValueError("jti must be 1-64 base64url characters")
    claims = {
        "iss": issuer,
        "htm": method,
        "htu": path,
        "iat": now,
        "jti": jti,
        "bh": body_hash(body),
        "idk": idempotency_key,
    }
    return _sign_jws(REQUEST_JWS_TYP, claims, signer)


def verify_request(
    proof: str | None,
    *,
    keys: Mapping[str, VerificationKey],
    retired_kids: Collection[str] = (),
    method: str,
    path: str,
    body: bytes,
    idempotency_key: str | None,
    now: int,
    window: int = REQUEST_WINDOW,
) -> RequestProof:
    """Check a ``Yuekang-Signature`` header against the request received; see the module
    docstring for the order of checks. The ``jti`` replay check is the caller's."""
    if proof is None or proof == "":
        raise SignatureMissing(f"the {REQUEST_PROOF_HEADER} header is missing")
    if not isinstance(proof, str) or len(proof) > MAX_PROOF_CHARS:
        raise SignatureMalformed(f"a request proof is at most {MAX_PROOF_CHARS} characters")
    jws = _parse_jws(proof, REQUEST_JWS_TYP, SignatureMalformed)
    key = _verify_jws(jws, keys, retired_kids)
    claims = _json_object(jws.payload, SignatureMalformed, "proof claims")
    for name in ("iss", "htm", "htu", "bh"):
        if not _is_text(claims.get(name)):
            raise SignatureMalformed(f"'{name}' must be a non-empty string")
    if not isinstance(claims.get("jti"), str) or not is_b64url_id(claims["jti"]):
        raise SignatureMalformed("'jti' must be 1-64 base64url characters")
    if not _is_time(claims.get("iat")):
        raise SignatureMalformed("'iat' must be a non-negative integer")
    if "idk" not in claims or not (claims["idk"] is None or isinstance(claims["idk"], str)):
        raise SignatureMalformed("'idk' must be a string or null")

    if key.issuer is not None and claims["iss"] != key.issuer:
        raise WrongIssuer("the proof names an issuer its key does not belong to")
    actual = {
        "htm": method,
        "htu": path,
        "bh": body_hash(body),
        "idk": idempotency_key,
    }
    differing = [name for name, value in actual.items() if claims[name] != value]
    if differing:
        raise RequestMismatch(f"the proof does not cover this request: {', '.join(differing)}")
    if abs(now - claims["iat"]) > window:
        raise RequestTooOld(f"the proof's iat is more than {window} seconds from now")
    return RequestProof(issuer=claims["iss"], kid=key.kid, jti=claims["jti"], iat=claims["iat"])
