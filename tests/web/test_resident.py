"""The resident's page in Chromium: sign in with a phone and a one-time code, bind a document (a
wrong check digit is shown next to the field; the registry's refusals in words), and see a green
code whose rendered QR decodes to a code that verifies -- with a ticking clock, a moving line, and
the tiles. A binding made before proofing asks to be proved; family members (亲友代办) are added,
agree by a code sent to their phone, and have codes of their own that name them."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random
import re
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import zxingcpp
from PIL import Image

from support.api import enrol_in_registry, random_prc_id
from support.servers import Server, cli
from web.conftest import screenshot, wait_until
from yuekang.residents.documents import hkid_check
from yuekang.residents.masking import mask_phone
from yuekang.verifier import Verifier

PHONE_DIGITS = 8
TODAY = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()


def fresh_phone(prefix: str = "+86139") -> str:
    return prefix + str(uuid.uuid4().int)[:PHONE_DIGITS]


def enrolled(
    server: Server, phone: str | None, name: str = "张小三", birth: dt.date | None = None
) -> tuple[str, dt.date]:
    """A new person in the server's registry, with ``phone`` registered to them: what binding
    proves the identity against."""
    number, birth = random_prc_id(birth)
    enrol_in_registry(server.registry, name=name, doc_number=number, birth_date=birth, phone=phone)
    return number, birth


def sign_in(page: Any, base: str, phone: str, lang: str = "en") -> None:
    page.goto(f"{base}/?lang={lang}")
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
    [result] = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    return str(result.text)


def claims(qr_text: str) -> dict[str, Any]:
    payload = qr_text.removeprefix("YK1:").split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def verified(server: Server, page: Any, qr_text: str) -> Any:
    jwks = httpx.get(server.base + "/.well-known/jwks.json").json()
    return Verifier.from_jwks(jwks).verify(qr_text, now=int(page.evaluate("Date.now() / 1000")))


def signed_in_and_bound(
    server: Server, page: Any, lang: str = "zh-Hans", name: str = "张小三"
) -> tuple[str, str, dt.date]:
    """A resident proved through the page (a fresh person, in the registry with this phone) and
    looking at their green code; their phone, document number and birth date."""
    phone = fresh_phone()
    number, birth = enrolled(server, phone, name)
    sign_in(page, server.base, phone, lang)
    page.wait_for_selector("#bind:not(.hidden)")
    bind(page, number, birth.isoformat(), name)
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    return phone, number, birth


def session(page: Any) -> dict[str, str]:
    stored: dict[str, str] = page.evaluate("() => JSON.parse(localStorage.getItem('yk.session'))")
    return stored


def token(page: Any) -> str:
    return session(page)["access_token"]


def expired_copy(server: Server, access_token: str) -> str:
    """The same session's access token, run out a minute ago (signed with the development
    server's own secret, as the server would have signed it)."""
    secret = json.loads((Path(server.env["YUEKANG_KEYS_DIR"]) / "dev-secrets.json").read_text())
    claims = jwt.decode(access_token, options={"verify_signature": False})
    claims["iat"], claims["exp"] = int(time.time()) - 960, int(time.time()) - 60
    return jwt.encode(claims, secret["session_secret"], algorithm="HS256")


def sms_code(server: Server, phone: str, timeout: float = 15.0) -> str:
    """The consent code in the last development SMS to ``phone``: the development sender writes
    every text to the server's log (masked number and all)."""
    to = f"development SMS to {mask_phone(phone)}: "
    deadline = time.monotonic() + timeout
    while True:
        texts = [
            line for line in server.log.read_text("utf-8", "replace").splitlines() if to in line
        ]
        found = [re.search(r"验证码 (\d{6})", text) for text in texts if "代办" in text]
        if found and found[-1]:
            return found[-1].group(1)
        if time.monotonic() > deadline:
            raise AssertionError(f"no consent SMS to {mask_phone(phone)} in {server.log}")
        time.sleep(0.2)


def add_family_member(
    page: Any, name: str, number: str, birth: dt.date, relationship: str, phone: str = ""
) -> None:
    page.click("#family-open")
    page.fill("#fam-name", name)
    page.select_option("#fam-doc-type", "prc_id")
    page.fill("#fam-doc-number", number)
    page.fill("#fam-birth-date", birth.isoformat())
    page.select_option("#fam-relationship", relationship)
    if phone:
        page.fill("#fam-phone", phone)
    page.click("#fam-submit")


