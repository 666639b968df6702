"""The staff console in Chromium against a real ``yuekang serve``: an admin reads the dashboard,
creates a checkpoint and sees its key once, and reads the audit log; an operator opens a red
resident's appeal and accepts it, after which the resident is green through the API. In the
identity panel (身份核验) an operator reads the alerts on documents that failed proofing
repeatedly, verifies a person without a phone at the counter, and records a family member's
consent.

The data-making steps are plain functions at the top (staff tokens from the CLI, residents and
their codes, a red status, an appeal) so other browser tests can build the same situation."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from support.api import (
    Resident,
    answer,
    enrol_in_registry,
    random_phone,
    random_prc_id,
    registered_over_http,
)
from support.servers import Server, cli
from web.axe import assert_clean
from web.conftest import screenshot
from yuekang.feeds.rows import FeedKind
from yuekang.principals import ActorType
from yuekang.residents.masking import mask_doc_number

CHARTS = ("chart-codes", "chart-scans", "chart-feeds", "chart-outbox")
APPEAL_TEXT = "我那天一直在家，没有去过通报的地点，请核实。"
TIMEOUT_MS = 15_000
CHECKPOINT_KEY = re.compile(r"^ykc_\S+_\S+$")
ROLE_NAMES = {"admin": "管理员", "operator": "业务员", "epidemiologist": "流调员"}


# ---------------------------------------------------------------- making data


def workdir(server: Server) -> Path:
    """Where the server runs; CLI commands run there with the server's environment."""
    return server.log.parent


def staff_token(server: Server, role: str, name: str | None = None) -> str:
    """A staff bearer token from ``yuekang operators create`` (it prints only the token)."""
    # Named as a Chinese office would name them: a name is free text the console shows as it
    # is, and "operator 1a2b" would read as the code the words-not-codes test looks for.
    name = name or f"{ROLE_NAMES[role]} {uuid.uuid4().hex[:4]}"
    return cli(server.env, workdir(server), "operators", "create", name, "--role", role)


def checkpoint_key(server: Server, name: str, kind: str = "venue") -> str:
    return cli(server.env, workdir(server), "checkpoints", "create", name, "--kind", kind)


def feed_key(server: Server, name: str, kinds: str = "cases") -> str:
    return cli(server.env, workdir(server), "feeds", "clients", "create", name, "--kinds", kinds)


def resident(server: Server, name: str = "陈小文") -> Resident:
    """A resident signed in with the development OTP and with an identity bound."""
    with httpx.Client(base_url=server.base, timeout=30) as client:
        return registered_over_http(client, name=name, registry=server.registry)


def issue_code(server: Server, person: Resident) -> dict[str, Any]:
    """The person's code: a new one (201), or the live one again (200)."""
    response = httpx.post(f"{server.base}/v1/codes", headers=person.auth, timeout=30)
    assert response.status_code in (200, 201), response.text
    code: dict[str, Any] = response.json()
    return code


def scan(server: Server, gate: str, qr_text: str) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base}/v1/verify",
        json={"qr_text": qr_text},
        headers={"Authorization": f"Bearer {gate}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


def feed_batch(server: Server, key: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base}/v1/feeds/cases",
        content="".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
        timeout=60,
    )
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    return batch


def make_red(server: Server, person: Resident, reason: str = "close contact, case 12") -> None:
    """``yuekang status set``: an override to red, as an operator at the command line."""
    assert person.doc_number is not None
    cli(
        server.env, workdir(server), "status", "set", "--doc-type", "prc_id",
        "--doc-number", person.doc_number, "--status", "red", "--reason", reason,
    )  # fmt: skip


def file_appeal(server: Server, person: Resident, text: str = APPEAL_TEXT) -> dict[str, Any]:
    response = httpx.post(
        f"{server.base}/v1/me/appeals", headers=person.auth, json={"text": text}, timeout=30
    )
    assert response.status_code == 201, response.text
    appeal: dict[str, Any] = response.json()
    return appeal


def my_status(server: Server, person: Resident) -> dict[str, Any]:
    response = httpx.get(f"{server.base}/v1/me/status", headers=person.auth, timeout=30)
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()
    return status


