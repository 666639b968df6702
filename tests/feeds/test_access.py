"""Who may push what, and how a request that is not a batch is refused."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from conftest import RunningApp
from feeds.feedkit import NDJSON, error_code, my_status, nat, ndjson, post, push, today
from feeds.feedkit import case as case_row
from support.api import Api
from yuekang.principals import Role


async def _admin(running: RunningApp) -> dict[str, str]:
    return {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}


async def test_an_admin_creates_a_client_whose_key_sends_only_its_kinds(
    running: RunningApp, api: Api
):
    resident = await api.registered()
    admin = await _admin(running)
    created = await running.client.post(
        "/v1/admin/feed-clients",
        headers=admin,
        json={"name": f"Tianhe lab {uuid.uuid4().hex[:8]}", "kinds": ["nat-results"]},
    )
    assert created.status_code == 201, created.text
    client = created.json()
    assert client["kinds"] == ["nat-results"]
    key = client["api_key"]
    listed = await running.client.get("/v1/admin/feed-clients", headers=admin)
    mine = [c for c in listed.json() if c["id"] == client["id"]]
    assert len(mine) == 1
    assert "api_key" not in mine[0]
    assert key not in listed.text

    refused = await post(
        running, key, "cases", ndjson(case_row(resident, today(running).isoformat()))
    )
    assert error_code(refused) == (403, "kind_not_allowed")
    assert (await my_status(running, resident))["status"] == "green"

    sampled = running.context.clock.now() - dt.timedelta(hours=1)
    taken = await push(running, key, "nat-results", ndjson(nat(resident, sampled)))
    assert taken["rows_accepted"] == 1
    assert (await my_status(running, resident))["nat"]["latest_result"] == "negative"


async def test_only_an_admin_creates_feed_clients_and_names_are_unique(running: RunningApp):
    body = {"name": f"Guangzhou CDC {uuid.uuid4().hex[:8]}", "kinds": ["cases", "travel"]}
    operator = {"Authorization": f"Bearer {await running.operator_token(Role.OPERATOR)}"}
    as_operator = await running.client.post("/v1/admin/feed-clients", headers=operator, json=body)
    assert error_code(as_operator) == (403, "role_required")
    admin = await _admin(running)
    first = await running.client.post("/v1/admin/feed-clients", headers=admin, json=body)
    assert first.status_code == 201, first.text
    again = await running.client.post("/v1/admin/feed-clients", headers=admin, json=body)
    assert error_code(again) == (409, "feed_client_exists")


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        pytest.param(None, "missing_token", id="none"),
        pytest.param("Bearer ", "missing_token", id="empty"),
        pytest.param("Basic dXNlcjpwYXNz", "missing_token", id="basic"),
        pytest.param("Bearer garbage", "invalid_feed_key", id="garbage"),
        pytest.param("Bearer ykf_" + "A" * 40, "invalid_feed_key", id="made-up"),
    ],
)
async def test_a_batch_needs_a_feed_key(running: RunningApp, authorization, code):
    headers = {"Content-Type": NDJSON, "Idempotency-Key": "x"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await running.client.post("/v1/feeds/cases", content=b"{}\n", headers=headers)
    assert error_code(response) == (401, code)
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_other_credentials_are_not_feed_keys(running: RunningApp, api: Api):
    resident = await api.registered()
    for token in (
        resident.token,
        await running.checkpoint_key(),
        await running.operator_token(Role.ADMIN),
    ):
        response = await post(running, token, "cases", b"{}\n")
        assert error_code(response) == (401, "invalid_feed_key")


async def test_an_unknown_kind_is_not_found(running: RunningApp):
    key = await running.feed_key()
    response = await post(running, key, "vaccines", b"{}\n")
    assert error_code(response) == (404, "unknown_feed_kind")


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
)
async def test_a_batch_is_ndjson_or_csv(running: RunningApp, api: Api, content_type: str):
    resident = await api.registered()
    key = await running.feed_key("cases")
    body = ndjson(case_row(resident, today(running).isoformat()))
    response = await post(running, key, "cases", body, content_type=content_type)
    assert error_code(response) == (415, "unsupported_media_type")
    assert (await my_status(running, resident))["status"] == "green"


async def test_a_batch_needs_an_idempotency_key(running: RunningApp, api: Api):
    resident = await api.registered()
    key = await running.feed_key("cases")
    body = ndjson(case_row(resident, today(running).isoformat()))

    missing = await post(running, key, "cases", body, idempotency_key=None)
    assert error_code(missing) == (400, "idempotency_key_required")
    for bad in ("", "k" * 129):
        invalid = await post(running, key, "cases", body, idempotency_key=bad)
        assert error_code(invalid) == (400, "invalid_idempotency_key")
    assert (await my_status(running, resident))["status"] == "green"

    longest = await push(running, key, "cases", body, idempotency_key="k" * 128)
    assert longest["idempotency_key"] == "k" * 128


async def test_an_idempotency_key_with_a_control_character_is_refused(running: RunningApp):
    key = await running.feed_key("cases")
    body = ndjson(case_row("110105198001010011", "2024-01-01"))
    response = await post(running, key, "cases", body, idempotency_key="batch\t7")
    assert error_code(response) == (400, "invalid_idempotency_key")


async def test_a_feed_client_name_fits_where_it_is_recorded(running: RunningApp) -> None:
    # The name is written as the actor of every status change the client's batches cause: the
    # longest name allowed must go through a batch that changes a status, on both databases.
    admin = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
    longest = await running.client.post(
        "/v1/admin/feed-clients", headers=admin, json={"name": "a" * 64, "kinds": ["cases"]}
    )
    assert longest.status_code == 201, longest.text
    resident = await running.api.registered()
    row = {
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "category": "close_contact",
        "start_date": today(running).isoformat(),
    }
    batch = await running.client.post(
        "/v1/feeds/cases",
        content=json.dumps(row) + "\n",
        headers={
            "Authorization": f"Bearer {longest.json()['api_key']}",
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": "long-name",
        },
    )
    assert batch.status_code == 201, batch.text
    assert batch.json()["statuses_changed"] == 1
    too_long = await running.client.post(
        "/v1/admin/feed-clients", headers=admin, json={"name": "b" * 65, "kinds": ["cases"]}
    )
    assert too_long.status_code == 422
