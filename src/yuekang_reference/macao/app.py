"""The reference Macao system's web application: ``create_app(settings)``.

Endpoints: ``GET /healthz``; ``GET /v1/exchange/keys`` (the key document); ``POST
/v1/declarations`` and ``GET /v1/persons/{id}/code`` (Macao's own codes); ``POST
/v1/conversions/guangdong`` (Macao -> Guangdong); ``POST /v1/exchange/guangdong/inbound``
(Guangdong -> Macao); ``POST /v1/admin/keys/rotate`` (admin token). There are no resident
accounts: a person id is the only handle on a person, which is enough for a test double and
nothing a real deployment should copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import httpx
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from yuekang.clock import Clock, SystemClock
from yuekang.codec.exchange import REQUEST_PROOF_HEADER
from yuekang.middleware import BodySizeLimit
from yuekang_reference.macao.errors import PartnerError
from yuekang_reference.macao.schemas import CodeOut, ConversionIn, DeclarationIn, HealthOut
from yuekang_reference.macao.service import MacaoService
from yuekang_reference.macao.settings import MacaoSettings, resolve_secrets
from yuekang_reference.macao.to_guangdong import BrowserHandoff

KEY_DOCUMENT_MAX_AGE = 60
log = logging.getLogger("yuekang_reference.macao")
_AUTO_SUBMIT = "document.forms[0].submit();"


async def _ready(request: Request) -> MacaoService:
    # Also when driven without a lifespan (a bare ASGI transport): start() is idempotent.
    service: MacaoService = request.app.state.service
    await service.start()
    return service


Service = Annotated[MacaoService, Depends(_ready)]


def key_lines(document: dict[str, Any]) -> list[str]:
    """One line per key of a key document: its id (the RFC 7638 thumbprint Guangdong compares
    against ``--expect-kid``), purpose and use, and state."""
    return [f"{k['kid']}  {k['purpose']}/{k['use']}  {k['state']}" for k in document["keys"]]


async def stored_key_document(settings: MacaoSettings) -> dict[str, Any]:
    """The key document of the Macao whose data ``settings`` name, read without serving it."""
    engine = create_async_engine(settings.sqlalchemy_url)
    try:
        async with httpx.AsyncClient() as http:
            service = MacaoService(
                settings, resolve_secrets(settings), engine=engine, clock=SystemClock(), http=http
            )
            await service.start()
            return await service.keys.key_document()
    finally:
        await engine.dispose()


def create_app(
    settings: MacaoSettings | None = None,
    *,
    clock: Clock | None = None,
    guangdong_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The application. ``guangdong_transport`` replaces the network for calls to Guangdong
    (tests stand up a fake Guangdong with it); ``clock`` replaces the system clock."""
    settings = settings or MacaoSettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    secrets = resolve_secrets(settings)
    url = settings.sqlalchemy_url
    engine = create_async_engine(
        url, connect_args={"timeout": 30} if url.startswith("sqlite") else {}
    )
    http = httpx.AsyncClient(
        transport=guangdong_transport,
        timeout=settings.http_timeout_seconds,
        follow_redirects=False,
    )
    service = MacaoService(
        settings, secrets, engine=engine, clock=clock or SystemClock(), http=http
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            await service.start()
            # What Macao's operator would send Guangdong out of band: Guangdong adds the partner
            # with each of these as --expect-kid and refuses any other key.
            for line in key_lines(await service.keys.key_document()):
                log.info("key %s", line)
            yield
        finally:
            await http.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Macao health code (reference partner)",
        summary="A test double of Macao's side of the Guangdong-Macao exchange.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    _install_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> HealthOut:
        return HealthOut()

    @app.get("/v1/exchange/keys", tags=["exchange"])
    async def key_document(service: Service) -> JSONResponse:
        """Macao's keys (EXCHANGE.md section 1): code keys, exchange signing and encryption keys,
        retired ones still listed."""
        return JSONResponse(
            await service.keys.key_document(),
            headers={"Cache-Control": f"public, max-age={KEY_DOCUMENT_MAX_AGE}"},
        )

    @app.post("/v1/admin/keys/rotate", tags=["admin"])
    async def rotate(
        service: Service,
        purpose: Annotated[Literal["exchange", "code"], Query()],
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, list[str]]:
        """Retire the active keys of ``purpose`` (they stay listed as retired) and make new ones."""
        expected = f"Bearer {service.admin_token}".encode()
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
            raise PartnerError(401, "unauthorized", "the admin token is missing or wrong")
        return await service.keys.rotate(purpose)

    @app.post("/v1/declarations", status_code=201, tags=["codes"])
    async def declare(service: Service, declaration: DeclarationIn) -> CodeOut:
        """Answer the three questions (and the latest negative test) and get a Macao code."""
        issued = await service.codes.declare(declaration)
        return CodeOut.model_validate(issued.answer())

    @app.get("/v1/persons/{person_id}/code", tags=["codes"])
    async def current_code(service: Service, person_id: uuid.UUID) -> CodeOut:
        issued = await service.codes.current_code(person_id)
        return CodeOut.model_validate(issued.answer())

    @app.post("/v1/conversions/guangdong", tags=["exchange"], response_model=None)
    async def convert(service: Service, request: Request, conversion: ConversionIn) -> Response:
        """Convert the person's Macao code to a Guangdong one, sending the package directly or
        handing it to the person's browser."""
        outcome = await service.to_guangdong.convert(conversion)
        if isinstance(outcome, BrowserHandoff):
            if _wants_json(request):
                return JSONResponse(
                    {
                        "conversion_id": outcome.conversion_id,
                        "action": outcome.action,
                        "package": outcome.package,
                    },
                    headers={"Cache-Control": "no-store"},
                )
            return _handoff_page(outcome)
        status, body = outcome
        return JSONResponse(body, status_code=status)

    @app.post("/v1/exchange/guangdong/inbound", tags=["exchange"])
    async def inbound(service: Service, request: Request) -> JSONResponse:
        """A conversion request from Guangdong: a signed, idempotent server-to-server call."""
        status, answer = await service.from_guangdong.receive(
            body=await request.body(),
            method=request.method,
            target=_request_target(request),
            idempotency_key=request.headers.get("idempotency-key"),
            proof=request.headers.get(REQUEST_PROOF_HEADER),
        )
        return JSONResponse(answer, status_code=status)

    return app


def _request_target(request: Request) -> str:
    """Path and query exactly as on the request line: what a request proof's ``htu`` covers."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string", b"")
    target = raw.split(b"?")[0] + (b"?" + query if query else b"")
    return target.decode("latin-1")


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def _handoff_page(handoff: BrowserHandoff) -> HTMLResponse:
    """A page that posts the package to Guangdong from the person's browser at once; the button
    is for browsers without scripts. The package is personal data in transit: not cached, not
    leaked in a Referer, and the page may post only to Guangdong."""
    origin = httpx.URL(handoff.action)
    port = f":{origin.port}" if origin.port else ""
    script_hash = base64.b64encode(hashlib.sha256(_AUTO_SUBMIT.encode()).digest()).decode()
    page = f"""<!doctype html>
<html lang="zh-Hant">
<head><meta charset="utf-8"><title>轉換為粤康码 / Converter para o 粤康码</title></head>
<body>
<form method="post" action="{html.escape(handoff.action, quote=True)}"
      enctype="application/x-www-form-urlencoded">
<input type="hidden" name="package" value="{html.escape(handoff.package, quote=True)}">
<noscript><button type="submit">繼續 / Continuar / Continue</button></noscript>
</form>
<script>{_AUTO_SUBMIT}</script>
</body>
</html>
"""
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": (
                f"default-src 'none'; script-src 'sha256-{script_hash}'; "
                f"form-action {origin.scheme}://{origin.host}{port}; base-uri 'none'; "
                "frame-ancestors 'none'"
            ),
        },
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PartnerError)
    async def _refusal(_request: Request, exc: PartnerError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "malformed_json", "the request body is not valid JSON")
        fields = [_field(e) for e in errors]
        message = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        return _error(422, "validation_error", message, fields=fields)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return _error(exc.status_code, code, str(exc.detail))


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def _field(error: Any) -> dict[str, str]:
    location = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
    kind = str(error.get("type", "invalid"))
    return {
        "field": ".".join(location) or "body",
        "reason": {"extra_forbidden": "unknown_field", "missing": "missing"}.get(kind, kind),
        "message": str(error.get("msg", "")),
    }
