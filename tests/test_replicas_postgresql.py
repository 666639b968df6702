"""Streaming replicas for reads, failover to a promoted standby, and what replication keeps of
what the service acknowledged -- on real clusters: a primary and a standby made from it with
``pg_basebackup -R`` (support/replication.py), no orchestrator.

The reads a replica may answer (replicas.py) are seen to come from it by pausing its replay
(``pg_wal_replay_pause()``): a change made on the primary then is not in the replica's answer
while the replica is within the lag bound, and is once it is past it. The failover test kills
the primary (``pg_ctl stop -m immediate``) right after a code, a feed batch and a revocation
were answered, promotes the standby, and finds all three through the same running service,
which follows the promotion by itself through its multi-host DSN, and by SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import RunningApp, make_settings, start_app
from feeds.feedkit import nat, ndjson
from support.api import Resident
from support.replication import Replicated, replicated
from support.servers import free_port
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import DatabaseSettings
from yuekang.db import Timeouts, migrate
from yuekang.principals import Role
from yuekang.replicas import COOKIE, Replicas

PROMOTED_WRITE_SECONDS = 3.0
"""From ``pg_ctl promote`` returning to the first write the running service answers 201: the
service retries no connection on a timer, so the first request after the promotion reconnects
(measured: 0.02-0.08 s here; the bound is for a loaded CI machine)."""


@pytest.fixture(scope="module")
def pair() -> Iterator[Replicated]:
    """A primary with an asynchronous standby, the schema migrated on the primary (and so on
    the standby). The loss test kills its primary: it comes after the tests reading from it."""
    with replicated(synchronous=False) as cluster:
        migrate(cluster.primary_url)
        cluster.wait_replayed()
        yield cluster


@contextlib.asynccontextmanager
async def app_on(
    url: str,
    keys: Path,
    *,
    replicas: tuple[str, ...] = (),
    max_lag: float = 5.0,
    statement_timeout: float = 5.0,
    kept_rows: int = 0,
) -> AsyncIterator[RunningApp]:
    # Nothing kept in the process unless a test says so: a kept status is read from no replica
    # (notices.py), and these tests are about what replicas answer.
    settings = make_settings(
        url,
        keys,
        database=DatabaseSettings(
            replica_urls=list(replicas),
            replica_max_lag_seconds=max_lag,
            statement_timeout_seconds=statement_timeout,
            kept_rows=kept_rows,
        ),
    )
    clock = ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0))
    async with contextlib.aclosing(start_app(settings, clock, MemorySmsSender())) as apps:
        async for running in apps:
            yield running


def replicas_of(running: RunningApp) -> Replicas:
    assert running.context.replicas is not None
    return running.context.replicas


async def until(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Seconds until ``condition`` holds (checked every 10 ms), or fail after ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, what
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def replica_fresh_now(running: RunningApp) -> None:
    """Until the process has measured its replica holding everything committed so far."""
    replicas = replicas_of(running)
    now = replicas.primary_now()
    await until(lambda: replicas.choose(now) is not None, 10, "the replica did not catch up")


async def status(running: RunningApp, resident: Resident, *, cookie: bool) -> dict[str, Any]:
    """The resident's status page, sent with the cookie the client holds or without any."""
    if not cookie:
        running.client.cookies.clear()
    answer = await running.client.get("/v1/me/status", headers=resident.auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def code_for(running: RunningApp, resident: Resident, **headers: str) -> dict[str, Any]:
    answer = await running.client.post("/v1/codes", headers={**resident.auth, **headers})
    assert answer.status_code in (200, 201), answer.text
    body: dict[str, Any] = answer.json()
    return body


async def until_written(running: RunningApp, resident: Resident, key: str) -> float:
    """Ask for a code (with ``key``) until the service answers one, through 503s while it has
    no primary; the seconds it took."""
    started = time.monotonic()
    while True:
        answer = await running.client.post(
            "/v1/codes", headers={**resident.auth, "Idempotency-Key": key}
        )
        if answer.status_code in (200, 201):
            return time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "database_unavailable"
        assert time.monotonic() - started < PROMOTED_WRITE_SECONDS, "no write after promotion"


async def make_red(running: RunningApp, resident_id: uuid.UUID) -> dict[str, Any]:
    """An operator sets the resident red (a write that is not the resident's own)."""
    token = await running.operator_token(Role.OPERATOR)
    changed = await running.client.put(
        f"/v1/admin/residents/{resident_id}/status",
        headers={"Authorization": f"Bearer {token}"},
        json={"status": "red", "reason": "close contact"},
    )
    assert changed.status_code == 200, changed.text
    answer: dict[str, Any] = changed.json()
    return answer


async def replica_figures(running: RunningApp) -> dict[tuple[str, str], float]:
    scraped = await running.client.get("/metrics")
    assert scraped.status_code == 200
    return {
        (sample.name, sample.labels["replica"]): sample.value
        for family in text_string_to_metric_families(scraped.text)
        for sample in family.samples
        if sample.name.startswith("yuekang_db_replica_")
    }


def name_of(cluster: Any) -> str:
    return f"127.0.0.1:{cluster.port}"


# --- reads on a replica ------------------------------------------------------------------------


async def test_postgresql_status_reads_go_to_a_replica_within_the_lag_bound(
    pair: Replicated, tmp_path: Path
) -> None:
    async with app_on(
        pair.primary_url, tmp_path / "keys", replicas=(pair.standby_url,), max_lag=1.5
    ) as running:
        replicas = replicas_of(running)
        resident = await running.api.registered()
        resident_id = await running.resident_id(resident)
        await code_for(running, resident)
        await replica_fresh_now(running)
        # Nothing written for a while: the replica has replayed everything, and its lag stays
        # within a check interval -- where the time since its last replayed commit grows.
        await asyncio.sleep(2)
        figures = await replica_figures(running)
        assert figures[("yuekang_db_replica_serving", name_of(pair.standby))] == 1
        assert figures[("yuekang_db_replica_lag_seconds", name_of(pair.standby))] < 1.0
        (since_commit,) = await pair.asql(
            pair.standby,
            "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp()) AS seconds",
        )
        assert since_commit["seconds"] > 2

        pair.pause_replay()
        try:
            await make_red(running, resident_id)
            # Within the bound, a reader who wrote and saw nothing since gets the replica's
            # answer: what it held before the change.
            assert (await status(running, resident, cookie=False))["status"] == "green"
            # Behind the primary for longer than the bound, it is skipped: the primary answers.
            await until(lambda: replicas.choose() is None, 5, "a lagging replica still used")
            assert (await status(running, resident, cookie=False))["status"] == "red"
            figures = await replica_figures(running)
            assert figures[("yuekang_db_replica_serving", name_of(pair.standby))] == 0
            assert figures[("yuekang_db_replica_lag_seconds", name_of(pair.standby))] > 1.5
        finally:
            pair.resume_replay()
        # Caught up, it serves reads again after its next check.
        back = await until(lambda: replicas.choose() is not None, 5, "not used again")
        assert back < 2 * replicas.interval + 0.5
        assert (await status(running, resident, cookie=False))["status"] == "red"


async def test_postgresql_with_status_rows_kept_a_change_is_read_at_once_despite_the_replica(
    pair: Replicated, tmp_path: Path
) -> None:
    """Where status rows are kept until PostgreSQL notifies a change, a status not kept is read
    from the primary: a replica behind a change already heard would have its old row kept."""
    async with app_on(
        pair.primary_url,
        tmp_path / "keys",
        replicas=(pair.standby_url,),
        max_lag=30,
        kept_rows=1000,
    ) as running:
        notices = running.context.notices
        assert notices is not None
        await asyncio.wait_for(notices.connected.wait(), 10)
        resident = await running.api.registered()
        resident_id = await running.resident_id(resident)
        await replica_fresh_now(running)
        assert (await status(running, resident, cookie=False))["status"] == "green"
        pair.pause_replay()
        try:
            await make_red(running, resident_id)
            # The replica, within its bound, still holds green; the reader has no cookie.
            assert replicas_of(running).choose() is not None
            assert (await status(running, resident, cookie=False))["status"] == "red"
        finally:
            pair.resume_replay()


async def test_postgresql_a_resident_reads_what_they_wrote_and_saw(
    pair: Replicated, tmp_path: Path
) -> None:
    """The status page after the resident's own write (a code, a bound identity) shows that
    write, though a replica within the bound has not replayed it; without the cookie (another
    phone) it is the replica's answer."""
    async with app_on(
        pair.primary_url, tmp_path / "keys", replicas=(pair.standby_url,), max_lag=30
    ) as running:
        resident = await running.api.registered()
        resident_id = await running.resident_id(resident)
        assert (await code_for(running, resident))["status"] == "green"
        await replica_fresh_now(running)

        pair.pause_replay()
        try:
            await make_red(running, resident_id)
            assert (await status(running, resident, cookie=False))["status"] == "green"
            # The resident asks for a code: it shows red (issued from the primary). The page
            # reads the status next, and gets a new code whenever the two differ: it must not
            # be shown green.
            code = await code_for(running, resident)
            assert code["status"] == "red"
            assert COOKIE in running.client.cookies
            assert (await status(running, resident, cookie=True))["status"] == "red"
            # And again: what the last answer showed stays shown (monotonic reads).
            assert (await status(running, resident, cookie=True))["status"] == "red"
            # Without the cookie the replica answers, within the bound.
            assert (await status(running, resident, cookie=False))["status"] == "green"

            # Someone who just proved their identity has a status at once, from the primary,
            # with the cookie or without (the replica has no row yet: its 404 is not trusted).
            newcomer = await running.api.registered()
            assert (await status(running, newcomer, cookie=True))["status"] == "green"
            assert (await status(running, newcomer, cookie=False))["status"] == "green"
            assert replicas_of(running).choose() is not None  # the replica was usable throughout
        finally:
            pair.resume_replay()


async def test_postgresql_a_bundle_to_be_signed_is_made_on_the_primary_and_served_from_the_replica(
    pair: Replicated, tmp_path: Path
) -> None:
    async with app_on(
        pair.primary_url, tmp_path / "keys", replicas=(pair.standby_url,), max_lag=1.5
    ) as running:
        replicas = replicas_of(running)
        gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
        staff = {"Authorization": f"Bearer {await running.operator_token(Role.ADMIN)}"}
        resident = await running.api.registered()
        resident_id = await running.resident_id(resident)
        await code_for(running, resident)
        # A bundle that is not signed yet (or is out of date) cannot be made on the replica: the
        # primary makes it, within the same request.
        assert replicas.choose() is not None
        first = await running.client.get("/v1/trust-bundle", headers=gate)
        assert first.status_code == 200, first.text
        # Refused before it reached the replica: the replica is not taken for a broken one.
        assert replicas.replicas[0].state == "streaming"
        etag = first.headers["etag"]
        await replica_fresh_now(running)
        overview = await running.client.get("/v1/admin/stats/overview", headers=staff)
        assert overview.status_code == 200, overview.text

        pair.pause_replay()
        try:
            revoked = await make_red(running, resident_id)
            assert revoked["codes_revoked"] == 1
            # The replica, within the bound, has not seen the revocation: the bundle it holds
            # is still the latest it knows.
            again = await running.client.get(
                "/v1/trust-bundle", headers={**gate, "If-None-Match": etag}
            )
            assert again.status_code == 304
            await until(lambda: replicas.choose() is None, 5, "a lagging replica still used")
            newer = await running.client.get(
                "/v1/trust-bundle", headers={**gate, "If-None-Match": etag}
            )
            assert newer.status_code == 200
            assert newer.headers["etag"] != etag
            assert overview.status_code == 200
        finally:
            pair.resume_replay()


async def test_postgresql_a_replica_that_is_promoted_or_gone_is_not_read_from(
    pair: Replicated, tmp_path: Path
) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/{pair.database}"
    # The primary named as a replica: a server not in recovery, as a promoted standby is.
    async with app_on(
        pair.primary_url, tmp_path / "keys", replicas=(pair.primary_url, nowhere)
    ) as running:
        replicas = replicas_of(running)
        assert [r.state for r in replicas.replicas] == ["not_in_recovery", "unreachable"]
        resident = await running.api.registered()
        assert (await status(running, resident, cookie=False))["status"] == "green"
        assert replicas.choose() is None
        figures = await replica_figures(running)
        # The primary listed as a replica (as the runbook allows) is no replica that fails to
        # serve: no series for it, or YuekangReplicaNotServing would page for as long as it
        # leads. The one that does not answer is.
        assert ("yuekang_db_replica_serving", name_of(pair.primary)) not in figures
        assert ("yuekang_db_replica_lag_seconds", name_of(pair.primary)) not in figures
        assert [v for (n, _), v in figures.items() if n == "yuekang_db_replica_serving"] == [0]


async def test_postgresql_a_replica_that_stops_is_left_and_taken_back(
    pair: Replicated, tmp_path: Path
) -> None:
    async with app_on(
        pair.primary_url, tmp_path / "keys", replicas=(pair.standby_url,), max_lag=5
    ) as running:
        replicas = replicas_of(running)
        resident = await running.api.registered()
        await replica_fresh_now(running)
        pair.standby.kill()
        try:
            # Whether a check found it gone first or this read did, the primary answers.
            started = time.monotonic()
            assert (await status(running, resident, cookie=False))["status"] == "green"
            assert time.monotonic() - started < 1
            await until(lambda: replicas.choose() is None, 3, "a stopped replica still used")
            assert replicas.replicas[0].state == "unreachable"
        finally:
            pair.standby.restart()
        back = await until(lambda: replicas.choose() is not None, 10, "not used again")
        # Its next check connects again: one check interval after it accepts connections.
        assert back < 3
        assert (await status(running, resident, cookie=False))["status"] == "green"


async def test_postgresql_a_replica_holds_what_was_acknowledged_with_asynchronous_commit(
    pair: Replicated,
) -> None:
    """``synchronous_commit=off`` (as the suite's own clusters run): a commit is acknowledged
    before the primary flushes it, so a replica that replayed the flushed WAL may not hold it.
    Set on the database after the checks' connections were opened, as an operator would."""
    replicas = Replicas.build(
        [pair.standby_url], primary_url=pair.primary_url, max_lag=30, timeouts=Timeouts()
    )
    await replicas._round(wait=5)
    pair.sql(pair.primary, f'ALTER DATABASE "{pair.database}" SET synchronous_commit = off')
    writer = await asyncpg.connect(pair.primary_url.replace("+asyncpg", ""))
    try:
        assert await writer.fetchval("SHOW synchronous_commit") == "off"
        await writer.execute("CREATE TABLE acknowledged (n int)")

        async def fresh_as_of(instant: float, seconds: float) -> bool:
            deadline = time.monotonic() + seconds
            while replicas.choose(instant) is None:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.02)
                await replicas._round(wait=5)
            return True

        assert await fresh_as_of(replicas.fence() / 1000, 10)
        pair.pause_replay()
        try:
            for n in range(20):
                await writer.execute("INSERT INTO acknowledged VALUES ($1)", n)
                acknowledged = replicas.fence() / 1000  # the cookie of that answer
                # The next request comes later: past the cookie's rounding up (1 ms).
                await asyncio.sleep(0.005)
                await replicas._round(wait=5)
                assert replicas.choose(acknowledged) is None, f"write {n} taken as replayed"
        finally:
            pair.resume_replay()
        # Replayed, it serves again: the WAL writer flushes what was acknowledged.
        assert await fresh_as_of(acknowledged, 3)
        # An idle primary whose last record ended at a segment's end (its insert position is
        # past the next page's header) is caught up with as well.
        await writer.execute("INSERT INTO acknowledged VALUES (20)")
        switched = await writer.fetchval("SELECT pg_switch_wal() - '0/0'::pg_lsn")
        assert await writer.fetchval(
            "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn > $1", switched
        )
        assert await fresh_as_of(replicas.fence() / 1000, 3)
    finally:
        pair.sql(pair.primary, f'ALTER DATABASE "{pair.database}" RESET synchronous_commit')
        await writer.execute("DROP TABLE IF EXISTS acknowledged")
        await writer.close()
        await replicas.close()


