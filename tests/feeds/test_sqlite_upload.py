"""SQLite, the embedded default, has one writer: a feed batch still uploading must not hold it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from conftest import RunningApp
from feeds.feedkit import case, ndjson, post, today
from support.api import Api, random_prc_id


async def test_a_slow_upload_does_not_hold_other_writes(
    backend: str, running: RunningApp, api: Api
):
    if backend != "sqlite":
        pytest.skip("PostgreSQL has no single writer to hold")
    cdc = await running.feed_key("cases")
    go = asyncio.Event()
    body = ndjson(case(random_prc_id()[0], today(running).isoformat()))

    async def slow() -> AsyncIterator[bytes]:
        yield body[:10]
        await go.wait()
        yield body[10:]

    batch = asyncio.create_task(post(running, cdc, "cases", slow(), idempotency_key="slow"))
    await asyncio.sleep(0.2)
    # While the batch is still arriving, a resident can sign in, bind and get a code.
    resident = await asyncio.wait_for(api.registered(), timeout=5)
    assert (await asyncio.wait_for(api.code(resident), timeout=5))["status"] == "green"
    go.set()
    assert (await batch).status_code == 201
