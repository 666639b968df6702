"""Routes for the pages and their files."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

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
# Scripts only from us; WebAssembly for the QR decoder; images from us, data: and blob: (QR
# images, camera frames); connections only back to us. No inline script anywhere.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; "
    "worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PAGES = {"/": "resident.html", "/scanner": "scanner.html", "/console": "console.html"}

router = APIRouter(include_in_schema=False)


def _page(name: str) -> Response:
    return FileResponse(
        STATIC / name,
        media_type="text/html",
        headers={
            "Content-Security-Policy": CSP,
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


def mount(app: FastAPI) -> None:
    """The pages, their own files, and the vendored libraries they load."""
    app.include_router(router)
    app.mount("/static/app", StaticFiles(directory=STATIC), name="static")
    for name, directory in VENDOR.items():
        if directory.is_dir():
            app.mount(f"/static/vendor/{name}", StaticFiles(directory=directory), name=name)
        else:
            log.warning(
                "%s is missing: run `npm ci --prefix src/yuekang/web/assets` for the pages",
                directory,
            )