def small_buttons(page: Any, scope: str) -> list[str]:
    """Visible buttons and inputs in ``scope`` under 44 px high: too small a touch target."""
    return list(
        page.evaluate(
            """scope => [...document.querySelectorAll(`${scope} button, ${scope} input`)]
                .filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
                .map(e => e.id || e.className || e.textContent)""",
            scope,
        )
    )


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
    phone = fresh_phone()
    sign_in(page, web_server.base, phone)
    page.wait_for_selector("#bind:not(.hidden)")
    screenshot(page, "resident-bind")

    number, birth = enrolled(web_server, phone)
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
    phone = fresh_phone()
    sign_in(page, web_server.base, phone)
    number, birth = enrolled(web_server, phone)
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


def test_the_send_button_counts_down_until_another_code_may_be_sent(
    web_server: Server, page: Any
) -> None:
    phone = fresh_phone()
    page.goto(f"{web_server.base}/?lang=en")
    page.fill("#phone", phone)
    page.click("#send-code")
    page.wait_for_selector("#otp-form:not(.hidden)")
    assert page.is_disabled("#send-code")
    first = page.text_content("#send-code") or ""
    assert re.fullmatch(r"Send again in (5\d|60) s", first), first
    wait_until(page, f"() => document.querySelector('#send-code').textContent !== {first!r}")
    # Asked again from elsewhere (a reload forgets the countdown): the server's wait is shown.
    page.reload()
    page.fill("#phone", phone)
    page.click("#send-code")
    wait_until(page, "() => document.querySelector('#phone-error').textContent !== ''")
    assert re.fullmatch(r"Send again in (5\d) s", page.text_content("#send-code") or "")
    assert page.is_disabled("#send-code")


def test_an_expired_access_token_is_renewed_and_signing_out_ends_the_session(
    web_server: Server, page: Any
) -> None:
    signed_in_and_bound(web_server, page, lang="en")
    before = session(page)
    # Two tabs open on a token that has run out: they renew it once, between them (a refresh
    # token used twice would end the session).
    stale = json.dumps({**before, "access_token": expired_copy(web_server, before["access_token"])})
    page.evaluate("stale => localStorage.setItem('yk.session', stale)", stale)
    other = page.context.new_page()
    other.goto(page.url)
    page.reload()
    for tab in (page, other):
        wait_until(tab, "() => document.querySelector('#code-card').dataset.status === 'green'")
    after = session(page)
    assert after["refresh_token"] != before["refresh_token"]
    assert session(other) == after
    me = httpx.get(
        web_server.base + "/v1/me", headers={"Authorization": f"Bearer {after['access_token']}"}
    )
    assert me.status_code == 200

    page.click("#sign-out")
    page.wait_for_selector("#signin:not(.hidden)")
    assert page.evaluate("() => localStorage.getItem('yk.session')") is None
    refused = httpx.get(
        web_server.base + "/v1/me", headers={"Authorization": f"Bearer {after['access_token']}"}
    )
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "session_ended"
    renewed = httpx.post(
        web_server.base + "/v1/auth/refresh", json={"refresh_token": after["refresh_token"]}
    )
    assert renewed.status_code == 401
    other.close()


def test_a_red_resident_appeals_and_the_page_turns_green_when_it_is_accepted(
    web_server: Server, page: Any, tmp_path: Any
) -> None:
    phone = fresh_phone()
    sign_in(page, web_server.base, phone)
    number, birth = enrolled(web_server, phone)
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
    phone = fresh_phone()
    sign_in(page, web_server.base, phone)
    number, birth = enrolled(web_server, phone)
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


# --- proving the identity ----------------------------------------------------------------------


def test_details_the_register_does_not_know_are_refused_in_words_and_give_no_code(
    web_server: Server, page: Any
) -> None:
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    sign_in(page, web_server.base, fresh_phone(), "zh-Hans")
    page.wait_for_selector("#bind:not(.hidden)")
    number, birth = random_prc_id()  # a correct check digit, and nobody's

    bind(page, number, birth.isoformat(), "张三")

    wait_until(page, "() => document.querySelector('#bind-error').textContent")
    assert (
        page.text_content("#bind-error")
        == "信息与户籍登记不一致，请按证件上的姓名、号码和出生日期填写"
    )
    assert page.get_attribute("#bind-error", "role") == "alert"
    assert page.is_hidden("#code") and page.is_visible("#bind")
    assert not [url for url in asked if "/v1/codes" in url]
    # One message whichever detail was wrong: no field is singled out.
    assert page.locator("[data-error-for]:not(:empty)").count() == 0
    screenshot(page, "resident-bind-mismatch")


