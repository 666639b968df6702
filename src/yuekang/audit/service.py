from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit.models import AuditEvent, SelfRead
from yuekang.db import dialect_name
from yuekang.principals import Actor

_READS = (".read", ".list")


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
    does. A resident reading their own data is counted per day instead (:class:`SelfRead`):
    residents reach only their own records, so every read whose actor is a resident is one."""
    if actor.type == "resident" and action.endswith(_READS):
        await _count_self_read(session, resident_id=actor.id, action=action, now=now)
        return
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


def _self_read_upsert(dialect: Any) -> Any:
    table = SelfRead.__table__
    insert = dialect.insert(table).values(
        resident_id=bindparam("resident_id"),
        day=bindparam("day"),
        action=bindparam("action"),
        count=1,
        last_at=bindparam("now"),
    )
    return insert.on_conflict_do_update(
        index_elements=["resident_id", "day", "action"],
        set_={"count": table.c.count + 1, "last_at": insert.excluded.last_at},
    )


# Built once, with parameters: made for every read, the statement's construction and cache key
# were a fifth of `GET /v1/me`, which counts two reads (py-spy).
_SELF_READ = {"sqlite": _self_read_upsert(sqlite), "postgresql": _self_read_upsert(postgresql)}


async def _count_self_read(
    session: AsyncSession, *, resident_id: str, action: str, now: dt.datetime
) -> None:
    statement = _SELF_READ["sqlite" if dialect_name(session) == "sqlite" else "postgresql"]
    await session.execute(
        statement, {"resident_id": resident_id, "day": now.date(), "action": action, "now": now}
    )
