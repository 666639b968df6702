from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit.models import AuditEvent
from yuekang.principals import Actor


async def record(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    subject_type: str,
    subject_id: str,
    now: dt.datetime,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write an audit event in the caller's transaction: it commits with the access, or neither
    does."""
    session.add(
        AuditEvent(
            at=now,
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            detail=detail or {},
        )
    )
