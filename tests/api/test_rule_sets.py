"""Epidemiologists changing the rules: a validated rule set goes into force at once, an invalid one
is refused with every problem and changes nothing, and statuses are decided again under it.

Activating a rule set changes what every test on the same database sees, so each test here has a
database of its own."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningApp, make_settings, start_app
from support.api import Resident
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import RuleSettings, Settings
from yuekang.principals import Role
from yuekang.rules import default_rule_set

LOCAL = dt.timezone(dt.timedelta(hours=8))
DEFAULT_VERSION = "gd-2021.3"
SHORTER = "gd-2021.2-cc7"


@pytest.fixture
def settings(fresh_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(fresh_database_url, tmp_path / "keys")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def shorter_close_contact(version: str = SHORTER, days: int = 7) -> dict[str, Any]:
    document = copy.deepcopy(default_rule_set().document())
    document["version"] = version
    [rule] = [r for r in document["rules"] if r["id"] == "close_contact"]
    rule["when"]["lasts_days"] = days
    return document


def default_toml() -> str:
    return (
        resources.files("yuekang.rules").joinpath("rulesets").joinpath("gd-2021.toml").read_text()
    )


async def post_rule_set(
    app: RunningApp, headers: dict[str, str], body: str | bytes, content_type: str
) -> httpx.Response:
    return await app.client.post(
        "/v1/admin/rule-sets",
        content=body.encode() if isinstance(body, str) else body,
        headers={**headers, "Content-Type": content_type},
    )


async def active(app: RunningApp, headers: dict[str, str]) -> dict[str, Any]:
    response = await app.client.get("/v1/admin/rule-sets/active", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def push_case(app: RunningApp, resident: Resident, category: str, start: dt.date) -> None:
    row = {
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "category": category,
        "start_date": start.isoformat(),
    }
    response = await app.client.post(
        "/v1/feeds/cases",
        content=(json.dumps(row) + "\n").encode(),
        headers={
            **bearer(await app.feed_key("cases")),
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["rows_accepted"] == 1, response.text


async def my_status(app: RunningApp, resident: Resident) -> dict[str, Any]:
    response = await app.client.get("/v1/me/status", headers=resident.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_epidemiologist_puts_a_modified_rule_set_in_force(running: RunningApp):
    author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    reader = bearer(await running.operator_token(Role.OPERATOR))
    before = await active(running, reader)
    assert before["version"] == DEFAULT_VERSION
    assert before["document"] == default_rule_set().document()

    document = shorter_close_contact()
    created = await post_rule_set(running, author, json.dumps(document), "application/json")
    assert created.status_code == 201, created.text
    assert created.json()["version"] == SHORTER
    now_active = await active(running, reader)
    assert now_active["version"] == SHORTER
    assert now_active["document"] == document
    [rule] = [r for r in now_active["document"]["rules"] if r["id"] == "close_contact"]
    assert rule["when"]["lasts_days"] == 7

    # The same version again with the same content is harmless.
    again = await post_rule_set(
        running, author, json.dumps(document), "application/json; charset=utf-8"
    )
    assert again.status_code == 201, again.text
    # With other content it is refused: a version names one rule set for good.
    other = await post_rule_set(
        running, author, json.dumps(shorter_close_contact(days=10)), "application/json"
    )
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "rule_set_version_exists"
    assert (await active(running, reader))["document"] == document

    # The TOML form of a rule set is accepted as well.
    toml = default_toml().replace(f'version = "{DEFAULT_VERSION}"', 'version = "gd-2021.4"')
    from_toml = await post_rule_set(running, author, toml, "application/toml")
    assert from_toml.status_code == 201, from_toml.text
    assert (await active(running, reader))["version"] == "gd-2021.4"


async def test_an_invalid_rule_set_is_refused_with_every_problem(running: RunningApp):
    author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    toml = (
        default_toml()
        .replace(f'version = "{DEFAULT_VERSION}"', 'version = "gd 2021 draft"')
        .replace('status = "yellow"', 'status = "orange"', 1)
        .replace("lasts_days = 14 }", "lasts_days = 0 }", 1)
    )
    refused = await post_rule_set(running, author, toml, "application/toml")
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_rule_set"
    assert all(f["field"] == "rule_set" for f in error["fields"])
    where = sorted(f["detail"].split(":")[0] for f in error["fields"])
    # Every problem, each naming where it is (rules by their position in the file).
    assert where == ["rules.3.when.case.lasts_days", "rules.7.status", "version"]

    placeholder = default_toml().replace("至 {until} 止", "至 {end_day} 止", 1)
    unknown = await post_rule_set(running, author, placeholder, "application/toml")
    assert unknown.status_code == 422
    [problem] = unknown.json()["error"]["fields"]
    assert "end_day" in problem["detail"]

    for body, content_type in (
        ('version = "x\n[[rules]', "application/toml"),
        ("[1, 2, 3]", "application/json"),
        ("{", "application/json"),
    ):
        broken = await post_rule_set(running, author, body, content_type)
        assert broken.status_code == 422, body
        assert broken.json()["error"]["code"] == "invalid_rule_set"
        assert broken.json()["error"]["fields"], body

    assert (await active(running, author))["version"] == DEFAULT_VERSION


async def test_only_toml_or_json_is_read(running: RunningApp):
    author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        refused = await post_rule_set(running, author, default_toml(), content_type)
        assert refused.status_code == 415, content_type
        assert refused.json()["error"]["code"] == "unsupported_media_type"
    assert (await active(running, author))["version"] == DEFAULT_VERSION


async def test_statuses_are_decided_again_under_the_new_rule_set(
    running: RunningApp, clock: ManualClock
):
    today = clock.now().astimezone(LOCAL).date()
    eight_days = await running.api.registered()
    three_days = await running.api.registered()
    await push_case(running, eight_days, "close_contact", today - dt.timedelta(days=8))
    await push_case(running, three_days, "close_contact", today - dt.timedelta(days=3))
    for resident in (eight_days, three_days):
        status = await my_status(running, resident)
        assert status["status"] == "red"
        assert status["rule_set_version"] == DEFAULT_VERSION

    author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    created = await post_rule_set(
        running, author, json.dumps(shorter_close_contact()), "application/json"
    )
    assert created.status_code == 201, created.text

    # No new fact: the next read decides again under the rule set now in force.
    status = await my_status(running, eight_days)
    assert status["status"] == "green"
    assert status["reason_codes"] == []
    assert status["rule_set_version"] == SHORTER
    assert status["valid_until"] is None
    assert (await running.api.code(eight_days))["status"] == "green"

    status = await my_status(running, three_days)
    assert status["status"] == "red"
    assert status["rule_set_version"] == SHORTER
    end = dt.datetime.combine(today + dt.timedelta(days=4), dt.time(), LOCAL)
    assert dt.datetime.fromisoformat(status["valid_until"]) == end
    assert (today + dt.timedelta(days=3)).isoformat() in status["explanation"][0]


async def test_going_back_to_an_earlier_version_puts_it_in_force_again(
    running: RunningApp, clock: ManualClock
):
    author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    shorter = await post_rule_set(
        running, author, json.dumps(shorter_close_contact()), "application/json"
    )
    assert shorter.status_code == 201, shorter.text
    clock.advance(60)
    back = await post_rule_set(
        running, author, json.dumps(default_rule_set().document()), "application/json"
    )
    assert back.status_code == 201, back.text
    assert (await active(running, author))["version"] == DEFAULT_VERSION


async def test_the_last_activation_is_in_force_even_within_the_same_instant(running: RunningApp):
    author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
    shorter = await post_rule_set(
        running, author, json.dumps(shorter_close_contact()), "application/json"
    )
    assert shorter.status_code == 201, shorter.text
    # The clock has not moved: both activations carry the same activated_at.
    back = await post_rule_set(
        running, author, json.dumps(default_rule_set().document()), "application/json"
    )
    assert back.status_code == 201, back.text
    assert back.json()["version"] == DEFAULT_VERSION
    assert (await active(running, author))["version"] == DEFAULT_VERSION


async def test_a_process_still_on_the_old_rules_does_not_decide_back(
    settings: Settings, running: RunningApp, clock: ManualClock, sms: MemorySmsSender
):
    # A second process on the same database that re-reads the rule set only rarely.
    lagging_settings = settings.model_copy(update={"rules": RuleSettings(refresh_seconds=3600)})
    async for lagging in start_app(lagging_settings, clock, sms, bootstrap=False):
        resident = await running.api.registered()
        assert (await my_status(lagging, resident))["rule_set_version"] == DEFAULT_VERSION
        author = bearer(await running.operator_token(Role.EPIDEMIOLOGIST))
        posted = await post_rule_set(
            running, author, json.dumps(shorter_close_contact()), "application/json"
        )
        assert posted.status_code == 201, posted.text
        assert (await my_status(running, resident))["rule_set_version"] == SHORTER

        # The lagging process still holds the old rules, but must not decide back under them.
        assert (await my_status(lagging, resident))["rule_set_version"] == SHORTER
        assert (await my_status(running, resident))["rule_set_version"] == SHORTER