def appellant(server: Server) -> tuple[Resident, dict[str, Any]]:
    """A resident made red who has filed an appeal: what an operator reviews."""
    person = resident(server, name="林小红")
    make_red(server, person)
    assert my_status(server, person)["status"] == "red"
    return person, file_appeal(server, person)


# ---------------------------------------------------------------- the browser side


@dataclass
class Console:
    page: Page
    errors: list[str]


@pytest.fixture(scope="module")
def activity(web_server: Server) -> dict[str, Any]:
    """Something to count: codes of every colour, scans at two places, a batch with a bad row."""
    green = resident(web_server)
    codes = [issue_code(web_server, green) for _ in range(3)]
    red = resident(web_server, name="王小明")
    make_red(web_server, red)
    red_code = issue_code(web_server, red)
    gate = checkpoint_key(web_server, "拱北口岸 3 号闸", "border")
    station = checkpoint_key(web_server, "广州南站 进站口", "transport")
    for code in codes:
        scan(web_server, gate, code["qr_text"])
    scan(web_server, gate, "not a health code")
    scan(web_server, station, red_code["qr_text"])
    scan(web_server, station, codes[0]["qr_text"])
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date().isoformat()
    batch = feed_batch(
        web_server,
        feed_key(web_server, "Guangdong Health Commission"),
        [
            {"doc_type": "prc_id", "doc_number": random_prc_id()[0], "category": "close_contact",
             "start_date": today},
            {"doc_type": "prc_id", "doc_number": "44010419900101001Z", "category": "close_contact",
             "start_date": today},
        ],
    )  # fmt: skip
    assert batch["rows_rejected"] == 1
    with httpx.Client(base_url=web_server.base, timeout=30) as client:
        bundle = client.get("/v1/trust-bundle", headers={"Authorization": f"Bearer {gate}"})
        assert bundle.status_code == 200, bundle.text
    # Asked three times, the live code may be answered again, or a new one made when the first
    # was signed in the second the identity was proved: count what the server made.
    return {"codes": len({code["code_id"] for code in codes}) + 1}


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # Reduced motion: the console then draws charts without animation, so a screenshot shows
    # them finished.
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, reduced_motion="reduce", locale="zh-CN"
    )
    yield context
    context.close()


def open_console(context: BrowserContext, server: Server, token: str, view: str = "") -> Console:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            errors.append(f"HTTP {response.status} {response.url}")
            if response.status == 404
            else None
        ),
    )
    page.goto(f"{server.base}/console")
    expect(page.locator("#view-signin")).to_be_visible()
    page.fill("#signin-token", token)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#who")).to_be_visible(timeout=TIMEOUT_MS)
    if view:
        page.click(f"#tabs a[data-view={view}]")
        expect(page.locator(f"#view-{view}")).to_be_visible()
    return Console(page, errors)


def charts_drawn(page: Page) -> bool:
    return bool(
        page.evaluate(
            """ids => ids.every(id => {
                const chart = window.Chart && window.Chart.getChart(id);
                const canvas = document.getElementById(id);
                return chart && canvas.width > 0 && canvas.height > 0;
            })""",
            list(CHARTS),
        )
    )


