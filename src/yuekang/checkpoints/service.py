"""Checkpoints and online verification. Checkpoint API keys look like ``ykc_<id>_<secret>``
(see :mod:`yuekang.apikeys`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys
from yuekang.audit import service as audit
from yuekang.checkpoints.models import Checkpoint
from yuekang.clock import epoch
from yuekang.health_codes.models import Revocation
from yuekang.keyring.ring import KeyRing
from yuekang.principals import Actor, CheckpointPrincipal
from yuekang.verifier import Verdict

KEY_PREFIX = "ykc_"


async def create_checkpoint(
    session: AsyncSession, *, name: str, actor: Actor, now: dt.datetime
) -> tuple[Checkpoint, str]:
    """Create a checkpoint; returns it and its API key, which is shown once and never stored."""
    checkpoint_id = uuid.uuid4()
    api_key, key_hash = apikeys.new_key(KEY_PREFIX, checkpoint_id)
    checkpoint = Checkpoint(id=checkpoint_id, name=name, key_hash=key_hash, created_at=now)
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
    return checkpoint, api_key


async def list_checkpoints(session: AsyncSession) -> Sequence[Checkpoint]:
    return (
        (await session.execute(select(Checkpoint).order_by(Checkpoint.created_at))).scalars().all()
    )


async def authenticate(session: AsyncSession, token: str) -> CheckpointPrincipal | None:
    parsed = apikeys.parse(KEY_PREFIX, token)
    if parsed is None:
        return None
    checkpoint_id, secret = parsed
    checkpoint = await session.get(Checkpoint, checkpoint_id)
    if checkpoint is None or checkpoint.disabled_at is not None:
        return None
    if not apikeys.matches(checkpoint.key_hash, secret):
        return None
    return CheckpointPrincipal(id=checkpoint.id, name=checkpoint.name)


async def verify_online(
    session: AsyncSession,
    *,
    qr_text: str,
    keyring: KeyRing,
    now: dt.datetime,
) -> Verdict:
    """The offline verifier's judgement with the server's current keys, plus the revocation list."""
    view = await keyring.view(now)
    verdict = view.verifier.verify(qr_text, now=epoch(now))
    if verdict.valid and verdict.code_id is not None:
        revoked = await session.get(Revocation, verdict.code_id)
        if revoked is not None:
            return verdict.revoked()
    return verdict
