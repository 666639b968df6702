"""Routes for the pages and their files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from yuekang.exceptions import NotFound

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
NODE_MODULES = HERE / "assets" / "node_modules"
# Only the files a page loads are exposed from node_modules, never the whole tree.
VENDOR = {
    "zxing": NODE_MODULES / "zxing-wasm" / "dist",
    "chart": NODE_MODULES / "chart.js" / "dist",
    # Macao codes in the scanner: CBOR tokens and base45, both plain ES modules.
    "cborg": NODE_MODULES / "cborg" / "lib",
    "base45": NODE_MODULES / "base45-ts" / "lib",
}
# The API reference at /docs needs two files of swagger-ui-dist; the rest of that folder (its
# own index.html, which draws a petstore from the internet) is not served.
SWAGGER_UI = NODE_MODULES / "swagger-ui-dist"
SWAGGER_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
}
# Scripts only from us; WebAssembly for the QR decoder; images from us, data: and blob: (QR
# images, camera frames); connections only back to us. No inline script anywhere.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# The API reference: Swagger UI sets style attributes as it draws, so its page allows inline
# styles -- never inline scripts -- and data: images for its icons.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)
PAGES = {"/": "resident.html", "/scanner": "scanner.html", "/console": "console.html"}

router = APIRouter(include_in_schema=False)


def _page(name: str, csp: str = CSP) -> Response:
    return FileResponse(
        STATIC / name,
        media_type="text/html",
        headers={
            "Content-Security-Policy": csp,
            "Cache-Control": "no-cache",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _route(name: str) -> Callable[[], Response]:
    # A closure with no parameters: nothing in the request can choose the file.
    def serve() -> Response:
        return _page(name)

    return serve


for _path, _name in PAGES.items():
    router.add_api_route(_path, _route(_name), methods=["GET"], name=f"page:{_name}")

SCANNER_WORKER = "scanner-sw.js"


@router.get(f"/static/app/{SCANNER_WORKER}", name="scanner-worker")
def scanner_worker() -> Response:
    """The scanner's service worker. A worker served from /static/app/ may only control
    /static/app/; this header lets it control the scanner page (scope /scanner) and nothing
    else, so the page opens with no network once it has been loaded."""
    return FileResponse(
        STATIC / SCANNER_WORKER,
        media_type="text/javascript",
        headers={
            "Service-Worker-Allowed": "/scanner",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


RESIDENT_WORKER = "resident-sw.js"


@router.get(f"/static/app/{RESIDENT_WORKER}", name="resident-worker")
def resident_worker() -> Response:
    """The resident page's service worker, allowed to control / (the page) from /static/app/.
    Its own fetch handler answers only for the resident page and what that page loads, so the
    other pages under / are left to the network (the scanner has its own, narrower worker)."""
    return FileResponse(
        STATIC / RESIDENT_WORKER,
        media_type="text/javascript",
        headers={
            "Service-Worker-Allowed": "/",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )


docs = APIRouter(include_in_schema=False)


@docs.get("/docs", name="api-docs")
def api_docs() -> Response:
    """The API reference (Swagger UI on /openapi.json), from the locked npm copy."""
    return _page("docs.html", DOCS_CSP)


def _swagger_file(name: str) -> Callable[[], Response]:
    def serve() -> Response:
        if not (SWAGGER_UI / name).is_file():
            raise NotFound(
                "the API reference's files are missing: run npm ci for the pages",
                code="not_found",
            )
        return FileResponse(
            SWAGGER_UI / name,
            media_type=SWAGGER_FILES[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return serve


for _file in SWAGGER_FILES:
    docs.add_api_route(f"/static/vendor/swagger-ui/{_file}", _swagger_file(_file), methods=["GET"])


@docs.get("/redoc", name="api-docs-redoc")
def redoc() -> Response:
    # The reference used to be here too, drawn by a script from a CDN; one page serves both.
    return RedirectResponse("/docs", status_code=308)


def mount(app: FastAPI, *, api_docs: bool = True) -> None:
    """The pages, their own files, and the vendored libraries they load; the API reference
    unless ``api_docs`` is off."""
    app.include_router(router)
    if api_docs:
        app.include_router(docs)
    app.mount("/static/app", StaticFiles(directory=STATIC), name="static")
    for name, directory in VENDOR.items():
        if directory.is_dir():
            app.mount(f"/static/vendor/{name}", StaticFiles(directory=directory), name=name)
        else:
            log.warning(
                "%s is missing: run `npm ci --prefix src/yuekang/web/assets` for the pages",
                directory,
            )