# --- what replication keeps of what was acknowledged --------------------------------------------


async def test_postgresql_asynchronous_replication_loses_what_the_standby_had_not_received(
    pair: Replicated, tmp_path: Path
) -> None:
    """Asynchronous replication: a code answered 201 while the standby was not receiving (here
    stopped; cut off by the network is the same) is not on the standby promoted after the
    primary dies -- the service no longer knows it, though the resident holds its signed QR
    code. (This test ends the module's pair: it kills the primary.)"""
    async with app_on(pair.multi_host_url, tmp_path / "keys") as running:
        resident = await running.api.registered()
        kept = await code_for(running, resident, **{"Idempotency-Key": "kept"})
        pair.wait_replayed()
        pair.standby.kill()
        lost = await code_for(running, resident, **{"Idempotency-Key": "lost"})
        assert lost["code_id"] != kept["code_id"]
        pair.primary.kill()
        pair.standby.restart()
        pair.standby.promote()
        on_standby = {
            row["code_id"]
            for row in await pair.asql(
                pair.standby,
                "SELECT code_id FROM health_codes WHERE code_id = ANY($1::text[])",
                [kept["code_id"], lost["code_id"]],
            )
        }
        assert on_standby == {kept["code_id"]}
        # The same service, now on the promoted standby (after the 503 of the connection the
        # dead primary left in its pool): the first code is known, the second is not (asked
        # again with its key, the service makes a new one).
        await until_written(running, resident, "kept")
        again = await code_for(running, resident, **{"Idempotency-Key": "kept"})
        assert again["code_id"] == kept["code_id"]
        remade = await code_for(running, resident, **{"Idempotency-Key": "lost"})
        assert remade["code_id"] != lost["code_id"]


