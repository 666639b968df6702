"""Signing-key lifecycle: generate, activate, retire, publish.

The rules, each from a failure of an earlier system (docs/ARCHITECTURE.md):

- A new key is ``pending`` and already published: checkpoints learn it before it signs anything.
  It may be activated only after ``publish_lead_seconds`` (one sync interval) have passed.
- Activating a key retires the key that was active, so exactly one key signs at a time.
- A retired key stays published until every code it could have signed has expired
  (``retired_at + max code lifetime``); a compromised key is withdrawn at once.
- A key never signs a code that would outlive it (``not_after``): see
  :meth:`yuekang.keyring.ring.KeyRing.signing_key_for`.

A key may be made in a PKCS#11 token instead (``token=``, ``keyring/pkcs11.py``): the same
record, states and rules, with the key's URI where a file key keeps its encrypted PEM. A
compromised token key is also destroyed in the token, so it cannot sign again whatever a
database or a process still says.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import cast

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.codec.keys import (
    Algorithm,
    PrivateKey,
    SigningKey,
    VerificationKey,
    is_b64url_id,
    private_key_to_pem,
)
from yuekang.exceptions import Conflict, NotFound, ServiceUnavailable
from yuekang.keyring.models import SigningKeyRecord
from yuekang.keyring.pkcs11 import Token, TokenError, is_token_key, label_of, uri
from yuekang.principals import Actor


async def generate(
    session: AsyncSession,
    *,
    alg: Algorithm,
    passphrase: str,
    validity: dt.timedelta,
    actor: Actor,
    now: dt.datetime,
    token: Token | None = None,
) -> SigningKeyRecord:
    """Create a ``pending`` key, published from now on; made inside ``token`` when given."""
    if token is None:
        key = SigningKey.generate(alg)
        private = private_key_to_pem(key.private_key, passphrase.encode("utf-8"))
    else:
        key = SigningKey.from_private_key(token_generate(token, alg))
        private = uri(token.label, key.kid)
    record = SigningKeyRecord(
        kid=key.kid,
        alg=key.alg,
        state="pending",
        public_jwk=json.dumps(key.public().to_jwk(), separators=(",", ":")),
        private_pem=private,
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
        detail={"alg": alg, "backend": "file" if token is None else "pkcs11"},
    )
    await session.flush()
    return record


def token_generate(token: Token, alg: Algorithm) -> PrivateKey:
    """A key made in ``token``; a token that cannot make one is a 503 naming why."""
    try:
        return token.generate(alg)
    except TokenError as exc:
        raise ServiceUnavailable(
            f"cannot make a key in the token: {exc}", code="unavailable"
        ) from None


def algorithm(record: SigningKeyRecord) -> Algorithm:
    """The algorithm a stored key is bound to (the column's check allows only these)."""
    return cast(Algorithm, record.alg)


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
    session: AsyncSession,
    *,
    kid: str,
    compromised: bool,
    actor: Actor,
    now: dt.datetime,
    token: Token | None = None,
) -> SigningKeyRecord:
    """Stop ``kid`` signing. A compromised key is also withdrawn from publication at once, and
    a compromised token key destroyed in ``token`` (:func:`destroyed_in_token` says whether)."""
    record = await _get(session, kid)
    if record.state == "compromised" or (record.state == "retired" and not compromised):
        raise Conflict(f"key {kid} is already {record.state}", code="key_state")
    record.state = "compromised" if compromised else "retired"
    record.retired_at = record.retired_at or now
    detail: dict[str, object] | None = None
    if compromised and is_token_key(record.private_pem):
        # Marking it compromised never waits on the token: the database is what every
        # verifier reads. Destroying is the second lock, recorded either way.
        detail = {"destroyed_in_token": destroy_in_token(record, token)}
    await audit.record(
        session,
        actor=actor,
        action="key.compromise" if compromised else "key.retire",
        subject_type="signing_key",
        subject_id=kid,
        now=now,
        detail=detail,
    )
    await session.flush()
    return record


def destroy_in_token(record: SigningKeyRecord, token: Token | None) -> bool:
    """Destroy a token key's private object; False when there is no token to reach or it held
    no such object any more."""
    if token is None or not is_token_key(record.private_pem):
        return False
    try:
        return token.destroy(label_of(record.private_pem))
    except TokenError:
        return False


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
