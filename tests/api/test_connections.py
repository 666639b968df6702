"""The request connection pool: more requests than connections, and connections that died."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest

from conftest import RunningApp, make_settings, start_app
from support.api import Resident
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import DatabaseSettings


async def test_more_issuances_at_once_than_pooled_connections_all_complete(
    database_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
):
    """Issuance holds a connection (the status row is locked) when it asks the key ring for a
    key, and the tests' ring reloads on every call: sharing the request pool, 60 issuances at
    once would each wait for a connection the others hold, until the pool's timeout. The wait
    for a connection is raised here to 20 s, so that only such a deadlock -- not a busy machine
    running the rest of the suite -- makes a request give up."""
    settings = make_settings(
        database_url, tmp_path, database=DatabaseSettings(pool_timeout_seconds=20)
    )
    async for running in start_app(settings, clock, sms):
        people = [await running.api.registered() for _ in range(60)]
        answers = await asyncio.wait_for(
            asyncio.gather(*(running.api.issue(person) for person in people)), timeout=25
        )
        assert [answer.status_code for answer in answers] == [201] * 60, {
            answer.text for answer in answers if answer.status_code != 201
        }


@pytest.mark.parametrize("fast_lane", [True, False], ids=["fast-lane", "routes-only"])
async def test_a_lost_connection_is_a_503_to_send_again_and_the_next_request_works(
    database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    sms: MemorySmsSender,
    backend: str,
    fast_lane: bool,
):
    """A connection that died (PostgreSQL restarted, a proxy cut it) costs a request a clear
    503, not a 500, and the next request works: connections are not pinged before use. An
    ordinary issuance or scan does not even see it: its batch fails and it is tried again, on
    the direct path and the ordinary one alike."""
    if backend != "postgresql":
        pytest.skip("SQLite has no server to lose")
    settings = make_settings(database_url, tmp_path / "keys", fast_lane=fast_lane)
    async for running in start_app(settings, clock, sms):
        await _lost_connections(running)


async def _lost_connections(running: RunningApp) -> None:
    resident = await running.api.registered()
    assert (await running.api.issue(resident)).status_code == 201
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}

    await _cut_connections(running)
    lost = await running.api.issue(resident, **{"Idempotency-Key": "after-the-cut"})
    assert lost.status_code == 503
    assert lost.json()["error"]["code"] == "database_unavailable"
    assert lost.headers["retry-after"] == "2"  # docs/RELIABILITY.md: a server that cannot serve now
    again = await running.api.issue(resident, **{"Idempotency-Key": "after-the-cut"})
    assert again.status_code == 201

    await _cut_connections(running)
    code = await running.api.issue(resident)
    assert code.status_code == 201

    await _cut_connections(running)
    verdict = await running.client.post(
        "/v1/verify", json={"qr_text": code.json()["qr_text"]}, headers=gate
    )
    assert (verdict.status_code, verdict.json()["verdict"]) == (200, "valid")


async def _cut_connections(running: RunningApp) -> None:
    url = running.context.settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    assert killed >= 1


@pytest.mark.parametrize(("overflow", "kept_open"), [(0, True), (4, False)])
async def test_the_pool_keeps_its_connections_open_under_more_requests_than_it_holds(
    database_url: str,
    tmp_path: Path,
    clock: ManualClock,
    sms: MemorySmsSender,
    backend: str,
    overflow: int,
    kept_open: bool,
):
    """With more status reads at once than pooled connections, an overflow connection is closed
    when given back, and the next burst opens PostgreSQL backends again -- a fork and set-up
    each, which was three quarters of a status read's database CPU. Without overflow (the
    default) the pool's connections stay open: the second burst opens none."""
    if backend != "postgresql":
        pytest.skip("SQLite opens no server connections")
    settings = make_settings(
        database_url,
        tmp_path / "keys",
        # Nothing kept in the process (notices.py): every status read takes a connection.
        database=DatabaseSettings(
            pool_size=4, pool_overflow=overflow, pool_timeout_seconds=20, kept_rows=0
        ),
    )
    async for running in start_app(settings, clock, sms):
        people = [await running.api.registered() for _ in range(4)]

        async def burst(app: RunningApp, readers: list[Resident]) -> None:
            answers = await asyncio.gather(
                *(app.client.get("/v1/me/status", headers=person.auth) for person in readers * 6)
            )
            assert {answer.status_code for answer in answers} == {200}

        async def sessions() -> int:
            dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
            connection = await asyncpg.connect(dsn)
            try:
                return int(
                    await connection.fetchval(
                        "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
                    )
                )
            finally:
                await connection.close()

        await burst(running, people)  # the pool fills
        before = await sessions()
        await burst(running, people)
        opened = await sessions() - before - 1  # less this count's own connection
        assert (opened == 0) is kept_open, opened
