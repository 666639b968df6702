"""Every page is served with its security headers, and the libraries it loads come from npm."""

from __future__ import annotations

import httpx
import pytest

from support.servers import Server


@pytest.mark.parametrize("path", ["/", "/scanner", "/console"])
def test_pages_are_served_with_a_strict_policy(web_server: Server, path: str) -> None:
    response = httpx.get(web_server.base + path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/zxing/iife/reader/index.js",
        "/static/vendor/zxing/reader/zxing_reader.wasm",
        "/static/vendor/chart/chart.umd.min.js",
    ],
)
def test_the_libraries_from_npm_are_served(web_server: Server, path: str) -> None:
    assert httpx.get(web_server.base + path).status_code == 200


@pytest.mark.parametrize(
    "path",
    # The dots are percent-encoded: written plainly, the client itself would resolve them and
    # never ask the server. Both files exist one level above the mounted folders.
    ["/static/vendor/zxing/%2E%2E/package.json", "/static/app/%2E%2E/endpoints.py"],
)
def test_nothing_beside_the_mounted_folders_is_reachable(web_server: Server, path: str) -> None:
    assert httpx.URL(web_server.base + path).raw_path.endswith(path.encode())
    assert httpx.get(web_server.base + path).status_code == 404


def test_a_page_opens_in_chromium(web_server: Server, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(web_server.base + "/")
    assert page.title()
    assert errors == []
    page.close()


def test_the_api_reference_draws_itself_from_this_server_alone(
    web_server: Server, browser: object
) -> None:
    response = httpx.get(web_server.base + "/docs")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    page = browser.new_page()  # type: ignore[attr-defined]
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(web_server.base) else elsewhere.append(request.url)
        ),
    )
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(web_server.base + "/docs")
    page.wait_for_selector('[data-path="/v1/auth/otp"]')
    assert page.locator(".opblock").count() > 50
    assert elsewhere == [] and violations == []
    # The old address of the second reference page leads here.
    moved = httpx.get(web_server.base + "/redoc")
    assert (moved.status_code, moved.headers["location"]) == (308, "/docs")
    page.close()


def test_the_api_reference_can_be_turned_off(tmp_path: object) -> None:
    from pathlib import Path

    from support.servers import serve, server_env

    workdir = Path(str(tmp_path))
    env = server_env(
        f"sqlite+aiosqlite:///{workdir / 'off.db'}", workdir / "keys", YUEKANG_API_DOCS="false"
    )
    with serve(env, workdir, "off") as server:
        assert httpx.get(server.base + "/docs").status_code == 404
        assert httpx.get(server.base + "/openapi.json").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/swagger-ui/index.html",
        "/static/vendor/swagger-ui/swagger-initializer.js",
        "/static/vendor/swagger-ui/oauth2-redirect.html",
        "/static/vendor/swagger-ui/package.json",
    ],
)
def test_only_the_files_the_reference_needs_are_served(web_server: Server, path: str) -> None:
    # Swagger UI's own index.html draws a petstore from the internet, with no policy, on the
    # origin that holds the resident's session.
    assert httpx.get(web_server.base + path).status_code == 404
    assert (
        httpx.get(web_server.base + "/static/vendor/swagger-ui/swagger-ui.css").status_code == 200
    )


def test_the_api_reference_has_no_serious_accessibility_finding_of_ours(
    web_server: Server, browser: object
) -> None:
    from web.axe import findings

    context = browser.new_context(bypass_csp=True)  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(web_server.base + "/docs")
    page.wait_for_selector('[data-path="/v1/auth/otp"]')
    page.locator(".opblock-summary-control").first.click()
    page.wait_for_selector(".opblock-body")
    found = [f for f in findings(page) if f["id"] != "nested-interactive"]
    # nested-interactive: Swagger UI puts a button inside each operation's header button, its
    # structure rather than our styling (swagger-api/swagger-ui#9576, open upstream).
    assert found == [], found
    context.close()
