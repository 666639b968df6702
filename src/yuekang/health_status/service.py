"""The status record: how a resident's colour is stored, changed and explained.

Every resident starts green when they bind an identity. Operators change it (with a reason, in the
audit log); the rules engine of the feeds will write through the same :func:`set_status`. When a
status gets worse, every unexpired code of that person is revoked in the same transaction, so
online verification answers ``revoked`` the moment the change commits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.exceptions import NotFound
from yuekang.health_codes.models import HealthCode, Revocation
from yuekang.health_status.models import HealthStatus, StatusChange
from yuekang.principals import Actor

StatusValue = Literal["green", "yellow", "red"]
SEVERITY = {"green": 0, "yellow": 1, "red": 2}


async def ensure_initial(
    session: AsyncSession, *, resident_id: uuid.UUID, now: dt.datetime
) -> HealthStatus:
    current = await session.get(HealthStatus, resident_id)
    if current is not None:
        return current
    record = HealthStatus(
        resident_id=resident_id,
        status="green",
        reason_codes=[],
        reason_text=None,
        source="default",
        updated_at=now,
        updated_by="system",
    )
    session.add(record)
    session.add(
        StatusChange(
            resident_id=resident_id,
            old_status=None,
            new_status="green",
            reason_text="initial status",
            detail={},
            actor="system",
            at=now,
        )
    )
    return record


async def get_status(session: AsyncSession, resident_id: uuid.UUID) -> HealthStatus | None:
    return await session.get(HealthStatus, resident_id)


async def set_status(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    status: StatusValue,
    reason: str,
    reason_codes: Sequence[str] = (),
    actor: Actor,
    now: dt.datetime,
) -> tuple[HealthStatus, int]:
    """Set a resident's status; returns the record and how many codes were revoked."""
    current = await session.get(
        HealthStatus, resident_id, with_for_update=True, populate_existing=True
    )
    if current is None:
        raise NotFound(
            "this resident has no status yet (no identity bound)", code="resident_not_found"
        )
    old = current.status
    current.status = status
    current.reason_codes = list(reason_codes)
    current.reason_text = reason
    current.source = actor.type
    current.updated_at = now
    current.updated_by = actor.label
    session.add(
        StatusChange(
            resident_id=resident_id,
            old_status=old,
            new_status=status,
            reason_text=reason,
            detail={"reason_codes": list(reason_codes)},
            actor=actor.label,
            at=now,
        )
    )
    revoked = 0
    if SEVERITY[status] > SEVERITY[old]:
        revoked = await revoke_unexpired_codes(
            session, resident_id=resident_id, reason="status_worsened", now=now
        )
    await audit.record(
        session,
        actor=actor,
        action="status.set",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"old": old, "new": status, "reason": reason, "codes_revoked": revoked},
    )
    await session.flush()
    return current, revoked


async def revoke_unexpired_codes(
    session: AsyncSession, *, resident_id: uuid.UUID, reason: str, now: dt.datetime
) -> int:
    already = select(Revocation.code_id).where(Revocation.resident_id == resident_id)
    rows = (
        await session.execute(
            select(HealthCode.code_id, HealthCode.expires_at).where(
                HealthCode.resident_id == resident_id,
                HealthCode.expires_at > now,
                HealthCode.code_id.not_in(already),
            )
        )
    ).all()
    for code_id, expires_at in rows:
        session.add(
            Revocation(
                code_id=code_id,
                resident_id=resident_id,
                reason=reason,
                revoked_at=now,
                expires_at=expires_at,
            )
        )
    return len(rows)
