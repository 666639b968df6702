"""The checkpoint scanner page in Chromium, as a gate uses it: set up and sync online, then cut the
network, reopen the page (served by its service worker) and judge codes from a camera (a Y4M clip
fed to Chromium's fake capture device) or a picture, queueing scan records that upload when the
network returns."""

from __future__ import annotations

import datetime as dt
import io
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from codec.forge import flip_char
from support.api import registered_over_http
from support.servers import Server, cli
from web.conftest import launch, screenshot
from yuekang.codec.keys import VerificationKey
from yuekang.health_codes.qr import render_png

WIDTH, HEIGHT = 640, 480
SLOW = 15_000  # ms: key import, sync, wasm start-up and decoding on a busy CI machine
PHONE = {"width": 412, "height": 860}
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@dataclass(frozen=True)
class Gate:
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Code:
    text: str
    status: str
    code_id: str


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scanner")


@pytest.fixture(scope="module")
def gate(web_server: Server, workdir: Path) -> Gate:
    key = cli(web_server.env, workdir, "checkpoints", "create", "gate", "--kind", "border")
    anchor = httpx.get(web_server.base + "/v1/trust-anchor").json()
    return Gate(key=key, fingerprint=VerificationKey.from_jwk(anchor).kid)


def _issue(http: httpx.Client, auth: dict[str, str]) -> Code:
    issued = http.post("/v1/codes", headers=auth)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    return Code(body["qr_text"], body["status"], body["code_id"])


@pytest.fixture(scope="module")
def codes(web_server: Server, workdir: Path, gate: Gate) -> dict[str, Code]:
    """A green code with a negative test (allowed at a border), a revoked one, a forged one."""
    env = web_server.env
    lab = cli(env, workdir, "feeds", "clients", "create", "lab", "--kinds", "nat-results")
    with httpx.Client(base_url=web_server.base, timeout=30) as http:
        resident = registered_over_http(http, name="张小三", registry=web_server.registry)
        auth, number = resident.auth, resident.doc_number
        sampled = dt.datetime.now(dt.UTC) - dt.timedelta(hours=20)
        row = {"doc_type": "prc_id", "doc_number": number, "sampled_at": sampled.isoformat(),
               "result": "negative", "lab": "广州金域医学检验中心"}  # fmt: skip
        pushed = http.post(
            "/v1/feeds/nat-results",
            content=json.dumps(row, ensure_ascii=False).encode() + b"\n",
            headers={"Authorization": f"Bearer {lab}", "Content-Type": "application/x-ndjson",
                     "Idempotency-Key": uuid.uuid4().hex},
        )  # fmt: skip
        assert pushed.status_code == 201, pushed.text
        valid = _issue(http, auth)

        other_resident = registered_over_http(http, name="张小三", registry=web_server.registry)
        other, other_number = other_resident.auth, other_resident.doc_number
        revoked = _issue(http, other)
    cli(env, workdir, "status", "set", "--doc-type", "prc_id", "--doc-number", other_number,
        "--status", "red", "--reason", "scanner test")  # fmt: skip

    head, payload, signature = valid.text.removeprefix("YK1:").split(".")
    forged = Code(f"YK1:{head}.{payload}.{flip_char(signature, 10)}", "green", valid.code_id)
    return {"valid": valid, "revoked": revoked, "forged": forged}


def _qr(code: Code) -> Image.Image:
    """The code's QR as the resident app shows it, 5 pixels a module."""
    return Image.open(io.BytesIO(render_png(code.text, code.status, box_size=5))).convert("L")


