"""Routes for the pages and their files."""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from PIL import Image, ImageDraw

from yuekang.web.files import Files, entity_tag, respond, rewrite, snapshot

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
NODE_MODULES = HERE / "assets" / "node_modules"
# Only these folders of node_modules are exposed -- each package's dist or lib, where the files
# the pages load live, whole -- never the rest of the tree (other packages, package.json files,
# sources, tests). Swagger UI's folder is narrower: the two files listed below.
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
SWAGGER_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css"})
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


@functools.cache
def _snapshot() -> tuple[str, dict[str, str]]:
    return snapshot(STATIC, NODE_MODULES.parent / "package-lock.json")


def build() -> str:
    """This deployment's build id (``files.snapshot``), computed once: a file changed on disk
    afterwards is no longer served as immutable (``files.Files``)."""
    return _snapshot()[0]


@functools.cache
def _rewritten(name: str) -> tuple[bytes, str]:
    body = rewrite((STATIC / name).read_bytes(), build())
    return body, entity_tag(body)


def _served(name: str, request: Request, media_type: str, headers: dict[str, str]) -> Response:
    """One of our files as rewritten for this build, revalidated on every use (``no-cache``):
    a page is what names this build's files, and a worker's URL never changes."""
    body, etag = _rewritten(name)
    return respond(
        body,
        etag=etag,
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", **headers},
        if_none_match=request.headers.get("if-none-match"),
        head=request.method == "HEAD",
    )


def _page(name: str, request: Request, csp: str = CSP) -> Response:
    return _served(
        name,
        request,
        "text/html; charset=utf-8",
        {"Content-Security-Policy": csp, "Referrer-Policy": "no-referrer"},
    )


def _route(name: str) -> Callable[[Request], Response]:
    # The file is fixed here: nothing in the request can choose it.
    def serve(request: Request) -> Response:
        return _page(name, request)

    return serve


for _path, _name in PAGES.items():
    router.add_api_route(_path, _route(_name), methods=["GET", "HEAD"], name=f"page:{_name}")


@functools.cache
def _favicon() -> bytes:
    """icon.svg drawn again as an .ico, for what asks /favicon.ico without reading the pages'
    link (bookmarks, tabs of a JSON answer, older browsers)."""
    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((0, 0, 31, 31), radius=7, fill="#12a150")
    squares = [(8, 8, 6), (18, 8, 6), (8, 18, 6)]
    squares += [(x, y, 2) for x, y in ((18, 18), (22, 18), (20, 20), (18, 22), (22, 22))]
    for x, y, size in squares:
        draw.rectangle((x, y, x + size - 1, y + size - 1), fill="#fff")
    out = io.BytesIO()
    image.save(out, format="ICO", sizes=[(16, 16), (32, 32)])
    return out.getvalue()


@router.api_route("/favicon.ico", methods=["GET", "HEAD"], name="favicon")
def favicon() -> Response:
    return Response(
        _favicon(),
        media_type="image/x-icon",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


WORKERS = {
    # The scanner's: controls the scanner page (scope /scanner) and nothing else, so the page
    # opens with no network once it has been loaded.
    "scanner-sw.js": "/scanner",
    # The resident page's, scope /: its own fetch handler answers only for the resident page
    # and what that page loads, so the other pages under / are left to the network (the
    # scanner's narrower scope wins there).
    "resident-sw.js": "/",
}


def _worker(name: str, scope: str) -> Callable[[Request], Response]:
    """A service worker, served from /static/app/: a worker may only control the folder it is
    served from unless ``Service-Worker-Allowed`` widens that to its page's scope. Its URL never
    carries the build id (registration is by URL); its own list of files is rewritten."""

    def serve(request: Request) -> Response:
        return _served(
            name, request, "text/javascript; charset=utf-8", {"Service-Worker-Allowed": scope}
        )

    return serve


for _worker_name, _scope in WORKERS.items():
    router.add_api_route(
        f"/static/app/{_worker_name}", _worker(_worker_name, _scope), methods=["GET", "HEAD"]
    )


docs = APIRouter(include_in_schema=False)


@docs.api_route("/docs", methods=["GET", "HEAD"], name="api-docs")
def api_docs(request: Request) -> Response:
    """The API reference (Swagger UI on /openapi.json), from the locked npm copy."""
    return _page("docs.html", request, DOCS_CSP)


@docs.get("/redoc", name="api-docs-redoc")
def redoc() -> Response:
    # The reference used to be here too, drawn by a script from a CDN; one page serves both.
    return RedirectResponse("/docs", status_code=308)


def mount(app: FastAPI, *, api_docs: bool = True) -> None:
    """The pages, their own files, and the vendored libraries they load; the API reference
    unless ``api_docs`` is off."""
    app.include_router(router)
    vendor = dict(VENDOR)
    only: dict[str, frozenset[str]] = {}
    if api_docs:
        app.include_router(docs)
        vendor["swagger-ui"] = SWAGGER_UI
        only["swagger-ui"] = SWAGGER_FILES
    for directory in vendor.values():
        if not directory.is_dir():
            log.warning(
                "%s is missing: run `npm ci --prefix src/yuekang/web/assets` for the pages",
                directory,
            )
    app.mount(
        "/static", Files(STATIC, vendor, build(), only, covered=_snapshot()[1]), name="static"
    )
