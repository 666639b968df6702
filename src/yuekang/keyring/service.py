"""Signing-key lifecycle: generate, activate, retire, publish.

The rules, each from a failure of an earlier system (docs/ARCHITECTURE.md):

- A new key is ``pending`` and already published: checkpoints learn it before it signs anything.
  It may be activated only after ``publish_lead_seconds`` (one sync interval) have passed.
- Activating a key retires the key that was active, so exactly one key signs at a time.
- A retired key stays published until every code it could have signed has expired
  (``retired_at + max code lifetime``); a compromised key is withdrawn at once.
- A key never signs a code that would outlive it (``not_after``): see
  :meth:`yuekang.keyring.ring.KeyRing.signing_key_for`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.codec.keys import (
    Algorithm,
    SigningKey,
    VerificationKey,
    is_b64url_id,
    private_key_to_pem,
)
from yuekang.exceptions import Conflict, NotFound
from yuekang.keyring.models import SigningKeyRecord
from yuekang.principals import Actor


async def generate(
    session: AsyncSession,
    *,
    alg: Algorithm,
    passphrase: str,
    validity: dt.timedelta,
    actor: Actor,
    now: dt.datetime,
) -> SigningKeyRecord:
    """Create a ``pending`` key, published from now on."""
    key = SigningKey.generate(alg)
    record = SigningKeyRecord(
        kid=key.kid,
        alg=key.alg,
        state="pending",
        public_jwk=json.dumps(key.public().to_jwk(), separators=(",", ":")),
        private_pem=private_key_to_pem(key.private_key, passphrase.encode("utf-8")),
        created_at=now,
        published_at=now,
        not_after=now + validity,
    )
    session.add(record)
    await audit.record(
        session,
        actor=actor,
        action="key.generate",
        subject_type="signing_key",
        subject_id=key.kid,
        now=now,
        detail={"alg": alg},
    )
    await session.flush()
    return record


async def activate(
    session: AsyncSession,
    *,
    kid: str,
    publish_lead: dt.timedelta,
    actor: Actor,
    now: dt.datetime,
) -> SigningKeyRecord:
    """Make ``kid`` the signing key and retire the one it replaces."""
    record = await _get(session, kid)
    if record.state != "pending":
        raise Conflict(
            f"key {kid} is {record.state}; only a pending key can be activated", code="key_state"
        )
    ready_at = record.published_at + publish_lead
    if now < ready_at:
        wait = int((ready_at - now).total_seconds())
        raise Conflict(
            f"key {kid} was published less than one sync interval ago; activate it in {wait} s",
            code="key_not_ready",
        )
    await session.execute(
        update(SigningKeyRecord)
        .where(SigningKeyRecord.state == "active")
        .values(state="retired", retired_at=now)
    )
    record.state = "active"
    record.activated_at = now
    await audit.record(
        session,
        actor=actor,
        action="key.activate",
        subject_type="signing_key",
        subject_id=kid,
        now=now,
    )
    await session.flush()
    return record


async def retire(
    session: AsyncSession, *, kid: str, compromised: bool, actor: Actor, now: dt.datetime
) -> SigningKeyRecord:
    """Stop ``kid`` signing. A compromised key is also withdrawn from publication at once."""
    record = await _get(session, kid)
    if record.state == "compromised" or (record.state == "retired" and not compromised):
        raise Conflict(f"key {kid} is already {record.state}", code="key_state")
    record.state = "compromised" if compromised else "retired"
    record.retired_at = record.retired_at or now
    await audit.record(
        session,
        actor=actor,
        action="key.compromise" if compromised else "key.retire",
        subject_type="signing_key",
        subject_id=kid,
        now=now,
    )
    await session.flush()
    return record


async def list_keys(session: AsyncSession) -> Sequence[SigningKeyRecord]:
    result = await session.execute(select(SigningKeyRecord).order_by(SigningKeyRecord.created_at))
    return result.scalars().all()


async def has_active_key(session: AsyncSession) -> bool:
    result = await session.execute(
        select(SigningKeyRecord.kid).where(SigningKeyRecord.state == "active").limit(1)
    )
    return result.first() is not None


async def active_record(session: AsyncSession) -> SigningKeyRecord | None:
    """The key that signs now: the one activated last, if several are active."""
    result = await session.execute(
        select(SigningKeyRecord)
        .where(SigningKeyRecord.state == "active")
        .order_by(SigningKeyRecord.activated_at.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def trusted_records(
    session: AsyncSession, *, now: dt.datetime, max_code_lifetime: dt.timedelta
) -> Sequence[SigningKeyRecord]:
    """Keys a verifier should know: pending, active, recently retired, and compromised ones (so
    the online verifier can name them; :func:`published` leaves those out)."""
    result = await session.execute(
        select(SigningKeyRecord).where(
            or_(
                SigningKeyRecord.state.in_(("pending", "active", "compromised")),
                (SigningKeyRecord.state == "retired")
                & (SigningKeyRecord.retired_at > now - max_code_lifetime),
            )
        )
    )
    return result.scalars().all()


def verification_key(record: SigningKeyRecord, issuer: str) -> VerificationKey:
    """The public key of ``record`` with the window of codes it may have signed."""
    base = VerificationKey.from_jwk(json.loads(record.public_jwk), issuer=issuer)
    return VerificationKey(
        kid=base.kid,
        alg=base.alg,
        public_key=base.public_key,
        issuer=issuer,
        not_before=int(record.published_at.timestamp()),
        not_after=int(record.not_after.timestamp()),
        compromised=record.state == "compromised",
    )


async def _get(session: AsyncSession, kid: str) -> SigningKeyRecord:
    record = await session.get(SigningKeyRecord, kid) if is_b64url_id(kid) else None
    if record is None:
        raise NotFound(f"no key {kid}", code="key_not_found")
    return record