def _clip(code: Code, path: Path, frames: int = 4) -> Path:
    """A Y4M clip of the QR centred on a white 640x480 frame, for Chromium's fake camera."""
    symbol = _qr(code)
    assert symbol.width <= HEIGHT - 40, "the QR must fit the frame with a margin"
    frame = Image.new("L", (WIDTH, HEIGHT), 255)
    frame.paste(symbol, ((WIDTH - symbol.width) // 2, (HEIGHT - symbol.height) // 2))
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    with path.open("wb") as clip:
        clip.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            clip.write(b"FRAME\n" + frame.tobytes() + chroma + chroma)
    return path


@dataclass
class Scanner:
    page: Any
    context: Any
    errors: list[str]


@pytest.fixture
def scanner_for(
    playwright_instance: Any, chromium_path: str, web_server: Server, workdir: Path
) -> Iterator[Any]:
    """Open the scanner in a browser whose camera films ``code``; one browser per clip."""
    browsers: list[Any] = []

    def open_scanner(code: Code) -> Scanner:
        clip = _clip(code, workdir / f"{uuid.uuid4().hex}.y4m")
        browser = launch(
            playwright_instance,
            chromium_path,
            *FAKE_CAMERA,
            f"--use-file-for-fake-video-capture={clip}",
        )
        browsers.append(browser)
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(web_server.base + "/scanner")
        return Scanner(page, context, errors)

    yield open_scanner
    for browser in browsers:
        browser.close()


def test_the_worker_may_control_the_scanner_and_its_libraries_are_served(
    web_server: Server,
) -> None:
    worker = httpx.get(web_server.base + "/static/app/scanner-sw.js")
    assert worker.status_code == 200
    assert worker.headers["service-worker-allowed"] == "/scanner"
    assert worker.headers["content-type"].startswith("text/javascript")
    for path in ("/static/vendor/cborg/decode.js", "/static/vendor/base45/base45.js"):
        assert httpx.get(web_server.base + path).status_code == 200, path
    # Percent-encoded dots: written plainly, httpx resolves them itself and the server is asked
    # for /static/vendor/package.json, which is missing whatever the mounts allow.
    outside = "/static/vendor/cborg/%2E%2E/package.json"
    assert httpx.URL(web_server.base + outside).raw_path.endswith(outside.encode())
    assert httpx.get(web_server.base + outside).status_code == 404


def _set_up(scanner: Scanner, gate: Gate, *, type_fingerprint: bool = True) -> None:
    page = scanner.page
    expect(page.locator("#setup")).to_be_visible()
    page.fill("#api-key", gate.key)
    page.select_option("#place", "border")
    if type_fingerprint:
        page.fill("#fingerprint", gate.fingerprint)
        page.click("#setup-submit")
    else:
        page.click("#setup-submit")
        expect(page.locator("#anchor-kid")).to_have_text(gate.fingerprint)
        page.click("#confirm-yes")
    expect(page.locator("#trust-state")).to_have_class("pill trust-fresh", timeout=SLOW)
    # The worker has cached the page and its files before the network goes.
    assert page.evaluate("navigator.serviceWorker.ready.then((r) => Boolean(r.active))")


def _offline_reload(scanner: Scanner) -> None:
    scanner.context.set_offline(True)
    scanner.page.reload()
    assert scanner.page.evaluate("Boolean(navigator.serviceWorker.controller)")
    expect(scanner.page.locator("#net-state")).to_have_class("pill offline", timeout=SLOW)


def _verdict(scanner: Scanner, decision: str) -> Any:
    panel = scanner.page.locator("#verdict")
    expect(panel).to_have_attribute("data-decision", decision, timeout=SLOW)
    return panel


def _records(server: Server, code_ids: set[str]) -> list[tuple[str, str, str | None, str]]:
    path = server.env["YUEKANG_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT code_id, verdict, reason, source FROM scan_records").fetchall()
    return [row for row in rows if row[0] in code_ids]


def test_a_valid_code_is_allowed_offline_and_its_scan_uploads_later(
    scanner_for: Any, gate: Gate, codes: dict[str, Code], web_server: Server
) -> None:
    valid = codes["valid"]
    scanner = scanner_for(valid)
    page = scanner.page
    # The wrong fingerprint is refused: nothing is pinned.
    page.fill("#api-key", gate.key)
    page.fill("#fingerprint", "not-the-anchor-" + gate.fingerprint[:7])
    page.click("#setup-submit")
    expect(page.locator("#setup-error")).to_contain_text(gate.fingerprint)
    screenshot(page, "scanner-setup-refused")
    _set_up(scanner, gate)

    _offline_reload(scanner)
    panel = _verdict(scanner, "allow")
    expect(panel.locator("#verdict-name")).to_have_text("张*三")
    expect(panel.locator("#verdict-word")).to_have_text("通行")
    expect(panel).to_contain_text("绿码")
    expect(panel).to_contain_text("粤康码")
    expect(page.locator("#queue-state")).to_have_attribute("data-count", "1")
    screenshot(page, "scanner-allow")
    assert _records(web_server, {valid.code_id}) == []

    scanner.context.set_offline(False)
    expect(page.locator("#queue-state")).to_have_attribute("data-count", "0", timeout=SLOW)
    assert _records(web_server, {valid.code_id}) == [(valid.code_id, "valid", None, "offline")]
    assert scanner.errors == []


def test_a_revoked_code_is_denied_offline(
    scanner_for: Any, gate: Gate, codes: dict[str, Code]
) -> None:
    scanner = scanner_for(codes["revoked"])
    _set_up(scanner, gate, type_fingerprint=False)
    _offline_reload(scanner)

    panel = _verdict(scanner, "deny")
    expect(panel).to_have_attribute("data-reasons", "revoked")
    expect(panel.locator("#verdict-reasons")).to_contain_text("健康码已被撤销")
    expect(scanner.page.locator("#queue-state")).to_have_attribute("data-count", "1")
    screenshot(scanner.page, "scanner-deny-revoked")
    scanner.page.click("#verdict-next")
    expect(scanner.page.locator("#camera-message")).to_have_text("将二维码置于框内")
    screenshot(scanner.page, "scanner-offline-camera")
    assert scanner.errors == []


def test_a_forged_code_is_denied_and_a_picture_can_be_read_instead(
    scanner_for: Any, gate: Gate, codes: dict[str, Code], workdir: Path
) -> None:
    scanner = scanner_for(codes["forged"])
    page = scanner.page
    page.goto(page.url + "?lang=en")
    _set_up(scanner, gate)
    _offline_reload(scanner)

    panel = _verdict(scanner, "deny")
    expect(panel).to_have_attribute("data-reasons", "bad_signature")
    expect(panel.locator("#verdict-word")).to_have_text("DENY")
    expect(panel.locator("#verdict-reasons")).to_contain_text(
        "Invalid signature: forged or altered"
    )
    screenshot(page, "scanner-deny-forged")

    # No camera to hand: a photo of the code does as well.
    page.click("#verdict-next")
    picture = workdir / "revoked.png"
    picture.write_bytes(render_png(codes["revoked"].text, "green"))
    page.set_input_files("#image-input", str(picture))
    expect(panel).to_have_attribute("data-reasons", "revoked", timeout=SLOW)
    expect(page.locator("#queue-state")).to_have_attribute("data-count", "2")
    screenshot(page, "scanner-image-revoked")
    # The forged code still in front of the camera is the same scan: no new record, no new verdict.
    page.wait_for_timeout(1000)
    expect(panel).to_have_attribute("data-reasons", "revoked")
    expect(page.locator("#queue-state")).to_have_attribute("data-count", "2")
    assert scanner.errors == []


def test_without_a_secure_context_the_page_says_it_cannot_verify(
    browser: Any, web_server: Server
) -> None:
    """Served over plain HTTP from a name that is not this machine, WebCrypto is missing: the
    page must say so, not fail silently or pretend to verify."""
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # http://gate.example is not a secure context; its requests are answered by the real server.
    page.route(
        "http://gate.example/**",
        lambda route: route.fulfill(
            response=route.fetch(
                url=route.request.url.replace("http://gate.example", web_server.base)
            )
        ),
    )
    page.goto("http://gate.example/scanner")
    expect(page.locator("#insecure")).to_be_visible()
    expect(page.locator("#insecure")).to_contain_text("HTTPS")
    expect(page.locator("#setup")).to_be_hidden()
    expect(page.locator("#scan")).to_be_hidden()
    screenshot(page, "scanner-insecure")
    assert errors == []
    context.close()


def test_stale_trust_data_warns_and_expired_trust_data_refuses(
    browser: Any, web_server: Server, gate: Gate, codes: dict[str, Code], workdir: Path
) -> None:
    """The bundle's age is judged by the device clock: past its expiry the page warns, past the
    grace period it refuses to judge anything (here without a camera: a picture of a code)."""
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(web_server.base + "/scanner")
    _set_up(Scanner(page, context, errors), gate)
    picture = workdir / "valid.png"
    picture.write_bytes(render_png(codes["valid"].text, "green"))
    panel = page.locator("#verdict")

    page.clock.set_fixed_time(dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    page.reload()
    expect(page.locator("#trust-state")).to_have_class("pill trust-stale")
    expect(page.locator("#trust-warning")).to_have_text("核验数据已过期，请尽快同步")
    page.set_input_files("#image-input", str(picture))
    expect(panel).to_have_attribute("data-reasons", "expired", timeout=SLOW)
    expect(panel.locator("#verdict-reasons li.warning")).to_have_text("核验数据已过期，请尽快同步")
    screenshot(page, "scanner-trust-stale")

    page.clock.set_fixed_time(dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    page.reload()
    expect(page.locator("#trust-state")).to_have_class("pill trust-expired")
    page.set_input_files("#image-input", str(picture))
    expect(panel).to_have_attribute("data-decision", "cannot_verify", timeout=SLOW)
    expect(panel).to_have_attribute("data-reasons", "trust_expired")
    expect(panel.locator("#verdict-word")).to_have_text("无法核验")
    screenshot(page, "scanner-trust-expired")
    assert errors == []
    context.close()
