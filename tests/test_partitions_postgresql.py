"""Codes, revocations and scan records partitioned by day on PostgreSQL (migration 0012,
yuekang.partitions): the migration keeps every row both ways, rows land in their day's partition
(or the DEFAULT one, never an error), housekeeping creates days ahead and drops only what is past
retention, and what the narrower unique constraints guaranteed still holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from conftest import RunningApp, make_settings, start_app
from support.postgres import create_database
from test_migrations import migrate_down
from yuekang import maintenance, partitions
from yuekang.auth.sms import MemorySmsSender
from yuekang.clock import ManualClock
from yuekang.config import MaintenanceSettings, ScanSettings, Settings
from yuekang.db import create_engine, create_sessionmaker, migrate
from yuekang.health_codes import service as codes
from yuekang.principals import Role

TODAY = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def url(pg_server: str) -> str:
    url = create_database(pg_server)
    migrate(url)
    return url


@pytest.fixture
def settings(url: str, tmp_path: Path) -> Settings:
    return make_settings(url, tmp_path / "keys")


async def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql), params)
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def attached(url: str, table: str) -> set[str]:
    rows = await query(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(:table)",
        table=table,
    )
    return {name for (name,) in rows}


def day_name(table: str, day: dt.datetime) -> str:
    return f"{table}_p{day:%Y%m%d}"


def at(days: float, hours: float = 12) -> dt.datetime:
    return TODAY + dt.timedelta(days=days, hours=hours)


@pytest.fixture
async def owners(settings: Settings, clock: ManualClock) -> AsyncIterator[tuple[str, str]]:
    """A resident and a checkpoint for rows to belong to (their foreign keys)."""
    async for running in start_app(settings, clock, MemorySmsSender()):
        resident = await running.resident_id(await running.api.registered())
        gate = await running.checkpoint_key()
        checkpoint = str(uuid.UUID(hex=gate.removeprefix("ykc_").split("_")[0]))
        yield str(resident), checkpoint


SNAPSHOT = {
    "health_codes": "SELECT code_id, resident_id, expires_at, idempotency_key FROM health_codes",
    "revocations": "SELECT code_id, expires_at, reason FROM revocations",
    "scan_records": "SELECT id, checkpoint_id, scan_id, scanned_at FROM scan_records",
}


async def snapshot(url: str) -> dict[str, set[tuple[Any, ...]]]:
    return {table: {tuple(r) for r in await query(url, sql)} for table, sql in SNAPSHOT.items()}


async def seed(url: str, resident: str, checkpoint: str, days: list[float]) -> None:
    for day in days:
        code = f"seed{uuid.uuid4().hex[:18]}"
        await query(
            url,
            "INSERT INTO health_codes (code_id, resident_id, kid, status, qr_text, issued_at, "
            "expires_at, idempotency_key) VALUES (:code, :resident, 'k', 'green', 'YK1:x', "
            "CAST(:at AS timestamptz) - interval '1 hour', :at, :key)",
            code=code,
            resident=uuid.UUID(resident),
            at=at(day),
            key=f"key-{code}",
        )
        await query(
            url,
            "INSERT INTO revocations (code_id, resident_id, reason, revoked_at, expires_at) "
            "VALUES (:code, :resident, 'status_changed', "
            "CAST(:at AS timestamptz) - interval '30 minutes', :at)",
            code=code,
            resident=uuid.UUID(resident),
            at=at(day),
        )
        await query(
            url,
            "INSERT INTO scan_records (checkpoint_id, scan_id, code_id, scanned_at, verdict, "
            "source, received_at) VALUES (:checkpoint, :scan, :code, :at, 'valid', 'offline', "
            ":at)",
            checkpoint=uuid.UUID(checkpoint),
            scan=f"scan-{code}",
            code=code,
            at=at(day),
        )


async def test_the_migration_converts_a_populated_database_both_ways(
    url: str, owners: tuple[str, str]
):
    await asyncio.to_thread(migrate_down, url, "0011")
    assert await query(
        url, "SELECT relkind::text FROM pg_class WHERE relname = 'health_codes'"
    ) == [("r",)]
    # Rows from 70 days ago (before the daily partitions) to next week and past it.
    await seed(url, *owners, days=[-70, -3, -1, 0, 2, 30])
    before = await snapshot(url)

    await asyncio.to_thread(migrate, url)

    assert await snapshot(url) == before
    for table in partitions.PARTITIONED:
        names = await attached(url, table)
        cutoff = TODAY - dt.timedelta(days=60)
        assert f"{table}_before_{cutoff:%Y%m%d}" in names
        assert {day_name(table, at(d)) for d in (-3, -1, 0, 1, 7)} <= names
        assert f"{table}_default" in names
        [(kind,)] = await query(
            url, "SELECT relkind::text FROM pg_class WHERE relname = :t", t=table
        )
        assert kind == "p"
    # Each row in its day's partition; the one past the days created in the DEFAULT one.
    where = dict(await query(url, "SELECT tableoid::regclass::text, 1 FROM scan_records"))
    assert day_name("scan_records", at(-3)) in where
    assert "scan_records_default" in where
    # The identity of scan records goes on from where it was.
    [(newest,)] = await query(url, "SELECT max(id) FROM scan_records")
    await seed(url, *owners, days=[0.5])
    [(after,)] = await query(url, "SELECT max(id) FROM scan_records")
    assert after > newest

    kept = await snapshot(url)
    await asyncio.to_thread(migrate_down, url, "0011")
    assert await snapshot(url) == kept
    assert await query(
        url, "SELECT relkind::text FROM pg_class WHERE relname = 'scan_records'"
    ) == [("r",)]
    await asyncio.to_thread(migrate, url)
    assert await snapshot(url) == kept


async def test_housekeeping_creates_days_ahead_moves_strays_and_drops_only_past_retention(
    url: str, owners: tuple[str, str], tmp_path: Path
):
    # A row 40 days ahead has no partition: the DEFAULT one takes it, no error.
    await seed(url, *owners, days=[40])
    where = await query(
        url, "SELECT tableoid::regclass::text FROM health_codes WHERE expires_at = :t", t=at(40)
    )
    assert where == [("health_codes_default",)]

    # Ten days on, with a retention of three days and 35 days ahead.
    clock = ManualClock(TODAY + dt.timedelta(days=10, hours=1))
    settings = make_settings(
        url,
        tmp_path / "keys",
        scans=ScanSettings(retention_days=3),
        maintenance=MaintenanceSettings(partitions_ahead_days=35),
    )
    engine = create_engine(url, pool_size=2)
    sessions = create_sessionmaker(engine)
    try:
        done = await maintenance.run_once(sessions, settings, clock, force=True)
        again = await maintenance.run_once(sessions, settings, clock, force=True)
    finally:
        await engine.dispose()

    # The rows of days -70 to 1 went with their partitions (no DELETE on PostgreSQL).
    assert done.ran
    assert done.deleted == {"health_codes": 6, "revocations": 6, "scan_records": 6} | {
        k: v for k, v in done.deleted.items() if k not in partitions.PARTITIONED
    }
    horizon = clock.now() - dt.timedelta(days=3)  # day 7, 01:00: days up to the 6th go
    for table in partitions.PARTITIONED:
        names = await attached(url, table)
        # Day 7 from the migration, today (day 10) and 35 days ahead from the round.
        assert {day_name(table, at(d)) for d in [7, *range(10, 46)]} <= names
        assert not {n for n in names if n < day_name(table, at(7)) and "_p" in n}
        assert not [n for n in names if "_before_" in n]
        assert day_name(table, at(46)) not in names
        # Detached and dropped, not left behind as tables.
        assert not await query(
            url, "SELECT 1 FROM pg_class WHERE relname = :n", n=day_name(table, at(5))
        )
    assert set(done.partitions.dropped) >= {day_name(t, at(-1)) for t in partitions.PARTITIONED}
    # A code, its revocation and its scan on days 30 and 40, out of the DEFAULT partitions.
    assert done.partitions.moved == 6
    where = await query(
        url, "SELECT tableoid::regclass::text FROM health_codes WHERE expires_at = :t", t=at(40)
    )
    assert where == [(day_name("health_codes", at(40)),)]
    # Every row that is left is within retention or ahead of it; nothing older survived.
    for table, key in partitions.PARTITIONED.items():
        [(oldest,)] = await query(url, f"SELECT min({key}) FROM {table}")  # noqa: S608
        assert oldest is None or oldest >= horizon - dt.timedelta(days=1)
    # A second round finds nothing to do; two rounds at once do not trip over each other.
    assert (again.partitions.created, again.partitions.dropped) == ([], [])
    engine = create_engine(url, pool_size=4)
    try:
        later = partitions.Done(), partitions.Done()
        await asyncio.gather(
            *(partitions.create_ahead(engine, now=clock.now(), days=37, done=d) for d in later)
        )
    finally:
        await engine.dispose()
    assert sorted(later[0].created + later[1].created) == sorted(
        {day_name(t, at(d)) for t in partitions.PARTITIONED for d in (46, 47)}
    )


async def test_a_repeated_upload_is_stored_once_across_midnight(
    settings: Settings, clock: ManualClock
):
    async for running in start_app(settings, clock, MemorySmsSender()):
        await _repeated_upload(running, clock)


async def _repeated_upload(running: RunningApp, clock: ManualClock) -> None:
    gate = {"Authorization": f"Bearer {await running.checkpoint_key()}"}
    code = await running.api.code(await running.api.registered())
    late = clock.now().replace(hour=0, minute=0, second=0) - dt.timedelta(seconds=1)
    # Yesterday's partition, as housekeeping would have made it a week ago.
    await partitions.create_ahead(running.context.engine, now=late, days=1, done=partitions.Done())

    def batch(scanned_at: dt.datetime) -> dict[str, Any]:
        return {
            "scans": [
                {
                    "scan_id": "before-midnight",
                    "code_id": code["code_id"],
                    "scanned_at": scanned_at.isoformat(),
                    "verdict": "valid",
                }
            ]
        }

    first = await running.client.post("/v1/scans", headers=gate, json=batch(late))
    # The same scan sent again after midnight, and once more with its time shifted into the
    # next day (a device whose clock was corrected): one record, in yesterday's partition.
    again = await running.client.post("/v1/scans", headers=gate, json=batch(late))
    shifted = await running.client.post(
        "/v1/scans", headers=gate, json=batch(late + dt.timedelta(seconds=2))
    )

    assert first.json()["stored"] == 1
    assert again.json() == {"received": 1, "stored": 0, "duplicates": 1, "refused": []}
    assert shifted.json() == {"received": 1, "stored": 0, "duplicates": 1, "refused": []}
    rows = await query(
        running.context.settings.database_url,
        "SELECT tableoid::regclass::text FROM scan_records WHERE scan_id = 'before-midnight'",
    )
    assert rows == [(day_name("scan_records", late),)]


async def test_one_code_per_idempotency_key_when_retries_race_a_second_apart(
    settings: Settings, clock: ManualClock
):
    # The unique constraint holds the partition key (expires_at): two retries a second apart
    # would each pass it. The second waits on the status row's lock and finds the first's code.
    async for running in start_app(settings, clock, MemorySmsSender()):
        await _racing_retries(running, clock)


async def _racing_retries(running: RunningApp, clock: ManualClock) -> None:
    context = running.context
    resident = await running.resident_id(await running.api.registered())

    async def issue(session: Any, now: dt.datetime) -> codes.Issued:
        return await codes.issue_code(
            session,
            resident_id=resident,
            idempotency_key="retry-1",
            keyring=context.keyring,
            issuer=context.settings.issuer,
            lifetime=dt.timedelta(seconds=3600),
            rules=await context.rulebook.current(),
            now=now,
            reuse=False,
        )

    second_session = context.sessionmaker()

    async def retry() -> codes.Issued:
        async with second_session.begin():
            return await issue(second_session, clock.now() + dt.timedelta(seconds=1))

    async with context.sessionmaker() as first_session:
        async with first_session.begin():
            first = await issue(first_session, clock.now())
            racing = asyncio.ensure_future(retry())
            await asyncio.sleep(0.3)  # it is waiting for the status row now
            assert not racing.done()
        second = await racing
    await second_session.close()

    assert not first.replayed and second.replayed
    assert second.code.code_id == first.code.code_id
    [(count,)] = await query(
        context.settings.database_url,
        "SELECT count(*) FROM health_codes WHERE idempotency_key = 'retry-1'",
    )
    assert count == 1


async def test_contact_tracing_finds_nothing_past_retention_before_its_day_is_dropped(
    settings: Settings, clock: ManualClock
):
    # Records go by whole days, up to a day after retention; until then they are not served.
    async for running in start_app(settings, clock, MemorySmsSender()):
        await _traced(running, clock)


async def _traced(running: RunningApp, clock: ManualClock) -> None:
    gate = await running.checkpoint_key()
    code = await running.api.code(await running.api.registered())
    await running.client.post(
        "/v1/verify", headers={"Authorization": f"Bearer {gate}"}, json={"qr_text": code["qr_text"]}
    )
    epi = {"Authorization": f"Bearer {await running.operator_token(Role.EPIDEMIOLOGIST)}"}
    place = str(uuid.UUID(hex=gate.removeprefix("ykc_").split("_")[0]))

    async def traced() -> tuple[int, int]:
        case = {"case_reference": "GZ-2026-0999"}
        travels = await running.client.get(
            f"/v1/admin/codes/{code['code_id']}/scans", headers=epi, params=case
        )
        window = {
            "from": (clock.now() - dt.timedelta(days=400)).isoformat(),
            "to": clock.now().isoformat(),
            **case,
        }
        at_gate = await running.client.get(
            f"/v1/admin/checkpoints/{place}/scans", headers=epi, params=window
        )
        assert travels.status_code == at_gate.status_code == 200, travels.text
        return len(travels.json()), len(at_gate.json())

    clock.advance(1)
    assert await traced() == (1, 1)
    clock.advance(dt.timedelta(days=28, minutes=1).total_seconds())
    assert await traced() == (0, 0)
    stored = await query(
        running.context.settings.database_url,
        "SELECT count(*) FROM scan_records WHERE code_id = :code",
        code=code["code_id"],
    )
    assert stored == [(1,)]  # still there: its day is not wholly past retention yet


def dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


RAW_SCAN = (
    "INSERT INTO scan_records (checkpoint_id, scan_id, code_id, scanned_at, verdict, source, "
    "received_at) VALUES ($1, $2, NULL, $3, 'valid', 'offline', $3)"
)


@pytest.mark.parametrize("steady", [False, True], ids=["burst", "steady"])
async def test_writes_while_a_stalled_day_moves_out_of_default_are_kept_and_the_day_attached(
    url: str, tmp_path: Path, steady: bool
):
    # Housekeeping stalled: a day 200 days on has no partition, and its scans went to DEFAULT.
    # Before the fix a row committed during the copy was deleted uncopied (acknowledged, then
    # gone: the burst), and under steady writes the ATTACH failed on rows that came after the
    # DELETE, every round.
    noon = at(200 + steady)
    clock = ManualClock(noon)
    async for running in start_app(make_settings(url, tmp_path / "keys"), clock, MemorySmsSender()):
        key = await running.checkpoint_key()
        gate = uuid.UUID(hex=key.removeprefix("ykc_").split("_")[0])
        admin = await asyncpg.connect(dsn(url))
        try:
            await admin.execute(
                "INSERT INTO scan_records (checkpoint_id, scan_id, code_id, scanned_at, verdict, "
                "source, received_at) SELECT $1, 'seed-' || g, NULL, $2, 'valid', 'offline', $2 "
                "FROM generate_series(1, 100000) g",
                gate,
                noon,
            )
            written = await _write_during_the_move(running, url, key, noon, steady=steady)
            rows = await admin.fetch(
                "SELECT scan_id, tableoid::regclass::text AS place FROM scan_records "
                "WHERE checkpoint_id = $1",
                gate,
            )
        finally:
            await admin.close()
    done, acknowledged, uploads, burst = written
    day = day_name("scan_records", noon)
    # The burst's 20 were sent while the rows were being moved: they waited, and were stored.
    assert burst == 20
    ids = [scan_id for scan_id, _ in rows]
    assert set(acknowledged) | set(uploads) <= set(ids)  # nothing acknowledged lost
    assert len(ids) == len(set(ids))  # nothing copied twice
    # Every upload the service answered was stored, none refused for landing mid-move.
    assert all(answer == (200, 1) for answer in uploads.values())
    assert len(uploads) > 2 if steady else not uploads
    assert sum(1 for i in ids if i.startswith("seed-")) == 100000
    assert {place for _, place in rows} == {day}
    assert sorted(done.created) == sorted(day_name(t, noon) for t in partitions.PARTITIONED)
    assert not done.failed and not done.deferred
    assert done.moved >= 100000


async def _write_during_the_move(
    running: RunningApp, url: str, key: str, noon: dt.datetime, *, steady: bool
) -> tuple[partitions.Done, list[str], dict[str, tuple[int, int]], int]:
    """Housekeeping makes ``noon``'s partitions while a burst of 20 scans for that day goes in
    the moment the move is seen running; ``steady``: while a writer inserts more all along and
    checkpoint ``key`` uploads more through the API too. The round, what was acknowledged, the
    uploads' answers (status, stored) and how many of the burst went in after the move was seen."""
    acknowledged: list[str] = []
    uploads: dict[str, tuple[int, int]] = {}
    stop = asyncio.Event()
    auth = {"Authorization": f"Bearer {key}"}
    gate = uuid.UUID(hex=key.removeprefix("ykc_").split("_")[0])

    async def writing() -> None:
        connection = await asyncpg.connect(dsn(url))
        try:
            n = 0
            while not stop.is_set():
                n += 1
                await connection.execute(RAW_SCAN, gate, f"steady-{n}", noon)
                acknowledged.append(f"steady-{n}")  # autocommit: committed
        finally:
            await connection.close()

    async def uploading() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            scan = {"scan_id": f"upload-{n}", "code_id": None, "verdict": "invalid"}
            scan |= {"reason": "bad_signature", "scanned_at": noon.isoformat()}
            answer = await running.client.post("/v1/scans", headers=auth, json={"scans": [scan]})
            stored = answer.json().get("stored", 0) if answer.status_code == 200 else 0
            uploads[scan["scan_id"]] = (answer.status_code, stored)

    burst: list[str] = []

    async def during_the_move() -> None:
        watch = await asyncpg.connect(dsn(url))
        connection = await asyncpg.connect(dsn(url))
        try:
            while not stop.is_set():
                if await watch.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE '%INSERT INTO scan_records_p%' AND pid <> pg_backend_pid()"
                ):
                    break
                await asyncio.sleep(0.002)
            else:
                return
            for n in range(20):
                await connection.execute(RAW_SCAN, gate, f"burst-{n}", noon)
                acknowledged.append(f"burst-{n}")
                burst.append(f"burst-{n}")
        finally:
            await watch.close()
            await connection.close()

    chosen = (writing, uploading, during_the_move) if steady else (during_the_move,)
    writers = [asyncio.ensure_future(w()) for w in chosen]
    engine = create_engine(url, pool_size=2)
    done = partitions.Done()
    try:
        await asyncio.sleep(0.2)
        await partitions.create_ahead(engine, now=noon, days=0, done=done)
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.gather(*writers)
        await engine.dispose()
    return done, acknowledged, uploads, len(burst)


