"""The resident's page as a phone (390 × 844) uses it away from a desk: a code past its expiry with
no network looks expired, and the page opens offline with the last code; a red code says why in
the resident's words and what to do next, never the operator's note; 关怀模式 (elder mode) at
twice the text size; the region picker at sign-in; one code per tap; and axe-core finds nothing
serious or critical in any of these states."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.servers import Server, cli, serve, server_env
from web.axe import assert_clean
from web.conftest import ARTIFACTS, screenshot, wait_until
from web.test_resident import bind, enrolled, fresh_phone, sign_in

HOTLINE = "12345"
LIFETIME = 3600  # a code's life on a development server (codes.lifetime_seconds)
CACHE = "yk-resident-v1"


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A development server with a helpline set, as a deployment would set it."""
    workdir = tmp_path_factory.mktemp("web-phone")
    env = server_env(
        f"sqlite+aiosqlite:///{workdir / 'web.db'}", workdir / "keys", YUEKANG_HOTLINE=HOTLINE
    )
    with serve(env, workdir, "web") as server:
        yield server


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    # bypass_csp: axe-core is injected into the page; the page's own code runs as ever.
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, bypass_csp=True
    )
    yield context
    context.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert errors == [], errors


def green_resident(server: Server, page: Any, lang: str = "zh-Hans") -> str:
    """A resident proved through the page, looking at their green code; their document number."""
    phone = fresh_phone()
    number, birth = enrolled(server, phone)
    sign_in(page, server.base, phone, lang)
    page.wait_for_selector("#bind:not(.hidden)")
    bind(page, number, birth.isoformat())
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    return number


def set_status(server: Server, tmp: Any, number: str, status: str, reason: str) -> None:
    cli(server.env, tmp, "status", "set", "--doc-type", "prc_id", "--doc-number", number,
        "--status", status, "--reason", reason)  # fmt: skip


def shift_clock(page: Any, seconds: float) -> None:
    """Move the page's clock (Date.now) ahead, as a phone left for an hour would find it."""
    page.evaluate(
        """seconds => { const real = Date.now; Date.now = () => real() + seconds * 1000; }""",
        seconds,
    )


def looks_expired(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """() => {
                const card = document.querySelector('#code-card');
                const qr = document.querySelector('#qr');
                return {
                    expired: card.dataset.expired,
                    background: getComputedStyle(card).backgroundColor,
                    qr_opacity: Number(getComputedStyle(qr).opacity),
                    line: getComputedStyle(document.querySelector('.scanline')).display,
                    note: document.querySelector('#expired-note').textContent,
                };
            }"""
        )
    )


GREY = "rgb(95, 102, 115)"


def cached_paths(page: Any) -> list[str]:
    """The paths in the resident worker's cache."""
    return list(
        page.evaluate(
            """async name => (await (await caches.open(name)).keys())
                .map(r => new URL(r.url).pathname)""",
            CACHE,
        )
    )


# --- offline ------------------------------------------------------------------------------------


