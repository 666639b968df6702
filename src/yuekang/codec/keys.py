"""Keys for health-code signatures: JWK import/export, RFC 7638 key ids, raw sign/verify.

Each key is bound to exactly one JWS algorithm (``ES256`` on P-256, or ``EdDSA`` on Ed25519)
and that binding travels with it: a JWK we publish carries ``alg``, and a verifier refuses a token
whose header names another algorithm for that key. The key id is the RFC 7638 thumbprint of the
public JWK, truncated to its first 128 bits (22 base64url characters) to keep codes small; 128
bits leave no practical room for collisions, and the full key is checked by the signature anyway.

ES256 signatures are the 64-byte ``r || s`` JWS form (RFC 7518 section 3.4), never DER.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from yuekang.codec.errors import (
    ExpiredCode,
    InvalidKey,
    KeyNotValid,
    NotYetValid,
    UntrustedIssuer,
)

Algorithm = Literal["ES256", "EdDSA"]
ALGORITHMS: Final[frozenset[str]] = frozenset({"ES256", "EdDSA"})
KID_BYTES: Final = 16
SIGNATURE_BYTES: Final = 64

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n of P-256. An ECDSA signature (r, s) verifies as (r, n - s) too: we sign with the lower of the
two, and our codes refuse the higher (:func:`is_high_s`), so a code has one spelling."""
_HALF_ORDER_BYTES: Final = (P256_ORDER // 2).to_bytes(32, "big")
# The concrete class behind ``ec.EllipticCurvePublicKey``: an exact type test is much cheaper per
# verification than the ABC's ``isinstance``, which stays as the fallback for any other class.
_EC_PUBLIC_KEY: Final = type(ec.derive_private_key(1, ec.SECP256R1()).public_key())
_B64URL_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


# binascii directly: ``base64.urlsafe_b64*`` add a translate and argument coercion per call, and
# these run on every segment of every code a checkpoint scans.
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URLSAFE).decode()


def b64url_decode(text: str) -> bytes:
    """Strict base64url decoding without padding; raises ValueError on anything else.

    Strict means one spelling per byte string: the standard alphabet's ``+``/``/``, padding, and
    non-zero trailing bits are all refused, so a signature cannot be re-spelled into a second valid
    code text. Re-encoding and comparing covers every case: the decoder skips foreign characters
    and maps nothing back to ``+``/``/`` or padding, so any of them changes the round trip."""
    if not isinstance(text, str):
        raise TypeError("base64url text must be a str")
    try:
        data = text.encode("ascii")
        raw = binascii.a2b_base64(data.translate(_TO_STANDARD) + b"=" * (-len(data) % 4))
    except ValueError as exc:  # binascii.Error, or UnicodeEncodeError for non-ASCII text
        raise ValueError("not base64url") from exc
    if binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_TO_URLSAFE) != data:
        raise ValueError("not canonical unpadded base64url")
    return raw


def is_b64url_id(text: str) -> bool:
    """Whether ``text`` can be one of our identifiers (a key id or a code id): 1-64 base64url
    characters. Lets lookups refuse junk (NUL bytes, paths) before it reaches a database."""
    return _B64URL_ID_RE.fullmatch(text) is not None


def _int_to_b64(value: int) -> str:
    return b64url_encode(value.to_bytes(32, "big"))


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The required public members of a key's JWK (RFC 7517/8037), without ``kid`` or ``alg``."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKey("only P-256 EC keys are supported")
        numbers = key.public_numbers()
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": _int_to_b64(numbers.x),
            "y": _int_to_b64(numbers.y),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """The full RFC 7638 SHA-256 thumbprint of a public JWK, base64url."""
    members: tuple[str, ...]
    if jwk.get("kty") == "EC":
        members = ("crv", "kty", "x", "y")
    elif jwk.get("kty") == "OKP":
        members = ("crv", "kty", "x")
    else:
        raise InvalidKey("unsupported key type")
    try:
        required = {m: jwk[m] for m in members}
    except KeyError as exc:
        raise InvalidKey(f"JWK lacks {exc.args[0]!r}") from exc
    return b64url_encode(_thumbprint_digest(required))


