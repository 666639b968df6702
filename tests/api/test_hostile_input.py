"""A sweep of every route with hostile input and valid credentials: nothing answers 5xx.

Each route of the OpenAPI schema gets, with the right kind of credentials, a set of bodies and path
values that are wrong in every way a client can be wrong: types, sizes, nesting, encodings,
unknown fields. The answer must be a documented 4xx (or a normal 2xx), never a server error."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from conftest import RunningApp
from yuekang.principals import Role

HOSTILE_BODIES: list[bytes] = [
    b"",
    b"null",
    b"[]",
    b"{}",
    b'"text"',
    b"1e999999",
    b"{" * 2000,
    b"[" * 5000 + b"]" * 5000,
    b'{"a": "\\ud800"}',
    '{"x": "\u0000"}'.encode(),
    b"\xff\xfe\x00garbage",
    json.dumps({"phone": ["+8613800138000"], "code": {"$gt": ""}}).encode(),
    json.dumps({"qr_text": None}).encode(),
    json.dumps({"qr_text": "YK1:" + "A" * 4000}).encode(),
    json.dumps({"name": "x" * 10_000}).encode(),
    json.dumps(
        {
            "doc_type": "prc_id",
            "doc_number": "11010519491231002X",
            "name": "张三",
            "birth_date": "9999-99-99",
        }
    ).encode(),
    json.dumps(
        {
            "doc_type": "prc_id",
            "doc_number": "１１０１０５１９４９１２３１００２Ｘ",
            "name": "张三",
            "birth_date": "1949-12-31",
        }
    ).encode(),
    json.dumps({"status": "red", "reason": "r" * 501}).encode(),
    json.dumps({"alg": "RS256"}).encode(),
    json.dumps({"compromised": "yes please"}).encode(),
]

PATH_VALUES = [
    "x",
    "%00",
    "..%2F..%2Fetc%2Fpasswd",
    "A" * 300,
    "00000000-0000-0000-0000-000000000000",
    "not-a-uuid",
    "%F0%9F%98%80",
]


def _fill(path: str, value: str) -> str:
    out, depth = "", 0
    for ch in path:
        if ch == "{":
            depth += 1
            out += value
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            out += ch
    return out


async def test_no_route_answers_5xx_to_hostile_input(running: RunningApp):
    resident = await running.api.registered()
    admin = await running.operator_token(Role.ADMIN)
    gate = await running.checkpoint_key()
    schema: dict[str, Any] = (await running.client.get("/openapi.json")).json()
    credentials = [resident.token, admin, gate, "garbage", None]
    rng = random.Random(2026)
    checked = 0
    for path, operations in schema["paths"].items():
        for method in operations:
            for body in HOSTILE_BODIES:
                url = _fill(path, rng.choice(PATH_VALUES))
                token = rng.choice(credentials)
                headers = {"Content-Type": rng.choice(["application/json", "text/plain"])}
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                if rng.random() < 0.2:
                    headers["Idempotency-Key"] = rng.choice(["ok-1", "\t", "x" * 129])
                if rng.random() < 0.2:
                    headers["Accept-Language"] = rng.choice(["q=;;,", "zh;q=abc", "*" * 500])
                response = await running.client.request(method, url, content=body, headers=headers)
                checked += 1
                assert response.status_code < 500, (method, url, body[:80], response.text)
                if response.status_code >= 400 and response.status_code != 404:
                    assert "code" in response.json()["error"], (method, url)
    assert checked >= 20 * len(schema["paths"])


@pytest.mark.parametrize(
    ("value", "status", "code"),
    [
        (b"abc", 400, "bad_request"),
        (b"-1", 400, "bad_request"),
        (b"99999999999999999999999", 413, "payload_too_large"),
    ],
)
async def test_a_nonsense_content_length_is_a_400_or_413(
    running: RunningApp, value: bytes, status: int, code: str
):
    # httpx refuses to send a wrong Content-Length, so the ASGI app is called directly.
    app = running.client._transport.app  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/auth/otp",
        "raw_path": b"/v1/auth/otp",
        "query_string": b"",
        "root_path": "",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "headers": [(b"content-type", b"application/json"), (b"content-length", value)],
    }
    await app(scope, receive, send)
    assert sent[0]["status"] == status
    assert json.loads(sent[1]["body"])["error"]["code"] == code


async def test_json_nested_too_deeply_is_malformed_json(running: RunningApp):
    response = await running.client.post(
        "/v1/auth/otp",
        content=b"[" * 5000 + b"]" * 5000,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"
