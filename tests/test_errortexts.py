"""The catalogue of what refusals say: every code and every request field has its words in the
pages' four languages, so no answer falls back to an English sentence on a Chinese page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_SECRETS, make_settings
from yuekang.app import create_app
from yuekang.codec.reasons import LANGUAGES
from yuekang.config import ResolvedSettings
from yuekang.errorcodes import ERROR_CODES
from yuekang.errortexts import ERRORS, FIELDS, REASONS, field_message, localize

CJK = re.compile(r"[\u4e00-\u9fff]")
API_DOC = Path(__file__).parents[1] / "docs" / "API.md"


def test_every_error_code_has_words_in_every_language():
    assert set(ERRORS) == set(ERROR_CODES)
    for code, texts in ERRORS.items():
        assert len(texts) == len(LANGUAGES), code
        zh_hans, zh_hant, en, pt = texts
        assert CJK.search(zh_hans) and CJK.search(zh_hant), code
        assert not CJK.search(en) and not CJK.search(pt), code
        assert en != pt, code


def request_fields(schema: dict[str, Any]) -> set[str]:
    components = schema["components"]["schemas"]
    found: set[str] = set()

    def walk(node: dict[str, Any], prefix: str, seen: frozenset[str]) -> None:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            if name not in seen:
                walk(components[name], prefix, seen | {name})
            return
        for key in ("anyOf", "oneOf", "allOf"):
            for part in node.get(key, []):
                walk(part, prefix, seen)
        if "items" in node:
            walk(node["items"], prefix, seen)
        for name, part in node.get("properties", {}).items():
            found.add(prefix + name)
            walk(part, f"{prefix}{name}.", seen)

    for operations in schema["paths"].values():
        for operation in operations.values():
            for content in operation.get("requestBody", {}).get("content", {}).values():
                walk(content.get("schema", {}), "", frozenset())
            found.update(p["name"] for p in operation.get("parameters", []) if p["in"] == "query")
    return found


def test_every_request_field_has_a_name_in_every_language(tmp_path: Path):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", tmp_path / "keys")
    app = create_app(ResolvedSettings(settings, TEST_SECRETS))
    fields = request_fields(app.openapi())
    assert "doc_number" in fields and "phone" in fields  # the walk found the request models
    unnamed = sorted(f for f in fields if f not in FIELDS)
    assert not unnamed, f"name these fields in errortexts.FIELDS: {unnamed}"


def test_every_documented_field_reason_has_a_template():
    # The reasons docs/API.md promises in fields[].reason, besides pydantic's own.
    documented = {"missing", "unknown_field", "format", "check_digit", "region", "date"}
    documented |= {"birth_date_mismatch", "region_required"}
    assert documented <= set(REASONS)
    assert all(len(texts) == len(LANGUAGES) for texts in REASONS.values())


@pytest.mark.parametrize(
    ("field", "language", "said"),
    [
        ({"field": "name", "reason": "string_too_short", "limit": 2}, "zh-Hans", "姓名至少需要 2"),
        ({"field": "name", "reason": "missing"}, "zh-Hant", "請填寫姓名"),
        (
            {"field": "name", "reason": "string_too_long", "limit": 64},
            "zh-Hans",
            "姓名最多 64 个字符",
        ),
        ({"field": "scans.3.verdict", "reason": "missing"}, "en", "Please enter the verdict."),
        (
            {"field": "doc_number", "reason": "check_digit"},
            "zh-Hans",
            "证件号码的校验位不符，请检查是否输错",
        ),
        ({"field": "birth_date", "reason": "date_parsing"}, "pt", "Data de nascimento tem de ser"),
        ({"field": "birth_date", "reason": "date"}, "zh-Hans", "出生日期不能晚于今天"),
        ({"field": "doc_number", "reason": "a_reason_from_later"}, "en", "Document number is not"),
    ],
)
def test_field_messages_read_as_sentences(field: dict[str, Any], language: str, said: str):
    assert field_message(field, language).startswith(said)


def test_localizing_keeps_the_services_own_words_as_detail():
    error = {
        "code": "invalid_document",
        "message": "doc_number: The check digit of the PRC resident ID does not match",
        "fields": [{"field": "doc_number", "reason": "check_digit", "message": "The check digit"}],
    }
    localized = localize(error, "zh-Hans", 422)
    assert localized["message"] == "证件信息有误：证件号码的校验位不符，请检查是否输错"
    assert localized["detail"] == error["message"]
    assert localized["fields"][0]["detail"] == "The check digit"
    assert localized["code"] == "invalid_document"