def test_a_person_the_register_knows_on_their_own_phone_is_verified_and_green(
    web_server: Server, page: Any
) -> None:
    signed_in_and_bound(web_server, page, "zh-Hans", name="黄志强")

    assert page.text_content("#status-word") == "绿码"
    assert page.text_content("#masked-name") == "黄*强"
    assert page.text_content("#assurance-badge") == "已实名核验"
    assert page.text_content("#identity-assurance") == "已实名核验"
    assert "核验于" in (page.text_content("#identity-proofed") or "")
    assert page.is_hidden("#reclaimed-note")
    # What was typed left the page with the request.
    assert page.input_value("#doc_number") == "" and page.input_value("#name") == ""
    wait_until(page, "() => document.querySelector('#qr').naturalWidth > 0")
    text = decode_qr(page.locator("#qr").screenshot())
    assert claims(text)["ia"] == 1
    verdict = verified(web_server, page, text)
    assert verdict.valid and verdict.status == "green" and verdict.masked_name == "黄*强"
    screenshot(page, "resident-code-proofed")


def refusing(status: int, headers: dict[str, str], code: str, message: str) -> Any:
    """A route handler answering PUT as the API answers an error; other methods pass."""
    body = json.dumps({"error": {"code": code, "message": message}})

    def answer(route: Any) -> None:
        if route.request.method != "PUT":
            route.fallback()
            return
        route.fulfill(
            status=status, headers={**headers, "Content-Type": "application/json"}, body=body
        )

    return answer


def test_each_refusal_of_the_registry_is_said_in_words(web_server: Server, page: Any) -> None:
    sign_in(page, web_server.base, fresh_phone(), "zh-Hans")
    page.wait_for_selector("#bind:not(.hidden)")
    # A real person, whose phone this is not.
    number, birth = enrolled(web_server, fresh_phone(), "周五")
    bind(page, number, birth.isoformat(), "周五")
    wait_until(page, "() => document.querySelector('#bind-error').textContent")
    assert page.text_content("#bind-error") == (
        "本手机号不是证件本人实名登记的号码：可由家人代办，或携带证件到服务窗口核验"
    )

    # The answers a registry that is down, or too many attempts, or a document another account
    # proved would give, as the API gives them.
    answers = {
        "proofing_unavailable": (503, {"Retry-After": "30"}, "the identity registry ..."),
        "rate_limited": (429, {"Retry-After": "7200"}, "too many identity verifications"),
        "document_already_bound": (409, {}, "the document is bound to another account"),
    }
    expected = {
        "proofing_unavailable": "实名核验服务暂时不可用，未作任何绑定，请稍后再试（30 秒后可重试）",
        "rate_limited": "核验次数过多，请稍后再试（约 2 小时后可重试）",
        "document_already_bound": "该证件已由另一个实名核验的账号绑定，请携带证件到服务窗口办理",
    }
    for code, (status, headers, message) in answers.items():
        page.route("**/v1/me/identity", refusing(status, headers, code, message))
        page.click("#bind-submit")
        wait_until(
            page, f"() => document.querySelector('#bind-error').textContent === {expected[code]!r}"
        )
        if code == "proofing_unavailable":
            # Nothing was bound: the button rests until the registry may answer again.
            assert page.is_disabled("#bind-submit")
            page.evaluate("() => { document.querySelector('#bind-submit').disabled = false; }")
        page.unroute("**/v1/me/identity")
    assert page.is_visible("#bind") and page.is_hidden("#code")


def make_unverified(server: Server, resident_token: str) -> None:
    """What migration 0007 made of every binding before proofing: ``unverified``."""
    me = httpx.get(
        server.base + "/v1/me", headers={"Authorization": f"Bearer {resident_token}"}
    ).json()
    resident_id = uuid.UUID(me["resident_id"])
    path = server.env["YUEKANG_DATABASE_URL"].removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path, timeout=30) as db:
        changed = db.execute(
            "UPDATE identities SET assurance = 'unverified', proofed_at = NULL, "
            "proofing_ref = NULL WHERE resident_id IN (?, ?)",
            (resident_id.hex, str(resident_id)),
        ).rowcount
    assert changed == 1


def random_hkid() -> str:
    body = random.choice("ABCEGKMPRZ") + f"{random.randrange(10**6):06d}"
    return body + hkid_check(body)


