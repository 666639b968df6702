"""The machine's limits for the HTTP hot paths: bare ASGI applications doing only the essential
work of each, served by the same uvicorn with the same worker count as yuekang.

- ``verify``: read the body, parse the JSON, verify the code's ES256 signature with raw
  ``cryptography`` against a key loaded once, answer a small JSON.
- ``issue``: parse the JSON, sign a code's claims with raw ``cryptography``, insert one row with
  raw asyncpg, answer the code.
- ``static``: answer the same bytes every time (what serving a cached QR image, or a trust
  bundle, costs at least; with five bytes, what any answer costs at least).
- ``status``: read one resident's status row by primary key with raw asyncpg and answer it as
  JSON (what a resident's status page costs at least).

    uvicorn loadtests.bare:verify_app --factory    (settings from BARE_* environment variables)
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ECDSA = ec.ECDSA(hashes.SHA256())


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, body: bytes, content_type: bytes = b"application/json") -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send, startup: Callable[[], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


HEADER = _b64encode(b'{"alg":"ES256","kid":"AAAAAAAAAAAAAAAAAAAAAA"}')
"""A header of the same size as ours: the signing input is as long as a real code's."""


def sign_code(private: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """``(code id, QR text)`` of a code of the shape and size of ours, signed with raw
    ``cryptography``: the essential work of issuance, and what the bare verify app checks."""
    now = int(time.time())
    claims = {"iss": "yk:gd", "jti": secrets.token_urlsafe(16), "iat": now,
              "exp": now + 3600, "st": "green", "nm": "张*三"}  # fmt: skip
    payload = _b64encode(json.dumps(claims, ensure_ascii=False, separators=(",", ":")).encode())
    r, s = decode_dss_signature(private.sign(f"{HEADER}.{payload}".encode(), ECDSA))
    signature = _b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return str(claims["jti"]), f"YK1:{HEADER}.{payload}.{signature}"


def verify_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    with open(os.environ["BARE_PUBLIC_PEM"], "rb") as handle:
        public = serialization.load_pem_public_key(handle.read())
    assert isinstance(public, ec.EllipticCurvePublicKey)

    async def startup() -> None:
        return None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, startup)
        if scope["method"] != "POST":
            return await _answer(send, b"{}")  # the benchmark's readiness probe
        text = json.loads(await _body(receive))["qr_text"]
        head, payload, signature = text[4:].split(".")
        raw = _b64decode(signature)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        try:
            public.verify(der, f"{head}.{payload}".encode(), ECDSA)
            valid = True
        except Exception:
            valid = False
        await _answer(send, json.dumps({"verdict": "valid" if valid else "invalid"}).encode())

    return app


def issue_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    import asyncpg  # type: ignore[import-untyped]

    with open(os.environ["BARE_PRIVATE_PEM"], "rb") as handle:
        private = serialization.load_pem_private_key(handle.read(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    pool: list[Any] = []

    async def startup() -> None:
        pool.append(
            await asyncpg.create_pool(os.environ["BARE_DATABASE_URL"], min_size=4, max_size=8)
        )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, startup)
        if scope["method"] != "POST":
            return await _answer(send, b"{}")  # the benchmark's readiness probe
        await _body(receive)
        code_id, text = sign_code(private)
        await pool[0].execute(
            "INSERT INTO bare_codes (code_id, qr_text, issued_at) VALUES ($1, $2, now())",
            code_id,
            text,
        )
        await _answer(send, json.dumps({"code_id": code_id, "qr_text": text}).encode())

    return app


def static_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    with open(os.environ["BARE_FILE"], "rb") as handle:
        content = handle.read()

    async def startup() -> None:
        return None

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, startup)
        await _answer(send, content, b"image/png")

    return app


def status_app() -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    import asyncpg  # type: ignore[import-untyped]

    pool: list[Any] = []
    residents: list[Any] = []
    turn = [0]

    async def startup() -> None:
        pool.append(
            await asyncpg.create_pool(os.environ["BARE_DATABASE_URL"], min_size=4, max_size=8)
        )
        rows = await pool[0].fetch("SELECT resident_id FROM health_status")
        residents.extend(row[0] for row in rows)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await _lifespan(receive, send, startup)
        # Each request another resident, as each phone is.
        turn[0] = (turn[0] + 1) % len(residents)
        row = await pool[0].fetchrow(
            "SELECT * FROM health_status WHERE resident_id = $1", residents[turn[0]]
        )
        await _answer(send, json.dumps(dict(row), default=str).encode())

    return app
