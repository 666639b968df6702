from __future__ import annotations

import datetime as dt
import functools
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from pydantic import ValidationError

from yuekang import metrics, regions
from yuekang.checkpoints import documents, registration, service
from yuekang.checkpoints.models import Checkpoint
from yuekang.checkpoints.schemas import (
    CheckpointCreate,
    CheckpointCreated,
    CheckpointRead,
    DocumentCheck,
    VerdictRead,
    VerifyRequest,
)
from yuekang.clock import epoch
from yuekang.codec.reasons import pick_language
from yuekang.context import AppContext
from yuekang.db import after_commit
from yuekang.deps import (
    BAD_CHECKPOINT_KEY,
    CheckpointKey,
    Context,
    CurrentCheckpoint,
    Now,
    SessionDep,
    StaffOperator,
    parse_checkpoint_key,
)
from yuekang.exceptions import ServiceUnavailable, Unauthorized
from yuekang.fastlane import Direct, direct
from yuekang.headers import media_type
from yuekang.openapi import errors
from yuekang.trust import service as trust

router = APIRouter(tags=["checkpoints"])


async def verdict(
    context: AppContext,
    *,
    key: tuple[uuid.UUID, str],
    qr_text: str,
    accept_language: str | None,
) -> Response:
    """`POST /v1/verify`'s 200, once the scan is recorded, or its 401 when the database refuses
    the key: for the route and its direct handler alike."""
    now = context.clock.now()
    view = await context.keyring.view(now)
    checked = view.verifier.verify(qr_text, now=epoch(now))
    # Decided for every kind of place before the batch learns the checkpoint's: its record
    # keeps the decision of its kind.
    decisions = service.decisions_everywhere(checked)
    judged = await context.online_scans.judge(
        checkpoint_id=key[0],
        secret=key[1],
        verdict=checked,
        now=now,
        decisions={kind: decision.verdict for kind, decision in decisions.items()},
    )
    if judged is None:
        raise Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
    checkpoint, final = judged
    decision = (
        decisions[checkpoint.kind]
        if final is checked
        else service.apply_policy(final, kind=checkpoint.kind)
    )
    metrics.verified("online", final.verdict, decision.verdict)  # its scan record is committed
    # Serialised here rather than by FastAPI's response model, which would validate it again.
    body = VerdictRead.model_validate(
        {
            **final.to_dict(pick_language(accept_language)),
            "decision": decision.verdict,
            "decision_reason": decision.reason,
        }
    ).model_dump_json()
    return Response(body, media_type="application/json")


async def verify_directly(request: Direct) -> Response | None:
    """`POST /v1/verify` for a JSON body that validates and a key that parses. Anything else is
    the route's: it gives the 400, 401 or 422 in FastAPI's order (an unparseable body before a
    missing key, a missing key before an invalid body)."""
    key = parse_checkpoint_key(request.bearer_token())
    if key is None or media_type(request.scope) != "application/json":
        return None
    body = await request.body()
    if body is None:
        return None  # the client went away: the route meets it too
    try:
        qr_text = VerifyRequest.model_validate_json(body).qr_text
    except ValidationError:
        return None
    return await verdict(
        request.context,
        key=key,
        qr_text=qr_text,
        accept_language=request.header(b"accept-language"),
    )


@router.post("/v1/verify", response_model=VerdictRead, responses=errors(401, 422))
@direct(verify_directly)
async def verify(
    body: VerifyRequest,
    key: CheckpointKey,
    request: Request,
    accept_language: Annotated[str | None, Header()] = None,
) -> Response:
    """Verify a scanned health code online (checkpoint key required).

    Always 200 for a code, whatever its state: an invalid, expired, forged or revoked code is a
    verdict `invalid` with reasons, never an HTTP error. Reason messages follow `Accept-Language`
    (zh-Hans default, zh-Hant, en, pt). `decision` is the checkpoint's policy (by its kind)
    applied to the verdict: `allow`, `deny` or `manual_check`, with `decision_reason`. The
    verdict is sent once its scan record is committed.
    """
    return await verdict(
        request.app.state.context, key=key, qr_text=body.qr_text, accept_language=accept_language
    )


@router.post("/v1/verify/document", response_model=VerdictRead, responses=errors(401, 422, 429))
async def verify_document(
    body: DocumentCheck,
    checkpoint: CurrentCheckpoint,
    session: SessionDep,
    context: Context,
    now: Now,
    accept_language: Annotated[str | None, Header()] = None,
) -> VerdictRead:
    """Check a person by their identity document instead of a code (刷证核验), for people
    without a phone (checkpoint key required).

    The answer has the same shape as `POST /v1/verify`'s: `verdict` `valid` with the masked
    name, the status, `assurance` and the checkpoint's policy `decision`, `origin` =
    `document_check`, no code id. A document with no valid code here -- unknown, not bound,
    bound but never proved, or a family member's record awaiting consent -- is `invalid` with
    the single reason `no_valid_code`, whichever it is (the endpoint is no oracle). A number
    that fails its own format or check digit is a 422 `invalid_document` (a typing mistake,
    nothing about any person). Each check is rate-limited per checkpoint (429 `rate_limited`)
    and kept as a scan record.
    """
    verdict, decision = await documents.check_document(
        session,
        checkpoint=checkpoint,
        doc_type=body.doc_type,
        doc_number=body.doc_number,
        blind_index=context.blind_index,
        rules=await context.rulebook.current(),
        issuer=context.settings.issuer,
        lifetime=dt.timedelta(seconds=context.settings.codes.lifetime_seconds),
        settings=context.settings.document_checks,
        now=now,
    )
    after_commit(
        session, functools.partial(metrics.verified, "document", verdict.verdict, decision.verdict)
    )
    return VerdictRead.model_validate(
        {
            **verdict.to_dict(pick_language(accept_language)),
            "decision": decision.verdict,
            "decision_reason": decision.reason,
        }
    )


