"""The checkpoint trust bundle, version 1: everything an offline verifier needs, signed by the
trust anchor.

A bundle is a compact JWS (RFC 7515) signed by the **anchor key** -- a key used for nothing else,
whose public key a checkpoint is given out of band and pins. Header::

    {"alg":"ES256","kid":"<anchor kid>","typ":"yk-bundle+jws"}

Payload, UTF-8 JSON::

    {"typ": "yk.bundle.v1",
     "issuer": "yk:gd",                 the issuer whose codes these keys sign
     "version": 42,                     strictly increasing; a verifier refuses anything older
     "issued_at": 1764100000,           UTC seconds
     "expires_at": 1764186400,          after this the bundle is stale ...
     "grace": 259200,                   ... and after expires_at + grace, expired
     "base": 40,                        present only in a delta: applies on top of version 40
     "keys": [{<public JWK>, "state": "active" | "retired" | "pending",
               "nbf": 1764000000,       earliest iat of a code it may sign
               "exp": 1771776000}],     latest exp of a code it may have signed
     "revoked": [{"until": 1764103600, "ids": "<base64url>"}],
     "policies": {<place kind>: <policy document>},
     "issuers": [{"id": "macao", "issuer": "MO", "format": "MO1",
                  "keys": [{<public JWK>, "state": "active" | "retired", "nbf"?, "exp"?}],
                  "colours": {"verde": "green", "amarelo": "yellow", "vermelho": "red"}}]}

- ``keys`` is always complete (a handful of keys). A compromised key is simply absent.
- ``revoked`` groups revoked code ids by the hour their codes expire (``until``): ``ids`` is the
  sorted concatenation of the 16-byte ids, base64url. A verifier drops a group once ``until`` has
  passed, so the list stays as short as the codes are long-lived, and 100,000 revocations cost
  about 2.2 MB. In a delta, ``revoked`` holds only the entries added since ``base``.
- ``policies`` is always complete; its grammar belongs to the rules engine (``yuekang.rules``),
  which checks it when the verifier loads the bundle.
- ``issuers`` (optional, always complete) lists partner systems whose own codes checkpoints
  recognise (docs/EXCHANGE.md): their code keys -- a ``retired`` one verifies nothing -- and the
  colour table that turns their colours into a status.

Reading takes the anchor key as an argument and never learns keys from the bundle itself.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from yuekang.codec.errors import CodecError, InvalidKey
from yuekang.codec.keys import ALGORITHMS, SigningKey, VerificationKey, b64url_decode, b64url_encode

BUNDLE_TYP: Final = "yk.bundle.v1"
HEADER_TYP: Final = "yk-bundle+jws"
CODE_ID_BYTES: Final = 16
MAX_BUNDLE_CHARS: Final = 16 * 1024 * 1024
REVOCATION_BUCKET_SECONDS: Final = 3600

KeyState = Literal["active", "retired", "pending"]
KEY_STATES: Final = ("active", "retired", "pending")
STATUSES: Final = ("green", "yellow", "red")


class BundleError(CodecError):
    """A bundle that must not be used."""


class BadBundleSignature(BundleError):
    """The bundle is not signed by the pinned anchor key (tampered, or another anchor)."""


class MalformedBundle(BundleError):
    """The bundle does not follow this format."""


@dataclass(frozen=True, slots=True)
class BundleKey:
    key: VerificationKey
    state: KeyState
    not_before: int
    not_after: int


@dataclass(frozen=True, slots=True)
class BundleIssuer:
    """A partner issuer whose codes checkpoints recognise."""

    id: str
    issuer: str
    format: str
    keys: tuple[VerificationKey, ...]
    """Retired keys come back marked compromised: they verify nothing."""
    colours: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class TrustBundle:
    issuer: str
    version: int
    issued_at: int
    expires_at: int
    grace: int
    keys: tuple[BundleKey, ...]
    revoked: Mapping[int, frozenset[str]]
    """``until`` (UTC seconds) -> ids of codes expiring by then that are revoked."""
    policies: Mapping[str, Any] = field(default_factory=dict)
    base: int | None = None
    """For a delta, the version it applies on top of."""
    issuers: tuple[BundleIssuer, ...] = ()


def encode_ids(ids: Iterable[str]) -> str:
    """Code ids (base64url of 16 bytes) as one sorted base64url string."""
    raw = sorted({b64url_decode(code_id) for code_id in ids})
    if any(len(item) != CODE_ID_BYTES for item in raw):
        raise ValueError("every code id must be 16 bytes")
    return b64url_encode(b"".join(raw))


def decode_ids(text: str) -> frozenset[str]:
    try:
        raw = b64url_decode(text)
    except (ValueError, binascii.Error) as exc:
        raise MalformedBundle("revocation ids are not base64url") from exc
    if len(raw) % CODE_ID_BYTES:
        raise MalformedBundle("revocation ids are not a whole number of 16-byte ids")
    return frozenset(
        b64url_encode(raw[i : i + CODE_ID_BYTES]) for i in range(0, len(raw), CODE_ID_BYTES)
    )


def bucket(expires_at: int) -> int:
    """The ``until`` of the group a code expiring at ``expires_at`` is listed under."""
    return -(-expires_at // REVOCATION_BUCKET_SECONDS) * REVOCATION_BUCKET_SECONDS


def bundle_payload(bundle: TrustBundle) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "typ": BUNDLE_TYP,
        "issuer": bundle.issuer,
        "version": bundle.version,
        "issued_at": bundle.issued_at,
        "expires_at": bundle.expires_at,
        "grace": bundle.grace,
        "keys": [
            {**k.key.to_jwk(), "state": k.state, "nbf": k.not_before, "exp": k.not_after}
            for k in bundle.keys
        ],
        "revoked": [
            {"until": until, "ids": encode_ids(ids)}
            for until, ids in sorted(bundle.revoked.items())
            if ids
        ],
        "policies": dict(bundle.policies),
    }
    if bundle.issuers:
        payload["issuers"] = [
            {
                "id": partner.id,
                "issuer": partner.issuer,
                "format": partner.format,
                "keys": [_issuer_key_entry(key) for key in partner.keys],
                "colours": dict(partner.colours),
            }
            for partner in bundle.issuers
        ]
    if bundle.base is not None:
        payload["base"] = bundle.base
    return payload


def _issuer_key_entry(key: VerificationKey) -> dict[str, Any]:
    entry: dict[str, Any] = {**key.to_jwk(), "state": "retired" if key.compromised else "active"}
    if key.not_before is not None:
        entry["nbf"] = key.not_before
    if key.not_after is not None:
        entry["exp"] = key.not_after
    return entry


def sign_bundle(bundle: TrustBundle, anchor: SigningKey) -> str:
    """The bundle as a compact JWS signed by the anchor key."""
    return sign_anchored(HEADER_TYP, bundle_payload(bundle), anchor)


def read_bundle(text: str, anchor: VerificationKey) -> TrustBundle:
    """Check the anchor's signature and the format; the bundle, or :class:`BundleError`."""
    if not isinstance(text, str) or len(text) > MAX_BUNDLE_CHARS:
        raise MalformedBundle("a bundle is a compact JWS of at most 16 MiB")
    return _bundle(open_anchored(text, HEADER_TYP, anchor, what=("trust bundle", "bundle")))


