"""ASGI middleware that must run before any parsing."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(BaseException):
    """Raised from ``receive``. A BaseException on purpose: frameworks turn any ``Exception`` met
    while reading a body into their own 400, and this must reach the middleware as a 413."""


def _message(limit: int) -> str:
    return f"request body over {limit} bytes"


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app reads them.

    A declared ``Content-Length`` over the limit is refused without reading a byte; a chunked body
    is counted as it streams and cut off the moment it passes the limit.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int, overrides: Sequence[tuple[str, int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = tuple(overrides)
        """``(path prefix, limit)`` pairs: routes that take bulk bodies (feed batches)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = next((n for prefix, n in self.overrides if path.startswith(prefix)), self.max_bytes)
        has_body = False
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                if not value.isdigit():
                    await self._refuse(send, 400, "bad_request", "invalid Content-Length")
                    return
                if int(value) > limit:
                    await self._refuse(send, 413, "payload_too_large", _message(limit))
                    return
                has_body = True
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body and scope.get("http_version") in ("1.0", "1.1"):
            # HTTP/1 has a body only with one of the two (RFC 9112, 6.3): nothing to count.
            # (HTTP/2 frames a body without either.) Most requests are GETs, and the wrappers
            # below were a twentieth of a sync.
            await self.app(scope, receive, send)
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._refuse(send, 413, "payload_too_large", _message(limit))

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        body = _error(code, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
