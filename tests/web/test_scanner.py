"""The checkpoint scanner page in Chromium, as a gate uses it: set up and sync online, then cut the
network, reopen the page (served by its service worker) and judge codes from a camera (a Y4M clip
fed to Chromium's fake capture device) or a picture, queueing scan records that upload when the
network returns; and check people without a phone by their ID document (查证件), online only.
The kind of place is the checkpoint's registration on the server, never the device's choice; the
decision fills a tablet's screen with the reason that decided it; every state passes axe."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from codec.forge import flip_char
from support.api import Resident, random_prc_id, registered_over_http
from support.servers import Server, cli
from web.axe import assert_clean
from web.conftest import launch, screenshot
from yuekang.codec.keys import VerificationKey, b64url_decode
from yuekang.health_codes.qr import render_png

WIDTH, HEIGHT = 640, 480
# The page's own copy of the store, under its build (web/files.py): offline, the service worker
# has that URL and no other.
STORE = (
    """document.querySelector('script[type=module][src$="/scanner.js"]')"""
    """.src.replace(/scanner[.]js$/, "scanner-store.js")"""
)
SLOW = 15_000  # ms: key import, sync, wasm start-up and decoding on a busy CI machine
PHONE = {"width": 412, "height": 860}
TABLETS = ({"width": 1024, "height": 768}, {"width": 800, "height": 1280})
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
    doc_number: str | None = None
    """The holder's document (a PRC ID), for the document checks."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scanner")


def _checkpoint(server: Server, workdir: Path, name: str, kind: str) -> Gate:
    key = cli(server.env, workdir, "checkpoints", "create", name, "--kind", kind)
    anchor = httpx.get(server.base + "/v1/trust-anchor").json()
    return Gate(key=key, fingerprint=VerificationKey.from_jwk(anchor).kid)


@pytest.fixture(scope="module")
def gate(web_server: Server, workdir: Path) -> Gate:
    """A checkpoint registered as a border post (口岸)."""
    return _checkpoint(web_server, workdir, "罗湖口岸", "border")


@pytest.fixture(scope="module")
def venue(web_server: Server, workdir: Path) -> Gate:
    """A checkpoint registered as a venue (场所)."""
    return _checkpoint(web_server, workdir, "天河城商场", "venue")


def _issue(http: httpx.Client, auth: dict[str, str], doc_number: str | None = None) -> Code:
    issued = http.post("/v1/codes", headers=auth)
    assert issued.status_code == 201, issued.text
    body = issued.json()
    return Code(body["qr_text"], body["status"], body["code_id"], doc_number)


