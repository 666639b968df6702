"""One phone, two people: after the first signs out, nothing of theirs -- their QR, their
colour, their name, their expiry, the code they were sent -- is shown to the next, not even for
the moment before the next person's own code arrives."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from support.servers import Server, cli, serve, server_env
from web.test_resident import signed_in_and_bound

# What the code screen shows of a person, read from the page as a whole: hidden parts of the
# page are left out of innerText, so this is what the person holding the phone can see.
SHOWN = """() => ({
    text: document.body.innerText,
    code_view: !document.querySelector('#code').classList.contains('hidden'),
    qr: document.querySelector('#qr').getAttribute('src') || '',
    status: document.querySelector('#code-card').dataset.status || '',
    theme: document.querySelector('meta[name=theme-color]').content,
    otp_form: !document.querySelector('#otp-form').classList.contains('hidden'),
    dev_code: document.querySelector('#dev-code').textContent,
    phone: document.querySelector('#phone').value,
})"""


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A development server that lets a phone be sent a second code at once: B signs in twice
    within the test (on another phone, then on this one)."""
    workdir = tmp_path_factory.mktemp("web-signout")
    env = server_env(
        f"sqlite+aiosqlite:///{workdir / 'web.db'}",
        workdir / "keys",
        YUEKANG_OTP__RESEND_SECONDS="0",
    )
    with serve(env, workdir, "web") as server:
        yield server


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], errors


def test_the_next_person_on_the_phone_never_sees_the_last_ones_code(
    web_server: Server, page: Any, browser: Any, tmp_path: Any
) -> None:
    # B has a bound identity and a red status already (signed in on another phone before).
    elsewhere = browser.new_context()
    b_phone, b_number, _ = signed_in_and_bound(web_server, elsewhere.new_page(), "en", "李小五")
    elsewhere.close()
    cli(web_server.env, tmp_path, "status", "set", "--doc-type", "prc_id", "--doc-number",
        b_number, "--status", "red", "--reason", "close contact")  # fmt: skip

    # A signs in on this phone and sees a green code.
    signed_in_and_bound(web_server, page, "en", "张小三")
    a = page.evaluate(SHOWN)
    assert a["status"] == "green" and a["qr"].startswith("blob:")
    a_expiry = page.text_content("#expiry") or ""
    a_marks = ["张*三", a_expiry]
    assert all(mark and mark in a["text"] for mark in a_marks)

    page.click("#sign-out")
    page.wait_for_selector("#signin:not(.hidden)")
    out = page.evaluate(SHOWN)
    assert not out["code_view"] and out["qr"] == "" and out["status"] == ""
    assert not any(mark in out["text"] for mark in a_marks)
    # A's sign-in is gone too: the code form, the development code sent to A, A's number.
    assert not out["otp_form"] and out["dev_code"] == "" and out["phone"] == ""
    # A's image is let go of, not merely hidden.
    assert not page.evaluate("url => fetch(url).then(() => true, () => false)", a["qr"])

    # B signs in; B's code is held on its way, so the page is caught between the two.
    held: list[Any] = []
    page.route("**/v1/codes", lambda route: held.append(route))
    page.fill("#phone", b_phone)
    page.click("#send-code")
    page.wait_for_selector("#otp-form:not(.hidden)")
    # A wrong code is said where B is looking, under the code field.
    page.fill("#otp", "00000")
    page.click("#verify-code")
    page.wait_for_selector("#otp-error:not(:empty)")
    assert page.is_visible("#otp-error")
    sent = re.search(r"\d{6}", page.text_content("#dev-code") or "")
    assert sent
    page.fill("#otp", sent.group())
    page.click("#verify-code")
    deadline = time.monotonic() + 15
    while not held:
        assert time.monotonic() < deadline, "the page never asked for B's code"
        page.wait_for_timeout(50)
    between = page.evaluate(SHOWN)
    assert between["qr"] != a["qr"] and between["status"] != "green", between
    assert not any(mark in between["text"] for mark in a_marks), between["text"]
    # Nothing of a code is on screen until B's own has come.
    assert not between["code_view"]

    held[0].continue_()
    page.unroute("**/v1/codes")
    deadline = time.monotonic() + 15
    while page.evaluate(SHOWN)["status"] != "red":
        assert time.monotonic() < deadline, "B's red code never came"
        page.wait_for_timeout(100)
    b = page.evaluate(SHOWN)
    assert b["code_view"] and b["qr"].startswith("blob:") and b["qr"] != a["qr"]
    # (B's expiry may read like A's, to the minute: codes issued in the same minute.)
    assert "李*五" in b["text"] and "张*三" not in b["text"]