def test_the_admin_reads_the_dashboard(
    web_server: Server, context: BrowserContext, activity: dict[str, Any]
) -> None:
    admin = staff_token(web_server, "admin", "管理员 张工")
    console = open_console(context, web_server, admin)
    page = console.page

    expect(page.locator("body[data-dashboard=ready]")).to_have_count(1, timeout=TIMEOUT_MS)
    assert charts_drawn(page)
    expect(page.locator("#who-role")).to_have_text("管理员")
    # Two people, one of them issued several codes: people and codes are told apart.
    expect(page.locator("#tile-people-value")).to_have_text("2")
    expect(page.locator("#tile-people-sub")).to_have_text("绿 1 · 黄 0 · 红 1（人）")
    expect(page.locator("#tile-codes-value")).to_have_text(str(activity["codes"]))
    expect(page.locator("#tile-codes .tile-label")).to_contain_text("非人数")
    # Six scans: what the places decided, and apart from it whether the codes checked out. The
    # red code at the station was a valid code and a denial; so were the three green codes with
    # no recent test at the border, as the gate decided and its records keep.
    expect(page.locator("#tile-decisions-value")).to_have_text("6")
    expect(page.locator("#tile-decisions-sub")).to_have_text("通行 1 · 禁止 5 · 人工核验 0")
    expect(page.locator("#tile-verdicts-value")).to_have_text("6")
    expect(page.locator("#tile-verdicts-sub")).to_have_text("有效 5 · 无效 1 · 无法核验 0")
    people = page.evaluate(
        "() => Chart.getChart('chart-people').data.datasets.map(d => d.data.at(-1))"
    )
    assert people == [1, 0, 1]
    expect(page.locator("#batches-body td:nth-child(2)")).to_have_text("病例与密接")
    expect(page.locator("#tile-bundle-value")).to_have_text("v1")
    expect(page.locator("#tile-feeds-sub")).to_contain_text("1")
    expect(page.locator("#batches-body tr")).to_have_count(1)
    scans = page.evaluate("() => Chart.getChart('chart-scans').data.labels")
    assert scans[0].startswith("拱北口岸 3 号闸")
    # Every section of an admin is offered (identity too: the API lets admins use it); the
    # appeals of operators are not.
    visible = page.locator("#tabs a:not(.hidden)")
    expect(visible).to_have_count(5)
    expect(page.locator("#tabs a[data-view=identity]")).to_be_visible()
    expect(page.locator("#tabs a[data-view=appeals]")).to_be_hidden()
    screenshot(page, "console-dashboard")
    # A tablet held upright: one chart per row, the tabs on a line of their own.
    page.set_viewport_size({"width": 820, "height": 1180})
    expect(page.locator("#tabs")).to_be_visible()
    assert charts_drawn(page)
    screenshot(page, "console-dashboard-tablet")
    assert console.errors == []


def test_the_admin_creates_a_checkpoint_and_sees_its_key_once(
    web_server: Server, context: BrowserContext
) -> None:
    console = open_console(context, web_server, staff_token(web_server, "admin"), "checkpoints")
    page = console.page

    page.fill("#cp-name", "横琴口岸 旅检大厅")
    page.select_option("#cp-kind", "border")
    page.fill("#cp-region", "440402")
    page.click("#cp-create button[type=submit]")

    secret = page.locator("#secret-key")
    expect(secret).to_have_text(CHECKPOINT_KEY, timeout=TIMEOUT_MS)
    key = secret.inner_text()
    expect(page.locator("#secret-title")).to_contain_text("横琴口岸 旅检大厅")
    row = page.locator("#cp-body tr", has_text="横琴口岸 旅检大厅")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("口岸")
    expect(row).to_contain_text("440402")
    expect(row).to_contain_text("珠海")
    page.click("#secret-copy")
    expect(page.locator("#secret-copy")).to_have_text("已复制")
    screenshot(page, "console-checkpoints")

    # The key works, and once hidden it is gone from the page.
    assert scan(web_server, key, "not a health code")["verdict"] == "invalid"
    page.click("#secret-done")
    expect(page.locator("#secret")).to_be_hidden()
    assert key not in page.content()
    assert console.errors == []