@pytest.fixture
def fresh(pg_server: str) -> str:
    """A database of its own, for a round whose drops would reach other tests' partitions."""
    url = create_database(pg_server)
    migrate(url)
    return url


async def test_a_partition_step_that_fails_stops_neither_the_other_tables_nor_retention(
    fresh: str, tmp_path: Path, clock: ManualClock
):
    # Before the fix one failing step (there: an ATTACH refused under steady writes) raised out
    # of the round, so drop_past and every retention step after it never ran, round after round.
    async for running in start_app(
        make_settings(fresh, tmp_path / "keys"), clock, MemorySmsSender()
    ):
        resident = str(await running.resident_id(await running.api.registered()))
        gate = await running.checkpoint_key()
        checkpoint = str(uuid.UUID(hex=gate.removeprefix("ykc_").split("_")[0]))
    # Day 8 has no partition yet (the migration made seven ahead): its rows are in DEFAULT, and
    # moving the revocation out fails.
    await seed(fresh, resident, checkpoint, days=[8])
    await query(
        fresh,
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$",
    )
    await query(
        fresh,
        "CREATE TRIGGER refuse BEFORE DELETE ON revocations_default "
        "FOR EACH ROW EXECUTE FUNCTION refuse()",
    )
    settings = make_settings(
        fresh, tmp_path / "keys", maintenance=MaintenanceSettings(partitions_ahead_days=8)
    )
    engine = create_engine(fresh, pool_size=2)
    sessions = create_sessionmaker(engine)
    try:
        # A day past retention, for the round to drop.
        await partitions.create_ahead(engine, now=at(-40), days=0, done=partitions.Done())
        done = await maintenance.run_once(sessions, settings, ManualClock(at(0)), force=True)
        await query(fresh, "DROP TRIGGER refuse ON revocations_default")
        later = await maintenance.run_once(sessions, settings, ManualClock(at(0)), force=True)
    finally:
        await engine.dispose()

    refused = day_name("revocations", at(8))
    assert list(done.partitions.failed) == [refused]
    assert "refused for the test" in done.partitions.failed[refused]
    # The other tables' day 8, with their rows moved in; the days past retention dropped.
    assert sorted(done.partitions.created) == [
        day_name(t, at(8)) for t in ("health_codes", "scan_records")
    ]
    assert done.partitions.moved == 2
    dropped = {partitions.partition_of(name) for name in done.partitions.dropped}
    assert dropped == set(partitions.PARTITIONED)
    # And the round's other steps ran.
    assert {"exchange_nonces", "otp_challenges", "resident_sessions"} <= set(done.deleted)
    # The revocation stayed in DEFAULT (nothing lost) and goes into its day the next round.
    assert later.partitions.created == [refused] and later.partitions.moved == 1
    assert not later.partitions.failed
    where = await query(fresh, "SELECT tableoid::regclass::text FROM revocations")
    assert where == [(refused,)]


