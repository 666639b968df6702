"""API keys of machines and staff: ``<prefix><id hex>_<secret>``.

The id finds the row; the secret is compared in constant time with its stored SHA-256. The secret
is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid


def new_key(prefix: str, ident: uuid.UUID) -> tuple[str, bytes]:
    """A fresh key for ``ident`` and the hash to store; the key itself is shown once."""
    secret = secrets.token_urlsafe(32)
    return f"{prefix}{ident.hex}_{secret}", _hash(secret)


def parse(prefix: str, token: str) -> tuple[uuid.UUID, str] | None:
    if not token.startswith(prefix):
        return None
    ident, _, secret = token[len(prefix) :].partition("_")
    try:
        return uuid.UUID(hex=ident), secret
    except ValueError:
        return None


def matches(stored_hash: bytes, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, _hash(secret))


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
