from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.deps import AdminOperator, AnyStaff, Context, Now, SessionDep
from yuekang.openapi import errors
from yuekang.principals import ActorType
from yuekang.stats import service
from yuekang.stats.schemas import AuditPage, Overview, StaffRead

admin = APIRouter(prefix="/v1/admin", tags=["admin: console"])

# The largest id a BIGINT holds: a larger `before_id` would be a database error, not a 422.
_MAX_ID = 2**63 - 1


@admin.get("/me", response_model=StaffRead, responses=errors(401, 403))
async def who_am_i(operator: AnyStaff) -> StaffRead:
    """The staff member the token belongs to and their role, so a console can offer only what
    the role may do (the API refuses the rest with 403 `role_required` anyway)."""
    return StaffRead(id=operator.id, name=operator.name, role=operator.role.value)


@admin.get("/stats/overview", response_model=Overview, responses=errors(401, 403, 422))
async def stats_overview(
    operator: AnyStaff,
    session: SessionDep,
    context: Context,
    now: Now,
    days: Annotated[int, Query(ge=1, le=90, description="Local days (UTC+8), today included")] = 14,
) -> Overview:
    """Codes issued per day by colour, scans per checkpoint, feed batches per day and the latest
    ones, the trust bundle's age, outbox messages by state and the partner circuits. Counts only:
    nothing about any resident."""

    async def read(reading: AsyncSession) -> Overview:
        return await service.overview(reading, days=days, now=now)

    # Counts a few seconds old are as good: a replica within the lag bound may answer.
    return await context.bounded_read(read, primary=session)


@admin.get("/audit", response_model=AuditPage, responses=errors(401, 403, 422))
async def audit_log(
    operator: AdminOperator,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=_MAX_ID, description="Events older than this id")
    ] = None,
    action: Annotated[
        str | None,
        Query(
            pattern=r"^[a-z0-9_.]{1,64}$",
            description="An action (`appeal.read`), or a prefix ending in a dot (`appeal.`)",
        ),
    ] = None,
    actor_type: Annotated[
        list[ActorType] | None,
        Query(
            description="Only events by these kinds of actor (repeat the parameter for more): "
            f"{', '.join(f'`{a}`' for a in get_args(ActorType))}. Staff are `operator` (and "
            "`cli`), partner systems `partner`, residents acting on their own data `resident`"
        ),
    ] = None,
) -> AuditPage:
    """The audit log, newest first, a page at a time (admins only)."""
    return await service.audit_page(
        session, limit=limit, before_id=before_id, action=action, actor_types=actor_type
    )
