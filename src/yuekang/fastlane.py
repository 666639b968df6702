"""The requests a border queue and residents' phones send most, answered before FastAPI's
routing and dependency machinery.

`POST /v1/verify`, `POST /v1/codes` and a cached `GET /v1/codes/{id}.png|svg` do little work of
their own: a signature and a batched database visit (``checkpoints.online``,
``health_codes.batch``), or a dictionary lookup. Measured with py-spy, the router, the dependency
solver and the request and response objects around them cost more than that work. The fast lane
answers only the ordinary success of each: the checkpoint key parses, the JSON body validates,
the key is good; the session token is good and the batch issued the code (no Idempotency-Key);
the session token is good and the image is cached for its owner. Anything else -- a missing
header, a body that does not validate, an unknown key, a cache miss, someone else's code, a
database error -- goes on, body and all, to the FastAPI route, which gives the documented answer.
Both build their answers with the same functions (``checkpoints.endpoints.verdict_json``,
``health_codes.endpoints.issued_response`` and ``image_response``), the API tests run with the lane
on and off, and ``YUEKANG_FAST_LANE=false`` turns it off.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from yuekang import apikeys
from yuekang.auth.service import read_session_token
from yuekang.checkpoints.endpoints import verdict_json
from yuekang.checkpoints.schemas import VerifyRequest
from yuekang.checkpoints.service import KEY_PREFIX
from yuekang.context import AppContext
from yuekang.db import database_unavailable
from yuekang.deps import BAD_CHECKPOINT_KEY
from yuekang.exceptions import Unauthorized, database_error_response
from yuekang.health_codes.endpoints import BATCH_DECLINED, image_response, issued_response
from yuekang.health_codes.service import ImageFormat

_CODES = "/v1/codes/"


class FastLane:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/v1/verify" and scope["method"] == "POST":
                await self._verify(scope, receive, send)
                return
            if path == "/v1/codes" and scope["method"] == "POST":
                await self._issue(scope, receive, send)
                return
            if path.startswith(_CODES) and scope["method"] == "GET":
                await self._image(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _verify(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        key = apikeys.parse(KEY_PREFIX, _bearer(headers))
        media_type = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if key is None or media_type != b"application/json":
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        if body is None:
            return  # the client went away
        try:
            qr_text = VerifyRequest.model_validate_json(body).qr_text
        except ValidationError:  # the route says what is wrong with the body
            await self.app(scope, _replay(body, receive), send)
            return
        language = headers.get(b"accept-language")
        try:
            answer = await verdict_json(
                _context(scope),
                key=key,
                qr_text=qr_text,
                accept_language=language.decode("latin-1") if language is not None else None,
            )
        except Exception as exc:
            if database_unavailable(exc) and not getattr(exc, "connection_invalidated", False):
                # Asking again would wait out the same timeouts: answered now. A pooled
                # connection found dead was dropped, and the next one is worth one more try.
                await database_error_response(exc)(scope, receive, send)
                return
            # Any other database error: the route tries once more, and answers.
            await self.app(scope, _replay(body, receive), send)
            return
        if answer is None:  # the database refused the key: answered as the route would
            refused = Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
            await refused.response()(scope, receive, send)
            return
        await Response(answer, media_type="application/json")(scope, receive, send)

    async def _issue(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        context = _context(scope)
        now = context.clock.now()
        resident_id = (
            None if b"idempotency-key" in headers else await _resident(context, headers, now)
        )
        code = None if resident_id is None else await context.issuance.issue(resident_id, now)
        if code is None:
            if resident_id is not None:
                # Not the ordinary case: the route goes straight to the single path.
                scope[BATCH_DECLINED] = True
            await self.app(scope, receive, send)
            return
        await issued_response(code, str(Request(scope).base_url))(scope, receive, send)

    async def _image(self, scope: Scope, receive: Receive, send: Send) -> None:
        name: str = scope["path"][len(_CODES) :]
        code_id, dot, suffix = name.rpartition(".")
        fmt: ImageFormat
        if suffix == "png":
            fmt = "png"
        elif suffix == "svg":
            fmt = "svg"
        else:
            await self.app(scope, receive, send)
            return
        if not dot or not code_id or "/" in code_id:
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        context = _context(scope)
        now = context.clock.now()
        resident_id = await _resident(context, headers, now)
        entry = context.images.get(code_id, fmt)
        if resident_id is None or entry is None or entry.owner != resident_id:
            await self.app(scope, receive, send)
            return
        etag = headers.get(b"if-none-match")
        response = image_response(
            entry, code_id, fmt, now, etag.decode("latin-1") if etag is not None else None
        )
        await response(scope, receive, send)


def _context(scope: Scope) -> AppContext:
    context: AppContext = scope["app"].state.context
    return context


async def _resident(
    context: AppContext, headers: dict[bytes, bytes], now: dt.datetime
) -> uuid.UUID | None:
    try:
        claims = read_session_token(
            _bearer(headers),
            secret=context.secrets.session_secret,
            issuer=context.settings.issuer,
            now=now,
        )
    except Unauthorized:
        return None
    if await context.ended_sessions.is_ended(claims.session_id, now):
        return None
    return claims.resident_id


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # A repeated header keeps its first value, as the routes read it (Starlette's Headers.get),
    # so that a request means the same thing on both paths.
    return dict(reversed(scope["headers"]))


def _bearer(headers: dict[bytes, bytes]) -> str:
    value = headers.get(b"authorization", b"")
    scheme, _, token = value.partition(b" ")
    return token.decode("latin-1") if scheme.lower() == b"bearer" else ""


async def _body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the FastAPI route, with the body the fast lane already read."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