def test_the_admin_reads_the_audit_log(
    web_server: Server, context: BrowserContext, activity: dict[str, Any]
) -> None:
    admin = staff_token(web_server, "admin")
    # More than a page of one action, to page through.
    with httpx.Client(base_url=web_server.base, timeout=30) as client:
        for n in range(52):
            made = client.post(
                "/v1/admin/checkpoints",
                headers={"Authorization": f"Bearer {admin}"},
                json={"name": f"Audit gate {n:02d}"},
            )
            assert made.status_code == 201, made.text
    console = open_console(context, web_server, admin, "audit")
    page = console.page

    expect(page.locator("#audit-body tr").first).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.locator("#audit-body")).to_contain_text("新建工作人员")
    # Staff and partners by default: the residents' own actions (binding their document) are
    # there only when asked for.
    expect(page.locator("#audit-body tr[data-actor=resident]")).to_have_count(0)
    assert set(
        page.locator("#audit-body tr").evaluate_all("rows => rows.map(r => r.dataset.actor)")
    ) <= {"operator", "cli", "partner"}
    page.select_option("#audit-actors", "all")
    page.click("#audit-filter button[type=submit]")
    expect(
        page.locator("#audit-body tr[data-action='identity.bind'][data-actor=resident]").first
    ).to_contain_text("居民本人")
    page.select_option("#audit-actors", "staff")
    page.select_option("#audit-action", "checkpoint.create")
    page.select_option("#audit-limit", "50")
    page.click("#audit-filter button[type=submit]")
    expect(page.locator("#audit-body tr")).to_have_count(50)
    expect(page.locator("#audit-body tr").first).to_contain_text("Audit gate 51")
    actions = page.locator("#audit-body td:nth-child(4)").all_inner_texts()
    assert set(actions) == {"新建查验点"}
    expect(page.locator("#audit-newer")).to_be_disabled()

    page.click("#audit-older")
    expect(page.locator("#audit-page")).to_have_text("第 2 页")
    expect(page.locator("#audit-body tr").first).to_contain_text("Audit gate 01")
    expect(page.locator("#audit-older")).to_be_disabled()
    page.click("#audit-newer")
    expect(page.locator("#audit-body tr").first).to_contain_text("Audit gate 51")

    page.select_option("#audit-action", "")
    page.select_option("#audit-limit", "100")
    page.click("#audit-filter button[type=submit]")
    expect(page.locator("#audit-body")).to_contain_text("新建工作人员")
    expect(page.locator("#audit-body")).to_contain_text("人工设定健康状态")
    screenshot(page, "console-audit")
    assert console.errors == []


def test_an_operator_accepts_an_appeal_and_the_resident_is_green(
    web_server: Server, context: BrowserContext, browser: Browser
) -> None:
    person, appeal = appellant(web_server)
    # The resident's own page, open on their phone the whole time.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    resident_page = phone.new_page()
    resident_page.goto(web_server.base + "/")
    stored = json.dumps({"access_token": person.token, "refresh_token": person.refresh_token})
    resident_page.evaluate("stored => localStorage.setItem('yk.session', stored)", stored)
    resident_page.reload()
    expect(resident_page.locator("#code-card[data-status=red]")).to_have_count(
        1, timeout=TIMEOUT_MS
    )
    console = open_console(context, web_server, staff_token(web_server, "operator", "审核员 李"))
    page = console.page
    # Operators see appeals and checkpoints, not keys or the audit log.
    expect(page.locator("#tabs a[data-view=keys]")).to_be_hidden()
    expect(page.locator("#tabs a[data-view=audit]")).to_be_hidden()
    page.click("#tabs a[data-view=appeals]")

    row = page.locator(f"#appeals-body tr[data-id='{appeal['id']}']")
    expect(row).to_contain_text("红码", timeout=TIMEOUT_MS)
    row.locator("button").click()
    expect(page.locator(".appeal-text")).to_have_text(APPEAL_TEXT, timeout=TIMEOUT_MS)
    page.fill("#decision-reason", "经核实当日行程，解除红码。")
    page.fill("#decision-days", "7")
    screenshot(page, "console-appeal")
    page.click("#decision-accept")

    expect(page.locator("#banner")).to_contain_text("申诉已接受", timeout=TIMEOUT_MS)
    expect(page.locator("#appeal-detail .decided")).to_contain_text("已接受")
    expect(row).to_have_count(0)
    status = my_status(web_server, person)
    assert status["status"] == "green"
    [override] = status["reasons"]
    assert (override["reason"], override["status"]) == ("override", "green")
    lasts = dt.datetime.fromisoformat(override["until"]) - dt.datetime.fromisoformat(
        override["since"]
    )
    assert lasts == dt.timedelta(days=7)
    screenshot(page, "console-appeal-accepted")
    assert console.errors == []
    # The resident's page turns green by itself, with the reviewer's answer.
    expect(resident_page.locator("#code-card[data-status=green]")).to_have_count(1, timeout=20_000)
    expect(resident_page.locator("#appeal-history")).to_contain_text("经核实当日行程")
    screenshot(resident_page, "resident-green-after-console")
    phone.close()


