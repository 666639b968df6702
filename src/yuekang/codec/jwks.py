"""JWK Sets as published at ``/.well-known/jwks.json``.

The document is a standard JWKS (RFC 7517 section 5) with one extra top-level member, ``issuer``:
the issuer identifier the keys sign for, so an offline verifier given only this file knows which
``iss`` to expect. Standard JOSE libraries ignore the extra member.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from yuekang.codec.errors import InvalidKey
from yuekang.codec.keys import ALGORITHMS, VerificationKey

MAX_KEYS = 64


def build_jwks(issuer: str, keys: Iterable[VerificationKey]) -> dict[str, Any]:
    """The JWKS document for ``keys`` of ``issuer``."""
    return {"issuer": issuer, "keys": [key.to_jwk() for key in keys]}


def parse_jwks(
    document: Mapping[str, Any], *, issuer: str | None = None
) -> dict[str, VerificationKey]:
    """Load a JWKS into a ``kid -> key`` map.

    The issuer comes from ``issuer`` if given, else from the document's ``issuer`` member. Keys of
    other types, curves, algorithms or uses are skipped (a JWKS may hold keys for other purposes,
    and a key document's entries whose ``purpose`` is not ``code`` are skipped too);
    a key that looks like ours (P-256 or Ed25519, signing) but is malformed fails the whole load,
    since silently dropping it would turn every code it signed into ``unknown_key`` with no hint.
    """
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list) or len(raw_keys) > MAX_KEYS:
        raise InvalidKey("a JWKS needs a 'keys' list of at most 64 keys")
    trusted_issuer = issuer if issuer is not None else document.get("issuer")
    if trusted_issuer is not None and not isinstance(trusted_issuer, str):
        raise InvalidKey("the JWKS 'issuer' must be a string")
    keys: dict[str, VerificationKey] = {}
    for position, jwk in enumerate(raw_keys, start=1):
        if not isinstance(jwk, Mapping):
            raise InvalidKey("each JWK must be an object")
        if not _ours(jwk):
            continue
        try:
            key = VerificationKey.from_jwk(jwk, issuer=trusted_issuer)
        except InvalidKey as exc:
            # Which key: a keys file holds several, and whoever reads this must find the one.
            named = str(jwk.get("kid", "no kid"))[:64]
            raise InvalidKey(f"key {position} ({named}): {exc}") from exc
        keys[key.kid] = key
    return keys


def _ours(jwk: Mapping[str, Any]) -> bool:
    use, kty, crv, alg, purpose = (
        jwk.get(name) for name in ("use", "kty", "crv", "alg", "purpose")
    )
    if not all(v is None or isinstance(v, str) for v in (use, kty, crv, alg, purpose)):
        raise InvalidKey("JWK members use, kty, crv, alg and purpose must be strings")
    if use not in (None, "sig") or alg not in (None, *ALGORITHMS):
        return False
    # A key document (docs/EXCHANGE.md) lists exchange signing keys beside code keys: an
    # exchange key must never be trusted to sign a health code.
    if purpose not in (None, "code"):
        return False
    return (kty, crv) in {("EC", "P-256"), ("OKP", "Ed25519")}