def sign_anchored(typ: str, payload: Mapping[str, Any], anchor: SigningKey) -> str:
    """``payload`` as a compact JWS signed by the trust anchor, its header's ``typ`` saying what
    it is: the bundle, or another statement a device believes only under the anchor it pinned
    (a checkpoint's registration). Each has a ``typ`` of its own, so none passes for another."""
    header = {"alg": anchor.alg, "kid": anchor.kid, "typ": typ}
    signing_input = b64url_encode(_json(header)) + "." + b64url_encode(_json(payload))
    return signing_input + "." + b64url_encode(anchor.sign(signing_input.encode("ascii")))


def open_anchored(
    text: str, typ: str, anchor: VerificationKey, *, what: tuple[str, str]
) -> dict[str, Any]:
    """The payload of a compact JWS of ``typ`` the pinned anchor signed, once the header and
    the signature check; else :class:`MalformedBundle` or :class:`BadBundleSignature`, worded
    by ``what`` (its name, and a short one)."""
    name, short = what
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise MalformedBundle(f"a {short} is a compact JWS: three dot-separated parts")
    header = _object(parts[0], "header")
    if header.get("typ") != typ or header.get("alg") not in ALGORITHMS:
        raise MalformedBundle(f"not a {name} header")
    if header.get("alg") != anchor.alg or header.get("kid") != anchor.kid:
        raise BadBundleSignature(f"the {short} is not signed by the pinned anchor key")
    try:
        signature = b64url_decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise MalformedBundle("the signature is not base64url") from exc
    if not anchor.verify(signature, (parts[0] + "." + parts[1]).encode("ascii")):
        raise BadBundleSignature(f"the {short}'s signature does not verify: it was altered")
    return _object(parts[1], "payload")