def test_a_role_sees_its_sections_and_a_403_is_explained(
    web_server: Server, context: BrowserContext
) -> None:
    console = open_console(context, web_server, staff_token(web_server, "epidemiologist"))
    page = console.page
    expect(page.locator("body[data-dashboard=ready]")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator("#tabs a:not(.hidden)")).to_have_count(1)

    # Asked for by its address anyway: the API's refusal is shown with its code.
    page.goto(f"{web_server.base}/console#audit")
    page.reload()
    banner = page.locator("#banner")
    expect(banner).to_contain_text("权限不足", timeout=TIMEOUT_MS)
    expect(banner).to_contain_text("role_required")
    expect(banner).to_contain_text("403")
    page.click("#banner-close")

    page.click("#sign-out")
    expect(page.locator("#view-signin")).to_be_visible()
    assert page.evaluate("() => sessionStorage.getItem('yk.console.token')") is None
    # 403 is a refusal, not a page error; the console logs a failed fetch as a console error.
    assert [e for e in console.errors if "403" not in e] == []


def test_a_bad_token_is_refused_in_words(web_server: Server, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{web_server.base}/console?lang=en")
    page.fill("#signin-token", "yko_not-a-real-token")
    page.click("#signin-form button[type=submit]")

    expect(page.locator("#signin-error")).to_have_text(
        "The token is not valid (any more): sign in again."
    )
    expect(page.locator("#view-signin")).to_be_visible()
    expect(page.locator("#signin-form button[type=submit]")).to_have_text("Sign in")


# ---------------------------------------------------------------- identity (身份核验)


def signed_in(server: Server, phone: str | None = None) -> dict[str, str]:
    """A resident's session, with nothing bound: headers for their requests."""
    phone = phone or random_phone()
    with httpx.Client(base_url=server.base, timeout=30) as client:
        sent = client.post("/v1/auth/otp", json={"phone": phone})
        assert sent.status_code == 200, sent.text
        token = client.post("/v1/auth/token", json={"phone": phone, **answer(sent.json())})
        assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def test_an_operator_sees_a_document_that_failed_proofing_from_several_accounts(
    web_server: Server, context: BrowserContext
) -> None:
    number, birth = random_prc_id()
    enrol_in_registry(
        web_server.registry, name="孙八", doc_number=number, birth_date=birth, phone=random_phone()
    )
    details = {"name": "孙八", "doc_type": "prc_id", "doc_number": number,
               "birth_date": birth.isoformat()}  # fmt: skip
    for _ in range(3):  # the real person's document, from phones that are not theirs
        tried = httpx.put(
            f"{web_server.base}/v1/me/identity", headers=signed_in(web_server), json=details
        )
        assert tried.json()["error"]["code"] == "phone_not_registered_to_holder", tried.text

    console = open_console(context, web_server, staff_token(web_server, "operator"), "identity")
    page = console.page

    row = page.locator("#alerts-body tr", has_text=mask_doc_number(number))
    expect(row).to_have_count(1, timeout=TIMEOUT_MS)
    cells = row.locator("td").all_inner_texts()
    assert cells[:4] == ["居民身份证", mask_doc_number(number), "3", "3"]
    assert number not in page.content()
    screenshot(page, "console-identity-alerts")
    assert console.errors == []


def test_an_operator_verifies_a_person_without_a_phone_at_the_counter(
    web_server: Server, context: BrowserContext
) -> None:
    console = open_console(context, web_server, staff_token(web_server, "operator"), "identity")
    page = console.page
    number, birth = random_prc_id()
    page.fill("#counter-name", "陈阿婆")
    page.select_option("#counter-doc-type", "prc_id")
    page.fill("#counter-doc-number", number)
    page.fill("#counter-birth", birth.isoformat())
    page.fill("#counter-reason", "本人持身份证原件到窗口，无智能手机")
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if "identity/counter" in r.url else None)

    # Without the box ticked nothing is sent.
    page.click("#counter-submit")
    expect(page.locator("#counter-error")).to_contain_text("已当面核对证件原件")
    assert sent == []
    assert page.evaluate("() => document.activeElement.id") == "counter-seen"
    page.check("#counter-seen")
    page.click("#counter-submit")

    result = page.locator("#counter-result")
    expect(result).to_be_visible(timeout=TIMEOUT_MS)
    expect(result).to_contain_text("陈*婆")
    expect(result).to_contain_text("窗口核验")
    expect(result).to_contain_text("无手机记录")
    expect(result).to_have_attribute("data-assurance", "counter")
    # What was typed is gone from the form; only the masked answer stays.
    assert page.input_value("#counter-doc-number") == ""
    assert number not in page.content()
    screenshot(page, "console-identity-counter")

    gate = checkpoint_key(web_server, "东山市场 入口")
    checked = httpx.post(
        f"{web_server.base}/v1/verify/document",
        headers={"Authorization": f"Bearer {gate}"},
        json={"doc_type": "prc_id", "doc_number": number},
        timeout=30,
    )
    assert checked.status_code == 200, checked.text
    body = checked.json()
    assert (body["verdict"], body["masked_name"], body["assurance"]) == (
        "valid",
        "陈*婆",
        "counter",
    )
    assert console.errors == []