def test_past_expiry_offline_the_code_greys_and_the_page_opens_offline_with_the_last_code(
    web_server: Server, context: Any, page: Any
) -> None:
    number = green_resident(web_server, page)
    # The worker controls the page and has kept what the page loaded, the page itself included;
    # the page has kept its code.
    wait_until(page, "() => Boolean(navigator.serviceWorker.controller)")
    kept_files = ("/", "/resident.js", "/common.js", "/resident.css", "/base.css")
    deadline = time.monotonic() + 15
    while not all(any(p.endswith(f) for p in cached_paths(page)) for f in kept_files):
        assert time.monotonic() < deadline, cached_paths(page)
        time.sleep(0.2)
    wait_until(page, "() => localStorage.getItem('yk.lastcode') !== null")
    kept = page.evaluate("() => localStorage.getItem('yk.lastcode')")
    assert number not in kept and "doc_" not in kept  # what the screen shows, no document
    # No API answer is in the worker's cache: the page keeps its own.
    cached = cached_paths(page)
    assert not [path for path in cached if path.startswith("/v1/")], cached

    context.set_offline(True)
    shift_clock(page, LIFETIME + 60)

    wait_until(page, "() => document.querySelector('#code-card').dataset.expired === 'true'")
    seen = looks_expired(page)
    assert seen["note"] == "已过期，请联网刷新"
    assert seen["background"] == GREY  # not green any more
    assert seen["qr_opacity"] < 0.5 and seen["line"] == "none"
    wait_until(page, "() => document.querySelector('#fatal').textContent.includes('网络不可用')")
    assert_clean(page, "expired offline")
    page.screenshot(path=str(screenshot_path("resident-expired-offline")))

    # Reloaded with no network: the page, from the worker, with the code the page kept.
    page.reload()
    page.wait_for_selector("#code:not(.hidden)")
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    assert page.get_attribute("#qr", "src").startswith("data:image/png;base64,")
    assert page.get_attribute("#code-card", "data-status") == "green"
    assert page.text_content("#status-word") == "绿码"
    assert page.text_content("#masked-name") == "张*三"
    assert "有效至" in (page.text_content("#expiry") or "")
    assert "网络不可用" in (page.text_content("#fatal") or "")
    assert page.is_hidden("#family") and page.is_hidden("#identity-card")

    # The network is back: the page signs in again by itself and the banner goes.
    kept_src = page.get_attribute("#qr", "src")
    context.set_offline(False)
    wait_until(page, f"() => document.querySelector('#qr').src !== {kept_src!r}")
    wait_until(page, "() => document.querySelector('#fatal').textContent === ''")
    assert page.is_visible("#family")

    # Offline again, an hour and more later, reloaded: the kept code, expired.
    context.set_offline(True)
    context.add_init_script(
        f"{{ const real = Date.now; Date.now = () => real() + {(LIFETIME + 60) * 1000}; }}"
    )
    page.reload()
    page.wait_for_selector("#code:not(.hidden)")
    wait_until(page, "() => document.querySelector('#code-card').dataset.expired === 'true'")
    seen = looks_expired(page)
    assert seen["note"] == "已过期，请联网刷新" and seen["background"] == GREY


