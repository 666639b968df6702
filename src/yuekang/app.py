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
from typing import TYPE_CHECKING, Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message, Receive, Scope, Send

from yuekang import __version__, logs, maintenance, metrics, scrape
from yuekang.appeals import endpoints as appeals
from yuekang.auth import endpoints as auth
from yuekang.auth.sms import SmsSender
from yuekang.checkpoints import endpoints as checkpoints
from yuekang.clock import Clock
from yuekang.config import ResolvedSettings, Settings, load_settings, resolve
from yuekang.context import AppContext
from yuekang.dependants import endpoints as dependants
from yuekang.errortexts import localizing
from yuekang.exceptions import YuekangError, database_error_response
from yuekang.exchange import endpoints as exchange
from yuekang.exchange import keys as exchange_keys
from yuekang.fastlane import DirectTable
from yuekang.feeds import endpoints as feeds
from yuekang.health_codes import endpoints as health_codes
from yuekang.health_status import endpoints as health_status
from yuekang.keyring import endpoints as keyring
from yuekang.keyring import service as keyring_service
from yuekang.middleware import BodySizeLimit
from yuekang.openapi import document_codes
from yuekang.principals import Actor
from yuekang.replicas import ReadYourWrites
from yuekang.residents import endpoints as residents
from yuekang.residents.proofing import IdentityProofing
from yuekang.scans import endpoints as scans
from yuekang.stats import endpoints as stats
from yuekang.tracing import Tracing
from yuekang.trust import endpoints as trust
from yuekang.trust import service as trust_service
from yuekang.web import endpoints as web

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("yuekang")