def test_an_operator_records_a_family_members_consent_at_the_counter(
    web_server: Server, context: BrowserContext
) -> None:
    son = resident(web_server, name="黄志强")
    number, birth = random_prc_id(dt.date(1940, 3, 8))
    enrol_in_registry(
        web_server.registry, name="李秀英", doc_number=number, birth_date=birth, phone=None
    )
    added = httpx.post(
        f"{web_server.base}/v1/me/dependants",
        headers=son.auth,
        json={"name": "李秀英", "doc_type": "prc_id", "doc_number": number,
              "birth_date": birth.isoformat(), "relationship": "parent"},
        timeout=30,
    )  # fmt: skip
    assert added.status_code == 201, added.text
    assert added.json()["state"] == "pending_consent"
    console = open_console(context, web_server, staff_token(web_server, "operator"), "identity")
    page = console.page

    page.fill("#consent-id", "not-an-id")
    page.fill("#consent-reason", "老人持身份证到窗口，本人同意由儿子代办")
    page.click("#consent-submit")
    expect(page.locator("#consent-error")).to_contain_text("36")
    page.fill("#consent-id", added.json()["id"])
    page.click("#consent-submit")

    result = page.locator("#consent-result")
    expect(result).to_be_visible(timeout=TIMEOUT_MS)
    expect(result).to_contain_text("李*英（父母）")
    expect(result).to_have_attribute("data-state", "active")
    screenshot(page, "console-identity-consent")
    [member] = httpx.get(f"{web_server.base}/v1/me/dependants", headers=son.auth).json()
    assert (member["state"], member["consent"]) == ("active", "counter")
    assert console.errors == []


# ---------------------------------------------------------------- words, dates, accessibility

# What the API stores as codes, which the console must show in words: feed kinds, who acted and
# on what, the status reasons, the decisions and verdicts. Audit actions are read from the log.
RAW_CODES = {
    *(kind.value for kind in FeedKind),
    *get_args(ActorType),
    "appeal", "checkpoint", "conversion", "exchange_key", "feed_client", "operator", "package",
    "partner", "proofing", "resident", "rule_set", "signing_key",
    "override", "confirmed_case", "positive_nat", "suspected_case", "close_contact",
    "high_risk_area_arrival", "centralised_isolation", "home_isolation", "secondary_contact",
    "risk_city_arrival",
    "allow", "deny", "manual_check", "valid", "invalid", "cannot_verify",
}  # fmt: skip
TOKEN = re.compile(r"[A-Za-z0-9_.-]+")


def raw_codes_shown(page: Page, known: set[str]) -> list[tuple[str, str]]:
    """(code, cell) for every known code a table cell shows as text; a folded raw record
    (the audit detail) is not shown, so innerText leaves it out."""
    cells = page.locator("main table td, main table th").evaluate_all(
        "cells => cells.filter(c => c.offsetParent !== null).map(c => c.innerText)"
    )
    return [(token, cell) for cell in cells for token in TOKEN.findall(cell) if token in known]


