"""Text staff and residents read shows what is stored: no controls, no bidirectional overrides,
no zero-width characters, in free text and in names alike."""

from __future__ import annotations

import uuid

import pytest

from conftest import RunningApp
from yuekang.appeals.schemas import AppealCreate
from yuekang.principals import Role

INVISIBLE = {
    "U+202E": "\u202e",  # RIGHT-TO-LEFT OVERRIDE: "evil\u202etxt.exe" shows as "evilexe.txt"
    "U+200B": "\u200b",  # ZERO WIDTH SPACE: two names that look alike and differ
    "U+2066": "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "U+FEFF": "\ufeff",  # ZERO WIDTH NO-BREAK SPACE
    "U+0007": "\x07",  # BEL
    "U+3164": "\u3164",  # HANGUL FILLER: printable by its category, drawn as nothing
    "U+034F": "\u034f",  # COMBINING GRAPHEME JOINER
    "U+2800": "\u2800",  # BRAILLE PATTERN BLANK
}


def refused_for(response, field: str, codepoint: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    fields = response.json()["error"]["fields"]
    assert [f["field"] for f in fields] == [field]
    assert codepoint in fields[0]["detail"]


@pytest.mark.parametrize("codepoint", list(INVISIBLE))
async def test_free_text_and_names_refuse_invisible_characters(running: RunningApp, codepoint: str):
    mark = INVISIBLE[codepoint]
    resident = await running.api.registered()
    admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
    operator = {"Authorization": f"Bearer {await running.operator_token(Role.OPERATOR)}"}

    appeal = await running.client.post(
        "/v1/me/appeals", json={"text": f"我当天在医院{mark}有证明"}, headers=resident.auth
    )
    refused_for(appeal, "text", codepoint)
    checkpoint = await running.client.post(
        "/v1/admin/checkpoints", json={"name": f"拱北口岸{mark}出境"}, headers=admin
    )
    refused_for(checkpoint, "name", codepoint)
    status = await running.client.put(
        f"/v1/admin/residents/{uuid.uuid4()}/status",
        json={"status": "green", "reason": f"核实{mark}无误"},
        headers=operator,
    )
    refused_for(status, "reason", codepoint)
    decision = await running.client.post(
        f"/v1/admin/appeals/{uuid.uuid4()}/decision",
        json={"decision": "reject", "reason": f"证明{mark}不足"},
        headers=operator,
    )
    refused_for(decision, "reason", codepoint)
    epidemiologist = await running.operator_token(Role.EPIDEMIOLOGIST)
    history = await running.client.get(
        f"/v1/admin/residents/{uuid.uuid4()}/status-history",
        params={"reason": f"追踪{mark}密接"},
        headers={"Authorization": f"Bearer {epidemiologist}"},
    )
    assert history.status_code == 422, history.text
    assert codepoint in history.text


async def test_ordinary_text_keeps_its_lines_and_loses_nothing_else(running: RunningApp):
    admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
    created = await running.client.post(
        "/v1/admin/checkpoints", json={"name": "  拱北口岸   旅检大楼\t出境 "}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "拱北口岸 旅检大楼 出境"
    # A line break in free text is kept (CRLF becomes LF); emoji and Macao Portuguese are text.
    body = AppealCreate.model_validate({"text": "第一行\r\n第二行 São Lourenço 🙂"})
    assert body.text == "第一行\n第二行 São Lourenço 🙂"


async def test_a_variation_selector_is_refused_in_a_name_and_kept_in_an_emoji(running: RunningApp):
    admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
    named = await running.client.post(
        "/v1/admin/checkpoints", json={"name": "拱北口岸\ufe0f"}, headers=admin
    )
    refused_for(named, "name", "U+FE0F")
    assert AppealCreate.model_validate({"text": "谢谢 \u2764\ufe0f 核实"}).text.endswith("核实")
