from __future__ import annotations

import datetime as dt
import uuid

from fastapi import APIRouter

from yuekang.deps import Context, Now, SessionDep, StaffOperator
from yuekang.health_status import service
from yuekang.health_status.schemas import ResidentFound, ResidentLookup, StatusRead, StatusSet
from yuekang.openapi import errors
from yuekang.residents import service as residents

admin = APIRouter(prefix="/v1/admin/residents", tags=["admin: residents"])


@admin.post("/lookup", response_model=ResidentFound, responses=errors(401, 403, 404, 422))
async def lookup_resident(
    body: ResidentLookup,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> ResidentFound:
    """Find a resident by identity document (through the blind index). Audited with the reason."""
    resident_id = await residents.find_by_document(
        session,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        blind_index=context.blind_index,
        actor=operator.actor,
        reason=body.reason,
        now=now,
    )
    return ResidentFound(resident_id=resident_id)


@admin.put("/{resident_id}/status", response_model=StatusRead, responses=errors(401, 403, 404, 422))
async def set_status(
    resident_id: uuid.UUID,
    body: StatusSet,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: StaffOperator,
) -> StatusRead:
    """Override a resident's status with a reason (audited). The override replaces what the facts
    known now say, for `valid_days` or until replaced; facts that arrive later still count. A
    worse status revokes every unexpired code of the resident at once."""
    record, revoked = await service.set_status(
        session,
        resident_id=resident_id,
        status=body.status,
        reason=body.reason,
        expires_at=None if body.valid_days is None else now + dt.timedelta(days=body.valid_days),
        rules=await context.rulebook.current(),
        actor=operator.actor,
        now=now,
    )
    return StatusRead(
        resident_id=resident_id,
        status=service.status_value(record.status),
        reason=record.reason_text,
        updated_at=record.updated_at,
        updated_by=record.updated_by,
        codes_revoked=revoked,
    )