@pytest.fixture
def asynchronous_pair() -> Iterator[Replicated]:
    """A pair of the test's own, to break."""
    with replicated(synchronous=False) as cluster:
        migrate(cluster.primary_url)
        yield cluster


@pytest.fixture
def synchronous_pair() -> Iterator[Replicated]:
    """A primary whose commits wait for its standby (``FIRST 1 (standby1)``)."""
    with replicated(synchronous=True) as cluster:
        migrate(cluster.primary_url)
        yield cluster


async def test_postgresql_failover_to_a_synchronous_standby_loses_no_acknowledged_write(
    synchronous_pair: Replicated, tmp_path: Path
) -> None:
    async with app_on(
        synchronous_pair.multi_host_url,
        tmp_path / "keys",
        replicas=(synchronous_pair.standby_url,),
        statement_timeout=1.0,
    ) as running:
        await _unacknowledged_without_the_standby(synchronous_pair, running)
        await _failover(synchronous_pair, running)


async def _unacknowledged_without_the_standby(pair: Replicated, running: RunningApp) -> None:
    """With the synchronous standby gone, a write is not acknowledged: the commit waits for it,
    and past the statement timeout the answer is 503 (the row is committed on the primary only
    and reaches the standby when it is back: the client's retry with its Idempotency-Key gets
    it). Every answered write is on the standby -- and one standby down stops every write."""
    resident = await running.api.registered()
    pair.standby.kill()
    try:
        started = time.monotonic()
        waited = await running.client.post(
            "/v1/codes", headers={**resident.auth, "Idempotency-Key": "unacknowledged"}
        )
        assert waited.status_code == 503, waited.text
        assert time.monotonic() - started < 3
    finally:
        pair.standby.restart()
    pair.wait_streaming()
    retried = await running.client.post(
        "/v1/codes", headers={**resident.auth, "Idempotency-Key": "unacknowledged"}
    )
    assert retried.status_code == 201, retried.text
    assert retried.headers["idempotent-replayed"] == "true"


