"""Checkpoints and online verification. Checkpoint API keys look like ``ykc_<id>_<secret>``
(see :mod:`yuekang.apikeys`)."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys, regions
from yuekang.audit import service as audit
from yuekang.checkpoints.models import Checkpoint
from yuekang.checkpoints.registration import KEY_PREFIX
from yuekang.exceptions import NotFound, ValidationFailed
from yuekang.principals import Actor, CheckpointPrincipal
from yuekang.rules.policy import (
    PLACE_KINDS,
    Decision,
    PlaceKind,
    as_place_kind,
    decide,
    default_policies,
)
from yuekang.scans.models import ScanRecord
from yuekang.verifier import Verdict, policy_decision


async def create_checkpoint(
    session: AsyncSession,
    *,
    name: str,
    actor: Actor,
    now: dt.datetime,
    kind: PlaceKind = "venue",
    region_code: str | None = None,
) -> tuple[Checkpoint, str]:
    """Create a checkpoint; returns it and its API key, which is shown once and never stored."""
    if region_code is not None and not regions.is_known(region_code):
        raise ValidationFailed(
            "region_code: not a GB/T 2260 division code",
            fields=[{"field": "region_code", "reason": "unknown_region", "message": "unknown"}],
        )
    checkpoint_id = uuid.uuid4()
    api_key, key_hash = apikeys.new_key(KEY_PREFIX, checkpoint_id)
    checkpoint = Checkpoint(
        id=checkpoint_id,
        name=name,
        key_hash=key_hash,
        created_at=now,
        kind=kind,
        region_code=region_code,
    )
    session.add(checkpoint)
    await audit.record(
        session,
        actor=actor,
        action="checkpoint.create",
        subject_type="checkpoint",
        subject_id=str(checkpoint_id),
        now=now,
        detail={"name": name, "kind": kind, "region_code": region_code},
    )
    await session.flush()
    return checkpoint, api_key


async def rotate_key(
    session: AsyncSession, *, checkpoint_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> tuple[Checkpoint, str]:
    """A new API key for the checkpoint; the old one stops working at once."""
    checkpoint = await _get(session, checkpoint_id)
    api_key, checkpoint.key_hash = apikeys.new_key(KEY_PREFIX, checkpoint.id)
    await audit.record(
        session,
        actor=actor,
        action="checkpoint.rotate_key",
        subject_type="checkpoint",
        subject_id=str(checkpoint.id),
        now=now,
    )
    return checkpoint, api_key


async def disable(
    session: AsyncSession, *, checkpoint_id: uuid.UUID, actor: Actor, now: dt.datetime
) -> Checkpoint:
    """The checkpoint's key stops working (online verification, bundle, uploads)."""
    checkpoint = await _get(session, checkpoint_id)
    if checkpoint.disabled_at is None:
        checkpoint.disabled_at = now
        await audit.record(
            session,
            actor=actor,
            action="checkpoint.disable",
            subject_type="checkpoint",
            subject_id=str(checkpoint.id),
            now=now,
        )
    return checkpoint


async def _get(session: AsyncSession, checkpoint_id: uuid.UUID) -> Checkpoint:
    checkpoint = await session.get(Checkpoint, checkpoint_id, with_for_update=True)
    if checkpoint is None:
        raise NotFound("no such checkpoint", code="checkpoint_not_found")
    return checkpoint


async def list_checkpoints(session: AsyncSession) -> Sequence[Checkpoint]:
    return (
        (await session.execute(select(Checkpoint).order_by(Checkpoint.created_at))).scalars().all()
    )


async def listing(session: AsyncSession) -> list[tuple[Checkpoint, dt.datetime | None]]:
    """Every checkpoint, oldest first, with its latest scan still on record (None when it has
    none within the retention period)."""
    # Correlated, so each checkpoint costs one probe of (checkpoint_id, scanned_at) instead of
    # grouping every scan record on file.
    latest_scan = (
        select(func.max(ScanRecord.scanned_at))
        .where(ScanRecord.checkpoint_id == Checkpoint.id)
        .correlate(Checkpoint)
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Checkpoint, latest_scan).order_by(Checkpoint.created_at, Checkpoint.id)
    )
    return [(checkpoint, last_scan_at) for checkpoint, last_scan_at in rows]


async def authenticate(session: AsyncSession, token: str) -> CheckpointPrincipal | None:
    checkpoint = await apikeys.holder(
        session, Checkpoint, KEY_PREFIX, token, stored_hash=lambda c: c.key_hash
    )
    if checkpoint is None:
        return None
    return CheckpointPrincipal(
        id=checkpoint.id, name=checkpoint.name, kind=as_place_kind(checkpoint.kind)
    )


CHECKPOINT_KEY = select(Checkpoint.__table__.c.key_hash, Checkpoint.__table__.c.disabled_at).where(
    Checkpoint.__table__.c.id == bindparam("checkpoint_id")
)
"""A checkpoint's stored key hash and whether it is disabled, as a Core row: a bundle sync
checks its key with this one statement (``trust.endpoints.check_key``)."""


def apply_policy(verdict: Verdict, *, kind: PlaceKind) -> Decision:
    """This kind of place's policy on a verdict, as a checkpoint device decides it offline."""
    return policy_decision(verdict, default_policies().for_place(kind))


def decisions_everywhere(verdict: Verdict) -> Mapping[PlaceKind, Decision]:
    """The decision on ``verdict`` at each kind of place: what an online scan records before
    its checkpoint's kind is read (``checkpoints.online``). A verdict that is not valid is
    denied everywhere; a valid one depends only on the facts the policies read, which take
    few values, so the three decisions are remembered by those facts."""
    if not verdict.valid or verdict.status is None:
        denied = policy_decision(verdict, default_policies().venue)
        return dict.fromkeys(PLACE_KINDS, denied)
    return _valid_decisions(
        verdict.status, verdict.negative_within_hours, verdict.doses, verdict.assurance
    )


@functools.lru_cache(maxsize=4096)
def _valid_decisions(
    status: str, negative_within_hours: int | None, doses: int | None, assurance: str | None
) -> Mapping[PlaceKind, Decision]:
    policies = default_policies()
    return MappingProxyType(
        {
            kind: decide(
                policies.for_place(kind),
                status=status,
                negative_within_hours=negative_within_hours,
                doses=doses,
                assurance=assurance,
            )
            for kind in PLACE_KINDS
        }
    )
