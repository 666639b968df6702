"""Refusals in the reader's language: every error answer's message follows Accept-Language
(zh-Hans when it names none of ours), whichever layer refused -- a request model, a service, the
body limit before parsing, the fast lane, the router -- and the service's own words stay as
``detail``."""

from __future__ import annotations

import pytest

from conftest import RunningApp

LANGUAGES = {
    None: ("zh-Hans", "填写的信息有误：请填写手机号"),
    "zh-CN,zh;q=0.9": ("zh-Hans", "填写的信息有误：请填写手机号"),
    "zh-TW": ("zh-Hant", "填寫的資料有誤：請填寫手機號碼"),
    "en-GB,en;q=0.8": ("en", "Some details are not valid: Please enter the phone number."),
    "pt-PT": ("pt", "Alguns dados não são válidos: Falta preencher: número de telemóvel."),
    "fr-FR": ("zh-Hans", "填写的信息有误：请填写手机号"),
}


@pytest.mark.parametrize("accept", list(LANGUAGES))
async def test_a_missing_field_is_asked_for_in_the_readers_language(
    running: RunningApp, accept: str | None
):
    headers = {"Accept-Language": accept} if accept else {}
    answer = await running.client.post("/v1/auth/otp", json={}, headers=headers)
    assert answer.status_code == 422
    language, message = LANGUAGES[accept]
    assert answer.headers["content-language"] == language
    assert "Accept-Language" in answer.headers["vary"]
    error = answer.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"] == message
    assert error["fields"][0]["field"] == "phone"
    assert error["fields"][0]["reason"] == "missing"
    assert error["detail"] == "phone: Field required"
    assert int(answer.headers["content-length"]) == len(answer.content)


async def test_identity_errors_read_as_the_resident_would_understand_them(running: RunningApp):
    resident = await running.api.sign_in()
    zh = {**resident.auth, "Accept-Language": "zh-CN"}
    empty_name = await running.client.put(
        "/v1/me/identity",
        headers=zh,
        json={"name": "", "doc_type": "prc_id", "doc_number": "11010519491231002X"},
    )
    assert empty_name.status_code == 422
    assert empty_name.json()["error"]["fields"][0]["message"] == "请填写姓名"

    typo = await running.client.put(
        "/v1/me/identity",
        headers=zh,
        json={
            "name": "张三",
            "doc_type": "prc_id",
            "doc_number": "110105194912310021",
            "birth_date": "1949-12-31",
        },
    )
    assert typo.status_code == 422
    error = typo.json()["error"]
    assert error["code"] == "invalid_document"
    assert error["message"] == "证件信息有误：证件号码的校验位不符，请检查是否输错"
    assert "check digit" in error["detail"]


async def test_every_layer_answers_in_the_readers_language(running: RunningApp):
    en = {"Accept-Language": "en"}
    # The body limit, before anything is parsed.
    too_big = await running.client.post(
        "/v1/auth/otp", content=b"{" + b" " * 70_000 + b"}", headers=en
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["message"] == "The request body is too large."
    # The fast lane's verify, refusing an unknown checkpoint key.
    verify = await running.client.post(
        "/v1/verify",
        json={"qr_text": "YK1:x"},
        headers={"Authorization": "Bearer ck_unknown", "Accept-Language": "zh-TW"},
    )
    assert verify.status_code == 401
    assert verify.json()["error"]["message"] == "查驗點密鑰無效或已停用"
    # The router: no such route, wrong method.
    missing = await running.client.get("/v1/nothing-here", headers={"Accept-Language": "pt"})
    assert (missing.status_code, missing.json()["error"]["message"]) == (404, "Não encontrado.")
    method = await running.client.delete("/v1/auth/otp")
    assert method.status_code == 405
    assert method.json()["error"]["message"] == "不支持这种请求方法"
    # A service's refusal: signed out.
    me = await running.client.get("/v1/me", headers=en)
    assert me.json()["error"] == {
        "code": "missing_token",
        "message": "Please sign in first.",
        "detail": me.json()["error"]["detail"],
    }


async def test_answers_that_are_not_errors_are_left_alone(running: RunningApp):
    keys = await running.client.get("/.well-known/jwks.json", headers={"Accept-Language": "en"})
    assert keys.status_code == 200
    assert "content-language" not in keys.headers


async def test_accept_language_sent_twice_counts_as_one_list(running: RunningApp):
    answer = await running.client.post(
        "/v1/auth/otp",
        json={},
        headers=[("Accept-Language", "fr"), ("Accept-Language", "pt")],
    )
    assert answer.headers["content-language"] == "pt"


async def test_a_thousand_wrong_keys_get_a_short_answer(running: RunningApp):
    body = {f"k{n}": n for n in range(1000)}
    answer = await running.client.post("/v1/auth/otp", json=body)
    assert answer.status_code == 422
    fields = answer.json()["error"]["fields"]
    assert len(fields) == 20
    assert "more" in answer.json()["error"]["detail"]
    assert len(answer.content) < 8_000


async def test_empty_boxes_are_asked_for_rather_than_called_malformed(running: RunningApp):
    # Found by a newcomer: an empty phone read 手机号格式不正确, an empty birth date
    # 出生日期应为日期（如 2026-12-07）.
    phone = await running.client.post("/v1/auth/otp", json={"phone": ""})
    assert phone.json()["error"]["fields"][0]["message"] == "请填写手机号"
    resident = await running.api.sign_in()
    birth = await running.client.put(
        "/v1/me/identity",
        headers=resident.auth,
        json={"name": "张三", "doc_type": "prc_id", "doc_number": "11010519491231002X",
              "birth_date": ""},
    )  # fmt: skip
    [field] = birth.json()["error"]["fields"]
    assert (field["field"], field["reason"], field["message"]) == (
        "birth_date", "missing", "请填写出生日期",
    )  # fmt: skip
