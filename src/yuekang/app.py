"""The web application: ``create_app(settings)``. Nothing is built at import time; the lifespan
builds the engine, key ring and senders and disposes of them on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from yuekang import __version__
from yuekang.appeals import endpoints as appeals
from yuekang.auth import endpoints as auth
from yuekang.auth.sms import SmsSender
from yuekang.checkpoints import endpoints as checkpoints
from yuekang.clock import Clock
from yuekang.config import ResolvedSettings, Settings, load_settings, resolve
from yuekang.context import AppContext
from yuekang.dependants import endpoints as dependants
from yuekang.exceptions import ServiceUnavailable, YuekangError
from yuekang.exchange import endpoints as exchange
from yuekang.exchange import keys as exchange_keys
from yuekang.exchange import service as exchange_service
from yuekang.fastlane import FastLane
from yuekang.feeds import endpoints as feeds
from yuekang.health_codes import endpoints as health_codes
from yuekang.health_status import endpoints as health_status
from yuekang.keyring import endpoints as keyring
from yuekang.keyring import service as keys
from yuekang.middleware import BodySizeLimit
from yuekang.principals import Actor
from yuekang.residents import endpoints as residents
from yuekang.residents.proofing import IdentityProofing
from yuekang.scans import endpoints as scans
from yuekang.scans import service as scan_records
from yuekang.stats import endpoints as stats
from yuekang.trust import endpoints as trust
from yuekang.trust import service as anchors
from yuekang.web import endpoints as web

log = logging.getLogger("yuekang")


def create_app(
    settings: Settings | ResolvedSettings | None = None,
    *,
    clock: Clock | None = None,
    sms: SmsSender | None = None,
    proofing: IdentityProofing | None = None,
) -> FastAPI:
    resolved = (
        settings if isinstance(settings, ResolvedSettings) else resolve(settings or Settings())
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = AppContext.build(resolved, clock=clock, sms=sms, proofing=proofing)
        await context.start()
        app.state.context = context
        # Everything loaded so far (modules, routes, the context) lives as long as the process:
        # take it out of the cyclic collector's view, so collections triggered by a request's
        # garbage (a 100,000-row feed batch makes a lot) do not rescan it each time.
        gc.freeze()
        tasks = [
            asyncio.create_task(_purge_scans_forever(context)),
            asyncio.create_task(context.outbox.run()),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await context.close()

    app = FastAPI(
        title="yuekang",
        version=__version__,
        summary="Health codes: signed QR codes, offline checkpoint verification.",
        lifespan=lifespan,
        telemetry=(
            None
            if resolved.settings.telemetry
            else {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
        ),
    )
    if resolved.settings.fast_lane:
        # Added first, so it runs inside the body-size limit.
        app.add_middleware(FastLane)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=resolved.settings.max_body_bytes,
        overrides=[("/v1/feeds/", resolved.settings.feeds.max_body_bytes)],
    )
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(residents.router)
    app.include_router(residents.admin)
    app.include_router(health_codes.router)
    app.include_router(checkpoints.router)
    app.include_router(keyring.router)
    app.include_router(keyring.admin)
    app.include_router(checkpoints.admin)
    app.include_router(health_status.admin)
    app.include_router(health_status.resident)
    app.include_router(health_status.rules_admin)
    app.include_router(appeals.resident)
    app.include_router(appeals.admin)
    app.include_router(feeds.router)
    app.include_router(trust.router)
    app.include_router(scans.router)
    app.include_router(scans.tracing)
    app.include_router(feeds.admin)
    app.include_router(exchange.router)
    app.include_router(exchange.admin)
    app.include_router(stats.admin)
    app.include_router(dependants.router)
    app.include_router(dependants.admin)
    web.mount(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request) -> dict[str, str]:
        """Liveness and database reachability."""
        context: AppContext = request.app.state.context
        async with context.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app


async def purge_scans(context: AppContext) -> int:
    """Delete scan records past the retention period, and exchange nonces that could no longer
    be replayed anyway; returns how many scan records."""
    now = context.clock.now()
    before = now - dt.timedelta(days=context.settings.scans.retention_days)
    async with context.sessionmaker() as session, session.begin():
        await exchange_service.purge_nonces(session, now=now)
        return await scan_records.purge(session, before=before)


async def _purge_scans_forever(context: AppContext) -> None:
    # Every process runs it; deleting what another process already deleted costs nothing.
    while True:
        await asyncio.sleep(context.settings.scans.purge_interval_seconds)
        try:
            purged = await purge_scans(context)
        except Exception:
            log.exception("purging scan records failed; will try again")
        else:
            if purged:
                log.info("purged %d scan records past retention", purged)


def serve_app() -> FastAPI:
    """The factory ``yuekang serve`` hands to uvicorn: settings from the environment."""
    return create_app(load_settings())


async def bootstrap_dev_key(context: AppContext) -> str | None:
    """In development, make sure a key can sign; returns the new key id, if one was made. The
    first run has no checkpoint that could have synced an earlier key set, so the publish lead
    does not apply. Production never does this: keys are generated and activated by an admin.
    A trust anchor key and exchange keys are made too, if there are none."""
    async with context.sessionmaker() as session, session.begin():
        now = context.clock.now()
        await anchors.anchor_key(
            session, passphrase=context.secrets.key_passphrase, now=now, create=True
        )
        await exchange_keys.ensure(session, passphrase=context.secrets.key_passphrase, now=now)
        if await keys.has_active_key(session):
            return None
        record = await keys.generate(
            session,
            alg=context.settings.keys.default_algorithm,
            passphrase=context.secrets.key_passphrase,
            validity=dt.timedelta(days=context.settings.keys.validity_days),
            actor=Actor("system", "dev-bootstrap"),
            now=now,
        )
        await keys.activate(
            session,
            kid=record.kid,
            publish_lead=dt.timedelta(0),
            actor=Actor("system", "dev-bootstrap"),
            now=now,
        )
        log.warning("development signing key %s generated and activated", record.kid)
    context.keyring.invalidate()
    return record.kid


# Deadlock, serialization failure, lock not available: the transaction was rolled back whole and
# the same request can simply be sent again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def _retryable(exc: BaseException) -> bool:
    original = getattr(exc, "orig", None) or exc
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    # SQLite past its busy timeout.
    return "database is locked" in str(original)


def _send_again(code: str, message: str) -> JSONResponse:
    return ServiceUnavailable(message, code=code, headers={"Retry-After": "1"}).response()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(YuekangError)
    async def _yuekang_error(_request: Request, exc: YuekangError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                {
                    "error": {
                        "code": "malformed_json",
                        "message": "the request body is not valid JSON",
                    }
                },
                status_code=400,
            )
        fields = [_field(e) for e in errors]
        return JSONResponse(
            {
                "error": {
                    "code": "validation_error",
                    "message": "; ".join(f"{f['field']}: {f['message']}" for f in fields),
                    "fields": fields,
                }
            },
            status_code=422,
        )

    @app.exception_handler(DBAPIError)
    @app.exception_handler(asyncpg.PostgresError)
    async def _busy(_request: Request, exc: Exception) -> JSONResponse:
        if getattr(exc, "connection_invalidated", False):
            # Connections are not pinged before use (a round trip on every request): one that
            # died with the database's restart is found here, dropped from the pool, and the
            # request answered so that the client sends it again.
            return _send_again(
                "database_unavailable",
                "the connection to the database was lost; send the request again (with the "
                "same Idempotency-Key where the route takes one)",
            )
        if not _retryable(exc):
            raise exc
        return _send_again(
            "busy_retry",
            "the request met a concurrent one in the database and was undone; nothing was "
            "applied: send it again",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers 400 only when it cannot parse a body (e.g. JSON nested too deeply).
        code = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


def _field(error: dict[str, Any]) -> dict[str, str]:
    location = [
        str(part)
        for part in error.get("loc", ())
        if part not in ("body", "query", "path", "header")
    ]
    kind = str(error.get("type", "invalid"))
    reason = {"extra_forbidden": "unknown_field", "missing": "missing"}.get(kind, kind)
    return {
        "field": ".".join(location) or "body",
        "reason": reason,
        "message": str(error.get("msg", "")),
    }
