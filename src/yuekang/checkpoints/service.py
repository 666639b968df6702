"""Checkpoints and online verification.

Checkpoint API keys look like ``ykc_<checkpoint id>_<secret>``: the id finds the row, the secret is
compared in constant time with its stored SHA-256 (the secret is 256 random bits, so a fast hash is
enough -- there is nothing to brute-force).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.checkpoints.models import Checkpoint
from yuekang.clock import epoch
from yuekang.health_codes.models import Revocation
from yuekang.keyring.ring import KeyRing
from yuekang.principals import Actor, CheckpointPrincipal
from yuekang.verifier import Verdict, Verifier

KEY_PREFIX = "ykc_"


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def parse_api_key(prefix: str, token: str) -> tuple[uuid.UUID, str] | None:
    if not token.startswith(prefix):
        return None
    ident, _, secret = token[len(prefix) :].partition("_")
    try:
        return uuid.UUID(hex=ident), secret
    except ValueError:
        return None


async def create_checkpoint(
    session: AsyncSession, *, name: str, actor: Actor, now: dt.datetime
) -> tuple[Checkpoint, str]:
    """Create a checkpoint; returns it and its API key, which is shown once and never stored."""
    checkpoint_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)
    checkpoint = Checkpoint(id=checkpoint_id, name=name, key_hash=_hash(secret), created_at=now)
    session.add(checkpoint)
    await audit.record(
        session,
        actor=actor,
        action="checkpoint.create",
        subject_type="checkpoint",
        subject_id=str(checkpoint_id),
        now=now,
        detail={"name": name},
    )
    await session.flush()
    return checkpoint, f"{KEY_PREFIX}{checkpoint_id.hex}_{secret}"


async def list_checkpoints(session: AsyncSession) -> Sequence[Checkpoint]:
    return (
        (await session.execute(select(Checkpoint).order_by(Checkpoint.created_at))).scalars().all()
    )


async def authenticate(session: AsyncSession, token: str) -> CheckpointPrincipal | None:
    parsed = parse_api_key(KEY_PREFIX, token)
    if parsed is None:
        return None
    checkpoint_id, secret = parsed
    checkpoint = await session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.disabled_at is not None:
        return None
    if not hmac.compare_digest(checkpoint.key_hash, _hash(secret)):
        return None
    return CheckpointPrincipal(id=checkpoint.id, name=checkpoint.name)


async def verify_online(
    session: AsyncSession,
    *,
    qr_text: str,
    keyring: KeyRing,
    leeway: int,
    now: dt.datetime,
) -> Verdict:
    """The offline verifier's judgement with the server's current keys, plus the revocation list."""
    view = await keyring.view(now)
    verdict = Verifier(view.verification_keys, leeway=leeway).verify(qr_text, now=epoch(now))
    if verdict.valid and verdict.code_id is not None:
        revoked = await session.get(Revocation, verdict.code_id)
        if revoked is not None:
            return verdict.revoked()
    return verdict