def test_the_console_shows_words_not_codes_in_its_tables(
    web_server: Server, context: BrowserContext, activity: dict[str, Any]
) -> None:
    appellant(web_server)  # an appeal whose reason is `override`
    admin = staff_token(web_server, "admin")
    with httpx.Client(base_url=web_server.base, timeout=30) as client:
        log = client.get(
            "/v1/admin/audit", params={"limit": 500}, headers={"Authorization": f"Bearer {admin}"}
        )
    assert log.status_code == 200, log.text
    known = RAW_CODES | {e["action"] for e in log.json()["events"]}
    assert {"status.set", "identity.bind", "checkpoint.create"} <= known

    console = open_console(context, web_server, admin)
    page = console.page
    expect(page.locator("body[data-dashboard=ready]")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(page.locator("#batches-body tr")).to_have_count(1)
    seen = raw_codes_shown(page, known)
    for view in ("keys", "checkpoints", "audit"):
        page.click(f"#tabs a[data-view={view}]")
        expect(page.locator(f"#view-{view} tbody tr").first).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.locator(f"#view-{view} tbody")).not_to_contain_text("加载中")
        if view == "audit":
            page.select_option("#audit-actors", "all")
            page.click("#audit-filter button[type=submit]")
            expect(page.locator("#audit-body tr[data-actor=resident]").first).to_be_visible()
        seen += raw_codes_shown(page, known)
    actions = page.locator("#audit-action option").all_inner_texts()
    seen += [(token, text) for text in actions for token in TOKEN.findall(text) if token in known]

    operator = open_console(context, web_server, staff_token(web_server, "operator"), "appeals")
    row = operator.page.locator("#appeals-body tr").first
    expect(row).to_contain_text("人工复核", timeout=TIMEOUT_MS)
    row.locator("button").click()
    expect(operator.page.locator("#appeal-detail")).to_contain_text("人工复核")
    seen += raw_codes_shown(operator.page, known)
    assert "override" not in operator.page.locator("#appeal-detail").inner_text()

    assert seen == []
    assert console.errors == [] and operator.errors == []


ISO_MINUTE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")


@pytest.mark.parametrize("lang", ["zh-Hans", "zh-Hant", "en", "pt"])
def test_times_read_the_same_in_every_language(
    web_server: Server, context: BrowserContext, lang: str
) -> None:
    admin = staff_token(web_server, "admin")
    page = context.new_page()
    page.goto(f"{web_server.base}/console?lang={lang}")
    page.fill("#signin-token", admin)
    page.click("#signin-form button[type=submit]")
    expect(page.locator("body[data-dashboard=ready]")).to_have_count(1, timeout=TIMEOUT_MS)
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", page.inner_text("#dash-generated"))
    page.click("#tabs a[data-view=audit]")
    expect(page.locator("#audit-body tr[data-action]").first).to_be_visible(timeout=TIMEOUT_MS)
    times = page.locator("#audit-body td:nth-child(2)").all_inner_texts()
    assert times and all(ISO_MINUTE.match(text) for text in times), times
    # The times are UTC+8 whatever the computer's zone: the newest event is within a minute.
    newest = dt.datetime.strptime(times[0], "%Y-%m-%d %H:%M").replace(
        tzinfo=dt.timezone(dt.timedelta(hours=8))
    )
    assert abs(dt.datetime.now(dt.UTC) - newest) < dt.timedelta(minutes=10)


@pytest.fixture
def axe_context(browser: Browser) -> Iterator[BrowserContext]:
    # axe is injected as a script, which the page's CSP forbids: only for these tests.
    context = browser.new_context(
        viewport={"width": 1440, "height": 900},
        reduced_motion="reduce",
        locale="zh-CN",
        bypass_csp=True,
    )
    yield context
    context.close()


