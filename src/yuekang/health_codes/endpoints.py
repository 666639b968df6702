from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status

from yuekang.conditional import etag_matches
from yuekang.deps import Context, CurrentResident, Now, SessionDep
from yuekang.exceptions import BadRequest, NotFound
from yuekang.health_codes import service
from yuekang.health_codes.models import HealthCode
from yuekang.health_codes.schemas import CodeRead
from yuekang.openapi import errors
from yuekang.schemas import IDEMPOTENCY_KEY

router = APIRouter(prefix="/v1/codes", tags=["health codes"])

BATCH_DECLINED = "yuekang.issuance_batch_declined"
"""Set in the request's scope by the fast lane when the issuance batch declined the request."""


def code_response(
    code: HealthCode, base_url: str, *, status_code: int = 201, images: str = "v1/codes/"
) -> Response:
    """The answer with a code, its image links built on ``base_url`` (ending in ``/``) and
    ``images`` (a family member's codes are under their guardian's path). Shared with the fast
    lane (:mod:`yuekang.fastlane`), so both answer alike."""
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


@router.post(
    "",
    response_model=CodeRead,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 409, 503),
)
async def issue_code(
    request: Request,
    resident_id: CurrentResident,
    session: SessionDep,
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
    if idempotency_key is not None and not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise BadRequest(
            "Idempotency-Key must be 1-128 printable ASCII characters",
            code="invalid_idempotency_key",
        )
    if idempotency_key is None and not request.scope.get(BATCH_DECLINED):
        batched = await context.issuance.issue(resident_id, now)
        if batched is not None:
            return issued_response(batched, str(request.base_url))
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
    return issued_response(issued, str(request.base_url))


async def _image(
    code_id: str,
    fmt: service.ImageFormat,
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> Response:
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
    return image_response(entry, code_id, fmt, now, request.headers.get("if-none-match"))


def image_response(
    entry: service.CachedImage,
    code_id: str,
    fmt: service.ImageFormat,
    now: dt.datetime,
    if_none_match: str | None,
) -> Response:
    """The answer for an image its owner asked for. Shared with the fast lane
    (:mod:`yuekang.fastlane`), which answers cache hits, so both answer alike."""
    etag = f'"{code_id}.{fmt}"'
    remaining = max(int((entry.expires_at - now).total_seconds()), 0)
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={remaining}"}
    if etag_matches(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    media_type = "image/png" if fmt == "png" else "image/svg+xml"
    return Response(content=entry.image, media_type=media_type, headers=headers)


_IMAGE_RESPONSES = {**errors(401, 404), 304: {"description": "Not modified"}}


@router.get(
    "/{code_id}.png",
    name="code_png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **_IMAGE_RESPONSES},
)
async def code_png(
    code_id: str,
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> Response:
    """The code as a PNG QR in its status colour (level M, 4-module quiet zone). Owner only."""
    return await _image(code_id, "png", request, resident_id, context, now)


@router.get(
    "/{code_id}.svg",
    name="code_svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **_IMAGE_RESPONSES},
)
async def code_svg(
    code_id: str,
    request: Request,
    resident_id: CurrentResident,
    context: Context,
    now: Now,
) -> Response:
    """The code as an SVG QR in its status colour. Owner only."""
    return await _image(code_id, "svg", request, resident_id, context, now)


# Declared after the image routes: `/{code_id}` would otherwise swallow `x.png`.
@router.get("/{code_id}", response_model=CodeRead, responses=errors(401, 404))
async def read_code(
    code_id: str, request: Request, resident_id: CurrentResident, session: SessionDep
) -> Response:
    """One of the resident's own codes."""
    code = await service.get_owned_code(session, resident_id=resident_id, code_id=code_id)
    return code_response(code, str(request.base_url), status_code=200)