async def _failover(pair: Replicated, running: RunningApp) -> None:
    client = running.client
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    feed = await running.feed_key("nat-results")
    holder = await running.api.registered()
    other = await running.api.registered()
    other_code = await code_for(running, other)
    other_id = await running.resident_id(other)
    waiting = await running.api.registered()

    # The three acknowledged writes, the primary killed right after the last answer.
    code = await code_for(running, holder, **{"Idempotency-Key": "before-failover"})
    batch_body = ndjson(nat(holder, running.context.clock.now() - dt.timedelta(hours=2)))
    feed_headers = {
        "Authorization": f"Bearer {feed}",
        "Content-Type": "application/x-ndjson",
        "Idempotency-Key": "batch-before-failover",
    }
    batch = await client.post("/v1/feeds/nat-results", content=batch_body, headers=feed_headers)
    assert batch.status_code == 201, batch.text
    revocation = await make_red(running, other_id)
    assert revocation["codes_revoked"] == 1
    pair.primary.kill()

    # Until a standby is promoted nothing can be written: 503, not a hang or a 500.
    down = await client.post("/v1/codes", headers=waiting.auth)
    assert down.status_code == 503, down.text
    assert down.json()["error"]["code"] == "database_unavailable"

    pair.standby.promote()
    first_write = await until_written(running, waiting, "after-failover")
    print(f"first write {first_write:.3f} s after the promotion")

    # Through the same service: the code (its Idempotency-Key answers it again, not a new
    # one), the batch (sent again: its first result), the revocation (a scan says revoked).
    replayed = await client.post(
        "/v1/codes", headers={**holder.auth, "Idempotency-Key": "before-failover"}
    )
    assert replayed.status_code == 201
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json()["code_id"] == code["code_id"]
    resent = await client.post("/v1/feeds/nat-results", content=batch_body, headers=feed_headers)
    assert resent.status_code == 200, resent.text
    assert resent.json()["batch_id"] == batch.json()["batch_id"]
    scan = await client.post("/v1/verify", json={"qr_text": other_code["qr_text"]}, headers=gate)
    assert scan.json()["verdict"] == "invalid"
    assert [r["code"] for r in scan.json()["reasons"]] == ["revoked"]
    valid = await client.post("/v1/verify", json={"qr_text": code["qr_text"]}, headers=gate)
    assert valid.json()["verdict"] == "valid"
    # The promoted standby is a primary now: not read from as a replica.
    replicas = replicas_of(running)
    await until(lambda: replicas.replicas[0].state == "not_in_recovery", 5, "still a replica")
    assert (await status(running, holder, cookie=False))["status"] == "green"

    # And by SQL, on the promoted standby.
    found = await pair.asql(
        pair.standby,
        "SELECT (SELECT count(*) FROM health_codes WHERE code_id = $1) AS code, "
        "(SELECT count(*) FROM revocations WHERE code_id = $2) AS revocation, "
        "(SELECT count(*) FROM feed_batches WHERE idempotency_key = $3) AS batch",
        code["code_id"],
        other_code["code_id"],
        "batch-before-failover",
    )
    assert dict(found[0]) == {"code": 1, "revocation": 1, "batch": 1}