@router.get(
    "/v1/checkpoint",
    response_class=Response,
    responses={
        200: {
            "content": {"application/jose": {"schema": {"type": "string"}}},
            "description": "The registration, signed by the trust anchor",
        },
        **errors(401, 503),
    },
)
async def checkpoint_registration(
    checkpoint: CurrentCheckpoint, session: SessionDep, context: Context, now: Now
) -> Response:
    """This checkpoint's registration as its device must apply it (checkpoint key): a compact
    JWS signed by the trust anchor (`typ` `yk-checkpoint+jws`; payload `yk.checkpoint.v1` with
    `checkpoint`, `name`, `kind`, `issuer`, `issued_at`). The kind of place -- `venue`,
    `transport` or `border` -- is the operator's, set when the checkpoint was registered: a
    device takes it from here, under the anchor it pinned, and never from whoever holds it.
    503 `no_anchor_key` until an anchor key exists."""
    anchor = await trust.anchor_key(
        session, passphrase=context.secrets.key_passphrase, now=now, create=False
    )
    if anchor is None:
        raise ServiceUnavailable(
            "no trust anchor key yet: run `yuekang keys anchor`", code="no_anchor_key"
        )
    signed = registration.sign(
        registration.Registration(
            issuer=context.settings.issuer,
            checkpoint=checkpoint.id,
            name=checkpoint.name,
            kind=checkpoint.kind,
            issued_at=epoch(now),
        ),
        anchor,
    )
    return Response(signed, media_type="application/jose", headers={"Cache-Control": "no-store"})


admin = APIRouter(prefix="/v1/admin/checkpoints", tags=["admin: checkpoints"])


@admin.get("", response_model=list[CheckpointRead], responses=errors(401, 403))
async def list_checkpoints(session: SessionDep, operator: StaffOperator) -> list[CheckpointRead]:
    """Every checkpoint (never its key), with the time of its latest scan on record."""
    return [
        CheckpointRead(
            id=checkpoint.id,
            name=checkpoint.name,
            kind=checkpoint.kind,
            region_code=checkpoint.region_code,
            region_name=regions.name(checkpoint.region_code) if checkpoint.region_code else None,
            enabled=checkpoint.disabled_at is None,
            created_at=checkpoint.created_at,
            disabled_at=checkpoint.disabled_at,
            last_scan_at=last_scan_at,
        )
        for checkpoint, last_scan_at in await service.listing(session)
    ]


@admin.post("", response_model=CheckpointCreated, status_code=201, responses=errors(401, 403, 422))
async def create_checkpoint(
    body: CheckpointCreate,
    session: SessionDep,
    now: Now,
    operator: StaffOperator,
) -> CheckpointCreated:
    """Register a checkpoint; its API key is in this response only."""
    checkpoint, api_key = await service.create_checkpoint(
        session,
        name=body.name,
        kind=body.kind,
        region_code=body.region_code,
        actor=operator.actor,
        now=now,
    )
    return _created(checkpoint, api_key)


def _created(checkpoint: Checkpoint, api_key: str) -> CheckpointCreated:
    return CheckpointCreated(
        id=checkpoint.id,
        name=checkpoint.name,
        kind=checkpoint.kind,
        region_code=checkpoint.region_code,
        created_at=checkpoint.created_at,
        api_key=api_key,
    )


@admin.post(
    "/{checkpoint_id}/rotate-key", response_model=CheckpointCreated, responses=errors(401, 403, 404)
)
async def rotate_checkpoint_key(
    checkpoint_id: uuid.UUID, session: SessionDep, now: Now, operator: StaffOperator
) -> CheckpointCreated:
    """A new API key for the checkpoint, in this response only; the old key stops working."""
    checkpoint, api_key = await service.rotate_key(
        session, checkpoint_id=checkpoint_id, actor=operator.actor, now=now
    )
    return _created(checkpoint, api_key)


@admin.post("/{checkpoint_id}/disable", status_code=204, responses=errors(401, 403, 404))
async def disable_checkpoint(
    checkpoint_id: uuid.UUID, session: SessionDep, now: Now, operator: StaffOperator
) -> None:
    """The checkpoint's key stops working for verification, bundles and uploads."""
    await service.disable(session, checkpoint_id=checkpoint_id, actor=operator.actor, now=now)
