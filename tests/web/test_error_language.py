"""The resident page in zh-CN says every refusal in Chinese: the server's own words, in the page's
language (API.md, "Error body"), where the page has none of its own -- and in English when the
page is in English. No English sentence, no raw error code."""

from __future__ import annotations

import re
from typing import Any

import pytest

from support.servers import Server
from web.conftest import screenshot, wait_until
from web.test_resident import enrolled, fresh_phone

CJK = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_WORDS = re.compile(r"[A-Za-z]{3,}(?:[ _][A-Za-z]{2,}){1,}")
RAW_CODE = re.compile(r"\b[a-z]+_[a-z_]+\b")


def said(page: Any, selector: str) -> str:
    wait_until(page, f"() => document.querySelector({selector!r}).textContent.trim()")
    return (page.text_content(selector) or "").strip()


def assert_chinese(text: str, where: str) -> None:
    assert CJK.search(text), f"{where}: {text!r}"
    assert not ENGLISH_WORDS.search(text), f"{where}: {text!r}"
    assert not RAW_CODE.search(text), f"{where}: {text!r}"


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    page = context.new_page()
    yield page
    context.close()


def test_each_refusal_reads_in_chinese_on_the_chinese_page(web_server: Server, page: Any) -> None:
    # A phone number that is no number: the server's validation error, field by field.
    page.goto(f"{web_server.base}/?lang=zh-Hans")
    page.fill("#phone", "12")
    page.click("#send-code")
    assert_chinese(said(page, "#phone-error"), "a malformed phone")

    # A wrong sign-in code.
    phone = fresh_phone()
    number, birth = enrolled(web_server, phone)
    page.fill("#phone", phone)
    page.click("#send-code")
    page.wait_for_selector("#otp-form:not(.hidden)")
    page.fill("#otp", "000000")
    page.click("#verify-code")
    wrong = said(page, "#otp-error")
    assert_chinese(wrong, "a wrong sign-in code")
    assert "验证码" in wrong

    # Then the code the development server shows (one code a minute per phone: no second send).
    development_code = re.search(r"\d{6}", page.text_content("#dev-code") or "")
    assert development_code
    page.fill("#otp", development_code.group())
    page.click("#verify-code")
    page.wait_for_selector("#bind:not(.hidden)")
    attempts = {
        "an empty name": ("", number, birth.isoformat()),
        "a check digit typed wrong": (
            "张小三",
            number[:-1] + ("0" if number[-1] != "0" else "1"),
            birth.isoformat(),
        ),
        "a birth date in the future": (
            "张小三",
            number,
            "2999-01-01",
        ),
        "details the register does not know": ("李四", number, birth.isoformat()),
    }
    for where, (name, doc_number, birth_date) in attempts.items():
        page.fill("#name", name)
        page.select_option("#doc_type", "prc_id")
        page.fill("#doc_number", doc_number)
        page.fill("#birth_date", birth_date)
        page.click("#bind-submit")
        wait_until(
            page,
            "() => [...document.querySelectorAll('#bind-form .field-error, #bind-error')]"
            ".some((node) => node.textContent.trim())",
        )
        shown = " ".join(
            page.eval_on_selector_all(
                "#bind-form .field-error, #bind-error",
                "nodes => nodes.map((node) => node.textContent.trim()).filter(Boolean)",
            )
        )
        assert_chinese(shown, where)
        if where == "an empty name":
            assert "请填写姓名" in shown
        if where == "a check digit typed wrong":
            assert "校验位" in shown
        if where == "a birth date in the future":
            assert "出生日期" in shown
        screenshot(page, f"resident-error-{where.replace(' ', '-')}")
        for node in ("#bind-error",):
            page.evaluate(f"document.querySelector({node!r}).textContent = ''")
        page.evaluate(
            "document.querySelectorAll('#bind-form .field-error')"
            ".forEach((node) => node.textContent = '')"
        )


def test_the_english_page_hears_english(web_server: Server, page: Any) -> None:
    page.goto(f"{web_server.base}/?lang=en")
    page.fill("#phone", "12")
    page.click("#send-code")
    text = said(page, "#phone-error")
    assert not CJK.search(text), text
    assert "phone" in text.lower()