def test_a_binding_made_before_proofing_asks_to_be_proved_and_asks_for_no_code(
    web_server: Server, page: Any
) -> None:
    phone = fresh_phone()
    number, birth = random_hkid(), dt.date(1985, 7, 1)
    enrol_in_registry(
        web_server.registry, name="Chan Siu Ming", doc_type="hkid", doc_number=number,
        birth_date=birth, phone=phone,
    )  # fmt: skip
    sign_in(page, web_server.base, phone, "zh-Hans")
    page.wait_for_selector("#bind:not(.hidden)")
    page.fill("#name", "Chan Siu Ming")
    page.select_option("#doc_type", "hkid")
    page.fill("#doc_number", number)
    page.fill("#birth_date", birth.isoformat())
    page.click("#bind-submit")
    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    make_unverified(web_server, token(page))
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))

    page.reload()

    notice = page.locator("#unverified-notice")
    notice.wait_for()
    assert page.text_content("#unverified-notice .notice-title") == "身份待核验"
    assert notice.get_attribute("role") == "alert"
    assert "香港身份证" in (page.text_content("#unverified-identity") or "")
    assert page.input_value("#doc_type") == "hkid"  # chosen for them; the details retyped
    assert page.input_value("#doc_number") == ""
    assert page.is_hidden("#code")
    assert small_buttons(page, "#bind") == []
    screenshot(page, "resident-unverified")
    # The page does not keep asking for codes it cannot have.
    page.wait_for_timeout(1500)
    assert not [url for url in asked if "/v1/codes" in url]

    page.fill("#name", "Chan Siu Ming")
    page.fill("#doc_number", number)
    page.fill("#birth_date", birth.isoformat())
    page.click("#bind-submit")

    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    assert page.text_content("#assurance-badge") == "已实名核验"
    assert page.is_hidden("#unverified-notice")


def test_the_holder_takes_back_a_document_an_unproved_account_held_and_is_told(
    web_server: Server, page: Any, browser: Any
) -> None:
    squatter = fresh_phone()
    number, birth = enrolled(web_server, squatter, "罗小虎")
    with httpx.Client(base_url=web_server.base, timeout=30) as client:
        sent = client.post("/v1/auth/otp", json={"phone": squatter}).json()
        session = client.post(
            "/v1/auth/token",
            json={
                "phone": squatter,
                "challenge_id": sent["challenge_id"],
                "code": sent["dev_code"],
            },
        ).json()["access_token"]
        bound = client.put(
            "/v1/me/identity",
            headers={"Authorization": f"Bearer {session}"},
            json={"name": "罗小虎", "doc_type": "prc_id", "doc_number": number,
                  "birth_date": birth.isoformat()},
        )  # fmt: skip
        assert bound.status_code == 201, bound.text
    make_unverified(web_server, session)
    holder = fresh_phone()
    enrol_in_registry(
        web_server.registry, name="罗小虎", doc_number=number, birth_date=birth, phone=holder
    )
    sign_in(page, web_server.base, holder, "zh-Hans")
    page.wait_for_selector("#bind:not(.hidden)")

    bind(page, number, birth.isoformat(), "罗小虎")

    wait_until(page, "() => document.querySelector('#code-card').dataset.status === 'green'")
    note = page.locator("#reclaimed-note")
    assert note.is_visible()
    assert "从该账号解除" in (note.text_content() or "")
    gone = httpx.get(
        web_server.base + "/v1/me/identity", headers={"Authorization": f"Bearer {session}"}
    )
    assert gone.status_code == 404


# --- family members (亲友代办) -------------------------------------------------------------------


