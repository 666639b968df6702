"""The resident's page in Chromium: sign in with a phone and a one-time code, bind a document (a
wrong check digit is shown next to the field), and see a green code whose rendered QR decodes to
a code that verifies -- with a ticking clock, a moving line, and the tiles."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image

from support.api import random_prc_id
from support.servers import Server, cli
from web.conftest import screenshot, wait_until
from yuekang.verifier import Verifier

PHONE_DIGITS = 8


def fresh_phone() -> str:
    return "+86139" + str(uuid.uuid4().int)[:PHONE_DIGITS]


def sign_in(page: Any, base: str, phone: str) -> None:
    page.goto(base + "/?lang=en")
    page.fill("#phone", phone)
    page.click("#send-code")
    page.wait_for_selector("#otp-form:not(.hidden)")
    development_code = re.search(r"\d{6}", page.text_content("#dev-code") or "")
    assert development_code, "a development server shows the code it sent"
    page.fill("#otp", development_code.group())
    page.click("#verify-code")


def bind(page: Any, number: str, birth: str, name: str = "张小三") -> None:
    page.fill("#name", name)
    page.select_option("#doc_type", "prc_id")
    page.fill("#doc_number", number)
    page.fill("#birth_date", birth)
    page.click("#bind-submit")


def decode_qr(png: bytes) -> str:
    [result] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return str(result.text)


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def test_a_resident_signs_in_binds_and_sees_a_green_code_that_verifies(
    web_server: Server, page: Any
) -> None:
    sign_in(page, web_server.base, fresh_phone())
    page.wait_for_selector("#bind:not(.hidden)")
    screenshot(page, "resident-bind")

    number, birth = random_prc_id()
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    bind(page, wrong, birth.isoformat())
    error = page.locator('[data-error-for="doc_number"]')
    error.wait_for()
    wait_until(page, "() => document.querySelector('[data-error-for=doc_number]').textContent")
    assert "check" in (error.text_content() or "").lower()
    screenshot(page, "resident-bind-error")

    bind(page, number, birth.isoformat())
    page.wait_for_selector("#code:not(.hidden)")
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    wait_until(page, "() => document.querySelector('#explanation').children.length > 0")

    assert page.get_attribute("#code-card", "data-status") == "green"
    assert page.text_content("#status-word") == "Green"
    assert page.text_content("#masked-name") == "张*三"
    assert "No risk" in (page.text_content("#explanation") or "")
    # the clock ticks every second, and the line over the code keeps moving
    before = page.text_content("#clock")
    page.wait_for_timeout(1100)
    assert page.text_content("#clock") != before
    assert page.eval_on_selector(".scanline", "e => getComputedStyle(e).animationName") == "sweep"
    screenshot(page, "resident-code-green")

    # What the phone shows is a real code: the QR as rendered decodes, and it verifies.
    text = decode_qr(page.locator("#qr").screenshot())
    assert text.startswith("YK1:")
    jwks = httpx.get(web_server.base + "/.well-known/jwks.json").json()
    verdict = Verifier.from_jwks(jwks).verify(text, now=int(page.evaluate("Date.now() / 1000")))
    assert verdict.valid and verdict.status == "green" and verdict.masked_name == "张*三"


def test_the_code_renews_itself_before_it_expires(web_server: Server, page: Any) -> None:
    sign_in(page, web_server.base, fresh_phone())
    number, birth = random_prc_id()
    page.wait_for_selector("#bind:not(.hidden)")
    bind(page, number, birth.isoformat())
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    first = page.get_attribute("#qr", "src")

    # Jump the page's clock to a minute before expiry: the code is replaced, with no reload.
    page.evaluate(
        """() => { const shift = 3600 * 1000 - 50 * 1000; const real = Date.now;
                   Date.now = () => real() + shift; }"""
    )
    wait_until(page, f"() => document.querySelector('#qr').src !== {first!r}")
    assert page.url.endswith("/?lang=en")


def test_a_red_resident_appeals_and_the_page_turns_green_when_it_is_accepted(
    web_server: Server, page: Any, tmp_path: Any
) -> None:
    sign_in(page, web_server.base, fresh_phone())
    number, birth = random_prc_id()
    page.wait_for_selector("#bind:not(.hidden)")
    bind(page, number, birth.isoformat())
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    cli(web_server.env, tmp_path, "status", "set", "--doc-type", "prc_id", "--doc-number",
        number, "--status", "red", "--reason", "close contact of case 2026-1126")  # fmt: skip
    page.reload()
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'red'")
    page.click("#appeal-open")
    page.fill("#appeal-text", "I was in Zhuhai all week; the case was in Foshan.")
    page.click("#appeal-submit")
    wait_until(page, "() => document.querySelector('.appeal-item[data-state=pending]')")
    screenshot(page, "resident-code-red-appeal")

    operator = cli(
        web_server.env, tmp_path, "operators", "create", "reviewer", "--role", "operator"
    )
    staff = {"Authorization": f"Bearer {operator.split()[-1]}"}
    [appeal] = httpx.get(f"{web_server.base}/v1/admin/appeals", headers=staff).json()
    decided = httpx.post(
        f"{web_server.base}/v1/admin/appeals/{appeal['id']}/decision",
        headers=staff,
        json={"decision": "accept", "reason": "Not at the place of the case"},
    )
    assert decided.status_code == 200, decided.text

    # No reload: the page looks again and turns green, with the answer shown.
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    wait_until(page, "() => document.querySelector('.appeal-item[data-state=accepted]')")
    assert "Not at the place" in (page.text_content("#appeal-history") or "")
    screenshot(page, "resident-appeal-accepted")


def test_the_macao_consent_screen_names_the_recipient_and_every_field(
    web_server: Server, page: Any
) -> None:
    sign_in(page, web_server.base, fresh_phone())
    number, birth = random_prc_id()
    page.wait_for_selector("#bind:not(.hidden)")
    bind(page, number, birth.isoformat())
    page.wait_for_selector("#code:not(.hidden)")

    page.click("#macao-open")
    page.wait_for_selector("#macao:not(.hidden)")

    fields = page.locator("#macao-fields li").all_text_contents()
    assert len(fields) == 7 and "Date of birth" in fields and "Phone number" in fields
    assert "Macau" in (page.text_content("#macao-recipient") or "")
    assert "convert my health code" in (page.text_content("#macao-text") or "")
    # no partner is registered on this server: the screen says so and sends nothing
    assert page.is_disabled("#macao-agree")
    screenshot(page, "resident-macao-consent")


def test_the_page_speaks_simplified_chinese_unless_asked_otherwise(
    web_server: Server, page: Any
) -> None:
    page.goto(web_server.base + "/")
    assert page.text_content("header h1") == "粤康码"
    assert page.text_content("#send-code") == "获取验证码"
    page.click("text=繁體")
    page.wait_for_url("**lang=zh-Hant")
    assert page.text_content("#send-code") == "取得驗證碼"
    page.goto(web_server.base + "/?lang=pt")
    assert page.text_content("#send-code") == "Enviar código"
    screenshot(page, "resident-signin-pt")
