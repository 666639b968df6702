"""Operator tasks that no request performs (docs/OPERATIONS.md): putting the stored private keys
under a new passphrase, and moving the trust bundle's version past every version served before a
database restore."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.codec.errors import InvalidKey
from yuekang.codec.keys import SigningKey, private_key_from_pem, private_key_to_pem
from yuekang.exchange.models import ExchangeKey
from yuekang.keyring.models import SigningKeyRecord
from yuekang.keyring.pkcs11 import is_token_key
from yuekang.principals import Actor
from yuekang.trust import service as trust
from yuekang.trust.models import AnchorKey, TrustBundleRecord

PRIVATE_KEYS: tuple[type[SigningKeyRecord | AnchorKey | ExchangeKey], ...] = (
    SigningKeyRecord,
    AnchorKey,
    ExchangeKey,
)
"""Every table holding a private key encrypted with ``secrets.key_passphrase``."""


class PassphraseMismatch(Exception):
    """A stored private key opens with neither the current nor the new passphrase."""


@dataclass(frozen=True)
class Rewrapped:
    rewrapped: dict[str, int]
    """Keys put under the new passphrase, by table."""
    already: dict[str, int]
    """Keys that were under it already (a run repeated)."""
    in_token: dict[str, int]
    """Keys held in a PKCS#11 token: no passphrase protects them, so nothing to rewrap (the
    token's PIN is their lock)."""


async def rewrap_private_keys(
    session: AsyncSession, *, current: str, new: str, actor: Actor, now: dt.datetime
) -> Rewrapped:
    """Encrypt every stored private key with ``new`` instead of ``current``, in the caller's
    transaction. A key already under ``new`` is left as it is, so a repeated run changes
    nothing; a key that opens with neither raises :class:`PassphraseMismatch` and the caller's
    transaction should roll back, leaving every key as it was."""
    rewrapped: Counter[str] = Counter()
    already: Counter[str] = Counter()
    in_token: Counter[str] = Counter()
    for model in PRIVATE_KEYS:
        table = str(model.__tablename__)
        rows = cast(
            Sequence[SigningKeyRecord | AnchorKey | ExchangeKey],
            (await session.execute(select(model).with_for_update())).scalars().all(),
        )
        for record in rows:
            if is_token_key(record.private_pem):
                in_token[table] += 1
                continue
            try:
                private = private_key_from_pem(record.private_pem, current.encode("utf-8"))
            except InvalidKey:
                try:
                    private_key_from_pem(record.private_pem, new.encode("utf-8"))
                except InvalidKey:
                    raise PassphraseMismatch(
                        f"{table} {record.kid} opens with neither passphrase"
                    ) from None
                already[table] += 1
                continue
            record.private_pem = private_key_to_pem(private, new.encode("utf-8"))
            rewrapped[table] += 1
    if rewrapped:
        await audit.record(
            session,
            actor=actor,
            action="keys.rewrap",
            subject_type="private_keys",
            subject_id="all",
            now=now,
            detail=dict(rewrapped),
        )
    await session.flush()
    return Rewrapped(dict(rewrapped), dict(already), dict(in_token))


async def advance_bundle_version(
    session: AsyncSession,
    *,
    past: int,
    anchor: SigningKey,
    issuer: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
    grace: dt.timedelta,
    max_code_lifetime: dt.timedelta,
) -> TrustBundleRecord:
    """Make the trust bundle's version higher than ``past``, with the content of now.

    Checkpoints refuse a bundle older than the one they hold and ignore one of the same version
    (verifier/trust.py). After a restore the database's latest version is the backup's, below
    what checkpoints hold, so without this they would take nothing new until the server had
    made as many versions again -- and run out of trust when theirs expired. A placeholder row
    above ``past`` makes :func:`trust.current` number its bundle after it; the placeholder is
    deleted in the same transaction, so no one is ever served it, and a checkpoint asking for a
    delta from a version the database does not hold gets the full bundle."""
    last = await trust.latest(session)
    placeholder = None
    if last is None or last.version <= past:
        placeholder = TrustBundleRecord(
            version=past + 1, digest="advanced", issued_at=now, expires_at=now, text=""
        )
        session.add(placeholder)
        await session.flush()
    record = await trust.current(
        session,
        anchor=anchor,
        issuer=issuer,
        now=now,
        lifetime=lifetime,
        grace=grace,
        max_code_lifetime=max_code_lifetime,
    )
    if placeholder is not None:
        await session.delete(placeholder)
        await session.flush()
    return record
