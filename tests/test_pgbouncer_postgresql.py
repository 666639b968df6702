"""The service through pgbouncer in transaction mode (``YUEKANG_DATABASE__POOLER=transaction``).

Debian's pgbouncer 1.18 runs in front of the suite's PostgreSQL with a pool of 3 server
connections, fewer than the service's own pool: each transaction gets whichever server connection
is free, and one left by another client as that client left it. What must not outlive a
transaction is asyncpg's named prepared statements (db.pooler_connect_args); the advisory locks
of the feed writer and of scan uploads, the feed writer's temporary table and its table lock are
all transaction-scoped, so they do not. Migrations go straight to PostgreSQL, as operators are
told to (docs/OPERATIONS.md): through pgbouncer they meet earlier runs' statements too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from conftest import RunningApp, make_settings, start_app
from support import pgbouncer as bouncers
from support.api import Resident
from support.postgres import ThrowawayPostgres, create_database, private_cluster
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import DatabaseSettings
from yuekang.db import Pooler, create_engine, migrate, schema_behind
from yuekang.principals import Role

POOL = 3
"""pgbouncer's server connections per database: fewer than the service's pool of 20."""


@pytest.fixture(scope="module")
def bouncer(pg_server: str) -> Iterator[bouncers.Pgbouncer]:
    missing = bouncers.available()
    if missing:
        pytest.skip(missing)
    with bouncers.pgbouncer(pg_server, pool_size=POOL) as running:
        yield running


@pytest.fixture(scope="module")
def direct_url(pg_server: str) -> str:
    """A database of this module's, migrated straight on PostgreSQL."""
    url = create_database(pg_server)
    migrate(url)
    return url


@pytest.fixture(scope="module")
def pooled_url(bouncer: bouncers.Pgbouncer, direct_url: str) -> str:
    return bouncer.url(direct_url)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _two_clients_take_turns(url: str, pooler: Pooler) -> None:
    """Two pooled connections of one engine, as two requests use them: the second prepares a
    statement while the first holds a server connection, and runs it again later on whichever
    server connection pgbouncer gives it then -- the first one's."""
    engine = create_engine(url, pool_size=2, pooler=pooler)
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.execute(text("SELECT 1"))  # holds server connection A
            await second.execute(text("SELECT count(*) FROM residents"))  # prepared on B
            await second.commit()
            await first.commit()  # A is the last freed: the next transaction gets it
            await second.execute(text("SELECT count(*) FROM residents"))
            await second.commit()
    finally:
        await engine.dispose()


async def test_named_prepared_statements_fail_through_pgbouncer_and_the_setting_prevents_it(
    pooled_url: str,
):
    """The failure ``pooler="transaction"`` prevents: without it, a statement asyncpg prepared
    (and SQLAlchemy cached) on one server connection is missing from the next one."""
    with pytest.raises(
        DBAPIError, match=r'prepared statement "__asyncpg_stmt_\w+__" does not exist'
    ):
        await _two_clients_take_turns(pooled_url, "none")

    await _two_clients_take_turns(pooled_url, "transaction")


@pytest.fixture
def unmigrated_url(pg_server: str, bouncer: bouncers.Pgbouncer) -> str:
    """A new database with no schema, through pgbouncer."""
    return bouncer.url(create_database(pg_server))


async def test_the_schema_check_through_pgbouncer_after_a_restart(
    unmigrated_url: str, monkeypatch: pytest.MonkeyPatch
):
    """``yuekang serve`` checks the schema before starting. A process started again numbers its
    statements from 1, as the one before did, and meets that one's statements on the pooled
    server connection: without the setting the check fails, which reads as a database that did
    not answer, and a schema behind the code goes unnoticed. With it, the check says what to do."""
    empty = unmigrated_url

    async def earlier_process() -> None:
        monkeypatch.setattr(asyncpg.connection, "_uid", 0)
        engine = create_engine(empty, pool_size=1)
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        await engine.dispose()

    await earlier_process()
    monkeypatch.setattr(asyncpg.connection, "_uid", 0)
    # Even SQLAlchemy's first query on a new connection (``select pg_catalog.version()``) meets
    # the earlier process's "__asyncpg_stmt_1__": "already exists".
    assert await schema_behind(empty) is None

    monkeypatch.setattr(asyncpg.connection, "_uid", 0)
    behind = await schema_behind(empty, pooler="transaction")
    assert behind is not None and "run `yuekang db upgrade` first" in behind