def create_app(
    settings: Settings | ResolvedSettings | None = None,
    *,
    clock: Clock | None = None,
    sms: SmsSender | None = None,
    proofing: IdentityProofing | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """``span_exporter`` turns tracing on and sends the spans there (tests)."""
    resolved = (
        settings if isinstance(settings, ResolvedSettings) else resolve(settings or Settings())
    )
    traces = Tracing.build(resolved.settings.tracing, exporter=span_exporter)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context = AppContext.build(resolved, clock=clock, sms=sms, proofing=proofing)
        await context.start()
        app.state.context = context
        if resolved.settings.metrics.enabled:
            metrics.watch_pool(context.engine)
        # Everything loaded so far (modules, routes, the context) lives as long as the process:
        # take it out of the cyclic collector's view, so collections triggered by a request's
        # garbage (a 100,000-row feed batch makes a lot) do not rescan it each time.
        gc.freeze()
        if traces is not None:
            traces.instrument(context.engine, context.read_engine, context.refresh_engine)
        with traces.active() if traces is not None else contextlib.nullcontext():
            tasks = [
                asyncio.create_task(
                    maintenance.run_forever(context.sessionmaker, context.settings, context.clock)
                ),
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
            if traces is not None:
                traces.shutdown()

    app = YuekangAPI(
        title="yuekang",
        version=__version__,
        summary="Health codes: signed QR codes, offline checkpoint verification.",
        lifespan=lifespan,
        # Served by the web package from the locked npm copy instead of a CDN (web/endpoints.py).
        docs_url=None,
        redoc_url=None,
        telemetry=(
            # FastAPI's request spans, to our provider (tracing.py).
            {"tracer_provider": traces.provider, "metrics": False, "logs": False}
            if traces is not None
            else None
            if resolved.settings.telemetry
            else {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
        ),
    )
    app.traces = traces
    app.access_log = resolved.settings.access_log
    if resolved.settings.fast_lane:
        # Added first, so it runs inside the body-size limit.
        app.add_middleware(DirectTable, application=app)
    if resolved.settings.database.replica_urls:
        # Read-your-writes for the reads a replica may answer (replicas.py).
        app.add_middleware(ReadYourWrites)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=resolved.settings.max_body_bytes,
        overrides=[("/v1/feeds/", resolved.settings.feeds.max_body_bytes)],
    )
    if resolved.settings.metrics.enabled:
        # Outside the body limit and the fast lane: their answers are counted too.
        app.add_middleware(metrics.HttpMetricsMiddleware, observer=metrics.HttpMetrics())
    install_error_handlers(app)
    app.include_router(auth.router)
    app.include_router(auth.me)
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
    web.mount(app, api_docs=resolved.settings.api_docs)

    if resolved.settings.metrics.enabled:
        # Not in the OpenAPI document: the path is answered only to a scraper (scrape.py).
        # Every method, and the path with a slash, so that none of them answers anything but
        # the 404 of a missing path to someone who may not scrape: a 405 or the router's
        # redirect to /metrics would tell the path exists (hostile review).
        app.add_api_route(
            "/metrics", scrape.scrape, methods=scrape.EVERY_METHOD, include_in_schema=False
        )
        app.add_api_route(
            "/metrics/", scrape.missing, methods=scrape.EVERY_METHOD, include_in_schema=False
        )

    @app.get("/livez", tags=["ops"])
    async def livez() -> dict[str, str]:
        """Liveness, for a load balancer or an orchestrator: the process answers. It asks the
        database nothing: a database outage must not get every process restarted."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the database can be read and written (a write in a transaction rolled
        back) within 3 s. 503 ``database_unavailable`` otherwise: take the process out of
        rotation until it answers 200 again (docs/RELIABILITY.md)."""
        context: AppContext = request.app.state.context
        # The check runs on its own: past the budget the answer goes, and the check finishes
        # (or times out and drops its connection) without anyone waiting for it.
        check = asyncio.ensure_future(ready(context))
        check.add_done_callback(_observed)
        done, _ = await asyncio.wait({check}, timeout=READY_BUDGET_SECONDS)
        if not done:
            return database_error_response(TimeoutError("readiness check"))
        failure = check.exception()
        if failure is not None:
            return database_error_response(failure)
        return JSONResponse({"status": "ok"})

    # The older name, kept for deployments that probe it: readiness.
    app.add_api_route("/healthz", readyz, methods=["GET"], tags=["ops"], include_in_schema=False)

    return app


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
        await trust_service.anchor_key(
            session,
            passphrase=context.secrets.key_passphrase,
            now=now,
            create=True,
            token=context.keyring.token,
        )
        await exchange_keys.ensure(
            session,
            passphrase=context.secrets.key_passphrase,
            now=now,
            token=context.keyring.token,
        )
        if await keyring_service.has_active_key(session):
            return None
        record = await keyring_service.generate(
            session,
            alg=context.settings.keys.default_algorithm,
            passphrase=context.secrets.key_passphrase,
            validity=dt.timedelta(days=context.settings.keys.validity_days),
            actor=Actor("system", "dev-bootstrap"),
            now=now,
            token=context.keyring.token,
        )
        await keyring_service.activate(
            session,
            kid=record.kid,
            publish_lead=dt.timedelta(0),
            actor=Actor("system", "dev-bootstrap"),
            now=now,
        )
        log.warning("development signing key %s generated and activated", record.kid)
    context.keyring.invalidate()
    return record.kid


READY_BUDGET_SECONDS = 3.0


def _observed(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # read, so that a late failure is not reported as never retrieved


async def ready(context: AppContext) -> None:
    """Read and write the database in one transaction, then undo the write."""
    async with context.engine.connect() as connection:
        transaction = await connection.begin()
        try:
            await connection.execute(text("SELECT 1"))
            await connection.execute(
                text(
                    "INSERT INTO rate_limit_counters (bucket, window_start, count) "
                    "VALUES ('readyz', 0, 1)"
                )
            )
        finally:
            await transaction.rollback()


class YuekangAPI(FastAPI):
    """FastAPI with a last word on exceptions. Starlette's outermost middleware answers an
    unhandled exception (with our JSON handler) and then raises it on to the server, which
    closes the client's keep-alive connection: the next request on it is reset. Here it stops:
    answered once, logged once, and the connection lives."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            self.openapi_schema = document_codes(super().openapi())
        return self.openapi_schema

    traces: Tracing | None = None
    access_log = False
    """Write a ``yuekang.access`` line per request (logs.AccessLog)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._answer(scope, receive, send)
            return
        # Every answer names its request -- errors, 413s and the fast lane's included -- and
        # every line logged while it is handled carries the same id (logs.py).
        tracing = self.traces.active() if self.traces is not None else contextlib.nullcontext()
        with logs.handling(scope) as request, tracing:
            send = logs.echoing(send, request)
            if not self.access_log:
                await self._answer(scope, receive, send)
                return
            timer = logs.AccessLog()
            try:
                await self._answer(scope, receive, timer.watching(send))
            finally:
                timer.write(scope)

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # Errors leave in the reader's language (errortexts); nothing else is touched.
        sending = localizing(scope, tracking) if scope["type"] == "http" else tracking
        try:
            await super().__call__(scope, receive, sending)
        except Exception as exc:
            if scope["type"] != "http":
                raise
            if not started:
                await database_error_response(exc)(scope, receive, localizing(scope, send))


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
        # A body of a thousand wrong keys gets the first few named, not an answer twenty times
        # its size.
        fields = [_field(e) for e in errors[:MAX_ERROR_FIELDS]]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        if len(errors) > MAX_ERROR_FIELDS:
            message += f"; and {len(errors) - MAX_ERROR_FIELDS} more"
        return JSONResponse(
            {"error": {"code": "validation_error", "message": message, "fields": fields}},
            status_code=422,
        )

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(asyncpg.PostgresError)
    @app.exception_handler(asyncpg.InterfaceError)
    @app.exception_handler(TimeoutError)
    @app.exception_handler(ConnectionError)
    async def _database(_request: Request, exc: Exception) -> JSONResponse:
        return database_error_response(exc)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers with this and raises the exception on; YuekangAPI stops it there,
        # so that the client's connection stays open and nothing is text/plain.
        return database_error_response(exc)

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


def _field(error: dict[str, Any]) -> dict[str, Any]:
    location = [
        str(part)
        for part in error.get("loc", ())
        if part not in ("body", "query", "path", "header")
    ]
    kind = str(error.get("type", "invalid"))
    reason = {"extra_forbidden": "unknown_field", "missing": "missing"}.get(kind, kind)
    if _left_empty(error.get("input"), kind):
        reason = "missing"  # an empty box is one left empty: not a short name, not a bad date
    field: dict[str, Any] = {
        "field": ".".join(location) or "body",
        "reason": reason,
        "message": str(error.get("msg", "")),
    }
    # The bound a length or range check names, for the message people read (errortexts).
    context = error.get("ctx") or {}
    for bound in _BOUNDS:
        if isinstance(context.get(bound), int | float | str):
            field["limit"] = context[bound]
            break
    return field


def _left_empty(value: Any, kind: str) -> bool:
    empty = value == "" or value == []
    return empty and (kind.endswith("_parsing") or kind in ("string_too_short", "too_short"))


MAX_ERROR_FIELDS = 20
"""Fields named in one validation error, at most."""

_BOUNDS = ("min_length", "max_length", "ge", "gt", "le", "lt")
