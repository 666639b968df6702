"""No secret, token, one-time code, document number, phone number, name or birth date in any log
line, at any level (issue 18).

Every logger -- the service's, httpx's, asyncio's, uvicorn's -- is set to DEBUG, as
``YUEKANG_LOG__LEVEL=DEBUG`` sets them, and every line is captured as the JSON formatter writes
it (message, extras, tracebacks). SQLAlchemy's engine writes its statements (INFO) with their
parameters hidden; its rows and aiosqlite's copies of each statement with its parameters (DEBUG)
are never turned on (``logs.NOISY``): they hold stored health codes.

One run drives the API as its users do: a resident signs in, binds, gets and shows a code, a
gate verifies it and checks a document, an authority feeds a case, staff look the person up and
decide an appeal, a guardian adds a child, Macao converts a person. Then every route of the
application's table that the story did not reach is called with the values in its body (so a
new route cannot be forgotten). The access log is on, and its lines say which routes answered:
the test fails if any (method, route) of the table is missing from them.

The lines are then searched for every plaintext value used. The development SMS sender, which
writes one-time codes to the log on purpose (and which production refuses), is not used here.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.routing import iter_route_contexts

from conftest import TEST_SECRETS, RunningApp, make_settings, start_app
from exchange.kit import MACAO, claims, our_keys, register, send, subject
from feeds.feedkit import case, ndjson, push, today
from support.api import random_phone, random_prc_id, registry_person
from yuekang.app import create_app
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import ResolvedSettings, Settings
from yuekang.logs import NOISY, JsonFormatter
from yuekang.principals import Role


class Lines(logging.Handler):
    """Every record, as the JSON formatter writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in logging.Logger.manager.loggerDict)]
    levels = {logger: logger.level for logger in loggers}
    disabled = {logger: logger.disabled for logger in loggers}
    for logger in loggers:
        # Those below a noisy logger take its level, as they do in the service's configuration.
        noisy = any(logger.name.startswith(name + ".") for name in NOISY)
        logger.setLevel(logging.NOTSET if noisy else logging.DEBUG)
        logger.disabled = False
    # As YUEKANG_LOG__LEVEL=DEBUG leaves them: SQLAlchemy's statements (INFO, parameters hidden),
    # not its rows nor aiosqlite's repetition of each statement with its parameters (DEBUG).
    for name, floor in NOISY.items():
        logging.getLogger(name).setLevel(floor)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for logger, level in levels.items():
            logger.setLevel(level)
            logger.disabled = disabled[logger]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "keys", access_log=True)


@pytest.fixture
async def logged(
    settings: Settings, clock: ManualClock, sms: MemorySmsSender, captured: Lines
) -> AsyncIterator[RunningApp]:
    # Started after the loggers are at DEBUG: engines and clients log from their first moment.
    async for running_app in start_app(settings, clock, sms):
        yield running_app


def _table(settings: Settings) -> set[tuple[str, str]]:
    """(method, route template) for every route the application answers (HEAD aside: it is
    GET's answer without a body)."""
    app = create_app(ResolvedSettings(settings, settings.secrets or TEST_SECRETS))
    return {
        (method, str(context.path_format))
        for context in iter_route_contexts(app.routes)
        for method in (context.methods or {"GET"})
        if method != "HEAD"
    }


def _chinese_name() -> str:
    return "".join(random.choice("赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨") for _ in range(1)) + "".join(
        random.choice("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞") for _ in range(2)
    )


