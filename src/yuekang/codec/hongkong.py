"""The Hong Kong health-code format, version 1 (``HK1:``), as the reference Hong Kong system
issues it: a 港康碼 that Guangdong recognised and converted into a 粤康码 from 2022.

Not ours, and not Macao's: a compact JWS (RFC 7515) behind a literal prefix, signed with ES256.
Pure: no settings, no database, no clock (``now`` is an argument), no network. It is registered
as a partner code format (:mod:`yuekang.codec.formats`) by its entry point in pyproject.toml.

QR text
=======

::

    HK1:<b64url(header)>.<b64url(payload)>.<b64url(signature)>

- ``HK`` followed by other digits (``HK2:``) is a later version: ``unsupported_version``.
- header: exactly ``{"alg": "ES256", "kid": <key id>, "typ": "hk-health-code"}``; any other
  algorithm is ``algorithm_not_allowed``.
- payload (UTF-8 JSON object)::

    {"iss": "HK", "jti": "<16 random bytes, base64url>", "iat": <s>, "exp": <s>,
     "st": "green" | "amber" | "red", "nm": "<masked name>",
     "dt": "HKID" | "PERMIT" | "PASSPORT", "nat": "YYYY-MM-DD" | null}

  ``st`` is Hong Kong's own word for the status (its mapping table turns ``amber`` into our
  ``yellow``), ``dt`` the coarse document type the code shows, ``nat`` the day (Hong Kong time,
  UTC+8) of the latest negative test. Unknown members are refused: a code is read by gates that
  must all agree on what it says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from yuekang.codec.errors import (
    AlgorithmNotAllowed,
    BadSignature,
    MalformedCode,
    UnknownKey,
    UnsupportedVersion,
)
from yuekang.codec.formats import PartnerCode
from yuekang.codec.keys import (
    SigningKey,
    VerificationKey,
    b64url_decode,
    b64url_encode,
    check_validity,
    is_high_s,
)

PREFIX: Final = "HK1:"
TYP: Final = "hk-health-code"
COLOURS: Final = ("green", "amber", "red")
DOC_TYPES: Final = ("HKID", "PERMIT", "PASSPORT")
MAX_INPUT_CHARS: Final = 2048
_VERSION: Final = re.compile(r"HK[0-9]{1,3}:")
_MEMBERS: Final = frozenset({"iss", "jti", "iat", "exp", "st", "nm", "dt", "nat"})
_CODE_ID: Final = re.compile(r"[A-Za-z0-9_-]{22}")
_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Checked before anything is decoded: the signing input is ASCII, as the browser's reader takes it.
_COMPACT: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True, slots=True)
class HongKongCodeClaims:
    iss: str
    jti: str
    iat: int
    exp: int
    st: str
    nm: str
    dt: str
    nat: str | None = None


def sign_hongkong_code(claims: HongKongCodeClaims, key: SigningKey) -> str:
    """The QR text of ``claims`` signed with ``key`` (ES256 only)."""
    if key.alg != "ES256":
        raise ValueError("Hong Kong codes are signed with ES256 keys only")
    if claims.st not in COLOURS or claims.dt not in DOC_TYPES or claims.exp <= claims.iat:
        raise ValueError("claims a Hong Kong code cannot carry")
    header = {"alg": "ES256", "kid": key.kid, "typ": TYP}
    payload = {
        "iss": claims.iss,
        "jti": claims.jti,
        "iat": claims.iat,
        "exp": claims.exp,
        "st": claims.st,
        "nm": claims.nm,
        "dt": claims.dt,
        "nat": claims.nat,
    }
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    return f"{PREFIX}{signing_input}.{b64url_encode(key.sign(signing_input.encode('ascii')))}"


def read_hongkong_code(
    qr_text: str, keys: Mapping[str, VerificationKey], *, now: int, leeway: int = 60
) -> tuple[HongKongCodeClaims, str]:
    """Verify a Hong Kong code; its claims and the key id that signed it."""
    if not isinstance(qr_text, str) or len(qr_text) > MAX_INPUT_CHARS:
        raise MalformedCode("not a Hong Kong health code of a plausible size")
    if not qr_text.startswith(PREFIX):
        if _VERSION.match(qr_text):
            raise UnsupportedVersion(f"unsupported Hong Kong code version {qr_text[:6]!r}")
        raise MalformedCode("does not start with the HK1: prefix")
    if not _COMPACT.fullmatch(qr_text[len(PREFIX) :]):
        raise MalformedCode("a Hong Kong code has three dot-separated base64url segments")
    parts = qr_text[len(PREFIX) :].split(".")
    header = _object(parts[0], "header")
    if set(header) != {"alg", "kid", "typ"} or header["typ"] != TYP:
        raise MalformedCode("the header is not a Hong Kong code's")
    if header["alg"] != "ES256":
        raise AlgorithmNotAllowed(f"algorithm {str(header['alg'])[:16]!r} is not allowed")
    kid = header["kid"]
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise UnknownKey("the signing key is not trusted here")
    if key.alg != "ES256":
        raise AlgorithmNotAllowed(f"key {kid} is bound to {key.alg}, not ES256")
    signature = _bytes(parts[2], "signature")
    # A high-s signature is the second spelling of a valid one: refused, so that a code has one
    # text and one digest (the ``src`` of the code converted from it).
    if is_high_s(signature) or not key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii")):
        raise BadSignature("the signature does not match")
    claims = _claims(_object(parts[1], "payload"))
    check_validity(
        key, kid, issuer=claims.iss, iat=claims.iat, exp=claims.exp, now=now, leeway=leeway
    )
    return claims, kid


@dataclass(frozen=True, slots=True)
class HongKongFormat:
    """``HK1:`` as a registered partner code format."""

    name: str = "HK1"
    system: str = "Hong Kong"

    def claims(self, qr_text: str) -> bool:
        return isinstance(qr_text, str) and _VERSION.match(qr_text) is not None

    def read(
        self, qr_text: str, keys: Mapping[str, VerificationKey], *, now: int, leeway: int
    ) -> PartnerCode:
        claims, kid = read_hongkong_code(qr_text, keys, now=now, leeway=leeway)
        return PartnerCode(
            issuer=claims.iss,
            code_id=claims.jti,
            kid=kid,
            digest=b64url_encode(hashlib.sha256(qr_text.encode("utf-8")).digest()[:16]),
            issued_at=claims.iat,
            expires_at=claims.exp,
            colour=claims.st,
            masked_name=claims.nm,
            doc_type=claims.dt,
            tested_on=None if claims.nat is None else dt.date.fromisoformat(claims.nat),
            utc_offset_hours=8,
        )


FORMAT: Final = HongKongFormat()


def _segment(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _bytes(segment: str, what: str) -> bytes:
    try:
        return b64url_decode(segment)
    except ValueError as exc:
        raise MalformedCode(f"the {what} is not base64url") from exc


def _object(segment: str, what: str) -> dict[str, Any]:
    # UTF-8 only (json.loads would guess UTF-16 and skip a BOM in bytes) and no NaN or
    # Infinity: what JSON.parse in the browser's reader refuses is refused here too.
    try:
        value = json.loads(_bytes(segment, what).decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise MalformedCode(f"the {what} is not UTF-8 JSON") from exc
    if not isinstance(value, dict):
        raise MalformedCode(f"the {what} is not a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _claims(payload: dict[str, Any]) -> HongKongCodeClaims:
    if set(payload) != _MEMBERS:
        raise MalformedCode("the payload must have exactly " + ", ".join(sorted(_MEMBERS)))
    iss, jti, iat, exp = payload["iss"], payload["jti"], payload["iat"], payload["exp"]
    st, nm, doc, nat = payload["st"], payload["nm"], payload["dt"], payload["nat"]
    if not (isinstance(iss, str) and 0 < len(iss) <= 64):
        raise MalformedCode("'iss' must be text")
    if not (isinstance(jti, str) and _CODE_ID.fullmatch(jti)):
        # 16 bytes as base64url, as the format says: the code id a checkpoint uploads with
        # its scan (a scan record's id has that shape, like our codes' and Macao's).
        raise MalformedCode("'jti' must be 16 bytes, base64url")
    if type(iat) is not int or type(exp) is not int or not 0 <= iat < exp < 2**40:
        raise MalformedCode("'iat' and 'exp' must be whole seconds, 'exp' after 'iat'")
    if st not in COLOURS:
        raise MalformedCode(f"'st' must be one of {', '.join(COLOURS)}")
    if not (isinstance(nm, str) and 0 < len(nm) <= 100):
        raise MalformedCode("'nm' must be text")
    if doc not in DOC_TYPES:
        raise MalformedCode(f"'dt' must be one of {', '.join(DOC_TYPES)}")
    if nat is not None and not (isinstance(nat, str) and _is_date(nat)):
        raise MalformedCode("'nat' must be null or a date YYYY-MM-DD")
    return HongKongCodeClaims(iss=iss, jti=jti, iat=iat, exp=exp, st=st, nm=nm, dt=doc, nat=nat)


def _is_date(text: str) -> bool:
    if not _DATE.fullmatch(text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True