def _registered(http: httpx.Client, registry: Path) -> Resident:
    """``registered_over_http`` in a thread of its own: it fills the registry with
    ``asyncio.run()``, which refuses to start where Playwright's sync API already runs an event
    loop -- this thread, once any test of the session has started a browser."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(registered_over_http, http, name="张小三", registry=registry).result()


@pytest.fixture(scope="module")
def codes(web_server: Server, workdir: Path, gate: Gate) -> dict[str, Code]:
    """A green code with a negative test (allowed at a border), a green one without a test
    (denied at a border, allowed at a venue), a revoked one, a forged one. Their holders'
    identities were proved against the registry (the codes say ``proofed``); each code carries
    its holder's document number."""
    env = web_server.env
    lab = cli(env, workdir, "feeds", "clients", "create", "lab", "--kinds", "nat-results")
    with httpx.Client(base_url=web_server.base, timeout=30) as http:
        resident = _registered(http, web_server.registry)
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
        valid = _issue(http, auth, number)

        other_resident = _registered(http, web_server.registry)
        other, other_number = other_resident.auth, other_resident.doc_number
        assert other_number is not None
        revoked = _issue(http, other, other_number)

        untested_resident = _registered(http, web_server.registry)
        untested = _issue(http, untested_resident.auth, untested_resident.doc_number)
    cli(env, workdir, "status", "set", "--doc-type", "prc_id", "--doc-number", other_number,
        "--status", "red", "--reason", "scanner test")  # fmt: skip

    head, payload, signature = valid.text.removeprefix("YK1:").split(".")
    forged = Code(f"YK1:{head}.{payload}.{flip_char(signature, 10)}", "green", valid.code_id)
    return {"valid": valid, "revoked": revoked, "forged": forged, "untested": untested}


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
        browser: Any = launch(
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


def _set_up(
    scanner: Scanner, gate: Gate, *, type_fingerprint: bool = True, place: str = "口岸"
) -> None:
    """Key and anchor only: the kind of place (``place``, as the status bar shows it in
    zh-Hans) comes from the checkpoint's registration on the server."""
    page = scanner.page
    expect(page.locator("#setup")).to_be_visible()
    page.fill("#api-key", gate.key)
    if type_fingerprint:
        page.fill("#fingerprint", gate.fingerprint)
        page.click("#setup-submit")
    else:
        page.click("#setup-submit")
        expect(page.locator("#anchor-kid")).to_have_text(gate.fingerprint)
        page.click("#confirm-yes")
    expect(page.locator("#trust-state")).to_have_class("pill trust-fresh", timeout=SLOW)
    if page.evaluate("document.documentElement.lang") == "zh-Hans":
        expect(page.locator("#place-state")).to_have_text(place)
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


def _records(server: Server, code_ids: set[str]) -> list[tuple[str, ...]]:
    path = server.env["YUEKANG_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT code_id, verdict, reason, source, decision FROM scan_records"
        ).fetchall()
    return [row for row in rows if row[0] in code_ids]


def test_a_valid_code_is_allowed_offline_and_its_scan_uploads_later(
    scanner_for: Any, gate: Gate, codes: dict[str, Code], web_server: Server
) -> None:
    valid = codes["valid"]
    scanner = scanner_for(valid)
    page = scanner.page
    # A key the server does not know is refused on the form: nothing is saved or pinned.
    page.fill("#api-key", gate.key[:-6] + "wrong0")
    page.click("#setup-submit")
    expect(page.locator("#setup-error")).to_contain_text("服务器不认识此接入密钥")
    expect(page.locator("#setup")).to_be_visible()
    assert page.evaluate("() => document.querySelector('#api-key').getAttribute('aria-invalid')")
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
    # How the holder's identity was proved, from the code's ia claim.
    expect(panel).to_have_attribute("data-assurance", "proofed")
    expect(panel.locator("#verdict-facts")).to_contain_text("身份核验")
    expect(panel.locator("#verdict-facts .assurance")).to_have_text("已实名核验")
    expect(panel.locator("#verdict-reason")).to_have_text("绿码，近期核酸阴性")
    expect(page.locator("#queue-state")).to_have_attribute("data-count", "1")
    screenshot(page, "scanner-allow")
    assert _records(web_server, {valid.code_id}) == []

    scanner.context.set_offline(False)
    expect(page.locator("#queue-state")).to_have_attribute("data-count", "0", timeout=SLOW)
    # The upload says what the gate decided, besides the verdict.
    assert _records(web_server, {valid.code_id}) == [
        (valid.code_id, "valid", None, "offline", "allow")
    ]
    assert scanner.errors == []


def test_a_revoked_code_is_denied_offline(
    scanner_for: Any, gate: Gate, codes: dict[str, Code]
) -> None:
    scanner = scanner_for(codes["revoked"])
    _set_up(scanner, gate, type_fingerprint=False)
    _offline_reload(scanner)

    panel = _verdict(scanner, "deny")
    expect(panel).to_have_attribute("data-reasons", "revoked")
    expect(panel.locator("#verdict-reason")).to_have_text("健康码已被撤销")
    expect(panel.locator("#verdict-status")).to_have_class("status status-void")
    # A code that does not count says nothing of its holder's identity.
    expect(panel.locator("#verdict-facts .assurance")).to_have_count(0)
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
    assert page.title() == "Health code check"  # the tab follows the language (<title data-t>)
    _set_up(scanner, gate)
    _offline_reload(scanner)

    panel = _verdict(scanner, "deny")
    expect(panel).to_have_attribute("data-reasons", "bad_signature")
    expect(panel.locator("#verdict-word")).to_have_text("DENY")
    expect(panel.locator("#verdict-reason")).to_have_text("Invalid signature: forged or altered")
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
    grace period it refuses to judge anything (here without a camera: a picture of a code).
    Both warnings pass axe (the context bypasses the CSP for it)."""
    context = browser.new_context(viewport=PHONE, bypass_csp=True)
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
    assert_clean(page, "stale trust data, a verdict")
    page.click("#verdict-next")
    assert_clean(page, "stale trust data, the warning")

    page.clock.set_fixed_time(dt.datetime.now(dt.UTC) + dt.timedelta(days=5))
    page.reload()
    expect(page.locator("#trust-state")).to_have_class("pill trust-expired")
    page.set_input_files("#image-input", str(picture))
    expect(panel).to_have_attribute("data-decision", "cannot_verify", timeout=SLOW)
    expect(panel).to_have_attribute("data-reasons", "trust_expired")
    expect(panel.locator("#verdict-word")).to_have_text("无法核验")
    screenshot(page, "scanner-trust-expired")
    assert_clean(page, "expired trust data: cannot verify")
    assert errors == []
    context.close()


# Everything the page keeps: local and session storage, and every IndexedDB store of its own.
STORED = """
async () => {
  const dump = { local: { ...localStorage }, session: { ...sessionStorage }, idb: {} };
  for (const { name } of await indexedDB.databases()) {
    const db = await new Promise((ok, fail) => {
      const request = indexedDB.open(name);
      request.onsuccess = () => ok(request.result);
      request.onerror = () => fail(request.error);
    });
    for (const store of db.objectStoreNames) {
      const values = await new Promise((ok, fail) => {
        const request = db.transaction(store).objectStore(store).getAll();
        request.onsuccess = () => ok(request.result);
        request.onerror = () => fail(request.error);
      });
      dump.idb[`${name}/${store}`] = values;
    }
    db.close();
  }
  return JSON.stringify(dump);
}
"""


def _check_document(page: Any, number: str, doc_type: str = "prc_id") -> Any:
    """Type ``number`` and ask; the request the page sent."""
    page.select_option("#doc-type", doc_type)
    page.fill("#doc-number", number)
    with page.expect_request(
        lambda r: r.url.endswith("/v1/verify/document") and r.method == "POST"
    ) as sent:
        page.click("#document-submit")
    return sent.value


def test_a_document_is_checked_online_and_never_kept(
    playwright_instance: Any,
    chromium_path: str,
    web_server: Server,
    gate: Gate,
    codes: dict[str, Code],
    workdir: Path,
) -> None:
    """刷证核验 for someone without a phone: the server's verdict in the scan's display, the
    number cleared at once and kept nowhere; a typo is the field's error; without the network
    the mode says so and queues nothing; scanning codes goes on afterwards."""
    number = codes["valid"].doc_number
    assert number is not None
    # A camera that films nothing readable: the scan mode's camera is live, and quiet.
    browser: Any = launch(playwright_instance, chromium_path, *FAKE_CAMERA)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: console.append(message.text))
    page.goto(web_server.base + "/scanner")
    _set_up(Scanner(page, context, errors), gate)
    expect(page.locator("#viewfinder")).to_have_class("viewfinder live", timeout=SLOW)

    # The switch is in sight; the document mode rests the camera and puts the cursor in the field.
    expect(page.locator("#mode-scan")).to_have_attribute("aria-pressed", "true")
    page.click("#mode-document")
    expect(page.locator("#mode-document")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#scan")).to_be_hidden()
    expect(page.locator("#document")).to_be_visible()
    expect(page.locator("#doc-number")).to_be_focused()
    expect(page.locator("#doc-number")).to_have_attribute("autocomplete", "off")
    expect(page.locator("label[for=doc-number]")).to_have_text("证件号码")
    expect(page.locator("#doc-type option")).to_have_text(
        ["居民身份证", "港澳台居民居住证", "港澳居民来往内地通行证", "澳门居民身份证",
         "香港身份证", "护照"]
    )  # fmt: skip
    assert not page.evaluate("Boolean(document.querySelector('#camera').srcObject)")
    page.fill("#doc-number", "4401")
    screenshot(page, "scanner-document")

    # A proofed resident's document: the verdict a scan of their code gives.
    request = _check_document(page, number.lower())
    assert request.headers["accept-language"] == "zh-Hans"
    assert request.headers["authorization"] == f"Bearer {gate.key}"
    panel = _verdict(Scanner(page, context, errors), "allow")
    expect(page.locator("#doc-number")).to_have_value("")
    expect(panel).to_have_attribute("data-origin", "document_check")
    expect(panel.locator("#verdict-name")).to_have_text("张*三")
    expect(panel.locator("#verdict-word")).to_have_text("通行")
    expect(panel).to_contain_text("绿码")
    expect(panel).to_contain_text("刷证核验（在线）")
    expect(panel.locator("#verdict-facts .assurance")).to_have_text("已实名核验")
    expect(panel.locator("#verdict-trust")).to_contain_text("在线查询时间")
    expect(page.locator("#verdict-next")).to_be_focused()
    expect(page.locator("#verdict-next")).to_have_text("下一位")
    screenshot(page, "scanner-document-allow")
    page.click("#verdict-next")
    expect(panel).to_be_hidden()
    expect(page.locator("#doc-number")).to_be_focused()

    # Nobody's document (unknown, unbound or unproved alike): no valid code.
    _check_document(page, random_prc_id()[0])
    expect(panel).to_have_attribute("data-reasons", "no_valid_code", timeout=SLOW)
    expect(panel).to_have_attribute("data-decision", "deny")
    expect(panel.locator("#verdict-reason")).to_have_text("该证件无有效健康码")
    expect(panel.locator("#verdict-name")).to_be_hidden()
    screenshot(page, "scanner-document-no-code")
    page.click("#verdict-next")

    # A typing mistake (the check digit): the field says so, and nobody is looked up.
    typo = number[:-1] + ("0" if number[-1] != "0" else "1")
    _check_document(page, typo)
    expect(page.locator("#doc-number-error")).to_have_text("证件号码格式或校验位有误")
    expect(page.locator("#doc-number")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#doc-number")).to_have_value("")
    expect(page.locator("#doc-number")).to_be_focused()
    expect(panel).to_be_hidden()
    screenshot(page, "scanner-document-typo")

    # Too many checks from this gate (the server's answer, made here).
    page.route(
        "**/v1/verify/document",
        lambda route: route.fulfill(
            status=429,
            json={"error": {"code": "rate_limited", "message": "slow down"}},
            headers={"Retry-After": "30"},
        ),
    )
    _check_document(page, number)
    expect(page.locator("#document-error")).to_have_text("查询过于频繁，请稍后再试")
    expect(page.locator("#doc-number-error")).to_have_text("")
    page.unroute("**/v1/verify/document")

    # A family member's code at the border (an answer made here): an officer checks the card.
    answer: dict[str, Any] = {
        "verdict": "valid", "status": "green", "reasons": [], "warnings": [], "code_id": None,
        "issuer": "yk:gd", "kid": None, "masked_name": "李*四", "issued_at": None,
        "expires_at": None, "origin": "document_check", "source": None,
        "assurance": "dependant", "decision": "manual_check", "decision_reason": "identity_check",
    }  # fmt: skip
    page.route("**/v1/verify/document", lambda route: route.fulfill(json=answer))
    _check_document(page, number)
    panel = _verdict(Scanner(page, context, errors), "manual_check")
    expect(panel.locator("#verdict-reason")).to_contain_text("请核对证件")
    expect(panel.locator("#verdict-facts .assurance")).to_have_text("亲友代办")
    screenshot(page, "scanner-document-identity-check")
    page.click("#verdict-next")
    page.unroute("**/v1/verify/document")

    # A network that leads nowhere (navigator.onLine notwithstanding): the same as none.
    page.route("**/v1/verify/document", lambda route: route.abort())
    _check_document(page, number)
    expect(page.locator("#document-offline")).to_be_visible()
    expect(page.locator("#doc-number")).to_have_value("")
    page.unroute("**/v1/verify/document")

    # No network: this mode cannot work, says so, and keeps nothing for later.
    queued = page.locator("#queue-state").get_attribute("data-count")
    context.set_offline(True)
    expect(page.locator("#document-offline")).to_be_visible()
    page.select_option("#doc-type", "prc_id")
    page.fill("#doc-number", number)
    page.click("#document-submit")
    expect(page.locator("#document-offline")).to_have_text(
        "查证件需要联网。扫码核验在离线时仍可使用。"
    )
    expect(page.locator("#document-error")).to_have_text("")
    expect(page.locator("#doc-number")).to_have_value("")
    expect(page.locator("#queue-state")).to_have_attribute("data-count", queued or "0")
    screenshot(page, "scanner-document-offline")

    # The number was never kept, stored or logged.
    stored = page.evaluate(STORED)
    assert number not in stored and number.lower() not in stored
    assert "yk-scanner/queue" in stored
    assert not any(number in line or number.lower() in line for line in console)

    # Back to the codes, still offline: the camera runs again, and a code is judged here.
    page.click("#mode-scan")
    expect(page.locator("#document")).to_be_hidden()
    expect(page.locator("#viewfinder")).to_have_class("viewfinder live", timeout=SLOW)
    expect(page.locator("#camera-message")).to_have_text("将二维码置于框内")
    picture = workdir / "document-mode-valid.png"
    picture.write_bytes(render_png(codes["valid"].text, "green"))
    page.set_input_files("#image-input", str(picture))
    panel = _verdict(Scanner(page, context, errors), "allow")
    expect(panel).to_have_attribute("data-origin", "guangdong")
    expect(panel.locator("#verdict-facts .assurance")).to_have_text("已实名核验")
    assert errors == []
    browser.close()


# ---------------------------------------------------------------------------------------------
# The decision on a tablet, dates, the registered kind of place, axe

# The decision panel's share of the viewport, and the visible text from the largest font down.
MEASURE = """
() => {
  const box = document.getElementById("verdict-decision").getBoundingClientRect();
  const w = Math.max(0, Math.min(box.right, innerWidth) - Math.max(box.left, 0));
  const h = Math.max(0, Math.min(box.bottom, innerHeight) - Math.max(box.top, 0));
  const texts = [];
  for (const element of document.querySelectorAll("body *")) {
    const own = [...element.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !element.checkVisibility()) continue;
    const r = element.getBoundingClientRect();
    if (r.bottom <= 0 || r.top >= innerHeight || !r.width) continue;
    texts.push({ id: element.id, size: parseFloat(getComputedStyle(element).fontSize) });
  }
  texts.sort((a, b) => b.size - a.size);
  const size = (id) => parseFloat(getComputedStyle(document.getElementById(id)).fontSize);
  return { share: (w * h) / (innerWidth * innerHeight), texts, reason: size("verdict-reason"),
           code: size("verdict-code") };
}
"""
DATE_TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
DATE_MINUTES = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$"


def _read_picture(page: Any, workdir: Path, code: Code, decision: str) -> Any:
    """A picture of ``code`` read from the file input (no camera needed); the verdict panel."""
    picture = workdir / f"{uuid.uuid4().hex}.png"
    picture.write_bytes(render_png(code.text, code.status))
    if page.locator("#verdict").is_visible():
        page.click("#verdict-next")
    page.set_input_files("#image-input", str(picture))
    panel = page.locator("#verdict")
    expect(panel).to_have_attribute("data-decision", decision, timeout=SLOW)
    return panel


def _fills_the_screen(page: Any, state: str) -> dict[str, Any]:
    measured: dict[str, Any] = page.evaluate(MEASURE)
    assert measured["share"] >= 0.6, (state, measured["share"])
    largest = measured["texts"][0]
    assert largest["id"] == "verdict-reason", (state, measured["texts"][:4])
    assert measured["reason"] > measured["texts"][1]["size"], (state, measured["texts"][:4])
    # The code's own colour is a detail: well under half the reason's size.
    assert measured["code"] * 2 < measured["reason"], (state, measured)
    return measured


def _expires_at(code: Code) -> int:
    payload = code.text.removeprefix("YK1:").split(".")[1]
    exp: int = json.loads(b64url_decode(payload))["exp"]
    return exp


def _open(browser: Any, server: Server, viewport: dict[str, int], query: str = "") -> Scanner:
    # bypass_csp: axe is injected into the page; the page's own code runs as always.
    context = browser.new_context(viewport=viewport, bypass_csp=True, timezone_id="Asia/Shanghai")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.base + "/scanner" + query)
    return Scanner(page, context, errors)


def test_a_border_decision_fills_a_tablet_screen_with_the_reason_that_decided_it(
    browser: Any, web_server: Server, gate: Gate, codes: dict[str, Code], workdir: Path
) -> None:
    """At a border a green code without a recent test is denied: the red and 禁止通行 fill the
    screen, 绿码，但无近期核酸阴性结果 is the largest line, and the green of the code is a small
    detail. So for a plain valid and a plain invalid verdict; and every state passes axe."""
    landscape, portrait = TABLETS
    scanner = _open(browser, web_server, landscape)
    page = scanner.page
    assert_clean(page, "setup")
    _set_up(scanner, gate)
    assert_clean(page, "idle")

    panel = _read_picture(page, workdir, codes["untested"], "deny")
    expect(panel).to_have_attribute("data-reason", "no_recent_test")
    expect(panel.locator("#verdict-word")).to_have_text("禁止通行")
    expect(panel.locator("#verdict-reason")).to_have_text("绿码，但无近期核酸阴性结果")
    expect(panel.locator("#verdict-status")).to_have_text("绿码")
    expect(panel.locator("#verdict-status")).to_have_class("status status-green")
    expect(panel.locator("#verdict-reasons")).to_be_hidden()
    _fills_the_screen(page, "border, landscape")
    screenshot(page, "scanner-border-deny-tablet")
    assert_clean(page, "border decision")
    page.set_viewport_size(portrait)
    _fills_the_screen(page, "border, portrait")
    screenshot(page, "scanner-border-deny-tablet-portrait")
    page.set_viewport_size(landscape)

    panel = _read_picture(page, workdir, codes["valid"], "allow")
    expect(panel.locator("#verdict-reason")).to_have_text("绿码，近期核酸阴性")
    _fills_the_screen(page, "valid")
    screenshot(page, "scanner-border-allow-tablet")
    assert_clean(page, "valid verdict")

    panel = _read_picture(page, workdir, codes["revoked"], "deny")
    expect(panel.locator("#verdict-reason")).to_have_text("健康码已被撤销")
    expect(panel.locator("#verdict-status")).to_have_class("status status-void")
    _fills_the_screen(page, "invalid")
    screenshot(page, "scanner-invalid-tablet")
    assert_clean(page, "invalid verdict")

    panel = _read_picture(page, workdir, codes["forged"], "deny")
    expect(panel.locator("#verdict-reason")).to_have_text("签名无效，疑似伪造或篡改")
    _fills_the_screen(page, "forged")

    page.click("#verdict-next")
    page.click("#settings-open")
    expect(page.locator("#place")).to_have_text("口岸 · 罗湖口岸")
    assert_clean(page, "settings")
    assert scanner.errors == []
    scanner.context.close()


@pytest.mark.parametrize(
    ("query", "reason", "misread"),
    [
        ("?lang=en", "Green, but no recent negative test", ("AM", "PM", "/")),
        ("?lang=zh-Hant", "綠碼，但無近期核酸陰性結果", ("上午", "下午", "清晨", "凌晨", "/")),
    ],
)
def test_times_read_as_24_hour_dates_in_every_language(
    browser: Any,
    web_server: Server,
    gate: Gate,
    codes: dict[str, Code],
    workdir: Path,
    query: str,
    reason: str,
    misread: tuple[str, ...],
) -> None:
    """2026-12-07 08:17:19, not 12/7/26, 8:17:19 AM or 清晨7:19:13: the scan's time with seconds,
    the code's expiry to the minute, in the gate's time zone."""
    scanner = _open(browser, web_server, TABLETS[0], query)
    page = scanner.page
    _set_up(scanner, gate)
    panel = _read_picture(page, workdir, codes["untested"], "deny")
    expect(panel.locator("#verdict-reason")).to_have_text(reason)
    scanned = panel.locator("#verdict-trust").text_content() or ""
    assert re.search(DATE_TIME, scanned), scanned
    expires = dt.datetime.fromtimestamp(_expires_at(codes["untested"]), ZoneInfo("Asia/Shanghai"))
    expect(panel.locator("#verdict-facts dd").last).to_have_text(expires.strftime("%Y-%m-%d %H:%M"))
    expect(panel.locator("#verdict-facts dd").last).to_have_text(re.compile(DATE_MINUTES))
    shown = panel.inner_text()
    assert not [word for word in misread if word in shown], shown
    screenshot(page, "scanner-border-deny-tablet-" + query.removeprefix("?lang="))
    assert scanner.errors == []
    scanner.context.close()


def test_the_kind_of_place_is_the_registrations_and_a_venue_applies_venue_policy(
    browser: Any,
    web_server: Server,
    gate: Gate,
    venue: Gate,
    codes: dict[str, Code],
    workdir: Path,
) -> None:
    """A device registered as a venue lets a green code without a test in -- the code a border
    denies -- and its settings show the kind with nothing to change it. Its stored registration
    swapped for the border's (validly signed, but another checkpoint's) is refused: offline, the
    device then decides nothing rather than take the border's, or any, policy."""
    scanner = _open(browser, web_server, TABLETS[0])
    page = scanner.page
    _set_up(scanner, venue, place="场所")
    panel = _read_picture(page, workdir, codes["untested"], "allow")
    expect(panel).to_have_attribute("data-reason", "green")
    expect(panel.locator("#verdict-reason")).to_have_text("绿码")
    screenshot(page, "scanner-venue-allow-tablet")
    page.click("#verdict-next")

    page.click("#settings-open")
    expect(page.locator("#place")).to_have_text("场所（商场、餐馆等） · 天河城商场")
    expect(page.locator("#place-note")).to_contain_text("本设备不能更改")
    # Nothing in the settings can name a place: the kind is shown, not asked.
    fields = page.locator("#setup-form").evaluate(
        "(form) => [...form.elements].filter((e) => e.tagName !== 'BUTTON').map((e) => e.id)"
    )
    assert fields == ["api-key", "fingerprint"]
    screenshot(page, "scanner-settings-place")
    page.click("#setup-submit")
    expect(page.locator("#place-state")).to_have_text("场所")

    # A place written into the stored settings, as the old Settings screen kept it, changes
    # nothing: the venue's policy still decides.
    page.evaluate(
        """async () => {
          const store = await import(STORE_URL);
          const settings = await store.getValue("settings");
          await store.setValue("settings", { ...settings, place: "border" });
        }""".replace("STORE_URL", STORE)
    )
    page.reload()
    expect(page.locator("#place-state")).to_have_text("场所", timeout=SLOW)
    _read_picture(page, workdir, codes["untested"], "allow")

    # The border's registration, fetched with the border's key, put in this device's storage.
    border = httpx.get(
        web_server.base + "/v1/checkpoint", headers={"Authorization": f"Bearer {gate.key}"}
    ).text
    scanner.context.set_offline(True)
    page.evaluate(
        """async (text) => {
          const { setValue } = await import(STORE_URL);
          await setValue("registration", text);
        }""".replace("STORE_URL", STORE),
        border,
    )
    page.reload()
    expect(page.locator("#place-state")).to_have_text("场所类型未同步")
    panel = _read_picture(page, workdir, codes["untested"], "cannot_verify")
    expect(panel).to_have_attribute("data-reason", "no_registration")
    expect(panel.locator("#verdict-reason")).to_contain_text("请联网同步")
    assert_clean(page, "no registration: cannot verify")

    # Back online, the device fetches its own registration again: a venue.
    page.click("#verdict-next")
    scanner.context.set_offline(False)
    page.click("#sync")
    expect(page.locator("#place-state")).to_have_text("场所", timeout=SLOW)
    _read_picture(page, workdir, codes["untested"], "allow")
    assert scanner.errors == []
    scanner.context.close()


def test_without_a_camera_the_page_says_why_in_words(
    browser: Any, web_server: Server, gate: Gate
) -> None:
    # No fake camera in this browser: getUserMedia finds no device. Found by a newcomer: the
    # message named the browser's error, NotFoundError.
    context = browser.new_context(viewport=PHONE, permissions=["camera"])
    page = context.new_page()
    page.goto(web_server.base + "/scanner")
    _set_up(Scanner(page, context, []), gate)
    message = page.locator("#camera-message")
    expect(message).to_contain_text("摄像头不可用", timeout=SLOW)
    expect(message).to_contain_text("未找到摄像头")
    assert "Error" not in (message.text_content() or "")
    context.close()