class Secrets:
    """The plaintext values the run used, each with a label for the failure message."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def add(self, label: str, value: str | None) -> None:
        if value:
            self.values[f"{label} #{len(self.values)}"] = value

    def phone(self, label: str, phone: str) -> None:
        self.add(label, phone)
        self.add(label + " (national)", phone.removeprefix("+86").removeprefix("+853"))

    def found_in(self, lines: list[str]) -> list[str]:
        return [
            f"{label} in: {line[:300]}"
            for label, value in self.values.items()
            for line in lines
            if value in line
        ]


async def test_no_personal_data_token_or_secret_in_any_log_line(
    logged: RunningApp, captured: Lines, settings: Settings
):
    running, client = logged, logged.client
    used = Secrets()
    for name in ("key_passphrase", "session_secret", "otp_secret", "blind_index_key"):
        used.add(f"secret {name}", getattr(TEST_SECRETS, name))
    for kid, key in TEST_SECRETS.pii_keys.items():
        used.add(f"pii key {kid}", key)

    # --- a resident signs in, binds, gets and shows a code -------------------------------------
    phone = random_phone()
    used.phone("phone", phone)
    sent = (await client.post("/v1/auth/otp", json={"phone": phone})).json()
    used.add("one-time code", sent["dev_code"])
    token = await client.post(
        "/v1/auth/token",
        json={"phone": phone, "challenge_id": sent["challenge_id"], "code": sent["dev_code"]},
    )
    assert token.status_code == 200, token.text
    tokens = token.json()
    used.add("access token", tokens["access_token"])
    used.add("refresh token", tokens["refresh_token"])
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    name = _chinese_name()
    doc_number, birth = random_prc_id()
    used.add("name", name)
    used.add("document number", doc_number)
    used.add("birth date", birth.isoformat())
    person = registry_person(name, "prc_id", doc_number, birth)
    assert person is not None
    running.registry.add(person, phone=phone)
    bound = await client.put(
        "/v1/me/identity",
        headers=auth,
        json={
            "name": name,
            "doc_type": "prc_id",
            "doc_number": doc_number,
            "birth_date": birth.isoformat(),
        },
    )
    assert bound.status_code == 201, bound.text
    for path in ("/v1/me", "/v1/me/identity", "/v1/me/status", "/v1/me/sessions"):
        assert (await client.get(path, headers=auth)).status_code == 200, path
    issued = await client.post("/v1/codes", headers=auth)
    assert issued.status_code == 201, issued.text
    code = issued.json()
    used.add("health code", code["qr_text"])
    used.add("health code signature", code["qr_text"].rsplit(".", 1)[1])
    for suffix in (".png", ".svg", ""):
        shown = await client.get(f"/v1/codes/{code['code_id']}{suffix}", headers=auth)
        assert shown.status_code == 200, suffix

    # --- a gate verifies it and checks a document ----------------------------------------------
    gate = await running.checkpoint_key()
    used.add("checkpoint key", gate)
    at_gate = {"Authorization": f"Bearer {gate}"}
    verdict = await client.post("/v1/verify", headers=at_gate, json={"qr_text": code["qr_text"]})
    assert verdict.json()["verdict"] == "valid", verdict.text
    checked = await client.post(
        "/v1/verify/document",
        headers=at_gate,
        json={"doc_type": "prc_id", "doc_number": doc_number},
    )
    assert checked.status_code == 200, checked.text

    # --- an authority feeds a case about them --------------------------------------------------
    feed = await running.feed_key("cases")
    used.add("feed key", feed)
    batch = await push(running, feed, "cases", ndjson(case(doc_number, today(running).isoformat())))
    assert batch["rows_accepted"] == 1, batch
    assert (
        await client.get(
            f"/v1/feeds/batches/{batch['batch_id']}", headers={"Authorization": f"Bearer {feed}"}
        )
    ).status_code == 200

    # --- staff look them up, the resident appeals, staff decide ---------------------------------
    staff = {}
    for role in (Role.OPERATOR, Role.EPIDEMIOLOGIST, Role.ADMIN):
        staff[role] = await running.operator_token(role)
        used.add(f"{role.value} token", staff[role])
    operator = {"Authorization": f"Bearer {staff[Role.OPERATOR]}"}
    found = await client.post(
        "/v1/admin/residents/lookup",
        headers=operator,
        json={"doc_type": "prc_id", "doc_number": doc_number, "reason": "hotline call 12345"},
    )
    assert found.status_code == 200, found.text
    resident_id = found.json()["resident_id"]
    assert (
        await client.get(
            f"/v1/admin/residents/{resident_id}/status-history",
            headers=operator,
            params={"reason": "hotline call 12345"},
        )
    ).status_code == 200
    appeal_text = f"我是{name}，身份证{doc_number}，没有接触"
    used.add("appeal text", appeal_text)
    appealed = await client.post("/v1/me/appeals", headers=auth, json={"text": appeal_text})
    assert appealed.status_code == 201, appealed.text
    appeal_id = appealed.json()["id"]
    assert (await client.get(f"/v1/admin/appeals/{appeal_id}", headers=operator)).status_code == 200
    decided = await client.post(
        f"/v1/admin/appeals/{appeal_id}/decision",
        headers=operator,
        json={"decision": "accept", "reason": "tested negative", "status": "green"},
    )
    assert decided.status_code == 200, decided.text

    # --- a guardian adds a child, who gets a code ----------------------------------------------
    child_name = _chinese_name()
    child_doc, child_birth = random_prc_id(
        today(running) - dt.timedelta(days=random.randrange(365 * 2, 365 * 10))
    )
    used.add("child's name", child_name)
    used.add("child's document number", child_doc)
    used.add("child's birth date", child_birth.isoformat())
    child = registry_person(child_name, "prc_id", child_doc, child_birth)
    assert child is not None
    running.registry.add(child, phone=None)
    added = await client.post(
        "/v1/me/dependants",
        headers=auth,
        json={
            "name": child_name,
            "doc_type": "prc_id",
            "doc_number": child_doc,
            "birth_date": child_birth.isoformat(),
            "relationship": "child",
        },
    )
    assert added.status_code == 201, added.text
    dependant_id = added.json()["id"]
    child_code = await client.post(f"/v1/me/dependants/{dependant_id}/codes", headers=auth)
    assert child_code.status_code in (200, 201), child_code.text
    used.add("child's health code", child_code.json()["qr_text"])
    child_png = f"/v1/me/dependants/{dependant_id}/codes/{child_code.json()['code_id']}.png"
    assert (await client.get(child_png, headers=auth)).status_code == 200

    # --- Macao converts one of its residents ---------------------------------------------------
    await register(running)
    keys = await our_keys(running)
    macao_person = subject(name="陳大文" + random.choice("甲乙丙丁"))
    used.add("Macao name", macao_person["name"])
    used.add("Macao document number", macao_person["doc_number"])
    used.phone("Macao phone", macao_person["phone"])
    converted = await send(running, MACAO.seal(claims(running, subject=macao_person), keys.enc))
    assert converted.status == 201, converted.response.text

    # --- every route the story did not reach, with the values in its body ----------------------
    answered = _answered(captured.lines)
    missing = _table(settings) - answered
    ids = {
        "code_id": code["code_id"],
        "resident_id": resident_id,
        "appeal_id": appeal_id,
        "dependant_id": dependant_id,
        "batch_id": batch["batch_id"],
        "partner_id": "macao",
        "kind": "cases",
        "fmt": "svg",
        "path": "app/common.js",
    }
    body = {
        "name": name,
        "doc_type": "prc_id",
        "doc_number": doc_number,
        "birth_date": birth.isoformat(),
        "phone": phone,
        "code": sent["dev_code"],
        "qr_text": code["qr_text"],
        "refresh_token": tokens["refresh_token"],
        "text": appeal_text,
        "reason": appeal_text,
    }
    credentials = [auth, operator, *({"Authorization": f"Bearer {t}"} for t in staff.values())]
    for method, template in sorted(missing):
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: ids.get(m[1], str(uuid.uuid4())), template)
        for headers in credentials:
            answer = await client.request(
                method, path, headers=headers, json=body if method in ("POST", "PUT") else None
            )
            assert answer.status_code < 500, (method, path, answer.text)
            if answer.status_code not in (401, 403):
                break

    # Sign-out last: the tokens used above stay good until here.
    assert (
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code in (200, 401)
    assert (await client.post("/v1/auth/logout", headers=auth)).status_code in (200, 204, 401)

    # FastAPI serves its OpenAPI document from a plain route and names none in the request's
    # scope (it does so for API routes only), so its access line says "unmatched": asked here
    # for itself, so that its lines are searched too.
    assert (await client.get("/openapi.json")).status_code == 200
    unreached = _table(settings) - _answered(captured.lines) - {("GET", "/openapi.json")}
    assert not unreached, f"routes no request reached: {sorted(unreached)}"
    # The run did log: statements with their parameters, the service's own lines, access lines.
    assert any('"logger": "sqlalchemy.engine.Engine"' in line for line in captured.lines)
    assert any('"logger": "yuekang.access"' in line for line in captured.lines)
    leaks = used.found_in(captured.lines)
    assert not leaks, "\n".join(leaks[:20])


def _answered(lines: list[str]) -> set[tuple[str, str]]:
    import json

    answered = set()
    for line in lines:
        entry = json.loads(line)
        if entry["logger"] == "yuekang.access" and entry["route"] != "unmatched":
            answered.add((entry["method"], entry["route"]))
    return answered
