"""The health-code wire format, version 1 (``YK1:``).

A health code is the text inside the QR symbol::

    YK1:<protected header>.<payload>.<signature>

that is, the prefix ``YK1:`` followed by a JWS in compact serialisation (RFC 7515). The three
base64url segments are exactly those of a standard JWS, so any JOSE library can verify the part
after the prefix with our published JWKS.

Header (protected, and nothing else is trusted)::

    {"alg":"ES256","kid":"<22 chars>"}

- ``alg``: ``ES256`` (default) or ``EdDSA`` (Ed25519). ``none``, HMAC and everything else are
  refused, and the header's ``alg`` must equal the algorithm bound to the key named by ``kid``.
- ``kid``: the first 128 bits of the RFC 7638 thumbprint of the signing key (see ``codec.keys``).
- ``jku``, ``x5u``, ``jwk``, ``x5c`` and other members are ignored: keys come only from the
  verifier's own trust store, never from the token. A ``crit`` member is refused (RFC 7515 4.1.11),
  since we understand no extensions.

Claims (payload), compact JSON, UTF-8, in this order::

    {"iss":"yk:gd","jti":"<22 chars>","iat":1764100000,"exp":1764103600,"st":"green","nm":"张*三"}

========  ==================================================================  ==========
claim     meaning                                                             bytes
========  ==================================================================  ==========
``iss``   issuer identifier (short: it is in every code)                      ~14
``jti``   code id, 128 random bits, base64url                                 31
``iat``   issued at, integer UTC seconds                                      17
``exp``   expires at, integer UTC seconds                                     17
``st``    status: ``green`` / ``yellow`` / ``red``                            12-14
``nm``    masked name for the human check at the gate (``张*三``)               ~14
``nt``    optional: latest test negative within this many hours (24/48/72/168)  8-9
``vx``    optional: vaccine doses received (omitted when none)                  7
``src``   converted codes only: ``[source issuer, source kid, source digest]``  ~58
``ia``    identity assurance: how the holder's identity was proved            7
========  ==================================================================  ==========

``ia`` is 1 (``proofed``: population register and the carrier's real-name registration of the
phone), 2 (``counter``: document seen by staff), 3 (``dependant``: a family member's record,
registry-checked, held by a proofed guardian) or 4 (``partner``: vouched for by a partner system
such as Macao); see docs/IDENTITY.md. A small integer rather than a name: a code with every
ordinary claim at its longest usual value (yellow, a three-character name, ``nt`` of 168, a
one-digit ``vx``) leaves 7 bytes of JSON within version 13, and ``,"ia":1`` is exactly 7. A code
without ``ia`` (issued before proofing existed) has an unknown assurance, which a policy that asks
for one does not accept; a verifier reads a value it does not know as unknown too.

``src`` says where a converted code came from (docs/EXCHANGE.md): the partner's issuer id, the id
of the key that signed the partner's code, and the first 128 bits of SHA-256 over the partner's
code text, base64url. The partner's code is never re-signed as ours; this claim keeps the trail.

Nothing else personal ever goes in: no full name, no document number, no birth date, no phone.
Verifiers ignore claims they do not know, so later minor additions (a NAT summary, a dose count, a
source issuer for converted codes) do not break deployed checkpoints; a change that old verifiers
must not accept gets a new prefix (``YK2:``), which they answer with ``unsupported_version``.

Size budget. The QR must stay easy to scan on a cracked phone screen at a border gate: an
ordinary code fits **QR version 13 at error-correction level M** (331 bytes in byte mode,
:data:`QR_TEXT_TYPICAL`). A typical code (green, three-character Chinese name, ES256 or EdDSA,
``ia``) is 308 characters. The fixed overhead is 4 (prefix) + 62 (header) + 86 (signature) + 2
(dots) = 154 characters, leaving 177 base64url characters -- 132 bytes of JSON -- for the claims;
the six claims above use 108 of them (a three-character CJK name), which leaves 24 bytes for the
optional ones; ``nt``, ``vx`` and ``ia`` take at most 23 of them. Only a name whose first or last
character lies outside the Basic Multilingual Plane (four UTF-8 bytes: rare characters of CJK
Extension B and beyond), or ten doses and more, can push a code past that, into version 14;
:func:`sign_health_code` refuses anything over :data:`QR_TEXT_BUDGET`, version 14's 362 bytes. A
converted code needs room for ``src`` as well: it may reach :data:`QR_TEXT_BUDGET_CONVERTED`, QR
version 15 at level M (412 bytes), still easy on a phone screen.

Times are integer UTC seconds; verification takes ``now`` as an argument and allows a symmetric
clock leeway for devices whose clocks drift.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from yuekang.codec.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    CodeTooLarge,
    MalformedCode,
    UnknownKey,
    UnsupportedVersion,
)
from yuekang.codec.keys import (
    ALGORITHMS,
    SIGNATURE_BYTES,
    SigningKey,
    VerificationKey,
    b64url_decode,
    b64url_encode,
    check_validity,
    is_high_s,
)

PREFIX: Final = "YK1:"
QR_TEXT_TYPICAL: Final = 331
"""Every ordinary code with names of the Basic Multilingual Plane fits this: QR version 13 at
error-correction level M."""
QR_TEXT_BUDGET: Final = 362
"""Longest ordinary ``qr_text`` we sign: the byte capacity of QR version 14 at level M, reached
only by names with characters outside the Basic Multilingual Plane (see the module docstring)."""
QR_TEXT_BUDGET_CONVERTED: Final = 412
"""Longest converted code (one with ``src``): QR version 15 at level M."""
MAX_INPUT_CHARS: Final = 4096
"""Longer input is refused as malformed before any parsing, whatever it claims to be."""
MAX_KID_CHARS: Final = 64
Status = Literal["green", "yellow", "red"]
STATUSES: Final[tuple[Status, ...]] = ("green", "yellow", "red")

ASSURANCE_LEVELS: Final[dict[int, str]] = {1: "proofed", 2: "counter", 3: "dependant", 4: "partner"}
"""What each value of the ``ia`` claim means (docs/IDENTITY.md)."""

_PREFIX_RE: Final = re.compile(r"^([A-Z]{2,3})(\d{1,2}):")
_SIGNATURE_CHARS: Final = len(b64url_encode(bytes(SIGNATURE_BYTES)))
_COMPACT_RE: Final = re.compile(r"([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")


@dataclass(frozen=True, slots=True)
class HealthCodeClaims:
    """The signed claims of a health code."""

    iss: str
    jti: str
    iat: int
    exp: int
    st: Status
    nm: str
    nt: int | None = None
    """Hours within which the latest test was negative, when it was (a display bucket)."""
    vx: int | None = None
    """Vaccine doses received, when any."""
    src: tuple[str, str, str] | None = None
    """For a converted code: source issuer, source key id, source code digest."""
    ia: int | None = None
    """Identity assurance (1 proofed, 2 counter, 3 dependant, 4 partner); None when unknown."""

    def to_json(self) -> bytes:
        body: dict[str, str | int | list[str]] = {
            "iss": self.iss,
            "jti": self.jti,
            "iat": self.iat,
            "exp": self.exp,
            "st": self.st,
            "nm": self.nm,
        }
        if self.nt is not None:
            body["nt"] = self.nt
        if self.vx:
            body["vx"] = self.vx
        if self.src is not None:
            body["src"] = list(self.src)
        if self.ia is not None:
            body["ia"] = self.ia
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True, slots=True)
class VerifiedCode:
    """A health code whose signature, key, issuer and validity window all checked out."""

    claims: HealthCodeClaims
    kid: str
    alg: str


def sign_health_code(claims: HealthCodeClaims, key: SigningKey) -> str:
    """Sign ``claims`` with ``key`` and return the QR text.

    Raises :class:`~yuekang.codec.errors.CodeTooLarge` when the result would not fit
    :data:`QR_TEXT_BUDGET`.
    """
    if claims.st not in STATUSES:
        raise ValueError(f"unknown status {claims.st!r}")
    if claims.exp <= claims.iat:
        raise ValueError("a code must expire after it is issued")
    header = json.dumps({"alg": key.alg, "kid": key.kid}, separators=(",", ":")).encode("ascii")
    signing_input = b64url_encode(header) + "." + b64url_encode(claims.to_json())
    # Both algorithms give signatures of SIGNATURE_BYTES, so the size is known before signing and
    # nothing over the budget is ever signed.
    length = len(PREFIX) + len(signing_input) + 1 + _SIGNATURE_CHARS
    budget = QR_TEXT_BUDGET if claims.src is None else QR_TEXT_BUDGET_CONVERTED
    if length > budget:
        raise CodeTooLarge(f"the code would be {length} characters; the budget is {budget}")
    return PREFIX + signing_input + "." + b64url_encode(key.sign(signing_input.encode("ascii")))


ClaimFields = tuple[
    str,
    str,
    int,
    int,
    Status,
    str,
    int | None,
    int | None,
    tuple[str, str, str] | None,
    int | None,
]
"""The values of :class:`HealthCodeClaims`, in its field order."""


def read_health_code(
    qr_text: str,
    keys: Mapping[str, VerificationKey],
    *,
    now: int,
    leeway: int = 60,
) -> VerifiedCode:
    """Verify a health code and return its claims.

    ``keys`` maps key ids to trusted keys; ``now`` is the verifier's clock in UTC seconds. Checks
    run in this order, and the first failure is raised as a subclass of
    :class:`~yuekang.codec.errors.InvalidCode`: format, version, algorithm, key, signature,
    claims, issuer, key validity, time.
    """
    fields, kid, alg = read_health_code_fields(qr_text, keys, now=now, leeway=leeway)
    return VerifiedCode(claims=HealthCodeClaims(*fields), kid=kid, alg=alg)


def read_health_code_fields(
    qr_text: str,
    keys: Mapping[str, VerificationKey],
    *,
    now: int,
    leeway: int,
) -> tuple[ClaimFields, str, str]:
    """:func:`read_health_code`, every check the same, answering ``(claims, kid, alg)`` with the
    claims as a plain tuple: the offline verifier builds its verdict straight from them, and two
    frozen dataclasses per code are a noticeable share of what it spends besides the signature."""
    if not isinstance(qr_text, str) or len(qr_text) > MAX_INPUT_CHARS:
        raise MalformedCode("not a health code of a plausible size")
    if not qr_text.startswith(PREFIX):
        if _PREFIX_RE.match(qr_text) and qr_text.startswith("YK"):
            raise UnsupportedVersion(f"unsupported health-code version {qr_text.split(':')[0]!r}")
        raise MalformedCode("does not start with the YK1: prefix")
    segments = _COMPACT_RE.fullmatch(qr_text, len(PREFIX))
    if segments is None:
        raise MalformedCode("expected three segments of base64url characters after YK1:")
    header_b64, payload_b64, signature_b64 = segments.groups()
    alg, kid = _header(header_b64)
    key = keys.get(kid)
    if key is None:
        raise UnknownKey("the signing key is not trusted here")
    if key.alg != alg:
        raise AlgorithmNotAllowed(f"key {kid} is bound to {key.alg}, not {alg}")

    try:
        signature = b64url_decode(signature_b64)
    except ValueError as exc:
        raise MalformedCode("the signature is not base64url") from exc
    signing_input = qr_text[len(PREFIX) : segments.end(2)].encode("ascii")
    if alg == "ES256" and is_high_s(signature):
        # (r, n - s) verifies as well as (r, s): refused, so that a code has one spelling.
        raise BadSignature("a high-s signature is not one we make")
    if not key.verify(signature, signing_input):
        raise BadSignature("the signature does not match")

    fields = _claim_fields(payload_b64)
    iss, iat, exp = fields[0], fields[2], fields[3]
    check_validity(key, kid, issuer=iss, iat=iat, exp=exp, now=now, leeway=leeway)
    return fields, kid, alg


@functools.lru_cache(maxsize=256)
def _header(segment: str) -> tuple[str, str]:
    """``(alg, kid)`` of a protected header. Every code a key signs has the same header, so the
    parse is cached; failures raise and are not cached."""
    header = _json_object(segment, "header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise AlgorithmNotAllowed(f"algorithm {alg!r} is not allowed")
    if "crit" in header:
        raise MalformedCode("critical header extensions are not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS:
        raise MalformedCode("the header must carry a short kid")
    return alg, kid


def _json_object(segment: str, what: str) -> dict[str, Any]:
    return _parse_object(_segment_text(segment, what), what)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _segment_text(segment: str, what: str) -> str:
    try:
        return b64url_decode(segment).decode("utf-8")
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise MalformedCode(f"the {what} is not base64url JSON") from exc


def _parse_object(text: str, what: str) -> dict[str, Any]:
    try:
        # NaN and Infinity are not JSON: the browser's verifier refuses them, so must this one.
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        # RecursionError: deeply nested JSON arrives before the signature is checked.
        raise MalformedCode(f"the {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise MalformedCode(f"the {what} is not a JSON object")
    return value


# JSON strings that json.loads returns unchanged (no escapes, no control characters) and the
# integers _claims accepts, in the canonical decimal spelling.
_TEXT: Final = r'"([^"\\\x00-\x1f]+)"'
_SRC_PART: Final = rf'"([^"\\\x00-\x1f]{{1,{MAX_KID_CHARS}}})"'
_SECONDS: Final = r"(0|[1-9][0-9]{0,17})"
_SMALL: Final = r"(0|[1-9][0-9]{0,3})"
_CANONICAL_CLAIMS_RE: Final = re.compile(
    rf'\{{"iss":{_TEXT},"jti":{_TEXT},"iat":{_SECONDS},"exp":{_SECONDS},'
    rf'"st":"(green|yellow|red)","nm":{_TEXT}'
    rf'(?:,"nt":{_SMALL})?(?:,"vx":{_SMALL})?'
    rf'(?:,"src":\[{_SRC_PART},{_SRC_PART},{_SRC_PART}\])?(?:,"ia":{_SMALL})?\}}'
)
"""The claims exactly as :meth:`HealthCodeClaims.to_json` writes them, every value within what
:func:`_claims` accepts. Matching this is several times cheaper than ``json.loads`` and the checks
that follow, and gives the same values; any other spelling (whitespace, escapes, another order,
unknown claims, values out of range) goes the general way, with its errors and messages."""


def _claim_fields(segment: str) -> ClaimFields:
    text = _segment_text(segment, "payload")
    canonical = _CANONICAL_CLAIMS_RE.fullmatch(text)
    if canonical is None:
        return _claims(_parse_object(text, "payload"))
    iss, jti, iat, exp, status, nm, nt, vx, src_iss, src_kid, src_digest, ia = canonical.groups()
    return (
        iss,
        jti,
        int(iat),
        int(exp),
        cast(Status, status),
        nm,
        None if nt is None else int(nt),
        None if vx is None else int(vx),
        None if src_iss is None else (src_iss, src_kid, src_digest),
        None if ia is None else int(ia),
    )


def _claims(payload: dict[str, Any]) -> ClaimFields:
    def text(name: str) -> str:
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedCode(f"claim {name!r} must be a non-empty string")
        return value

    def seconds(name: str) -> int:
        value = payload.get(name)
        # bool is an int in Python; a JSON true must not pass as a time
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise MalformedCode(f"claim {name!r} must be integer UTC seconds")
        return value

    def small(name: str) -> int | None:
        value = payload.get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9999:
            raise MalformedCode(f"claim {name!r} must be a small non-negative integer")
        return value

    src = payload.get("src")
    if src is not None and (
        not isinstance(src, list)
        or len(src) != 3
        or not all(isinstance(part, str) and 0 < len(part) <= MAX_KID_CHARS for part in src)
    ):
        raise MalformedCode("claim 'src' must be [issuer, kid, digest]")
    status = payload.get("st")
    if status not in STATUSES:
        raise MalformedCode("claim 'st' must be green, yellow or red")
    # The order of the calls is the order of the checks, and so of the error a payload gets.
    iss, jti, iat, exp = text("iss"), text("jti"), seconds("iat"), seconds("exp")
    nm, nt, vx, ia = text("nm"), small("nt"), small("vx"), small("ia")
    return (
        iss,
        jti,
        iat,
        exp,
        status,
        nm,
        nt,
        vx,
        None if src is None else (src[0], src[1], src[2]),
        ia,
    )