@pytest.fixture
async def running(
    pooled_url: str, tmp_path: Path, clock: ManualClock, sms: MemorySmsSender
) -> AsyncIterator[RunningApp]:
    # A transaction waiting in pgbouncer's queue counts against the statement timeout (its
    # BEGIN is a statement), one waiting for the service's own pool against the pool timeout:
    # both raised, so that only a deadlock -- not a busy machine running the rest of the
    # suite -- makes a request give up.
    settings = make_settings(
        pooled_url,
        tmp_path / "keys",
        database=DatabaseSettings(
            pooler="transaction", pool_timeout_seconds=20, statement_timeout_seconds=20
        ),
    )
    async for app in start_app(settings, clock, sms):
        yield app


async def travel(running: RunningApp, resident: Resident, clock: ManualClock) -> dict[str, Any]:
    """A travel batch naming the resident: the feed path under the advisory lock, its rows
    written with COPY in a savepoint (or, sent again, through a temporary staging table)."""
    key = await running.feed_key("travel")
    row = {
        "doc_type": "prc_id",
        "doc_number": resident.doc_number,
        "region_code": "440104",
        "date": clock.now().date().isoformat(),
    }
    response = await running.client.post(
        "/v1/feeds/travel",
        content=(json.dumps(row) + "\n").encode(),
        headers={
            **bearer(key),
            "Content-Type": "application/x-ndjson",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status_code == 201, response.text
    batch: dict[str, Any] = response.json()
    return batch


async def test_the_main_flows_work_through_pgbouncer(running: RunningApp, clock: ManualClock):
    api = running.api
    gate = await running.checkpoint_key()
    admin = bearer(await running.operator_token(Role.ADMIN))

    # Sign-in with a one-time code, identity proofing, a new code and its image.
    resident = await api.registered()
    issued = await api.issue(resident)
    assert issued.status_code == 201, issued.text
    code = issued.json()
    image = await running.client.get(f"/v1/codes/{code['code_id']}.png", headers=resident.auth)
    assert (image.status_code, image.headers["content-type"]) == (200, "image/png")

    # Online verification, then a feed batch (its advisory lock, its COPY) touching the holder.
    verdict = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert (verdict.status_code, verdict.json()["verdict"]) == (200, "valid")
    for _ in range(2):  # the second time, the row is known: the staging table's merge
        batch = await travel(running, resident, clock)
        assert (batch["rows_accepted"], batch["rows_rejected"]) == (1, 0)

    # Red status: the code is revoked, and every scan says so.
    assert (await running.set_red(resident))["codes_revoked"] == 1
    verdict = await running.client.post(
        "/v1/verify", headers=bearer(gate), json={"qr_text": code["qr_text"]}
    )
    assert verdict.json()["verdict"] == "invalid"
    assert [reason["code"] for reason in verdict.json()["reasons"]] == ["revoked"]

    # A checkpoint's trust bundle and its offline scans; the console's figures.
    bundle = await running.client.get("/v1/trust-bundle", headers=bearer(gate))
    assert bundle.status_code == 200, bundle.text
    scans = {
        "scans": [
            {"scan_id": uuid.uuid4().hex, "code_id": code["code_id"],
             "scanned_at": clock.now().isoformat(), "verdict": "valid"}
        ]
    }  # fmt: skip
    stats = await running.client.get("/v1/admin/stats/overview", headers=admin)
    assert stats.status_code == 200, stats.text
    uploaded = await running.client.post("/v1/scans", headers=bearer(gate), json=scans)
    assert uploaded.json() == {"received": 1, "stored": 1, "duplicates": 0, "refused": []}


async def test_more_requests_at_once_than_pgbouncer_has_server_connections(
    running: RunningApp, direct_url: str
):
    """20 issuances and 20 scans at once through 3 server connections: pgbouncer queues the
    transactions, and every request is answered as without it. The single issuance path locks
    the status row and then reads keys on the key ring's own engine, which pgbouncer serves from
    the same 3 connections: the test's key ring reloads on every call."""
    gate = bearer(await running.checkpoint_key())
    people = [await running.api.registered() for _ in range(20)]
    issued = await asyncio.wait_for(
        asyncio.gather(
            *(running.api.issue(p, **{"Idempotency-Key": uuid.uuid4().hex}) for p in people)
        ),
        timeout=60,
    )
    assert [answer.status_code for answer in issued] == [201] * 20, {
        answer.text for answer in issued if answer.status_code != 201
    }
    verdicts = await asyncio.gather(
        *(
            running.client.post("/v1/verify", headers=gate, json={"qr_text": a.json()["qr_text"]})
            for a in issued
        )
    )
    assert {v.json()["verdict"] for v in verdicts} == {"valid"}

    # PostgreSQL saw no more than pgbouncer's pool of this database, however many the service
    # opened to pgbouncer.
    server = await asyncpg.connect(direct_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        backends = await server.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await server.close()
    assert 0 < backends <= POOL
    assert running.context.engine.pool.checkedin() > POOL  # type: ignore[attr-defined]


async def test_pgbouncer_gone_is_a_503_and_the_service_recovers_when_it_is_back(
    running: RunningApp, bouncer: bouncers.Pgbouncer
):
    resident = await running.api.registered()
    bouncer.stop_process()
    try:
        lost = await running.api.issue(resident, **{"Idempotency-Key": "while-gone"})
        assert lost.status_code == 503
        assert lost.json()["error"]["code"] == "database_unavailable"
    finally:
        bouncer.start()
    again = await running.api.issue(resident, **{"Idempotency-Key": "while-gone"})
    assert again.status_code == 201, again.text


@pytest.fixture
def own_cluster() -> Iterator[tuple[ThrowawayPostgres, bouncers.Pgbouncer, str]]:
    """A cluster of the test's own to stop, a migrated database on it, and a pgbouncer in front
    that tries a server it could not reach again after 1 s (``server_login_retry``, 15 s by
    default; docs/OPERATIONS.md suggests lowering it)."""
    missing = bouncers.available()
    if missing:
        pytest.skip(missing)
    with private_cluster() as cluster:
        direct = create_database(cluster.server_url)
        migrate(direct)
        with bouncers.pgbouncer(cluster.server_url, server_login_retry="1") as bouncer:
            yield cluster, bouncer, direct


async def test_postgresql_gone_behind_pgbouncer_is_a_503_until_it_is_back(
    own_cluster: tuple[ThrowawayPostgres, bouncers.Pgbouncer, str],
    tmp_path: Path,
    clock: ManualClock,
    sms: MemorySmsSender,
):
    """pgbouncer stays up while PostgreSQL behind it stops: the service answers 503
    database_unavailable (pgbouncer's "server login has been failing" is a connection failure
    like any other), and answers again once PostgreSQL is back and pgbouncer has tried it."""
    cluster, bouncer, direct = own_cluster
    settings = make_settings(
        bouncer.url(direct),
        tmp_path / "keys",
        # A request waiting for PostgreSQL through pgbouncer gives up after this.
        database=DatabaseSettings(pooler="transaction", statement_timeout_seconds=2),
    )
    async for running in start_app(settings, clock, sms):
        resident = await running.api.registered()
        cluster.kill()
        for attempt in range(2):
            lost = await running.api.issue(resident, **{"Idempotency-Key": "down"})
            assert lost.status_code == 503, (attempt, lost.text)
            assert lost.json()["error"]["code"] == "database_unavailable"
        cluster.restart()
        for _ in range(20):
            again = await running.api.issue(resident, **{"Idempotency-Key": "down"})
            if again.status_code != 503:
                break
            await asyncio.sleep(0.25)
        assert again.status_code == 201, again.text


async def test_rows_are_kept_behind_pgbouncer_only_with_a_listen_url_of_the_primary(
    running: RunningApp,
    pooled_url: str,
    direct_url: str,
    tmp_path: Path,
    clock: ManualClock,
    sms: MemorySmsSender,
):
    # Through pgbouncer in transaction mode LISTEN has no session to live in: nothing is kept.
    assert running.context.notices is None
    settings = make_settings(
        pooled_url,
        tmp_path / "listening",
        database=DatabaseSettings(
            pooler="transaction",
            pool_timeout_seconds=20,
            statement_timeout_seconds=20,
            listen_url=direct_url,
        ),
    )
    async for app in start_app(settings, clock, sms):
        notices = app.context.notices
        assert notices is not None
        await asyncio.wait_for(notices.connected.wait(), 10)
        resident = await app.api.registered()
        resident_id = await app.resident_id(resident)
        first = await app.client.get("/v1/me/status", headers=resident.auth)
        assert first.status_code == 200
        assert app.context.statuses.get(resident_id) is not None
        # A change committed through pgbouncer is heard on the primary's own connection.
        await app.set_red(resident)
        changed = await app.client.get("/v1/me/status", headers=resident.auth)
        assert changed.json()["status"] == "red"
        connection = await asyncpg.connect(direct_url.replace("+asyncpg", ""))
        try:
            await connection.execute(
                "UPDATE health_status SET vaccine_doses = 4 WHERE resident_id = $1", resident_id
            )
        finally:
            await connection.close()
        deadline = asyncio.get_running_loop().time() + 10
        while app.context.statuses.get(resident_id) is not None:
            assert asyncio.get_running_loop().time() < deadline, "the change went unheard"
            await asyncio.sleep(0.01)
        read = await app.client.get("/v1/me/status", headers=resident.auth)
        assert read.json()["vaccination"]["doses"] == 4