async def test_postgresql_failover_past_a_primary_that_answers_nothing(
    asynchronous_pair: Replicated, tmp_path: Path
) -> None:
    """The old primary partitioned away (frozen: its address takes connections and answers
    nothing) and first in the DSN: the service still reaches the promoted standby, with no
    wait for the old one's connect timeout on every new connection."""
    cluster = asynchronous_pair
    async with app_on(cluster.multi_host_url, tmp_path / "keys", statement_timeout=1) as running:
        resident = await running.api.registered()
        await code_for(running, resident)
        cluster.primary.freeze()
        try:
            cluster.standby.promote()
            promoted = time.monotonic()
            answers = []
            while True:
                write = await running.client.post("/v1/codes", headers=resident.auth)
                answers.append(write.status_code)
                if write.status_code in (200, 201):
                    break
                assert write.status_code == 503, write.text
                assert time.monotonic() - promoted < 10, answers
            # The requests and background reads that were on the old primary's connections
            # wait for their timeouts once (statement 1 s here, connect 2 s); after that no
            # new connection waits for the old primary.
            first_write = time.monotonic() - promoted
            print(f"first write {first_write:.3f} s after the promotion ({answers})")
            assert first_write < 1 + 2 + PROMOTED_WRITE_SECONDS
            for _ in range(3):
                started = time.monotonic()
                await code_for(running, resident)
                assert time.monotonic() - started < 1
        finally:
            # The old primary must not come back as a primary beside the new one (an
            # orchestrator fences it): here it is stopped.
            cluster.primary.thaw()
            cluster.primary.kill()