def _bundle(payload: Mapping[str, Any]) -> TrustBundle:
    if payload.get("typ") != BUNDLE_TYP:
        raise MalformedBundle(f"the payload is not a {BUNDLE_TYP} document")
    issuer = payload.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise MalformedBundle("the bundle names no issuer")
    version, issued_at, expires_at, grace = (
        _int(payload, name) for name in ("version", "issued_at", "expires_at", "grace")
    )
    if expires_at <= issued_at:
        raise MalformedBundle("the bundle expires before it was issued")
    base = payload.get("base")
    if base is not None and (not _is_int(base) or base >= version):
        raise MalformedBundle("a delta's base must be an earlier version")
    keys = payload.get("keys")
    revoked = payload.get("revoked")
    policies = payload.get("policies", {})
    if not isinstance(keys, list) or not isinstance(revoked, list):
        raise MalformedBundle("the bundle needs 'keys' and 'revoked' lists")
    if not isinstance(policies, dict):
        raise MalformedBundle("'policies' must be an object")
    groups: dict[int, frozenset[str]] = {}
    for group in revoked:
        if not isinstance(group, dict) or not isinstance(group.get("ids"), str):
            raise MalformedBundle("each revocation group needs 'until' and 'ids'")
        until = _int(group, "until")
        groups[until] = groups.get(until, frozenset()) | decode_ids(group["ids"])
    return TrustBundle(
        issuer=issuer,
        version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        grace=grace,
        keys=tuple(_key(jwk, issuer) for jwk in keys),
        revoked=groups,
        policies=policies,
        base=base,
        issuers=_issuers(payload.get("issuers", [])),
    )


def _issuers(entries: Any) -> tuple[BundleIssuer, ...]:
    if not isinstance(entries, list):
        raise MalformedBundle("'issuers' must be a list")
    issuers = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise MalformedBundle("each issuer must be an object")
        values = [entry.get(name) for name in ("id", "issuer", "format")]
        names = [value for value in values if isinstance(value, str) and 0 < len(value) <= 64]
        if len(names) != 3:
            raise MalformedBundle("an issuer needs 'id', 'issuer' and 'format'")
        keys, colours = entry.get("keys"), entry.get("colours")
        if not isinstance(keys, list) or not isinstance(colours, dict):
            raise MalformedBundle("an issuer needs 'keys' and 'colours'")
        if not all(isinstance(k, str) and v in STATUSES for k, v in colours.items()):
            raise MalformedBundle("an issuer's colours map to green, yellow or red")
        issuers.append(
            BundleIssuer(
                id=names[0],
                issuer=names[1],
                format=names[2],
                keys=tuple(_issuer_key(jwk, names[1]) for jwk in keys),
                colours=colours,
            )
        )
    return tuple(issuers)


def _issuer_key(jwk: Any, issuer: str) -> VerificationKey:
    if not isinstance(jwk, dict) or jwk.get("state") not in ("active", "retired"):
        raise MalformedBundle("an issuer key needs a state of active or retired")
    window = [jwk.get("nbf"), jwk.get("exp")]
    if any(value is not None and not _is_int(value) for value in window):
        raise MalformedBundle("an issuer key's nbf and exp are UTC seconds")
    public = {k: v for k, v in jwk.items() if k not in ("state", "nbf", "exp")}
    try:
        key = VerificationKey.from_jwk(public, issuer=issuer)
    except InvalidKey as exc:
        raise MalformedBundle(f"an issuer key is not usable: {exc}") from exc
    return VerificationKey(
        kid=key.kid,
        alg=key.alg,
        public_key=key.public_key,
        issuer=issuer,
        not_before=window[0],
        not_after=window[1],
        compromised=jwk["state"] == "retired",
    )


def _key(jwk: Any, issuer: str) -> BundleKey:
    if not isinstance(jwk, dict):
        raise MalformedBundle("each key must be an object")
    state = jwk.get("state")
    if state not in KEY_STATES:
        raise MalformedBundle(f"key state must be one of {KEY_STATES}")
    not_before, not_after = _int(jwk, "nbf"), _int(jwk, "exp")
    public = {k: v for k, v in jwk.items() if k not in ("state", "nbf", "exp")}
    try:
        key = VerificationKey.from_jwk(public, issuer=issuer)
    except InvalidKey as exc:
        raise MalformedBundle(f"a bundle key is not usable: {exc}") from exc
    key = VerificationKey(
        kid=key.kid,
        alg=key.alg,
        public_key=key.public_key,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
    )
    return BundleKey(key=key, state=state, not_before=not_before, not_after=not_after)


def _object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise MalformedBundle(f"the {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise MalformedBundle(f"the {what} is not a JSON object")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int(document: Mapping[str, Any], name: str) -> int:
    value = document.get(name)
    if not _is_int(value):
        raise MalformedBundle(f"'{name}' must be a non-negative integer")
    assert isinstance(value, int)
    return value


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
