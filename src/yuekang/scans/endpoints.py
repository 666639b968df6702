from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from yuekang import metrics
from yuekang.db import after_commit
from yuekang.deps import Context, CurrentCheckpoint, Epidemiologist, Now, SessionDep
from yuekang.exceptions import ValidationFailed
from yuekang.openapi import errors
from yuekang.scans import service
from yuekang.scans.models import ScanRecord
from yuekang.scans.schemas import (
    CaseReference,
    ResolvedPerson,
    ScanBatch,
    ScanBatchResult,
    ScanRead,
)
from yuekang.schemas import Instant

router = APIRouter(tags=["checkpoints"])
tracing = APIRouter(prefix="/v1/admin", tags=["admin: contact tracing"])

CaseRef = Annotated[str, Query(min_length=3, max_length=100, description="Audited")]
CLOCK_SLACK = dt.timedelta(minutes=5)


def _read(record: ScanRecord) -> ScanRead:
    return ScanRead(
        checkpoint_id=record.checkpoint_id,
        code_id=record.code_id,
        scanned_at=record.scanned_at,
        verdict=record.verdict,
        reason=record.reason,
        source=record.source,
        method="document" if record.method == "document" else "code",
    )


@router.post("/v1/scans", response_model=ScanBatchResult, responses=errors(401, 422))
async def upload_scans(
    body: ScanBatch,
    checkpoint: CurrentCheckpoint,
    session: SessionDep,
    context: Context,
    now: Now,
) -> ScanBatchResult:
    """Upload scans made offline: code id, time, verdict (nothing else about the person). Each is
    stored once per checkpoint and `scan_id`: repeating an upload is safe. Scans dated in the
    future (beyond 5 minutes) or older than the retention period, and valid verdicts sent with
    a null `decision` (the device could not decide), are not stored; their ids come back in
    `refused`."""
    oldest = now - dt.timedelta(days=context.settings.scans.retention_days)
    # A scan dated in the future (a device clock far ahead) or past retention is set aside and
    # named, not stored: one such record must not hold back a device's whole queue. So is a
    # pass the device could not decide: stored, it would be counted as the policy's decision.
    kept = [
        s for s in body.scans if oldest <= s.scanned_at <= now + CLOCK_SLACK and not s.undecided
    ]
    refused = sorted({s.scan_id for s in body.scans} - {s.scan_id for s in kept})
    stored = await service.upload(
        session,
        checkpoint_id=checkpoint.id,
        scans=[
            service.Scan(s.scan_id, s.code_id, s.scanned_at, s.verdict, s.reason, s.decision)
            for s in kept
        ],
        now=now,
    )
    after_commit(session, functools.partial(metrics.uploaded, stored))
    unique = len({s.scan_id for s in kept})
    return ScanBatchResult(
        received=len(body.scans),
        stored=len(stored),
        duplicates=unique - len(stored),
        refused=refused,
    )


@tracing.get(
    "/checkpoints/{checkpoint_id}/scans",
    response_model=list[ScanRead],
    responses=errors(401, 403, 422),
)
async def scans_at_checkpoint(
    checkpoint_id: uuid.UUID,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: Epidemiologist,
    start: Annotated[Instant, Query(alias="from")],
    end: Annotated[Instant, Query(alias="to")],
    case_reference: CaseRef,
) -> list[ScanRead]:
    """Which codes were scanned at a checkpoint in `[from, to)`. Audited with the case
    reference; epidemiologists only."""
    if end <= start:
        raise ValidationFailed("from must come before to")
    records = await service.at_checkpoint(
        session,
        checkpoint_id=checkpoint_id,
        start=start,
        end=end,
        case_reference=case_reference,
        actor=operator.actor,
        now=now,
        retention=dt.timedelta(days=context.settings.scans.retention_days),
    )
    return [_read(r) for r in records]


@tracing.get(
    "/codes/{code_id}/scans", response_model=list[ScanRead], responses=errors(401, 403, 404)
)
async def scans_of_person(
    code_id: str,
    session: SessionDep,
    context: Context,
    now: Now,
    operator: Epidemiologist,
    case_reference: CaseRef,
) -> list[ScanRead]:
    """Where the holder of this code had any of their codes scanned. Audited with the case
    reference; epidemiologists only."""
    records = await service.of_person(
        session,
        code_id=code_id,
        case_reference=case_reference,
        actor=operator.actor,
        now=now,
        retention=dt.timedelta(days=context.settings.scans.retention_days),
    )
    return [_read(r) for r in records]


@tracing.post(
    "/codes/{code_id}/resolve", response_model=ResolvedPerson, responses=errors(401, 403, 404, 422)
)
async def resolve_code(
    code_id: str, body: CaseReference, session: SessionDep, now: Now, operator: Epidemiologist
) -> ResolvedPerson:
    """The resident a code belongs to, for a case. Audited; epidemiologists only."""
    resident_id = await service.resolve(
        session, code_id=code_id, case_reference=body.case_reference, actor=operator.actor, now=now
    )
    return ResolvedPerson(resident_id=resident_id)
