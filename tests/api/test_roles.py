"""Who may call what: each staff role reaches exactly its admin endpoints, and no other kind of
credential (feed key, checkpoint key, resident session) passes for another."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import RunningApp, make_settings, start_app
from support.api import random_prc_id
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.principals import Role
from yuekang.rules import default_rule_set

OPERATOR, EPIDEMIOLOGIST, ADMIN = Role.OPERATOR, Role.EPIDEMIOLOGIST, Role.ADMIN


@dataclass(frozen=True)
class Call:
    """One admin endpoint with a minimal valid request, who may call it, and what the handler
    answers when they do (a 404 from the handler still proves the caller got through)."""

    name: str
    method: str
    path: str
    allowed: frozenset[Role]
    status: int
    code: str | None = None
    json: Callable[[], Any] | None = None
    content: Callable[[], bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, client: httpx.AsyncClient, auth: dict[str, str]) -> httpx.Response:
        kwargs: dict[str, Any] = {"headers": {**self.headers, **auth}}
        if self.json is not None:
            kwargs["json"] = self.json()
        if self.content is not None:
            kwargs["content"] = self.content()
        return await client.request(self.method, self.path, **kwargs)


def _feed_client() -> dict[str, Any]:
    return {"name": f"Health Commission {uuid.uuid4().hex[:8]}", "kinds": ["cases"]}


def _rule_set() -> bytes:
    return json.dumps(default_rule_set().document(), ensure_ascii=False).encode()


CALLS = [
    Call("keys generate", "POST", "/v1/admin/keys", frozenset({ADMIN}), 201, json=dict),
    Call("keys list", "GET", "/v1/admin/keys", frozenset({ADMIN}), 200),
    Call(
        "keys activate",
        "POST",
        "/v1/admin/keys/no-such-kid/activate",
        frozenset({ADMIN}),
        404,
        "key_not_found",
    ),
    Call(
        "keys retire",
        "POST",
        "/v1/admin/keys/no-such-kid/retire",
        frozenset({ADMIN}),
        404,
        "key_not_found",
        json=dict,
    ),
    Call(
        "checkpoints create",
        "POST",
        "/v1/admin/checkpoints",
        frozenset({OPERATOR, ADMIN}),
        201,
        json=lambda: {"name": "Gongbei Port gate 3"},
    ),
    Call(
        "feed-clients create",
        "POST",
        "/v1/admin/feed-clients",
        frozenset({ADMIN}),
        201,
        json=_feed_client,
    ),
    Call("feed-clients list", "GET", "/v1/admin/feed-clients", frozenset({ADMIN}), 200),
    Call(
        "rule-sets active",
        "GET",
        "/v1/admin/rule-sets/active",
        frozenset({OPERATOR, EPIDEMIOLOGIST, ADMIN}),
        200,
    ),
    Call(
        "rule-sets activate",
        "POST",
        "/v1/admin/rule-sets",
        frozenset({EPIDEMIOLOGIST}),
        201,
        content=_rule_set,
        headers={"Content-Type": "application/json"},
    ),
    Call("appeals list", "GET", "/v1/admin/appeals", frozenset({OPERATOR}), 200),
    Call(
        "appeals read",
        "GET",
        f"/v1/admin/appeals/{uuid.uuid4()}",
        frozenset({OPERATOR}),
        404,
        "appeal_not_found",
    ),
    Call(
        "appeals decide",
        "POST",
        f"/v1/admin/appeals/{uuid.uuid4()}/decision",
        frozenset({OPERATOR}),
        404,
        "appeal_not_found",
        json=lambda: {"decision": "reject", "reason": "no grounds given"},
    ),
    Call(
        "residents lookup",
        "POST",
        "/v1/admin/residents/lookup",
        frozenset({OPERATOR, ADMIN}),
        404,
        "resident_not_found",
        json=lambda: {
            "doc_type": "prc_id",
            "doc_number": random_prc_id()[0],
            "reason": "case 12 contact tracing",
        },
    ),
    Call(
        "status set",
        "PUT",
        f"/v1/admin/residents/{uuid.uuid4()}/status",
        frozenset({OPERATOR, ADMIN}),
        404,
        "resident_not_found",
        json=lambda: {"status": "yellow", "reason": "reported by the district"},
    ),
]

RESIDENT_CALLS = [
    ("GET", "/v1/me", None),
    ("GET", "/v1/me/status", None),
    ("GET", "/v1/me/identity", None),
    (
        "PUT",
        "/v1/me/identity",
        {
            "name": "张小三",
            "doc_type": "prc_id",
            "doc_number": "11010519491231002X",
            "birth_date": "1949-12-31",
        },
    ),
    ("POST", "/v1/codes", None),
    ("GET", "/v1/me/appeals", None),
    ("POST", "/v1/me/appeals", {"text": "this is not my status"}),
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def isolated(
    fresh_database_url: str, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[RunningApp]:
    """An app on a database of its own: the allowed calls generate keys and activate rules."""
    settings = make_settings(fresh_database_url, tmp_path / "keys")
    async for app in start_app(settings, clock, MemorySmsSender()):
        yield app


async def test_each_role_reaches_exactly_its_admin_endpoints(isolated: RunningApp):
    tokens = {role: bearer(await isolated.operator_token(role)) for role in Role}
    wrong: list[str] = []
    for call in CALLS:
        for role in Role:
            response = await call.send(isolated.client, tokens[role])
            body = response.json()
            error = body.get("error", {}) if isinstance(body, dict) else {}
            if role in call.allowed:
                if response.status_code != call.status or error.get("code") != call.code:
                    wrong.append(
                        f"{call.name} as {role}: expected {call.status} {call.code}, "
                        f"got {response.status_code} {response.text[:200]}"
                    )
            elif (response.status_code, error.get("code")) != (403, "role_required"):
                wrong.append(
                    f"{call.name} as {role}: expected 403 role_required, "
                    f"got {response.status_code} {response.text[:200]}"
                )
    assert wrong == []


async def test_a_feed_key_is_refused_on_admin_and_resident_endpoints(running: RunningApp):
    feed = bearer(await running.feed_key())
    for call in CALLS:
        response = await call.send(running.client, feed)
        assert response.status_code == 401, (call.name, response.text)
        assert response.json()["error"]["code"] == "invalid_operator_token", call.name
        assert response.headers["WWW-Authenticate"] == "Bearer"
    for method, path, body in RESIDENT_CALLS:
        response = await running.client.request(method, path, json=body, headers=feed)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"]["code"] == "invalid_token", (method, path)


async def test_a_resident_session_and_a_checkpoint_key_are_refused_on_admin_endpoints(
    running: RunningApp,
):
    resident = await running.api.registered()
    gate = bearer(await running.checkpoint_key())
    for call in CALLS:
        for name, auth in (("resident", resident.auth), ("checkpoint", gate), ("nobody", {})):
            response = await call.send(running.client, auth)
            assert response.status_code == 401, (call.name, name, response.text)


async def _push(client: httpx.AsyncClient, auth: dict[str, str]) -> httpx.Response:
    row = {
        "doc_type": "prc_id",
        "doc_number": random_prc_id()[0],
        "category": "close_contact",
        "start_date": "2021-06-01",
    }
    return await client.post(
        "/v1/feeds/cases",
        content=(json.dumps(row) + "\n").encode(),
        headers={
            **auth,
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )


async def test_only_a_feed_key_pushes_feeds(running: RunningApp):
    resident = await running.api.registered()
    others = {
        **{role.value: bearer(await running.operator_token(role)) for role in Role},
        "checkpoint": bearer(await running.checkpoint_key()),
        "resident": resident.auth,
        "nobody": {},
    }
    for name, auth in others.items():
        response = await _push(running.client, auth)
        assert response.status_code == 401, (name, response.text)
        assert response.json()["error"]["code"] in ("invalid_feed_key", "missing_token"), name
    pushed = await _push(running.client, bearer(await running.feed_key("cases")))
    assert pushed.status_code == 201, pushed.text
    assert pushed.json()["rows_accepted"] == 1