def _thumbprint_digest(required_members: Mapping[str, str]) -> bytes:
    canonical = json.dumps(dict(required_members), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(canonical.encode("ascii")).digest()


def key_id(key: PublicKey) -> str:
    """The key id: the first 128 bits of the RFC 7638 thumbprint, base64url (22 characters)."""
    return b64url_encode(_thumbprint_digest(public_jwk(key))[:KID_BYTES])


def algorithm_for(key: PublicKey | PrivateKey) -> Algorithm:
    """The one algorithm a key is used with."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise InvalidKey("only P-256 EC keys are supported")
        return "ES256"
    return "EdDSA"


def generate_private_key(alg: Algorithm) -> PrivateKey:
    """A fresh private key for ``alg``."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise InvalidKey(f"unsupported algorithm {alg!r}")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key bound to its algorithm and key id."""

    kid: str
    alg: Algorithm
    private_key: PrivateKey

    @classmethod
    def from_private_key(cls, private_key: PrivateKey) -> SigningKey:
        public = private_key.public_key()
        return cls(kid=key_id(public), alg=algorithm_for(private_key), private_key=private_key)

    @classmethod
    def generate(cls, alg: Algorithm = "ES256") -> SigningKey:
        return cls.from_private_key(generate_private_key(alg))

    def public(self) -> VerificationKey:
        return VerificationKey(kid=self.kid, alg=self.alg, public_key=self.private_key.public_key())

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``; ES256 signatures come back as 64-byte ``r || s``."""
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.private_key.sign(message, _ECDSA_SHA256))
            s = min(s, P256_ORDER - s)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.private_key.sign(message)


def is_high_s(signature: bytes) -> bool:
    """Whether a 64-byte ES256 signature ``r || s`` has ``s > n/2``: the second spelling of the
    one we would have signed (big-endian, equal lengths: bytes compare as the numbers do)."""
    return signature[32:] > _HALF_ORDER_BYTES


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key bound to its algorithm and key id, with optional issuer and validity.

    ``issuer`` is the issuer identifier this key may sign for; ``not_before`` (UTC seconds) is the
    earliest ``iat`` and ``not_after`` the latest ``exp`` of a code it may have signed (a key never
    signs a code that outlives it); ``compromised`` keys verify nothing.
    """

    kid: str
    alg: Algorithm
    public_key: PublicKey
    issuer: str | None = None
    not_before: int | None = None
    not_after: int | None = None
    compromised: bool = False

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` (JWS form) is valid for ``message``."""
        if len(signature) != SIGNATURE_BYTES:
            return False
        public_key = self.public_key
        try:
            if type(public_key) is _EC_PUBLIC_KEY or isinstance(
                public_key, ec.EllipticCurvePublicKey
            ):
                public_key.verify(_der_signature(signature), message, _ECDSA_SHA256)
            else:
                public_key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    def to_jwk(self) -> dict[str, Any]:
        """The public JWK with ``kid``, ``alg`` and ``use``, as published in our JWKS."""
        jwk: dict[str, Any] = dict(public_jwk(self.public_key))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], *, issuer: str | None = None) -> VerificationKey:
        """Load a public JWK. Its ``alg`` must match its key type; its ``kid``, when present, must
        be the thumbprint-derived id, so a JWKS cannot pass one key off under another key's id."""
        try:
            kty, crv, alg = jwk["kty"], jwk["crv"], jwk.get("alg")
            public_key: PublicKey
            if kty == "EC" and crv == "P-256":
                x = int.from_bytes(_coordinate(jwk["x"]), "big")
                y = int.from_bytes(_coordinate(jwk["y"]), "big")
                public_key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            elif kty == "OKP" and crv == "Ed25519":
                public_key = ed25519.Ed25519PublicKey.from_public_bytes(_coordinate(jwk["x"]))
            else:
                raise InvalidKey(f"unsupported key type {kty!r}/{crv!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidKey(f"malformed JWK: {exc}") from exc
        bound = algorithm_for(public_key)
        if alg is not None and alg != bound:
            raise InvalidKey(f"JWK alg {alg!r} does not match its key type")
        kid = key_id(public_key)
        if jwk.get("kid") not in (None, kid):
            raise InvalidKey("JWK kid is not the thumbprint of its key")
        return cls(kid=kid, alg=bound, public_key=public_key, issuer=issuer)


def _der_signature(signature: bytes) -> bytes:
    """The DER ``ECDSA-Sig-Value`` of a 64-byte ``r || s`` signature, as OpenSSL wants it.

    Built from the bytes rather than with ``encode_dss_signature``, which goes through Python ints
    and an ASN.1 writer at about twice the cost. Each INTEGER is minimal, non-negative two's
    complement: leading zero bytes dropped, one put back when the top bit is set (or for zero),
    and every length fits one byte (at most 33 per integer, 70 in all)."""
    r = signature[:32].lstrip(b"\0")
    s = signature[32:].lstrip(b"\0")
    if not r or r[0] & 0x80:
        r = b"\0" + r
    if not s or s[0] & 0x80:
        s = b"\0" + s
    return b"\x30%c\x02%c%b\x02%c%b" % (len(r) + len(s) + 4, len(r), r, len(s), s)


def _coordinate(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("coordinate is not a string")
    raw = b64url_decode(value)
    if len(raw) != 32:
        raise ValueError("coordinate is not 32 bytes")
    return raw


def private_key_to_pem(key: PrivateKey, passphrase: bytes) -> bytes:
    """PKCS#8 PEM encrypted with ``passphrase`` (the library's best available encryption)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )


def private_key_from_pem(pem: bytes, passphrase: bytes) -> PrivateKey:
    """Load an encrypted PKCS#8 PEM; only P-256 and Ed25519 keys are accepted."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise InvalidKey("cannot decrypt the private key: wrong passphrase or bad PEM") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise InvalidKey("unsupported private key type")


def check_validity(
    key: VerificationKey, kid: str, *, issuer: str, iat: int, exp: int, now: int, leeway: int
) -> None:
    """What every code's signed times and issuer must satisfy once its signature holds (ours and
    every partner format's),
    in this order: the key signs for the issuer, is not compromised, and was valid when the code
    was signed; the code is not from the future and has not expired."""
    if key.issuer is not None and issuer != key.issuer:
        raise UntrustedIssuer(f"key {kid} does not sign for issuer {issuer!r}")
    if key.compromised:
        raise KeyNotValid(f"key {kid} is compromised")
    if (key.not_before is not None and iat < key.not_before - leeway) or (
        key.not_after is not None and exp > key.not_after + leeway
    ):
        raise KeyNotValid(f"the code lies outside the validity of key {kid}")
    if now < iat - leeway:
        raise NotYetValid("the code was issued in the future; check the clock")
    if now >= exp + leeway:
        raise ExpiredCode("the code has expired")