def screenshot_path(name: str) -> Path:
    """Beside ``screenshot``'s pictures: a viewport-sized one (for the docs) named ``name``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


def test_the_network_banner_goes_when_the_network_returns_and_the_code_renews(
    web_server: Server, context: Any, page: Any
) -> None:
    green_resident(web_server, page, "en")
    first = page.get_attribute("#qr", "src")
    context.set_offline(True)
    # Just before expiry, the page tries to renew, and cannot.
    page.evaluate(
        f"""() => {{ window.realNow = Date.now;
                    Date.now = () => window.realNow() + {(LIFETIME - 50) * 1000}; }}"""
    )
    wait_until(
        page, "() => document.querySelector('#fatal').textContent === 'No network; try again'"
    )
    page.evaluate("() => { Date.now = window.realNow; }")
    context.set_offline(False)
    wait_until(page, f"() => document.querySelector('#qr').src !== {first!r}")
    wait_until(page, "() => document.querySelector('#fatal').textContent === ''")
    assert page.get_attribute("#code-card", "data-expired") != "true"

    # The worker's scope is the whole origin, but it keeps only the resident page's files: the
    # console, opened in the same browser, loads from the network and leaves nothing in its cache.
    page.goto(web_server.base + "/console?lang=en")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("() => Boolean(navigator.serviceWorker.controller)")
    assert not [p for p in cached_paths(page) if "console" in p], cached_paths(page)


# --- why, and what next -------------------------------------------------------------------------


def test_a_red_code_says_why_and_what_next_in_the_residents_words_not_the_operators(
    web_server: Server, page: Any, tmp_path: Any
) -> None:
    number = green_resident(web_server, page)
    assert_clean(page, "green")
    page.screenshot(path=str(screenshot_path("resident-green")))
    set_status(web_server, tmp_path, number, "red", "close contact")
    page.reload()
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'red'")
    wait_until(page, "() => document.querySelector('#next-steps').children.length > 0")

    why = page.text_content("#explanation") or ""
    assert re.search(r"工作人员已复核，赋红码（\d{4}-\d{2}-\d{2} 起）", why), why
    steps = page.locator("#next-steps li").all_text_contents()
    assert any("请留在家中" in step for step in steps)
    assert any("核酸检测" in step for step in steps)
    assert any("申诉" in step for step in steps)
    # Staff set it: no promise that a test lifts it by itself (found by a newcomer on yellow).
    assert any("新的检测结果不会自动改变它" in step for step in steps)
    assert not any("自动更新" in step for step in steps)
    assert f"咨询热线：{HOTLINE}" in steps
    assert page.get_attribute("#next-steps a", "href") == f"tel:{HOTLINE}"
    # The operator's note is for staff only.
    assert "close contact" not in (page.text_content("body") or "")
    assert_clean(page, "red")
    page.screenshot(path=str(screenshot_path("resident-code-red-reasons")))

    page.goto(web_server.base + "/?lang=en")
    wait_until(page, "() => document.querySelector('#next-steps').children.length > 0")
    why = page.text_content("#explanation") or ""
    assert re.search(r"Staff reviewed your status and gave it red on \d{4}-\d{2}-\d{2}\.", why)
    steps = page.locator("#next-steps li").all_text_contents()
    assert any(step.startswith("Stay at home") for step in steps)
    assert f"Helpline: {HOTLINE}" in steps
    assert "close contact" not in (page.text_content("body") or "")

    # The appeal: what the resident wrote is shown back, as text.
    page.click("#appeal-open")
    assert_clean(page, "appeal form")
    words = "I was in Zhuhai <b>all week</b>; the case was in Foshan."
    page.fill("#appeal-text", words)
    page.click("#appeal-submit")
    wait_until(page, "() => document.querySelector('.appeal-item[data-state=pending]')")
    wait_until(page, "() => document.querySelector('.appeal-text')")
    assert words in (page.text_content(".appeal-text") or "")
    assert page.locator(".appeal-text b").count() == 0
    assert_clean(page, "appeal pending")

    set_status(web_server, tmp_path, number, "yellow", "same place and time as a case")
    page.reload()
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'yellow'")
    wait_until(page, "() => document.querySelector('#next-steps').children.length > 0")
    assert "same place" not in (page.text_content("body") or "")
    assert_clean(page, "yellow")


# --- 关怀模式 -------------------------------------------------------------------------------------


def test_elder_mode_is_large_remembered_and_whole_at_twice_the_text_size(
    web_server: Server, context: Any, page: Any
) -> None:
    green_resident(web_server, page)
    page.click("#elder-toggle")
    assert page.get_attribute("#elder-toggle", "aria-pressed") == "true"
    page.reload()
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    assert page.evaluate("() => document.documentElement.classList.contains('elder')")
    body = page.evaluate(
        "() => parseFloat(getComputedStyle(document.querySelector('#explanation')).fontSize)"
    )
    assert body >= 24
    small = page.evaluate(
        """() => [...document.querySelectorAll('button, input, select')]
            .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 48)
            .map(e => e.id || e.textContent)"""
    )
    assert small == []
    # Fewer things around the code.
    assert page.is_hidden("#family") and page.is_hidden("#macao-offer")
    assert_clean(page, "elder mode")
    page.screenshot(path=str(screenshot_path("resident-elder")))

    # The phone's text size at 200%: Chromium's default font size from 16 to 32 px, as the
    # browser's own text-size setting sets it (DevTools protocol, Page.setFontSizes).
    cdp = context.new_cdp_session(page)
    cdp.send("Page.setFontSizes", {"fontSizes": {"standard": 32, "fixed": 26}})
    page.reload()
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    assert (
        page.evaluate("() => parseFloat(getComputedStyle(document.documentElement).fontSize)") == 32
    )
    layout = page.evaluate(
        """() => {
            const qr = document.querySelector('#qr').getBoundingClientRect();
            return {width: document.documentElement.scrollWidth, left: qr.left, right: qr.right,
                    qr: qr.width};
        }"""
    )
    assert layout["width"] <= 390, layout
    assert layout["left"] >= 0 and layout["right"] <= 390 and layout["qr"] >= 240, layout
    screenshot(page, "resident-elder-200")
    page.click("#elder-toggle")
    page.reload()
    assert not page.evaluate("() => document.documentElement.classList.contains('elder')")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390


# --- signing in ----------------------------------------------------------------------------------


def development_code(page: Any) -> str:
    page.wait_for_selector("#otp-form:not(.hidden)")
    found = re.search(r"\d{6}", page.text_content("#dev-code") or "")
    assert found
    return found.group()


def test_a_mainland_and_a_macao_number_sign_in_as_typed_with_the_region_picker(
    web_server: Server, browser: Any, page: Any
) -> None:
    page.goto(web_server.base + "/")
    assert page.input_value("#region") == "CN"
    assert_clean(page, "signed out")
    domestic = "139" + str(uuid.uuid4().int)[:8]
    page.fill("#phone", domestic)
    page.click("#send-code")
    page.fill("#otp", development_code(page))
    assert_clean(page, "sign-in code step")
    page.click("#verify-code")
    page.wait_for_selector("#bind:not(.hidden)")
    assert_clean(page, "bind identity")

    # Another phone (its own storage): a Macao number.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    other = phone.new_page()
    other.goto(web_server.base + "/?lang=en")
    macao = "6" + str(uuid.uuid4().int)[:7]
    other.fill("#phone", macao)
    other.click("#send-code")
    # Eight digits could be Macao or Hong Kong: the server asks, the page says it by the field.
    wait_until(other, "() => document.querySelector('#phone-error').textContent !== ''")
    assert other.text_content("#phone-error") == "For an 8-digit number, choose Macao or Hong Kong"
    assert other.get_attribute("#region", "aria-invalid") == "true"
    other.select_option("#region", "MO")
    assert other.get_attribute("#phone", "placeholder") == "66123456"
    other.click("#send-code")
    other.fill("#otp", development_code(other))
    other.click("#verify-code")
    other.wait_for_selector("#bind:not(.hidden)")
    assert other.evaluate("() => JSON.parse(localStorage.getItem('yk.session')).access_token")
    phone.close()


def test_two_taps_send_one_code_and_the_button_counts_down(web_server: Server, page: Any) -> None:
    asked: list[str] = []
    page.on(
        "request",
        lambda request: (
            asked.append(request.url)
            if request.method == "POST" and request.url.endswith("/v1/auth/otp")
            else None
        ),
    )
    page.goto(web_server.base + "/")
    page.fill("#phone", fresh_phone())
    page.dblclick("#send-code")
    page.wait_for_selector("#otp-form:not(.hidden)")
    time.sleep(0.5)
    assert len(asked) == 1
    assert page.is_disabled("#send-code")
    assert re.fullmatch(r"(5\d|60) 秒后可重新获取", page.text_content("#send-code") or "")


# --- the page's words ----------------------------------------------------------------------------


def test_the_title_follows_the_language_and_times_read_the_same_in_every_one(
    web_server: Server, page: Any
) -> None:
    titles = {"zh-Hans": "粤康码", "zh-Hant": "粵康碼", "en": "Yuekang Health Code"}
    for lang, title in titles.items():
        page.goto(f"{web_server.base}/?lang={lang}")
        assert page.title() == title
    page.goto(f"{web_server.base}/?lang=pt")
    assert page.title().startswith("Código de Saúde")
    green_resident(web_server, page, "pt")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", page.text_content("#clock") or "")
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", page.text_content("#expiry") or "")
