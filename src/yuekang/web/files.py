"""The pages' files: cached for a year under a build id, compressed once, revalidated elsewhere.

A page is served with its references to ``/static/app/...`` and ``/static/vendor/...`` rewritten
to ``/static/<build>/app/...``: the build id is a hash of every file the pages can load (ours,
and the npm lockfile that fixes the vendored ones), so a deployment that changes any of them
changes every URL, and a browser may keep what it fetched under a build for a year without
asking again (``immutable``). Files under a build are rewritten the same way, so a module's
absolute imports stay within its build and each module is loaded once. The unprefixed paths stay,
revalidated on each use (``no-cache`` with an ``ETag``): for whatever links to them from outside
a page, and for the service workers, whose URL must not change (``*-sw.js`` is never rewritten;
the workers' own lists of files are, so that what they keep offline is what the pages load).

Text and WebAssembly are gzipped once, in memory, the first time a file is asked for, in a
worker thread (level 9 takes about 0.1 s each on zxing's 953 KB WebAssembly, which leaves as
410 KB, and on Swagger UI's 1.8 MB; Chart.js's 210 KB leaves as 71 KB).

Why not a library: ServeStatic (WhiteNoise for ASGI) serves precompressed files it
finds on disk, written by a build step, and immutable caching for files whose names carry a
hash; our pages are plain ES modules importing each other by name, with no build step, and the
npm copy is not ours to write into -- so a build-id prefix and an in-memory cache, about
180 lines, do what that library's manifest would.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from yuekang.codec.reasons import weighted

YEAR = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
_MEDIA = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".map": "application/json",
}
_TEXT = {".js", ".mjs", ".css", ".html", ".svg"}
_COMPRESSIBLE = _TEXT | {".json", ".wasm", ".map"}
_SMALL = 1024  # below this, gzip's header costs more than it saves
_REFERENCE = re.compile(rb"/static/(app|vendor)/(?![\w.-]*-sw\.js)")


def build_id(static: Path, lockfile: Path) -> str:
    """A short hash of every file under ``static`` (names and bytes) and of the npm lockfile."""
    return snapshot(static, lockfile)[0]


def snapshot(static: Path, lockfile: Path) -> tuple[str, dict[str, str]]:
    """The build id, and the digest of each file under ``static`` it covers (by its path
    relative to ``static``): what a file must still hold to be served as part of that build."""
    digest = hashlib.sha256()
    files: dict[str, str] = {}
    for path in sorted(p for p in static.rglob("*") if p.is_file()):
        name, content = path.relative_to(static).as_posix(), path.read_bytes()
        digest.update(name.encode() + b"\0")
        digest.update(content + b"\0")
        files[name] = _digest(content)
    if lockfile.is_file():
        digest.update(lockfile.read_bytes())
    return digest.hexdigest()[:12], files


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def rewrite(content: bytes, build: str) -> bytes:
    """``content`` with its file references under ``build`` (worker scripts left alone)."""
    return _REFERENCE.sub(rb"/static/" + build.encode() + rb"/\1/", content)


@dataclass(frozen=True, slots=True)
class _Prepared:
    body: bytes
    gzipped: bytes | None
    etag: str
    media_type: str
    source: str  # the digest of the file as read, before any rewriting


class Files:
    """An ASGI app for ``/static``: ``app/...`` (``static``), ``vendor/<name>/...`` (the npm
    folders in ``vendor``; for a name in ``only``, just the files listed), each also under
    ``<build>/``. Paths are resolved by Starlette's ``StaticFiles``, which refuses anything
    outside its folder.

    ``covered`` is what the build id was computed from (:func:`snapshot`): a file of ``static``
    that no longer holds those bytes (changed on disk while the process runs) is still served
    under the build, but revalidated rather than immutable, since a browser would otherwise keep
    a file that is not the build's for a year. Vendored files are covered by the lockfile."""

    def __init__(
        self,
        static: Path,
        vendor: Mapping[str, Path],
        build: str,
        only: Mapping[str, frozenset[str]] | None = None,
        covered: Mapping[str, str] | None = None,
    ) -> None:
        self.build = build
        self._covered = dict(covered or {})
        self._static = os.path.realpath(static)
        self._roots: dict[str, StaticFiles] = {
            "app": StaticFiles(directory=static, check_dir=False)
        }
        for name, directory in vendor.items():
            self._roots[f"vendor/{name}"] = StaticFiles(directory=directory, check_dir=False)
        self._only = dict(only or {})
        self._cache: dict[tuple[str, bool, int, int], _Prepared] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._respond(scope)
        await response(scope, receive, send)

    async def _respond(self, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        path = scope["path"][len(scope.get("root_path", "")) :].removeprefix("/static")
        # A file's path never ends in "/": the file system would read "scanner-sw.js/" as the
        # file, and the name checks below as something else.
        if path.endswith("/"):
            raise HTTPException(404)
        parts = path.lstrip("/").split("/", 1)
        prefixed = len(parts) == 2 and parts[0] == self.build
        if prefixed:
            path = "/" + parts[1]
        found = self._find(path)
        if found is None:
            raise HTTPException(404)
        full_path, stat_result, own = found
        # Judged on the file found, not on the path asked for ("x-sw.js/." is that file too).
        if prefixed and Path(full_path).name.endswith("-sw.js"):
            raise HTTPException(404)  # a worker has one URL, outside any build
        key = (full_path, prefixed, stat_result.st_mtime_ns, stat_result.st_size)
        prepared = self._cache.get(key)
        if prepared is None:
            # Read, rewritten and gzipped once, in a worker thread: level 9 on Swagger UI's
            # 1.8 MB takes about 0.1 s, which the event loop must not wait out.
            prepared = await anyio.to_thread.run_sync(self._prepare, full_path, prefixed)
            self._cache[key] = prepared
        headers = Headers(scope=scope)
        # Kept a year only while the file is what the build id was computed from.
        immutable = prefixed and (own is None or self._covered.get(own) == prepared.source)
        response_headers = {
            "Cache-Control": YEAR if immutable else REVALIDATE,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        body, etag = prepared.body, prepared.etag
        if prepared.gzipped is not None and _accepts_gzip(headers.get("accept-encoding")):
            body = prepared.gzipped
            response_headers["Content-Encoding"] = "gzip"
            # Another representation, another validator (RFC 9110, 8.8.3).
            etag = etag[:-1] + '-gz"'
        return respond(
            body,
            etag=etag,
            media_type=prepared.media_type,
            headers=response_headers,
            if_none_match=headers.get("if-none-match"),
            head=scope["method"] == "HEAD",
        )

    def _find(self, path: str) -> tuple[str, os.stat_result, str | None] | None:
        """The file at ``path``, its stat, and -- for one of our own files -- its path relative
        to ``static`` (None for a vendored file)."""
        for prefix, root in self._roots.items():
            if not path.startswith(f"/{prefix}/"):
                continue
            relative = path[len(prefix) + 2 :]
            allowed = self._only.get(prefix.removeprefix("vendor/"))
            if allowed is not None and relative not in allowed:
                return None
            try:
                full_path, stat_result = root.lookup_path(relative)
            except (OSError, ValueError):
                return None  # a NUL in the path, a name longer than the file system allows
            if stat_result is None or not stat.S_ISREG(stat_result.st_mode):
                return None
            # As StaticFiles resolved it (realpath), so as the snapshot named it.
            own = (
                Path(os.path.relpath(full_path, self._static)).as_posix()
                if prefix == "app"
                else None
            )
            return full_path, stat_result, own
        return None

    def _prepare(self, full_path: str, rewritten: bool) -> _Prepared:
        suffix = Path(full_path).suffix.lower()
        body = Path(full_path).read_bytes()
        source = _digest(body)
        if rewritten and suffix in _TEXT:
            body = rewrite(body, self.build)
        gzipped = None
        if suffix in _COMPRESSIBLE and len(body) >= _SMALL:
            gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        media_type = _MEDIA.get(suffix, "application/octet-stream")
        return _Prepared(body, gzipped, entity_tag(body), media_type, source)


def entity_tag(body: bytes) -> str:
    """A strong validator for ``body``."""
    return '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def respond(
    body: bytes,
    *,
    etag: str,
    media_type: str,
    headers: Mapping[str, str],
    if_none_match: str | None,
    head: bool = False,
) -> Response:
    """A file's answer: 304 when the client holds ``etag``, else the body (none for HEAD, with
    its length) -- for the pages, the workers and the files alike."""
    answered = {**headers, "ETag": etag}
    if matches(if_none_match, etag):
        return Response(status_code=304, headers=answered)
    if head:
        answered["Content-Length"] = str(len(body))
        body = b""
    return Response(body, media_type=media_type, headers=answered)


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (or is ``*``): its entity tags one by
    one, weak or strong alike (weak comparison, RFC 9110, 13.1.2)."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def _accepts_gzip(accept_encoding: str | None) -> bool:
    # gzip named decides; else "*" does (RFC 9110, 12.5.3).
    weights = {coding.lower(): quality for coding, quality in weighted(accept_encoding)}
    return weights.get("gzip", weights.get("*", 0.0)) > 0
