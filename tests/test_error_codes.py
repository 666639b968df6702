"""The error codes clients branch on are one list (``yuekang.errorcodes``): the service answers
no code outside it, the list holds no code the service cannot answer, the reference docs describe
each, and the OpenAPI document carries them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from yuekang.app import create_app
from yuekang.errorcodes import ERROR_CODES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "yuekang"
# Every way a code is written where it is answered. Only the service's package is read: the
# reference systems (src/yuekang_reference) are other applications with their own codes.
EMITTED = [
    re.compile(r'\bcode="([a-z][a-z0-9_]*)"'),  # YuekangError(..., code="...")
    re.compile(r'^\s+code(?:: ClassVar\[str\])? = "([a-z][a-z0-9_]*)"', re.M),  # class default
    re.compile(r'(?:ExchangeRefused|BodyRejected)\(\s*"([a-z][a-z0-9_]*)"'),
    re.compile(r'"code": "([a-z][a-z0-9_]*)"'),  # a body written by hand
    re.compile(r'_send_again\(\s*"([a-z][a-z0-9_]*)"'),
    re.compile(r'\b\d{3}: "([a-z][a-z0-9_]*)"'),  # status -> code tables
    re.compile(r'problems\.append\("([a-z][a-z0-9_]*)"\)'),  # partner conditions
    re.compile(r'\bcode = "([a-z][a-z0-9_]*)" if'),
]


def emitted_codes() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "errorcodes.py":
            continue
        text = path.read_text()
        for pattern in EMITTED:
            for match in pattern.finditer(text):
                found.setdefault(match.group(1), set()).add(relative)
    return found


def test_every_code_the_service_answers_is_listed() -> None:
    unlisted = {code: where for code, where in emitted_codes().items() if code not in ERROR_CODES}
    assert unlisted == {}


def test_every_listed_code_can_be_answered() -> None:
    emitted = emitted_codes()
    assert sorted(set(ERROR_CODES) - set(emitted)) == []


def test_every_code_is_described_in_the_reference() -> None:
    documented: dict[str, set[int]] = {}
    for doc in ("API.md", "EXCHANGE.md"):
        for line in (ROOT / "docs" / doc).read_text().splitlines():
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not line.startswith("| ") or len(cells) != 3:
                continue
            status, names = (cells[0], cells[1]) if cells[0].isdigit() else (cells[1], cells[0])
            if status.isdigit():
                for code in re.findall(r"`([a-z_]+)`", names):
                    documented.setdefault(code, set()).add(int(status))
    missing = sorted(set(ERROR_CODES) - set(documented))
    assert missing == []
    wrong_status = {
        code: (sorted(documented[code]), sorted(statuses))
        for code, statuses in ERROR_CODES.items()
        if not documented[code] <= statuses
    }
    assert wrong_status == {}


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    document: dict[str, Any] = create_app().openapi()
    return document


def test_the_error_body_lists_every_code(openapi: dict[str, Any]) -> None:
    schema = openapi["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert schema["enum"] == sorted(ERROR_CODES)


def test_each_route_documents_the_codes_it_names(openapi: dict[str, Any]) -> None:
    # The codes a route's description names appear under the status each is answered with.
    checked = 0
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            named = set(re.findall(r"`([a-z][a-z0-9_]*)`", operation.get("description", "")))
            for code in sorted(named & set(ERROR_CODES)):
                described = [
                    str(status)
                    for status, response in operation["responses"].items()
                    if f"`{code}`" in response.get("description", "")
                ]
                # Once, under a status it is answered with.
                assert len(described) == 1, (method, path, code, described)
                assert int(described[0]) in ERROR_CODES[code], (method, path, code)
                checked += 1
    assert checked > 40


def test_validation_refusals_are_documented_as_our_error_body(openapi: dict[str, Any]) -> None:
    # FastAPI's own 422 body ({"detail": [...]}) is never answered: ours is {"error": ...}.
    unanswered = [
        (method, path)
        for path, methods in openapi["paths"].items()
        for method, operation in methods.items()
        if "HTTPValidationError" in json.dumps(operation)
    ]
    assert unanswered == []


def test_a_code_with_two_statuses_is_listed_under_the_one_the_route_gives(
    openapi: dict[str, Any],
) -> None:
    # identity_mismatch is 409 in the exchange and 422 when binding (the route says "422").
    responses = openapi["paths"]["/v1/me/identity"]["put"]["responses"]
    listing = {status: r["description"] for status, r in responses.items()}
    assert "`identity_mismatch`" in listing["422"]
    assert "`identity_mismatch`" not in listing["409"]


def test_every_422_names_the_validation_code(openapi: dict[str, Any]) -> None:
    missing = [
        (method, path)
        for path, methods in openapi["paths"].items()
        for method, operation in methods.items()
        if "422" in operation["responses"]
        and "`validation_error`" not in operation["responses"]["422"]["description"]
    ]
    assert missing == []
