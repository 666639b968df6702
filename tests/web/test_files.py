"""The pages' files travel light: under a build id they are cached for a year, compressed,
and a page and its modules name one build; elsewhere they are revalidated."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import os
import re
from pathlib import Path

import httpx
import pytest

from support.servers import Server
from yuekang.web.files import Files, snapshot

YEAR = "public, max-age=31536000, immutable"


def references(text: str) -> list[str]:
    return re.findall(r'"(/static/[^"]+)"', text)


@pytest.mark.parametrize("path", ["/", "/scanner", "/console", "/docs"])
def test_a_page_names_its_files_under_one_build_that_may_be_kept_a_year(
    web_server: Server, path: str
) -> None:
    page = httpx.get(web_server.base + path)
    assert page.headers["cache-control"] == "no-cache"
    found = references(page.text)
    assert found, "the page loads files"
    builds = {ref.split("/")[2] for ref in found}
    assert len(builds) == 1 and re.fullmatch(r"[0-9a-f]{12}", builds.pop())
    for ref in found:
        answer = httpx.get(web_server.base + ref)
        assert answer.status_code == 200, ref
        assert answer.headers["cache-control"] == YEAR, ref
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_revisited_page_is_not_sent_again(web_server: Server) -> None:
    first = httpx.get(web_server.base + "/")
    again = httpx.get(web_server.base + "/", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_modules_import_from_their_own_build(web_server: Server) -> None:
    page = httpx.get(web_server.base + "/scanner").text
    [script] = [ref for ref in references(page) if ref.endswith("/scanner.js")]
    build = script.split("/")[2]
    module = httpx.get(web_server.base + script).text
    imports = re.findall(r'from "(/static/[^"]+)"', module)
    assert imports and all(ref.startswith(f"/static/{build}/") for ref in imports)
    # The worker's URL is the one thing that must not move: it is registered by name.
    assert '"/static/app/scanner-sw.js"' in module


@pytest.mark.parametrize(
    ("file", "at_most"),
    [
        ("vendor/zxing/reader/zxing_reader.wasm", 0.5),
        ("vendor/chart/chart.umd.min.js", 0.45),
        ("app/scanner.js", 0.4),
    ],
)
def test_big_files_leave_compressed(web_server: Server, file: str, at_most: float) -> None:
    page = httpx.get(web_server.base + "/scanner").text
    build = references(page)[0].split("/")[2]
    url = f"{web_server.base}/static/{build}/{file}"
    plain = httpx.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    with httpx.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as packed:
        raw = b"".join(packed.iter_raw())
        assert packed.headers["content-encoding"] == "gzip"
        assert "Accept-Encoding" in packed.headers["vary"]
    assert gzip.decompress(raw) == plain.content
    assert len(raw) <= at_most * len(plain.content), (len(raw), len(plain.content))


def test_files_outside_a_build_are_revalidated(web_server: Server) -> None:
    plain = httpx.get(web_server.base + "/static/app/common.js")
    assert plain.headers["cache-control"] == "no-cache"
    again = httpx.get(
        web_server.base + "/static/app/common.js",
        headers={"If-None-Match": plain.headers["etag"]},
    )
    assert again.status_code == 304


def test_the_service_worker_keeps_what_the_page_loads(web_server: Server) -> None:
    worker = httpx.get(web_server.base + "/static/app/scanner-sw.js")
    assert worker.headers["service-worker-allowed"] == "/scanner"
    assert worker.headers["cache-control"] == "no-cache"
    page = httpx.get(web_server.base + "/scanner").text
    for ref in references(page):
        assert f'"{ref}"' in worker.text, ref


@pytest.mark.parametrize("path", ["/static/app/nothing.js", "/static/0123456789ab/app/x.css"])
def test_a_missing_file_is_a_json_404(web_server: Server, path: str) -> None:
    answer = httpx.get(web_server.base + path, headers={"Accept-Language": "en"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_favicon_is_there(web_server: Server) -> None:
    icon = httpx.get(web_server.base + "/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # the ICO signature


@pytest.mark.parametrize("path", ["/static/app/%00common.js", "/static/app/" + "a" * 8000 + ".js"])
def test_a_path_the_file_system_cannot_hold_is_a_404(web_server: Server, path: str) -> None:
    # Found by a hostile review: a NUL, or a name over the file system's limit, was a 500 with a
    # stack trace in the log.
    assert httpx.get(web_server.base + path).status_code == 404


def test_validators_are_compared_as_entity_tags(web_server: Server) -> None:
    plain = httpx.get(web_server.base + "/static/app/common.js", headers={"Accept-Encoding": ""})
    etag = plain.headers["etag"]
    url = web_server.base + "/static/app/common.js"
    none = {"Accept-Encoding": ""}
    assert httpx.get(url, headers={**none, "If-None-Match": etag}).status_code == 304
    assert httpx.get(url, headers={**none, "If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert httpx.get(url, headers={**none, "If-None-Match": "*"}).status_code == 304
    # Not a substring match: another tag that contains this one is another tag.
    assert httpx.get(url, headers={**none, "If-None-Match": f"xx{etag}"}).status_code == 200
    # The gzipped file is another representation, with a validator of its own.
    packed = httpx.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["etag"] != etag
    assert (
        httpx.get(url, headers={"Accept-Encoding": "gzip;q=0"}).headers.get("content-encoding")
        is None
    )


@pytest.mark.parametrize("path", ["/", "/scanner", "/console", "/docs", "/favicon.ico"])
def test_pages_answer_head_as_probes_ask(web_server: Server, path: str) -> None:
    assert httpx.head(web_server.base + path).status_code == 200


def test_a_worker_has_one_url(web_server: Server) -> None:
    page = httpx.get(web_server.base + "/scanner").text
    build = references(page)[0].split("/")[2]
    assert httpx.get(f"{web_server.base}/static/{build}/app/scanner-sw.js").status_code == 404
    worker = httpx.get(web_server.base + "/static/app/resident-sw.js")
    assert worker.headers["service-worker-allowed"] == "/"
    again = httpx.get(
        web_server.base + "/static/app/resident-sw.js",
        headers={"If-None-Match": worker.headers["etag"]},
    )
    assert again.status_code == 304
    head = httpx.head(web_server.base + "/static/app/resident-sw.js")
    assert head.headers["etag"] == worker.headers["etag"]
    assert head.headers["service-worker-allowed"] == "/"


@pytest.mark.parametrize("file", ["scanner-sw.js/", "common.js/"])
def test_a_path_ending_in_a_slash_is_no_file(web_server: Server, file: str) -> None:
    # Found by a review: "scanner-sw.js/" under a build was served (the file system reads it as
    # the file), with the worker's one URL thereby doubled, and cached for a year.
    page = httpx.get(web_server.base + "/scanner").text
    build = references(page)[0].split("/")[2]
    for path in (f"/static/{build}/app/{file}", f"/static/app/{file}"):
        answer = httpx.get(web_server.base + path, headers={"Accept-Language": "en"})
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


def test_a_file_changed_after_the_build_id_is_not_kept_for_a_year(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "page.js").write_text("export const colour = 'green';\n")
    (static / "other.css").write_text("body { color: black; }\n")
    build, covered = snapshot(static, tmp_path / "package-lock.json")
    files = Files(static, {}, build, covered=covered)

    def get(path: str) -> httpx.Response:
        async def asked() -> httpx.Response:
            transport = httpx.ASGITransport(app=files)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get(path)

        # A thread of its own: Playwright's sync API leaves an event loop running in this one
        # for the rest of the session, and neither anyio.run nor the suite's loop may start.
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            return thread.submit(asyncio.run, asked()).result()

    assert (get(f"/static/{build}/app/page.js")).headers["cache-control"] == YEAR
    # Edited on disk while the server runs: not the build's any more.
    (static / "page.js").write_text("export const colour = 'red';\n")
    os.utime(static / "page.js", ns=(1, 1))
    changed = get(f"/static/{build}/app/page.js")
    assert "red" in changed.text
    assert changed.headers["cache-control"] == "no-cache"
    # The files that did not change keep their year.
    assert (get(f"/static/{build}/app/other.css")).headers["cache-control"] == YEAR
