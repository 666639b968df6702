"""Builders for hand-made health codes, and the attack table shared by the codec and verifier tests.

Everything here builds the wire format by hand from the design (``YK1:`` + compact JWS), so the
tests do not lean on :func:`~yuekang.codec.healthcode.sign_health_code` to make their inputs. The
only codec function used to forge is :meth:`SigningKey.sign`, whose output is checked against
RFC 8037 and against ``cryptography`` in ``test_keys.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from yuekang.codec.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    InvalidCode,
    MalformedCode,
    UnknownKey,
    UnsupportedVersion,
)
from yuekang.codec.healthcode import MAX_INPUT_CHARS
from yuekang.codec.keys import P256_ORDER, SigningKey, VerificationKey

ISSUER: Final = "yk:gd"
IAT: Final = 1_764_100_000
EXP: Final = IAT + 3600
NOW: Final = IAT + 100
"""A time comfortably inside the validity window of :func:`claims`."""
JTI: Final = "ZXhhbXBsZS1jb2RlLWlkMQ"
NAME: Final = "张*三"

DROP: Final = object()
"""Pass as a claim or header value to leave that member out."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid claim set, in the documented order, with ``overrides`` applied."""
    body: dict[str, Any] = {
        "iss": ISSUER,
        "jti": JTI,
        "iat": IAT,
        "exp": EXP,
        "st": "green",
        "nm": NAME,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not DROP}


def header(key: SigningKey, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"alg": key.alg, "kid": key.kid}
    body.update(extra)
    return {k: v for k, v in body.items() if v is not DROP}


def segment(value: Mapping[str, Any] | list[Any] | bytes) -> str:
    return b64(value if isinstance(value, bytes) else compact_json(value))


def forge(
    head: Mapping[str, Any] | list[Any] | bytes,
    payload: Mapping[str, Any] | list[Any] | bytes,
    signer: SigningKey | None,
    *,
    prefix: str = "YK1:",
) -> str:
    """``prefix`` + a compact JWS of arbitrary header and payload, signed by ``signer`` (or with
    an empty signature when ``signer`` is None)."""
    signing_input = segment(head) + "." + segment(payload)
    signature = b64(signer.sign(signing_input.encode("ascii"))) if signer else ""
    return f"{prefix}{signing_input}.{signature}"


def valid(key: SigningKey, **overrides: Any) -> str:
    return forge(header(key), claims(**overrides), key)


def parts(qr_text: str) -> list[str]:
    assert qr_text.startswith("YK1:")
    return qr_text[4:].split(".")


def with_parts(head: str, payload: str, signature: str, prefix: str = "YK1:") -> str:
    return f"{prefix}{head}.{payload}.{signature}"


def high_s(text: str) -> str:
    """The same ES256 code with ``s`` replaced by ``n - s``: a valid ECDSA signature, and a second
    spelling of the code, which both verifiers refuse."""
    head, payload, signature = parts(text)
    raw = unb64(signature)
    s = P256_ORDER - int.from_bytes(raw[32:], "big")
    return with_parts(head, payload, b64(raw[:32] + s.to_bytes(32, "big")))


def flip_char(text: str, index: int) -> str:
    """``text`` with the base64url character at ``index`` changed in its high bits, so the decoded
    bytes change whatever the position (the last character of a segment carries padding bits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    old = alphabet.index(text[index])
    return text[:index] + alphabet[old ^ 0b100000] + text[index + 1 :]


def public_pem(key: SigningKey) -> bytes:
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class Trust:
    """Our two keys (trusted, bound to :data:`ISSUER`) and an attacker's key (not trusted)."""

    es: SigningKey
    ed: SigningKey
    attacker: SigningKey

    @property
    def keys(self) -> dict[str, VerificationKey]:
        return {k.kid: replace(k.public(), issuer=ISSUER) for k in (self.es, self.ed)}


@dataclass(frozen=True)
class Attack:
    id: str
    build: Callable[[Trust], Any]
    error: type[InvalidCode]
    reason: str


def _hs256(trust: Trust, secret: bytes) -> str:
    head = segment({"alg": "HS256", "kid": trust.es.kid, "typ": "JWT"})
    signing_input = head + "." + segment(claims())
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"YK1:{signing_input}.{b64(mac)}"


def _tamper_payload(trust: Trust, **changes: Any) -> str:
    head, _, signature = parts(valid(trust.es))
    return with_parts(head, segment(claims(**changes)), signature)


