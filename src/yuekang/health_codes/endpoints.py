from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from yuekang import metrics
from yuekang.conditional import etag_matches
from yuekang.context import AppContext
from yuekang.db import transaction
from yuekang.deps import Context, CurrentResident, Now, SessionDep, session_claims
from yuekang.exceptions import BadRequest, NotFound
from yuekang.fastlane import Direct, DirectHandler, Ready, direct
from yuekang.headers import header
from yuekang.health_codes import service
from yuekang.health_codes.models import HealthCode
from yuekang.health_codes.schemas import CodeRead
from yuekang.openapi import errors
from yuekang.schemas import IDEMPOTENCY_KEY

router = APIRouter(prefix="/v1/codes", tags=["health codes"])


def code_response(
    code: HealthCode, base_url: str, *, status_code: int = 201, images: str = "v1/codes/"
) -> Response:
    """The answer with a code, its image links built on ``base_url`` (ending in ``/``) and
    ``images`` (a family member's codes are under their guardian's path)."""
    body = CodeRead(
        code_id=code.code_id,
        qr_text=code.qr_text,
        status=code.status,
        issued_at=code.issued_at,
        expires_at=code.expires_at,
        # Not url_for: it searches every route on each call.
        png_url=f"{base_url}{images}{code.code_id}.png",
        svg_url=f"{base_url}{images}{code.code_id}.svg",
    )
    return Response(
        body.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def issued_response(issued: service.Issued, base_url: str) -> Response:
    """201 with a new code (and its idempotent replays, as the first answer was); 200 with the
    live one answered again."""
    response = code_response(issued.code, base_url, status_code=200 if issued.reused else 201)
    if issued.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


async def issue(
    context: AppContext,
    resident_id: uuid.UUID,
    *,
    idempotency_key: str | None,
    now: dt.datetime,
) -> service.Issued:
    """The one way a resident's code is issued, for the route and its direct handler alike: the
    batch first (``health_codes.batch``); then, for what the batch does not take -- an
    Idempotency-Key, anything out of the ordinary, a batch that failed -- the single path in a
    transaction of its own, which gives the documented errors."""
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise BadRequest(
            "Idempotency-Key must be 1-128 printable ASCII characters",
            code="invalid_idempotency_key",
        )
    if idempotency_key is None:
        batched = await context.issuance.issue(resident_id, now)
        if batched is not None:
            return _counted(batched)
    # Committed before the answer is sent, as the request's own session would be.
    async with transaction(context.sessionmaker) as session:
        issued = await service.issue_code(
            session,
            resident_id=resident_id,
            idempotency_key=idempotency_key,
            keyring=context.keyring,
            issuer=context.settings.issuer,
            lifetime=dt.timedelta(seconds=context.settings.codes.lifetime_seconds),
            rules=await context.rulebook.current(),
            now=now,
            reuse=context.settings.codes.reuse,
        )
    return _counted(issued)


def _counted(issued: service.Issued) -> service.Issued:
    """``issued``, counted when it is a new code (committed by now): a code answered again or
    replayed was counted when it was made."""
    if not (issued.reused or issued.replayed):
        metrics.codes_issued(issued.code.status).inc()
    return issued


async def issue_directly(request: Direct) -> Response:
    context = request.context
    now = context.clock.now()
    claims = await session_claims(request.bearer_token(), context, now)
    idempotency_key = request.header(b"idempotency-key")
    issued = await issue(context, claims.resident_id, idempotency_key=idempotency_key, now=now)
    return issued_response(issued, request.base_url)


@router.post(
    "",
    response_model=CodeRead,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 409, 503),
)
@direct(issue_directly)
async def issue_code(
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Response:
    """A health code for the signed-in resident: 201 with a new one, or 200 with the live one.

    The code carries the current status and expires after the configured lifetime (1 hour by
    default); ask again when it nears expiry. While the resident's code has at least half its
    lifetime left and their status and identity are unchanged, asking again answers that code
    (200) rather than making another. With an `Idempotency-Key`, a retried request returns the
    same code (header `Idempotent-Replayed: true`). 409 `identity_required` before an
    identity is bound; 503 `no_signing_key` when no active key outlives a new code.
    """
    issued = await issue(context, resident_id, idempotency_key=idempotency_key, now=now)
    return issued_response(issued, str(request.base_url))


async def _image(
    code_id: str,
    fmt: service.ImageFormat,
    *,
    resident_id: uuid.UUID,
    context: AppContext,
    now: dt.datetime,
    if_none_match: str | None,
) -> Response:
    """A code's image for its owner, for the routes and their direct handlers alike."""
    # An image is a pure function of a stored code, and the cache keeps its owner: a hit needs
    # no database (the phone fetches it again on every refresh). Someone else's code is a 404
    # whether it is cached or not.
    entry = context.images.get(code_id, fmt)
    if entry is None:
        async with context.read_sessionmaker() as session:
            code = await service.get_owned_code(session, resident_id=resident_id, code_id=code_id)
            entry = await service.render_image(code, fmt, context.images)
    elif entry.owner != resident_id:
        raise NotFound("no such code", code="code_not_found")
    return image_response(entry, code_id, fmt, now, if_none_match)


def _image_directly(fmt: service.ImageFormat) -> DirectHandler:
    async def answer(request: Direct) -> Response:
        context = request.context
        now = context.clock.now()
        claims = await session_claims(request.bearer_token(), context, now)
        return await _image(
            request.path_params["code_id"],
            fmt,
            resident_id=claims.resident_id,
            context=context,
            now=now,
            if_none_match=request.header(b"if-none-match"),
        )

    return answer


def image_response(
    entry: service.CachedImage,
    code_id: str,
    fmt: service.ImageFormat,
    now: dt.datetime,
    if_none_match: str | None,
) -> Response:
    """The answer for an image its owner asked for."""
    etag = f'"{code_id}.{fmt}"'
    remaining = max(int((entry.expires_at - now).total_seconds()), 0)
    fields = [(b"etag", etag.encode()), (b"cache-control", b"private, max-age=%d" % remaining)]
    if etag_matches(if_none_match, etag):
        return Ready(status.HTTP_304_NOT_MODIFIED, fields)
    length = (b"content-length", b"%d" % len(entry.image))
    return Ready(200, [*fields, length, _IMAGE_TYPES[fmt]], entry.image)


_IMAGE_TYPES = {"png": (b"content-type", b"image/png"), "svg": (b"content-type", b"image/svg+xml")}


_IMAGE_RESPONSES = {**errors(401, 404), 304: {"description": "Not modified"}}


@router.get(
    "/{code_id}.png",
    name="code_png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_IMAGE_RESPONSES},
)
@direct(_image_directly("png"))
async def code_png(
    code_id: str,
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> Response:
    """The code as a PNG QR in its status colour (level M, 4-module quiet zone). Owner only."""
    return await _image(
        code_id,
        "png",
        resident_id=resident_id,
        context=context,
        now=now,
        if_none_match=header(request.scope, b"if-none-match"),
    )


@router.get(
    "/{code_id}.svg",
    name="code_svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **_IMAGE_RESPONSES},
)
@direct(_image_directly("svg"))
async def code_svg(
    code_id: str,
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> Response:
    """The code as an SVG QR in its status colour. Owner only."""
    return await _image(
        code_id,
        "svg",
        resident_id=resident_id,
        context=context,
        now=now,
        if_none_match=header(request.scope, b"if-none-match"),
    )


# Declared after the image routes: `/{code_id}` would otherwise swallow `x.png`.
@router.get("/{code_id}", response_model=CodeRead, responses=errors(401, 404))
async def read_code(
    code_id: str, request: Request, resident_id: CurrentResident, session: SessionDep
) -> Response:
    """One of the resident's own codes."""
    code = await service.get_owned_code(session, resident_id=resident_id, code_id=code_id)
    return code_response(code, str(request.base_url), status_code=200)
