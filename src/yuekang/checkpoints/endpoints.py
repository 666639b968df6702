from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from yuekang.checkpoints import service
from yuekang.checkpoints.schemas import (
    CheckpointCreate,
    CheckpointCreated,
    VerdictRead,
    VerifyRequest,
)
from yuekang.codec.reasons import pick_language
from yuekang.deps import Context, CurrentCheckpoint, Now, SessionDep, StaffOperator
from yuekang.openapi import errors
from yuekang.scans import service as scans

router = APIRouter(tags=["checkpoints"])


@router.post("/v1/verify", response_model=VerdictRead, responses=errors(401, 422))
async def verify(
    body: VerifyRequest,
    checkpoint: CurrentCheckpoint,
    session: SessionDep,
    context: Context,
    now: Now,
    accept_language: Annotated[str | None, Header()] = None,
) -> VerdictRead:
    """Verify a scanned health code online (checkpoint key required).

    Always 200 for a code, whatever its state: an invalid, expired, forged or revoked code is a
    verdict `invalid` with reasons, never an HTTP error. Reason messages follow `Accept-Language`
    (zh-Hans default, zh-Hant, en, pt).
    """
    verdict = await service.verify_online(
        session,
        qr_text=body.qr_text,
        keyring=context.keyring,
        now=now,
    )
    # The scan record: code id, checkpoint, time, verdict -- nothing else about the person.
    await scans.record_online(session, checkpoint_id=checkpoint.id, verdict=verdict, now=now)
    return VerdictRead.model_validate(verdict.to_dict(pick_language(accept_language)))


admin = APIRouter(prefix="/v1/admin/checkpoints", tags=["admin: checkpoints"])


@admin.post("", response_model=CheckpointCreated, status_code=201, responses=errors(401, 403, 422))
async def create_checkpoint(
    body: CheckpointCreate,
    session: SessionDep,
    now: Now,
    operator: StaffOperator,
) -> CheckpointCreated:
    """Register a checkpoint; its API key is in this response only."""
    checkpoint, api_key = await service.create_checkpoint(
        session, name=body.name, actor=operator.actor, now=now
    )
    return CheckpointCreated(
        id=checkpoint.id, name=checkpoint.name, created_at=checkpoint.created_at, api_key=api_key
    )