def _replace_signature(trust: Trust, make: Callable[[str, SigningKey], str]) -> str:
    head, payload, signature = parts(valid(trust.es))
    return with_parts(head, payload, make(signature, trust.es))


def _der_signature(signature: str, _key: SigningKey) -> str:
    raw = unb64(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return b64(der)


def _oversized(trust: Trust) -> str:
    """A correctly signed code one character over :data:`MAX_INPUT_CHARS`."""
    return padded_to(trust.es, MAX_INPUT_CHARS + 1)


def padded_to(key: SigningKey, length: int) -> str:
    """A correctly signed code of exactly ``length`` characters (an extra, unknown claim pads
    it)."""
    guess = (length - len(valid(key, pad=""))) * 3 // 4
    for extra in range(max(guess - 3, 0), guess + 4):
        text = valid(key, pad="x" * extra)
        if len(text) == length:
            return text
    raise AssertionError(f"cannot pad a code to {length} characters")


def _attacks() -> list[Attack]:
    malformed, bad_sig = MalformedCode, BadSignature
    a: list[Attack] = []

    def add(id_: str, build: Callable[[Trust], Any], error: type[InvalidCode]) -> None:
        a.append(Attack(id_, build, error, error.reason.value))

    # -- algorithm
    add(
        "alg-none-empty-signature",
        lambda t: forge(header(t.es, alg="none"), claims(), None),
        AlgorithmNotAllowed,
    )
    add(
        "alg-None-capitalised",
        lambda t: forge(header(t.es, alg="None"), claims(), None),
        AlgorithmNotAllowed,
    )
    add("alg-missing", lambda t: forge(header(t.es, alg=DROP), claims(), t.es), AlgorithmNotAllowed)
    add("alg-null", lambda t: forge(header(t.es, alg=None), claims(), t.es), AlgorithmNotAllowed)
    add(
        "alg-list",
        lambda t: forge(header(t.es, alg=["ES256"]), claims(), t.es),
        AlgorithmNotAllowed,
    )
    add(
        "alg-lowercase-es256",
        lambda t: forge(header(t.es, alg="es256"), claims(), t.es),
        AlgorithmNotAllowed,
    )
    add(
        "alg-ES384", lambda t: forge(header(t.es, alg="ES384"), claims(), t.es), AlgorithmNotAllowed
    )
    add(
        "alg-RS256", lambda t: forge(header(t.es, alg="RS256"), claims(), t.es), AlgorithmNotAllowed
    )
    add(
        "alg-Ed25519-fully-specified",
        lambda t: forge(header(t.ed, alg="Ed25519"), claims(), t.ed),
        AlgorithmNotAllowed,
    )
    add(
        "hs256-secret-is-our-public-pem", lambda t: _hs256(t, public_pem(t.es)), AlgorithmNotAllowed
    )
    add(
        "hs256-secret-is-our-public-jwk",
        lambda t: _hs256(t, json.dumps(t.es.public().to_jwk()).encode()),
        AlgorithmNotAllowed,
    )
    add(
        "es256-header-on-eddsa-key",
        lambda t: forge(header(t.ed, alg="ES256"), claims(), t.es),
        AlgorithmNotAllowed,
    )
    add(
        "es256-header-on-eddsa-key-signed-by-it",
        lambda t: forge(header(t.ed, alg="ES256"), claims(), t.ed),
        AlgorithmNotAllowed,
    )
    add(
        "eddsa-header-on-es256-key",
        lambda t: forge(header(t.es, alg="EdDSA"), claims(), t.ed),
        AlgorithmNotAllowed,
    )
    # -- key id
    add("kid-unknown-attacker-key", lambda t: valid(t.attacker), UnknownKey)
    add(
        "kid-path-traversal",
        lambda t: forge(header(t.es, kid="../../etc/passwd"), claims(), t.es),
        UnknownKey,
    )
    add(
        "kid-64-chars-unknown",
        lambda t: forge(header(t.es, kid="k" * 64), claims(), t.es),
        UnknownKey,
    )
    add("kid-65-chars", lambda t: forge(header(t.es, kid="k" * 65), claims(), t.es), malformed)
    add("kid-2000-chars", lambda t: forge(header(t.es, kid="k" * 2000), claims(), t.es), malformed)
    add(
        "kid-10000-chars",
        lambda t: forge(header(t.es, kid="k" * 10_000), claims(), t.es),
        malformed,
    )
    add("kid-missing", lambda t: forge(header(t.es, kid=DROP), claims(), t.es), malformed)
    add("kid-empty", lambda t: forge(header(t.es, kid=""), claims(), t.es), malformed)
    add("kid-integer", lambda t: forge(header(t.es, kid=12345), claims(), t.es), malformed)
    add("kid-null", lambda t: forge(header(t.es, kid=None), claims(), t.es), malformed)
    add("kid-list", lambda t: forge(header(t.es, kid=[t.es.kid]), claims(), t.es), malformed)
    # -- keys named in the token are ignored
    add(
        "embedded-jwk-attacker-key-with-our-kid",
        lambda t: forge(header(t.es, jwk=t.attacker.public().to_jwk()), claims(), t.attacker),
        bad_sig,
    )
    add(
        "jku-x5u-attacker-urls-with-our-kid",
        lambda t: forge(
            header(t.es, jku="https://evil.example/jwks.json", x5u="https://evil.example/c.pem"),
            claims(),
            t.attacker,
        ),
        bad_sig,
    )
    add(
        "x5c-attacker-chain-with-our-kid",
        lambda t: forge(
            header(t.es, x5c=["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]), claims(), t.attacker
        ),
        bad_sig,
    )
    add(
        "crit-header",
        lambda t: forge(header(t.es, crit=["exp"], exp=EXP), claims(), t.es),
        malformed,
    )
    add("crit-empty-list", lambda t: forge(header(t.es, crit=[]), claims(), t.es), malformed)
    # -- tampering
    add("payload-status-green-to-red", lambda t: _tamper_payload(t, st="red"), bad_sig)
    add("payload-name-changed", lambda t: _tamper_payload(t, nm="李*四"), bad_sig)
    add("payload-exp-extended", lambda t: _tamper_payload(t, exp=EXP + 86_400), bad_sig)
    add(
        "header-member-added",
        lambda t: with_parts(segment(header(t.es, typ="JWT")), *parts(valid(t.es))[1:]),
        bad_sig,
    )
    add(
        "signature-middle-char-flipped",
        lambda t: _replace_signature(t, lambda s, _k: flip_char(s, 40)),
        bad_sig,
    )
    add(
        "signature-first-char-flipped",
        lambda t: _replace_signature(t, lambda s, _k: flip_char(s, 0)),
        bad_sig,
    )
    add(
        "signature-all-zero", lambda t: _replace_signature(t, lambda s, _k: b64(bytes(64))), bad_sig
    )
    add(
        "eddsa-signature-all-zero",
        lambda t: with_parts(*parts(valid(t.ed))[:2], b64(bytes(64))),
        bad_sig,
    )
    add("signature-der-encoded", lambda t: _replace_signature(t, _der_signature), bad_sig)
    add(
        "signature-truncated-to-63-bytes",
        lambda t: _replace_signature(t, lambda s, _k: s[:84]),
        bad_sig,
    )
    add(
        "signature-one-char-short", lambda t: _replace_signature(t, lambda s, _k: s[:85]), malformed
    )
    add("signature-empty", lambda t: _replace_signature(t, lambda s, _k: ""), bad_sig)
    add(
        "signature-extended-to-65-bytes",
        lambda t: _replace_signature(t, lambda s, _k: b64(unb64(s) + b"\x00")),
        bad_sig,
    )
    add(
        "signature-of-another-code",
        lambda t: with_parts(*parts(valid(t.es))[:2], parts(valid(t.es, st="red"))[2]),
        bad_sig,
    )
    add(
        "signature-by-attacker-over-our-kid",
        lambda t: forge(header(t.es), claims(), t.attacker),
        bad_sig,
    )
    add(
        "eddsa-signed-by-attacker-eddsa-key",
        lambda t: forge(header(t.ed), claims(), SigningKey.generate("EdDSA")),
        bad_sig,
    )
    # -- prefix
    add("prefix-YK2", lambda t: "YK2:" + valid(t.es)[4:], UnsupportedVersion)
    add("prefix-YK10", lambda t: "YK10:" + valid(t.es)[4:], UnsupportedVersion)
    add("prefix-YK0", lambda t: "YK0:" + valid(t.es)[4:], UnsupportedVersion)
    add("no-prefix", lambda t: valid(t.es)[4:], malformed)
    add("session-jwt-without-prefix", lambda t: _hs256(t, b"session-secret")[4:], malformed)
    add("prefix-lowercase", lambda t: "yk1:" + valid(t.es)[4:], malformed)
    add("prefix-after-space", lambda t: " " + valid(t.es), malformed)
    add(
        "smart-health-card",
        lambda t: "shc:/5676290952432060346029243740446031222959532654",
        malformed,
    )
    add("eu-dcc", lambda t: "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH-R6IOO6+IUKQL6", malformed)
    add("empty-string", lambda t: "", malformed)
    add("prefix-only", lambda t: "YK1:", malformed)
    # -- segments and encoding
    add("two-segments", lambda t: "YK1:" + ".".join(parts(valid(t.es))[:2]), malformed)
    add("four-segments", lambda t: valid(t.es) + ".AAAA", malformed)
    add("five-segments-jwe-shape", lambda t: valid(t.es) + ".AAAA.AAAA", malformed)
    add(
        "standard-base64-chars",
        lambda t: with_parts(parts(valid(t.es))[0], "eyJ+/A", parts(valid(t.es))[2]),
        malformed,
    )
    add(
        "padding",
        lambda t: with_parts(parts(valid(t.es))[0] + "==", *parts(valid(t.es))[1:]),
        malformed,
    )
    add(
        "space-inside-segment",
        lambda t: with_parts("eyJh bGciOiJ9", *parts(valid(t.es))[1:]),
        malformed,
    )
    add("trailing-newline", lambda t: valid(t.es) + "\n", malformed)
    add(
        "non-ascii-in-segment",
        lambda t: with_parts(*parts(valid(t.es))[:2], "签名" + parts(valid(t.es))[2][2:]),
        malformed,
    )
    add(
        "header-impossible-base64-length",
        lambda t: with_parts("eyJhb", *parts(valid(t.es))[1:]),
        malformed,
    )
    add("header-not-json", lambda t: forge(b"alg=ES256", claims(), t.es), malformed)
    add("header-json-array", lambda t: forge([t.es.alg, t.es.kid], claims(), t.es), malformed)
    add("header-json-string", lambda t: forge(b'"ES256"', claims(), t.es), malformed)
    add("header-not-utf8", lambda t: forge(b'{"alg":"\xff\xfe"}', claims(), t.es), malformed)
    add("header-empty", lambda t: forge(b"", claims(), t.es), malformed)
    # -- payload, signed with our real key so only the claim checks can catch them
    for name in ("iss", "jti", "iat", "exp", "st", "nm"):
        add(f"payload-missing-{name}", lambda t, name=name: valid(t.es, **{name: DROP}), malformed)
    add("iat-string", lambda t: valid(t.es, iat=str(IAT)), malformed)
    add("iat-true", lambda t: valid(t.es, iat=True), malformed)
    add("iat-float", lambda t: valid(t.es, iat=IAT + 0.5), malformed)
    add("iat-negative", lambda t: valid(t.es, iat=-1), malformed)
    add("iat-null", lambda t: valid(t.es, iat=None), malformed)
    add("exp-string", lambda t: valid(t.es, exp=str(EXP)), malformed)
    add("exp-false", lambda t: valid(t.es, exp=False), malformed)
    add("st-blue", lambda t: valid(t.es, st="blue"), malformed)
    add("st-uppercase", lambda t: valid(t.es, st="GREEN"), malformed)
    add("st-null", lambda t: valid(t.es, st=None), malformed)
    add("nm-empty", lambda t: valid(t.es, nm=""), malformed)
    add("nm-number", lambda t: valid(t.es, nm=7), malformed)
    add("iss-list", lambda t: valid(t.es, iss=[ISSUER]), malformed)
    add("jti-empty", lambda t: valid(t.es, jti=""), malformed)
    add("payload-not-json", lambda t: forge(header(t.es), b"st=green", t.es), malformed)
    add("payload-json-array", lambda t: forge(header(t.es), [claims()], t.es), malformed)
    add(
        "payload-gbk-not-utf8",
        lambda t: forge(
            header(t.es), compact_json(claims()).replace(NAME.encode(), b"\xd5\xc5*\xc8\xfd"), t.es
        ),
        malformed,
    )
    add("payload-empty", lambda t: forge(header(t.es), b"", t.es), malformed)
    add("eddsa-st-blue", lambda t: valid(t.ed, st="blue"), malformed)
    # -- size
    add("input-over-max-chars", _oversized, malformed)
    add("ten-kilobytes-of-valid-looking-base64", lambda t: "YK1:" + "A" * 10_000, malformed)
    return a


ATTACKS: Final[tuple[Attack, ...]] = tuple(_attacks())
