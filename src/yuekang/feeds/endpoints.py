from __future__ import annotations

import functools
import tempfile
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from yuekang import metrics
from yuekang.db import after_commit, dialect_name
from yuekang.deps import AdminOperator, Context, CurrentFeedClient, Now, SessionDep
from yuekang.exceptions import BadRequest, Forbidden, NotFound, UnsupportedMediaType
from yuekang.feeds import service
from yuekang.feeds.models import FeedBatch
from yuekang.feeds.parse import MEDIA_TYPES
from yuekang.feeds.rows import FeedKind
from yuekang.feeds.schemas import (
    BatchRead,
    FeedClientCreate,
    FeedClientCreated,
    FeedClientRead,
    RowError,
)
from yuekang.openapi import errors
from yuekang.schemas import IDEMPOTENCY_KEY

router = APIRouter(prefix="/v1/feeds", tags=["feeds"])
admin = APIRouter(prefix="/v1/admin/feed-clients", tags=["admin: feeds"])

_KINDS = {kind.value: kind for kind in FeedKind}
_SPOOL_IN_MEMORY = 1024 * 1024
_SPOOL_PIECE = 64 * 1024


async def spooled(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The whole body, read first (into memory up to 1 MiB, then a temporary file), replayed."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    async for chunk in body:
        spool.write(chunk)
    spool.seek(0)

    async def replay() -> AsyncIterator[bytes]:
        with spool:
            while piece := spool.read(_SPOOL_PIECE):
                yield piece

    return replay()


def _read(batch: FeedBatch) -> BatchRead:
    return BatchRead(
        batch_id=batch.id,
        kind=FeedKind(batch.kind),
        idempotency_key=batch.idempotency_key,
        received_at=batch.received_at,
        rows_total=batch.rows_total,
        rows_accepted=batch.rows_accepted,
        rows_rejected=batch.rows_rejected,
        errors=[RowError.model_validate(e) for e in batch.errors],
        errors_truncated=batch.errors_truncated,
        persons_recomputed=batch.persons_recomputed,
        statuses_changed=batch.statuses_changed,
        codes_revoked=batch.codes_revoked,
    )


@router.post(
    "/{kind}",
    response_model=BatchRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BatchRead, "description": "A batch sent again: the first result"},
        **errors(401, 403, 404, 409, 415, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def push_batch(
    kind: str,
    request: Request,
    response: Response,
    client: CurrentFeedClient,
    session: SessionDep,
    context: Context,
    now: Now,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> BatchRead:
    """Push a batch of facts: `cases`, `nat-results`, `vaccinations`, `risk-areas` or `travel`.

    The body is NDJSON (`application/x-ndjson`, one object per line) or CSV (`text/csv`, a header
    line, then one record per line), up to 100,000 rows; `Idempotency-Key` (required) names the
    batch. Good rows are applied together with the status changes they cause; bad rows come back
    in `errors` (line, field, reason). Sending a key again answers 200 with the first result and
    applies nothing. Whole-batch refusals: 404 `unknown_feed_kind`, 403 `kind_not_allowed`, 415
    `unsupported_media_type`, 400 `idempotency_key_required` / `empty_batch`, 422 `bad_header` /
    `line_too_long`, 413 `payload_too_large` / `batch_too_large`, 409 `idempotency_key_reused`.
    """
    feed_kind = _KINDS.get(kind)
    if feed_kind is None:
        raise NotFound(
            f"unknown feed kind {kind[:40]!r}; one of {sorted(_KINDS)}", code="unknown_feed_kind"
        )
    if feed_kind not in client.kinds:
        raise Forbidden(f"this client may not send {kind} batches", code="kind_not_allowed")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt = MEDIA_TYPES.get(media_type)
    if fmt is None:
        raise UnsupportedMediaType(
            "send application/x-ndjson or text/csv", code="unsupported_media_type"
        )
    if idempotency_key is None:
        raise BadRequest(
            "name the batch with an Idempotency-Key header", code="idempotency_key_required"
        )
    if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise BadRequest(
            "Idempotency-Key must be 1-128 printable ASCII characters",
            code="invalid_idempotency_key",
        )
    feeds = context.settings.feeds
    body: AsyncIterator[bytes] = request.stream()
    if dialect_name(session) == "sqlite":
        # SQLite has one writer: take the body in before the transaction starts, so a slow
        # upload does not hold every other request's writes.
        body = await spooled(body)
    result = await service.ingest(
        session,
        client=client,
        kind=feed_kind,
        fmt=fmt,
        content_type=media_type,
        idempotency_key=idempotency_key,
        body=body,
        blind_index=context.blind_index,
        rules=await context.rulebook.current(),
        max_rows=feeds.max_rows,
        max_reported_errors=feeds.max_reported_errors,
        now=now,
        clock=context.clock.now,
    )
    if result.replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        batch = result.batch
        for outcome, rows in (("accepted", batch.rows_accepted), ("rejected", batch.rows_rejected)):
            after_commit(session, functools.partial(metrics.feed_rows(kind, outcome).inc, rows))
    return _read(result.batch)


@router.get("/batches/{batch_id}", response_model=BatchRead, responses=errors(401, 404))
async def read_batch(
    batch_id: uuid.UUID, client: CurrentFeedClient, session: SessionDep
) -> BatchRead:
    """The result of one of this client's batches."""
    batch = await service.client_batch(session, client_id=client.id, batch_id=batch_id)
    if batch is None:
        raise NotFound("no such batch", code="batch_not_found")
    return _read(batch)


@admin.post(
    "",
    response_model=FeedClientCreated,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 409, 422),
)
async def create_feed_client(
    body: FeedClientCreate, session: SessionDep, now: Now, operator: AdminOperator
) -> FeedClientCreated:
    """Register an authority system and the kinds of feed it may send. The key is shown once."""
    client, key = await service.create_client(
        session, name=body.name, kinds=body.kinds, actor=operator.actor, now=now
    )
    return FeedClientCreated(
        id=client.id,
        name=client.name,
        kinds=[FeedKind(k) for k in client.kinds],
        created_at=client.created_at,
        disabled_at=None,
        api_key=key,
    )


@admin.get("", response_model=list[FeedClientRead], responses=errors(401, 403))
async def list_feed_clients(session: SessionDep, operator: AdminOperator) -> list[FeedClientRead]:
    """Every feed client (never their keys)."""
    clients = await service.list_clients(session)
    return [
        FeedClientRead(
            id=c.id,
            name=c.name,
            kinds=[FeedKind(k) for k in c.kinds],
            created_at=c.created_at,
            disabled_at=c.disabled_at,
        )
        for c in clients
    ]
