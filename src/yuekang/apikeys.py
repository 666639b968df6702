"""API keys of machines and staff: ``<prefix><id hex>_<secret>``.

The id finds the row; the secret is compared in constant time with its stored SHA-256. The secret
is 256 random bits, so a fast hash is enough: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


def new_key(prefix: str, ident: uuid.UUID) -> tuple[str, bytes]:
    """A fresh key for ``ident`` and the hash to store; the key itself is shown once."""
    secret = secrets.token_urlsafe(32)
    return f"{prefix}{ident.hex}_{secret}", secret_hash(secret)


def parse(prefix: str, token: str) -> tuple[uuid.UUID, str] | None:
    if not token.startswith(prefix):
        return None
    ident, _, secret = token[len(prefix) :].partition("_")
    try:
        return uuid.UUID(hex=ident), secret
    except ValueError:
        return None


def matches(stored_hash: bytes, secret: str) -> bool:
    return hmac.compare_digest(stored_hash, secret_hash(secret))


def secret_hash(secret: str) -> bytes:
    """What is stored for a secret."""
    return hashlib.sha256(secret.encode()).digest()


async def holder(
    session: AsyncSession,
    model: type[T],
    prefix: str,
    token: str,
    *,
    stored_hash: Callable[[T], bytes],
) -> T | None:
    """The enabled row of ``model`` whose key ``token`` is, or None (unknown, malformed, wrong
    secret, disabled -- the caller answers them all alike)."""
    parsed = parse(prefix, token)
    if parsed is None:
        return None
    row: Any = await session.get(model, parsed[0])
    if row is None or row.disabled_at is not None:
        return None
    return row if matches(stored_hash(row), parsed[1]) else None