async def test_a_drop_waiting_for_a_long_query_does_not_hold_up_other_queries(fresh: str):
    # A day past retention: a DETACH for each table. A long read of the codes holds the table;
    # before the fix the DETACH waited out 2 s for it, and every query of the table queued
    # behind the waiting DETACH (a 3 ms lookup took 1.8 s).
    old = at(-40)
    before = dict.fromkeys(partitions.PARTITIONED, TODAY - dt.timedelta(days=39))
    engine = create_engine(fresh, pool_size=2)
    await partitions.create_ahead(engine, now=old, days=0, done=partitions.Done())
    reader = await asyncpg.connect(dsn(fresh))
    request = await asyncpg.connect(dsn(fresh))
    done, later = partitions.Done(), partitions.Done()
    latencies: list[float] = []
    try:
        reading = reader.transaction()
        await reading.start()
        await reader.fetchval("SELECT count(*) FROM health_codes")
        dropping = asyncio.ensure_future(partitions.drop_past(engine, before=before, done=done))
        while not dropping.done():
            started = time.monotonic()
            # What verification and contact tracing ask: a code by its id.
            await request.fetch("SELECT resident_id FROM health_codes WHERE code_id = 'nope'")
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.01)
        await dropping
        await reading.rollback()
        await partitions.drop_past(engine, before=before, done=later)
    finally:
        await reader.close()
        await request.close()
        await engine.dispose()

    # Delayed at most one short lock wait at a time (50 ms), not queued for the long read.
    assert max(latencies) < 1.0, latencies
    assert len(latencies) >= 5  # the lookups went on all through the attempts
    codes = day_name("health_codes", old)
    assert done.deferred == [codes]
    assert sorted(done.dropped) == [day_name(t, old) for t in ("revocations", "scan_records")]
    # Once the long read is over, the next round drops it.
    assert later.dropped == [codes] and not later.deferred
