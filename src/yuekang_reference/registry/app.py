"""The reference identity registry's web application: ``create_app(settings)``.

Endpoints: ``GET /healthz``; ``POST /v1/checks``, the server side of ``YKP1``
(:mod:`yuekang.codec.proofing`), answering match / no match; ``POST /v1/admin/records`` (admin
token), NDJSON records loaded into the register. No endpoint returns a record.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Final

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from yuekang.clock import Clock, SystemClock, epoch
from yuekang.codec import proofing as wire
from yuekang.middleware import BodySizeLimit
from yuekang_reference.registry.settings import RegistrySettings, resolve_secrets
from yuekang_reference.registry.store import RegistryStore, open_store

log = logging.getLogger("yuekang_reference.registry")

ADMIN_RECORDS_PATH: Final = "/v1/admin/records"
_STATUS: Final = {
    "malformed": 400,
    "unknown_client": 401,
    "bad_signature": 401,
    "stale_date": 401,
    "replayed_nonce": 401,
    "unauthorized": 401,
    "rate_limited": 429,
    "unavailable": 503,
}


def _refuse(
    code: str, message: str, *, status: int | None = None, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        wire.error_body(code, message),
        status_code=status or _STATUS[code],
        media_type="application/json",
        headers=headers,
    )


@dataclass
class _RateLimit:
    """A token bucket per client, in memory: the registry is one process, and a test double."""

    per_second: float
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def wait(self, client: str, now: float) -> float:
        """Take a token for ``client``: 0 when there was one, else the seconds until there is."""
        tokens, then = self.buckets.get(client, (self.per_second, now))
        tokens = min(self.per_second, tokens + (now - then) * self.per_second)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.per_second
        self.buckets[client] = (tokens - 1, now)
        return 0.0


async def _ready(request: Request) -> RegistryStore:
    # Also when driven without a lifespan (a bare ASGI transport): start() is idempotent.
    store: RegistryStore = request.app.state.store
    await store.start()
    return store


Store = Annotated[RegistryStore, Depends(_ready)]


def create_app(settings: RegistrySettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """The application. ``clock`` replaces the system clock (request dates, the rate limit, the
    answers' ``checked_at``). Its store is ``app.state.store``."""
    settings = settings or RegistrySettings()
    clock = clock or SystemClock()
    resolved = resolve_secrets(settings)
    client_secrets = {settings.client_id: resolved.client_secret}
    store = open_store(settings.data_dir, settings.database_url, clock=clock)
    rate_limit = _RateLimit(settings.rate_limit_per_second)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await store.start()
            yield
        finally:
            await store.close()

    app = FastAPI(
        title="Identity registry (reference)",
        summary="A test double of the authority's identity service: match / no match, never a "
        "record.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        overrides=[(ADMIN_RECORDS_PATH, settings.max_load_bytes)],
    )
    _install_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(wire.PATH, tags=["checks"], response_class=Response)
    async def check(request: Request, store: Store) -> Response:
        """Is there a person with this document, name and birth date, and is this phone theirs?
        A signed ``YKP1`` request (see :mod:`yuekang.codec.proofing`), a signed answer."""
        body = await request.body()
        now = epoch(clock.now())
        headers = request.headers
        try:
            client, date, nonce = wire.check_headers(
                client=headers.get(wire.CLIENT_HEADER),
                date=headers.get(wire.DATE_HEADER),
                nonce=headers.get(wire.NONCE_HEADER),
                now=now,
            )
        except wire.ProofingProtocolError as exc:
            return _refuse(exc.code, exc.message)
        except ValueError:
            # A non-ASCII digit such as "²" passes str.isdigit() but not int().
            return _refuse("malformed", f"{wire.DATE_HEADER} must be integer UTC seconds")
        secret = client_secrets.get(client)
        if secret is None:
            return _refuse("unknown_client", "no such client")
        expected = wire.request_signature(
            secret, method="POST", path=wire.PATH, client=client, date=date, nonce=nonce, body=body
        )
        if not wire.signature_matches(expected, headers.get(wire.SIGNATURE_HEADER)):
            return _refuse("bad_signature", "the signature does not match the request")
        # Counted once the client is proven, so that nobody else can spend its allowance.
        wait = rate_limit.wait(client, clock.now().timestamp())
        if wait > 0:
            return _refuse(
                "rate_limited",
                f"more than {settings.rate_limit_per_second:g} checks a second",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        try:
            parsed = wire.parse_check_request(body)
        except wire.ProofingProtocolError as exc:
            return _refuse(exc.code, exc.message)
        except (TypeError, ValueError):
            # Whatever the parser did not foresee (an unhashable doc_type) is still the body's
            # fault, and answered as such rather than as a 500.
            return _refuse("malformed", "the request is not a check")
        answered = await store.answer(parsed, client=client, now=now, nonce=nonce)
        if answered is None:
            return _refuse("replayed_nonce", "this nonce was used already")
        answer = answered.to_json()
        signature = wire.response_signature(secret, status=200, nonce=nonce, body=answer)
        return Response(
            answer,
            media_type="application/json",
            headers={wire.SIGNATURE_HEADER: signature, "Cache-Control": "no-store"},
        )

    @app.post(ADMIN_RECORDS_PATH, tags=["admin"])
    async def load_records(request: Request, store: Store) -> Response:
        """Load NDJSON records (``samples.ndjson`` shows the format) into the register: counts
        of what was written and the lines refused, by number."""
        expected = f"Bearer {resolved.admin_token}".encode()
        given = request.headers.get("authorization")
        if given is None or not hmac.compare_digest(given.encode(), expected):
            return _refuse("unauthorized", "the admin token is missing or wrong")
        report = await store.load((await request.body()).splitlines())
        return JSONResponse(report.to_json())

    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, _exc: RequestValidationError) -> Response:
        return _refuse("malformed", "the request is not well formed")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "malformed")
        return _refuse(code, str(exc.detail), status=exc.status_code)

    @app.exception_handler(SQLAlchemyError)
    async def _database(_request: Request, exc: SQLAlchemyError) -> Response:
        log.error("the registry's database failed: %s", exc)
        return _refuse("unavailable", "the registry cannot answer now")
