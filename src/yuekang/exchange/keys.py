"""Our exchange keys: one ``sig`` key that signs packages and requests, one ``enc`` key partners
encrypt packages to, each rotated on its own. A retired ``enc`` key keeps decrypting for the
longest package lifetime, so a package sealed just before a rotation is not lost.

With a PKCS#11 token (``keys.backend=pkcs11``) the ``sig`` key is made in the token, as health-code
keys are (``keyring/pkcs11.py``); the ``enc`` key stays PKCS#8-encrypted in the database, since
opening a package (ECDH-ES through joserfc) needs the private key in the process."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.codec.exchange import MAX_LIFETIME, EncryptionKey
from yuekang.codec.keys import SigningKey, private_key_from_pem, private_key_to_pem
from yuekang.exceptions import ServiceUnavailable
from yuekang.exchange.models import ExchangeKey
from yuekang.keyring.pkcs11 import Token, TokenError, is_token_key, label_of, uri
from yuekang.keyring.service import token_generate
from yuekang.principals import Actor

Use = Literal["sig", "enc"]
DECRYPT_AFTER_RETIRING = dt.timedelta(seconds=MAX_LIFETIME + 120)


@dataclass(frozen=True)
class OurKeys:
    signer: SigningKey
    decryption: dict[str, EncryptionKey]
    """Active and recently retired ``enc`` keys, by kid."""


class ExchangeKeyCache:
    """Decrypted private keys by kid, for the process's lifetime: a key's private half never
    changes, and unwrapping PKCS#8 on every request would cost more than the exchange itself.
    States are read from the database on every use, so a rotation is seen at once. A key held in
    ``token`` is cached as the token's handle."""

    def __init__(self, token: Token | None = None) -> None:
        self.token = token
        self._keys: dict[str, Any] = {}

    def private(self, record: ExchangeKey, passphrase: str) -> Any:
        key = self._keys.get(record.kid)
        if key is None:
            if is_token_key(record.private_pem):
                key = self._from_token(record)
            else:
                key = private_key_from_pem(record.private_pem, passphrase.encode("utf-8"))
            self._keys[record.kid] = key
        return key

    def _from_token(self, record: ExchangeKey) -> Any:
        if self.token is None:
            raise ServiceUnavailable(
                f"exchange key {record.kid} is held in a PKCS#11 token and this process has none "
                "(keys.backend=file)",
                code="unavailable",
            )
        try:
            return self.token.private_key(label_of(record.private_pem), "ES256")
        except TokenError as exc:
            raise ServiceUnavailable(
                f"the signing token cannot sign now ({exc})", code="unavailable"
            ) from None


async def _create(
    session: AsyncSession, *, use: Use, passphrase: str, now: dt.datetime, token: Token | None
) -> str:
    public: dict[str, Any]
    if use == "sig" and token is not None:
        signer = SigningKey.from_private_key(token_generate(token, "ES256"))
        kid, public = signer.kid, signer.public().to_jwk()
        stored = uri(token.label, kid)
    elif use == "sig":
        signer = SigningKey.generate("ES256")
        kid, public = signer.kid, signer.public().to_jwk()
        stored = private_key_to_pem(signer.private_key, passphrase.encode("utf-8"))
    else:
        enc = EncryptionKey.generate()
        kid, public = enc.kid, enc.public().to_jwk()
        stored = private_key_to_pem(enc.private_key, passphrase.encode("utf-8"))
    session.add(
        ExchangeKey(
            kid=kid,
            use=use,
            state="active",
            public_jwk=json.dumps(public, separators=(",", ":")),
            private_pem=stored,
            created_at=now,
        )
    )
    await session.flush()
    return kid


async def ensure(
    session: AsyncSession, *, passphrase: str, now: dt.datetime, token: Token | None = None
) -> list[str]:
    """Make the keys that are missing (first run); the kids made (the ``sig`` key in ``token``
    when given)."""
    active = set(
        (
            await session.execute(select(ExchangeKey.use).where(ExchangeKey.state == "active"))
        ).scalars()
    )
    return [
        await _create(session, use=use, passphrase=passphrase, now=now, token=token)
        for use in ("sig", "enc")
        if use not in active
    ]


async def active_since(session: AsyncSession, use: Use) -> dt.datetime | None:
    """When the active key of ``use`` was made (``/metrics``: its age)."""
    result = await session.execute(
        select(ExchangeKey.created_at)
        .where(ExchangeKey.use == use, ExchangeKey.state == "active")
        .order_by(ExchangeKey.created_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def rotate(
    session: AsyncSession,
    *,
    use: Use,
    passphrase: str,
    actor: Actor,
    now: dt.datetime,
    token: Token | None = None,
) -> str:
    """Retire the active key of ``use`` and make a new one (a ``sig`` key in ``token`` when
    given); the new kid."""
    await session.execute(
        update(ExchangeKey)
        .where(ExchangeKey.use == use, ExchangeKey.state == "active")
        .values(state="retired", retired_at=now)
    )
    kid = await _create(session, use=use, passphrase=passphrase, now=now, token=token)
    await audit.record(
        session,
        actor=actor,
        action="exchange.key_rotate",
        subject_type="exchange_key",
        subject_id=kid,
        now=now,
        detail={"use": use},
    )
    return kid


async def records(session: AsyncSession) -> list[ExchangeKey]:
    return list(
        (await session.execute(select(ExchangeKey).order_by(ExchangeKey.created_at))).scalars()
    )


async def our_keys(
    session: AsyncSession, *, passphrase: str, cache: ExchangeKeyCache, now: dt.datetime
) -> OurKeys | None:
    """The keys to sign with and to decrypt with now; None until both exist."""
    signer: SigningKey | None = None
    decryption: dict[str, EncryptionKey] = {}
    for record in await records(session):
        if record.use == "sig" and record.state == "active":
            signer = SigningKey.from_private_key(cache.private(record, passphrase))
        elif record.use == "enc" and (
            record.state == "active"
            or (record.retired_at is not None and now - record.retired_at < DECRYPT_AFTER_RETIRING)
        ):
            key = EncryptionKey.from_private_key(cache.private(record, passphrase))
            decryption[key.kid] = key
    if signer is None or not decryption:
        return None
    return OurKeys(signer=signer, decryption=decryption)


def document_entries(records_: list[ExchangeKey]) -> list[dict[str, Any]]:
    """Our exchange keys as key-document entries (docs/EXCHANGE.md, section 1). Retired ``enc``
    keys are left out: nobody may encrypt to them any more."""
    entries = []
    for record in records_:
        if record.use == "enc" and record.state != "active":
            continue
        jwk = json.loads(record.public_jwk)
        entries.append({**jwk, "purpose": "exchange", "state": record.state})
    return entries
