from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.codec.keys import SigningKey
from yuekang.conditional import etag_matches
from yuekang.context import AppContext
from yuekang.deps import Context, CurrentCheckpoint, Now, SessionDep
from yuekang.exceptions import ServiceUnavailable
from yuekang.openapi import errors
from yuekang.trust import service

router = APIRouter(tags=["checkpoints"])

MEDIA_TYPE = "application/jose"


@router.get(
    "/v1/trust-bundle",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}}, "description": "A bundle"},
        304: {"description": "The bundle named by If-None-Match is still the latest"},
        **errors(401, 503),
    },
)
async def trust_bundle(
    session: SessionDep,
    context: Context,
    now: Now,
    checkpoint: CurrentCheckpoint,
    since: Annotated[
        int | None,
        Query(ge=1, le=2**31 - 1, description="A version held: answer a delta"),
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The signed checkpoint trust bundle (a JWS; see `docs/CHECKPOINTS.md`): keys with their
    states and windows, unexpired revocations, policies. `ETag` is the version: `If-None-Match`
    answers 304 when nothing changed; `?since=VERSION` answers a delta on top of that version
    (or the full bundle when it cannot). 503 `no_anchor_key` until an anchor key exists."""
    settings = context.settings
    grace = dt.timedelta(seconds=settings.trust.bundle_grace_seconds)
    max_code_lifetime = dt.timedelta(seconds=settings.codes.max_lifetime_seconds)

    async def answer(reading: AsyncSession) -> Response:
        anchors: list[SigningKey] = []

        async def anchor() -> SigningKey:
            # Asked for at most once a request: by the bundle's check, or by a delta.
            if not anchors:
                anchors.append(await _anchor(reading, context, now))
            return anchors[0]

        async def find() -> service.Served:
            record = await service.current(
                reading,
                anchor=await anchor(),
                issuer=settings.issuer,
                now=now,
                lifetime=dt.timedelta(seconds=settings.trust.bundle_lifetime_seconds),
                grace=grace,
                max_code_lifetime=max_code_lifetime,
            )
            return service.Served.of(record)

        served = await context.bundles.latest(find)
        etag = f'"v{served.version}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        text = served.text
        if since is not None:

            async def build() -> str | None:
                return await service.delta(
                    reading,
                    anchor=await anchor(),
                    latest_record=served,
                    since=since,
                    issuer=settings.issuer,
                    grace=grace,
                    now=now,
                    max_code_lifetime=max_code_lifetime,
                )

            text = await context.bundles.delta(served, since, build) or text
        return Response(content=text, media_type=MEDIA_TYPE, headers=headers)

    # A replica within the lag bound may answer (revocations and key changes reach checkpoints
    # that much later, on top of serve_cached_seconds); a bundle to be made or signed anew is
    # the primary's, in the request's session.
    return await context.bounded_read(answer, primary=session)


@router.get("/v1/trust-anchor", responses=errors(503))
async def trust_anchor(session: SessionDep, context: Context, now: Now) -> dict[str, str]:
    """The anchor's public key (a JWK). A checkpoint pins it only if its `kid` -- the RFC 7638
    thumbprint -- is the fingerprint it was given out of band."""
    jwk: dict[str, str] = (await _anchor(session, context, now)).public().to_jwk()
    return jwk


async def _anchor(session: AsyncSession, context: AppContext, now: dt.datetime) -> SigningKey:
    """The trust anchor's key, or 503 ``no_anchor_key``."""
    key = await service.anchor_key(
        session,
        passphrase=context.secrets.key_passphrase,
        now=now,
        create=False,
        token=context.keyring.token,
    )
    if key is None:
        raise ServiceUnavailable(
            "no trust anchor key yet: run `yuekang keys anchor`", code="no_anchor_key"
        )
    return key
