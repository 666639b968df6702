from __future__ import annotations

import datetime as dt
import hmac
import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys
from yuekang.checkpoints import service as checkpoints
from yuekang.checkpoints.registration import KEY_PREFIX
from yuekang.codec.keys import SigningKey
from yuekang.conditional import etag_matches
from yuekang.context import AppContext
from yuekang.deps import (
    BAD_CHECKPOINT_KEY,
    CheckpointKey,
    Context,
    Now,
    SessionDep,
    parse_checkpoint_key,
)
from yuekang.exceptions import ServiceUnavailable, Unauthorized
from yuekang.fastlane import Direct, Ready, direct
from yuekang.openapi import errors
from yuekang.trust import service

router = APIRouter(tags=["checkpoints"])

MEDIA_TYPE = "application/jose"
MAX_VERSION = 2**31 - 1
_SINCE = re.compile(rb"since=([1-9][0-9]{0,9})")


async def check_key(context: AppContext, key: tuple[uuid.UUID, str]) -> None:
    """The checkpoint key of a sync, or 401. The stored key is the primary's, read with one
    statement outside any session; a key found good is kept in this process until PostgreSQL
    says its checkpoint changed (``notices``, :func:`kept_key`). So a key disabled or replaced
    is refused at the next sync after the change is committed, and a device's syncs, minutes
    apart, cost no round trip for the key (the bundle itself may come from this process's
    cache)."""
    kept = context.checkpoint_keys
    stamp = kept.stamp()
    stored = await context.read_row(
        checkpoints.CHECKPOINT_KEY, {"checkpoint_id": key[0]}, replica=False
    )
    if (
        stored is None
        or stored.disabled_at is not None
        or not apikeys.matches(stored.key_hash, key[1])
    ):
        raise Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
    kept.put(key[0].hex, apikeys.secret_hash(f"{KEY_PREFIX}{key[0].hex}_{key[1]}"), stamp)


def kept_key(context: AppContext, token: str) -> bool:
    """Whether ``token`` is the key this process found good for its checkpoint, and nothing
    changed the checkpoint since: no statement, no parsing, no UUID (a fifth of a sync's time,
    py-spy). What is kept is the whole key's digest, not the key."""
    accepted = context.checkpoint_keys.get(token[len(KEY_PREFIX) : len(KEY_PREFIX) + 32])
    return accepted is not None and hmac.compare_digest(accepted, apikeys.secret_hash(token))


async def checked_key(key: CheckpointKey, context: Context) -> None:
    """As a dependency: checked before the query is, so a bad key is a 401 before a bad
    ``since`` is a 422, as it was when the route authenticated the checkpoint."""
    await check_key(context, key)


async def bundle(
    context: AppContext,
    *,
    now: dt.datetime | None,
    since: int | None,
    if_none_match: str | None,
) -> Response:
    """The answer to a checkpoint's sync whose key was checked, for the route and its direct
    handler alike (``now``: the clock's, when None; a bundle served from the cache needs no
    time)."""

    cached = context.bundles.fresh()
    if cached is not None and (since is None or etag_matches(if_none_match, cached.etag)):
        return _served(cached, if_none_match)
    if now is None:
        now = context.clock.now()
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
        etag = served.etag
        if since is None or etag_matches(if_none_match, etag):
            return _served(served, if_none_match)
        base = since  # a delta on top of this version

        async def build() -> str | None:
            return await service.delta(
                reading,
                anchor=await anchor(),
                latest_record=served,
                since=base,
                issuer=settings.issuer,
                grace=grace,
                now=now,
                max_code_lifetime=max_code_lifetime,
            )

        text = await context.bundles.delta(served, base, build) or served.text
        return Response(
            content=text, media_type=MEDIA_TYPE, headers={"ETag": etag, "Cache-Control": "no-cache"}
        )

    # A replica within the lag bound may answer (revocations and key changes reach checkpoints
    # that much later, on top of serve_cached_seconds); a bundle to be made or signed anew is
    # the primary's.
    return await context.bounded_read(answer)


def _served(served: service.Served, if_none_match: str | None) -> Response:
    """The whole bundle, or 304 when the checkpoint holds it: as Starlette's ``Response`` would
    give them, with the headers put together from what the version keeps (making a Response
    was a twentieth of a sync, py-spy)."""
    tag = (b"etag", served.etag.encode())
    if etag_matches(if_none_match, served.etag):
        return Ready(304, [tag, _NO_CACHE])
    length = (b"content-length", str(len(served.body)).encode())
    return Ready(200, [tag, _NO_CACHE, length, _JOSE], served.body)


_NO_CACHE = (b"cache-control", b"no-cache")
_JOSE = (b"content-type", MEDIA_TYPE.encode())


async def bundle_directly(request: Direct) -> Response | None:
    """``GET /v1/trust-bundle`` without the router: every checkpoint polls it, and nearly every
    poll is a 304. A missing or malformed key, or a query other than one ``since`` in range, is
    the route's (its 401 or 422, in FastAPI's order)."""
    token = request.bearer_token()
    key = None if token is None else parse_checkpoint_key(token)
    query: bytes = request.scope["query_string"]
    if key is None or token is None:
        return None
    since = None
    if query:
        match = _SINCE.fullmatch(query)
        if match is None or int(match[1]) > MAX_VERSION:
            return None
        since = int(match[1])
    context = request.context
    if not kept_key(context, token):
        await check_key(context, key)
    return await bundle(
        context,
        now=None,
        since=since,
        if_none_match=request.header(b"if-none-match"),
    )


@router.get(
    "/v1/trust-bundle",
    dependencies=[Depends(checked_key)],
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {"schema": {"type": "string"}}}, "description": "A bundle"},
        304: {"description": "The bundle named by If-None-Match is still the latest"},
        **errors(401, 503),
    },
)
@direct(bundle_directly)
async def trust_bundle(
    context: Context,
    now: Now,
    since: Annotated[
        int | None,
        Query(ge=1, le=MAX_VERSION, description="A version held: answer a delta"),
    ] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """The signed checkpoint trust bundle (a JWS; see `docs/CHECKPOINTS.md`): keys with their
    states and windows, unexpired revocations, policies. `ETag` is the version: `If-None-Match`
    answers 304 when nothing changed; `?since=VERSION` answers a delta on top of that version
    (or the full bundle when it cannot). 503 `no_anchor_key` until an anchor key exists."""
    return await bundle(context, now=now, since=since, if_none_match=if_none_match)


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