def test_every_tab_and_state_passes_axe(
    web_server: Server, axe_context: BrowserContext, activity: dict[str, Any]
) -> None:
    page = axe_context.new_page()
    page.goto(f"{web_server.base}/console")
    expect(page.locator("#view-signin")).to_be_visible()
    assert_clean(page, "sign-in")
    for button in page.locator("#langs button").all():
        box = button.bounding_box()
        assert box and box["width"] >= 44 and box["height"] >= 44, box
    page.click("#signin-form button[type=submit]")
    expect(page.locator("#signin-error")).not_to_be_empty()
    assert_clean(page, "sign-in, nothing typed")

    admin = open_console(axe_context, web_server, staff_token(web_server, "admin")).page
    expect(admin.locator("body[data-dashboard=ready]")).to_have_count(1, timeout=TIMEOUT_MS)
    assert_clean(admin, "dashboard")
    for view in ("keys", "checkpoints", "identity", "audit"):
        admin.click(f"#tabs a[data-view={view}]")
        expect(admin.locator(f"#view-{view} tbody tr").first).to_be_visible(timeout=TIMEOUT_MS)
        expect(admin.locator(f"#view-{view} tbody").first).not_to_contain_text("加载中")
        assert_clean(admin, view)
    admin.click("#tabs a[data-view=checkpoints]")
    admin.fill("#cp-name", "axe gate")
    admin.click("#cp-create button[type=submit]")
    expect(admin.locator("#secret-key")).to_have_text(CHECKPOINT_KEY, timeout=TIMEOUT_MS)
    assert_clean(admin, "checkpoint key shown once")
    admin.click("#tabs a[data-view=audit]")
    admin.select_option("#audit-actors", "all")
    admin.click("#audit-filter button[type=submit]")
    expect(admin.locator("#audit-body tr[data-actor=resident]").first).to_be_visible()
    admin.locator("#audit-body details summary").first.click()
    assert_clean(admin, "audit, everyone, a raw record unfolded")

    appellant(web_server)
    operator = open_console(axe_context, web_server, staff_token(web_server, "operator"), "appeals")
    page = operator.page
    page.locator("#appeals-body tr button").first.click(timeout=TIMEOUT_MS)
    expect(page.locator(".appeal-text")).to_be_visible(timeout=TIMEOUT_MS)
    assert_clean(page, "appeal open")
    page.click("#decision-reject")
    expect(page.locator("#decision-error")).not_to_be_empty()
    assert_clean(page, "appeal, answer missing")
    page.click("#tabs a[data-view=identity]")
    page.click("#counter-submit")
    expect(page.locator("#counter-error")).not_to_be_empty()
    assert_clean(page, "counter form, nothing filled")

    epidemiologist = open_console(
        axe_context, web_server, staff_token(web_server, "epidemiologist")
    )
    epidemiologist.page.goto(f"{web_server.base}/console?lang=en#audit")
    epidemiologist.page.reload()
    expect(epidemiologist.page.locator("#banner")).to_contain_text(
        "role_required", timeout=TIMEOUT_MS
    )
    assert_clean(epidemiologist.page, "403 banner, English")


def test_a_code_the_page_has_no_words_for_shows_as_itself(
    web_server: Server, context: BrowserContext
) -> None:
    admin = staff_token(web_server, "admin")
    page = context.new_page()

    def future_kind(route: Any) -> None:
        # The API as a later version might answer: a feed kind this page was written without.
        body = route.fetch().json()
        body["feeds"]["latest"] = [
            {"id": str(uuid.uuid4()), "kind": "wastewater", "client": "Guangzhou CDC",
             "received_at": dt.datetime.now(dt.UTC).isoformat(), "rows_total": 3,
             "rows_accepted": 3, "rows_rejected": 0, "errors_truncated": False},
        ]  # fmt: skip
        route.fulfill(json=body)

    page.route("**/v1/admin/stats/overview*", future_kind)
    page.goto(f"{web_server.base}/console")
    page.fill("#signin-token", admin)
    page.click("#signin-form button[type=submit]")

    kind = page.locator("#batches-body td:nth-child(2) code.raw")
    expect(kind).to_have_text("wastewater", timeout=TIMEOUT_MS)
    expect(page.locator("#batches-body td:nth-child(3)")).to_have_text("Guangzhou CDC")
