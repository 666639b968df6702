from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, status

from yuekang.appeals import service
from yuekang.appeals.models import Appeal
from yuekang.appeals.schemas import (
    AppealCreate,
    AppealDecision,
    AppealDetail,
    AppealRead,
    AppealSummary,
    MyAppealRead,
)
from yuekang.deps import AppealReviewer, Context, CurrentResident, Now, SessionDep
from yuekang.fastlane import direct, nothing_to_list
from yuekang.openapi import errors

resident = APIRouter(prefix="/v1/me/appeals", tags=["resident"])
admin = APIRouter(prefix="/v1/admin/appeals", tags=["admin: appeals"])


def _read(appeal: Appeal) -> dict[str, object]:
    return {
        "id": appeal.id,
        "resident_id": appeal.resident_id,
        "state": appeal.state,
        "status_at_filing": appeal.status_at_filing,
        "reason_codes": appeal.reason_codes,
        "filed_at": appeal.filed_at,
        "decided_at": appeal.decided_at,
        "decision_reason": appeal.decision_reason,
        "override_status": appeal.override_status,
        "override_expires_at": appeal.override_expires_at,
    }


@resident.post(
    "",
    response_model=AppealRead,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 404, 409, 422),
)
async def file_appeal(
    body: AppealCreate,
    resident_id: CurrentResident,
    session: SessionDep,
    context: Context,
    now: Now,
) -> AppealRead:
    """Contest the current red or yellow status (申诉) with a short text. One appeal waits at a
    time: 409 `appeal_pending`; a green status answers 409 `status_not_contested`."""
    appeal = await service.file(
        session,
        resident_id=resident_id,
        text=body.text,
        pii=context.pii,
        rules=await context.rulebook.current(),
        now=now,
    )
    return AppealRead.model_validate(_read(appeal))


@resident.get("", response_model=list[MyAppealRead], responses=errors(401))
@direct(nothing_to_list(service.ANY_APPEAL))
async def my_appeals(
    resident_id: CurrentResident, session: SessionDep, context: Context, now: Now
) -> list[MyAppealRead]:
    """The resident's appeals, newest first, with what they wrote and the reviewer's answers."""
    return [
        MyAppealRead.model_validate({**_read(a), "text": text})
        for a, text in await service.mine_with_words(session, resident_id, pii=context.pii, now=now)
    ]


@admin.get("", response_model=list[AppealSummary], responses=errors(401, 403, 422))
async def list_appeals(
    session: SessionDep,
    now: Now,
    operator: AppealReviewer,
    state: Literal["pending", "accepted", "rejected"] | None = "pending",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AppealSummary]:
    """Appeals to review, oldest first (without the residents' words). The listing is audited."""
    appeals = await service.listing(
        session, state=state, limit=limit, actor=operator.actor, now=now
    )
    return [AppealSummary.model_validate(_read(a)) for a in appeals]


@admin.get("/{appeal_id}", response_model=AppealDetail, responses=errors(401, 403, 404))
async def read_appeal(
    appeal_id: uuid.UUID,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: AppealReviewer,
) -> AppealDetail:
    """One appeal with the resident's words. The reading is written to the audit log."""
    appeal, text = await service.read(
        session, appeal_id=appeal_id, pii=context.pii, actor=operator.actor, now=now
    )
    return AppealDetail.model_validate({**_read(appeal), "text": text})


@admin.post(
    "/{appeal_id}/decision",
    response_model=AppealSummary,
    responses=errors(401, 403, 404, 409, 422),
)
async def decide_appeal(
    appeal_id: uuid.UUID,
    body: AppealDecision,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: AppealReviewer,
) -> AppealSummary:
    """Accept (the resident gets `status`, green by default, for `valid_days`, overriding the
    facts known now) or reject (the reason is shown to the resident). Audited; 409
    `appeal_already_decided` for a second decision; 409 `appeal_outdated` when accepting an
    appeal whose status or reasons have changed since it was filed (reject it instead)."""
    appeal = await service.decide(
        session,
        appeal_id=appeal_id,
        accept=body.decision == "accept",
        reason=body.reason,
        status=body.status,
        valid_for=dt.timedelta(days=body.valid_days),
        rules=await context.rulebook.current(),
        actor=operator.actor,
        now=now,
    )
    return AppealSummary.model_validate(_read(appeal))