def test_a_child_is_added_and_their_code_names_them(web_server: Server, page: Any) -> None:
    signed_in_and_bound(web_server, page, "zh-Hans")
    assert page.is_visible("#family-empty")
    number, birth = enrolled(web_server, None, "张小明", TODAY - dt.timedelta(days=365 * 8))

    page.click("#family-open")
    page.fill("#fam-birth-date", birth.isoformat())
    # A child needs no consent: no phone is asked for.
    assert page.is_hidden("#fam-phone-box") and page.is_visible("#fam-minor-note")
    page.click("#fam-cancel")
    add_family_member(page, "张小明", number, birth, "child")

    item = page.locator(".family-item").filter(has_text="张*明")
    item.wait_for()
    assert item.get_attribute("data-state") == "active"
    assert "子女" in (item.text_content() or "") and "绿码" in (item.text_content() or "")
    assert "已添加张*明" in (page.text_content("#family-status") or "")
    assert page.is_hidden("#family-form")
    assert small_buttons(page, "#family") == []
    screenshot(page, "resident-family")

    item.locator(".family-show").click()
    page.wait_for_selector("#dependant:not(.hidden)")
    wait_until(page, "() => document.querySelector('#dep-qr').naturalWidth > 0")
    assert page.is_hidden("#code")
    assert page.text_content("#dep-label") == "亲友代办 · 张*明"
    assert page.get_attribute("#dep-card", "data-status") == "green"
    assert page.text_content("#dep-status-word") == "绿码"
    assert "有效至" in (page.text_content("#dep-expiry") or "")
    assert page.evaluate("() => document.activeElement.id") == "dep-label"
    wait_until(page, "() => document.querySelector('#dep-explanation').children.length > 0")
    screenshot(page, "resident-family-code")
    text = decode_qr(page.locator("#dep-qr").screenshot())
    assert (claims(text)["ia"], claims(text)["nm"]) == (3, "张*明")
    verdict = verified(web_server, page, text)
    assert verdict.valid and verdict.masked_name == "张*明"

    page.click("#dep-back")
    page.wait_for_selector("#code:not(.hidden)")
    assert page.text_content("#masked-name") == "张*三"
    # Removing asks first.
    item.locator(".family-remove").click()
    confirm = item.locator(".confirm-yes")
    assert confirm.is_visible() and "确定移除张*明" in (item.text_content() or "")
    assert page.evaluate("() => document.activeElement.classList.contains('confirm-yes')")
    confirm.click()
    page.locator(".family-item").first.wait_for(state="detached")
    assert page.is_visible("#family-empty")
    listed = httpx.get(
        web_server.base + "/v1/me/dependants", headers={"Authorization": f"Bearer {token(page)}"}
    )
    assert listed.json() == []


def test_an_adult_family_member_agrees_by_the_code_sent_to_their_phone(
    web_server: Server, page: Any, browser: Any
) -> None:
    signed_in_and_bound(web_server, page, "zh-Hans", name="黄志强")
    mothers_phone = fresh_phone("+86137")
    number, birth = enrolled(web_server, mothers_phone, "李秀英", dt.date(1940, 3, 8))

    page.click("#family-open")
    page.fill("#fam-birth-date", birth.isoformat())
    assert page.is_visible("#fam-phone-box")
    assert "服务窗口" in (page.text_content("#fam-phone-note") or "")
    page.click("#fam-cancel")
    add_family_member(page, "李秀英", number, birth, "parent", mothers_phone)

    item = page.locator(".family-item").filter(has_text="李*英")
    item.wait_for()
    assert item.get_attribute("data-state") == "pending_consent"
    assert "等待家人同意" in (item.text_content() or "")
    assert item.locator(".family-show").count() == 0
    reference = item.locator(".reference").text_content() or ""
    assert re.fullmatch(r"[0-9a-f-]{36}", reference)
    assert small_buttons(page, "#family") == []
    screenshot(page, "resident-family-pending")
    code = sms_code(web_server, mothers_phone)
    wrong = "000000" if code != "000000" else "111111"
    item.locator(".consent-code").fill(wrong)
    item.locator(".consent-submit").click()
    wait_until(page, "() => document.querySelector('.family-item-error').textContent")
    assert item.locator(".family-item-error").text_content() == "验证码错误"

    item.locator(".consent-code").fill(code)
    item.locator(".consent-submit").click()

    wait_until(page, "() => document.querySelector('.family-item[data-state=active]')")
    assert "绿码" in (item.text_content() or "")
    assert "李*英已同意" in (page.text_content("#family-status") or "")
    # The focus goes to what can be done next: showing her code.
    assert page.evaluate("() => document.activeElement.classList.contains('family-show')")
    item.locator(".family-show").click()
    wait_until(page, "() => document.querySelector('#dep-qr').naturalWidth > 0")
    assert page.text_content("#dep-label") == "亲友代办 · 李*英"
    assert page.text_content("#dep-relationship") == "您的父母"

    # She signs in with her own phone: she sees who holds her code, and ends it.
    phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    hers = phone.new_page()
    sign_in(hers, web_server.base, mothers_phone, "zh-Hans")
    hers.wait_for_selector("#guardians:not(.hidden)")
    arrangement = hers.locator(".guardian-item").filter(has_text="黄*强")
    assert "您是对方的父母" in (arrangement.text_content() or "")
    screenshot(hers, "resident-guardians")
    arrangement.locator(".guardian-end").click()
    arrangement.locator(".confirm-yes").click()
    wait_until(hers, "() => document.querySelectorAll('.guardian-item').length === 0")
    assert "已解除黄*强的代办" in (hers.text_content("#guardians-status") or "")
    phone.close()
    listed = httpx.get(
        web_server.base + "/v1/me/dependants", headers={"Authorization": f"Bearer {token(page)}"}
    )
    assert listed.json() == []
