"""Daily partitions of the history tables on PostgreSQL: created ahead, dropped after retention.

Codes and revocations are partitioned by ``expires_at``, scan records by ``scanned_at``, one
partition per UTC day named ``<table>_pYYYYMMDD`` (migration 0012; rows older than its first
daily partition share ``<table>_before_YYYYMMDD``), plus ``<table>_default``. Housekeeping
(maintenance.py) calls :func:`create_ahead` and :func:`drop_past` each round: partitions for
``partitions_ahead_days`` days ahead, rows that fell into the DEFAULT partition moved into their
day's partition, and whole partitions past retention detached and dropped -- a DETACH of 4 ms
and a DROP of 190 ms for a day of 667,000 codes, where a DELETE would remove them row by row
and leave the table to vacuum. SQLite keeps one table each and the DELETE path.

Why a DEFAULT partition rather than relying on partitions being there: a row whose day has no
partition would otherwise fail its INSERT -- a 500 for an issuance or a scan -- if housekeeping
had not run for ``partitions_ahead_days`` (its lease stuck, its DDL refused for a week). With
the DEFAULT partition the row is kept and found; queries for it lose their pruning only until
the next round moves it.

Moving a day out of DEFAULT and attaching its partition is one transaction that first locks the
parent alone, then the DEFAULT partition, ACCESS EXCLUSIVE: the move (one statement), the
ATTACH's check of DEFAULT and every writer see the same rows, so a row committed meanwhile is
neither deleted uncopied nor left in DEFAULT to fail the ATTACH. The parent's lock, not only
DEFAULT's, because an INSERT picks its partition before it waits for that partition's lock: one
that picked DEFAULT and waited there would fail its new constraint once the day is attached; and
ACCESS EXCLUSIVE because anything weaker lets a reader of DEFAULT turn writer while this waits
for DEFAULT, a deadlock (the comment in ``_attach``). The table's queries wait for the
transaction: milliseconds while DEFAULT is empty, as it is while housekeeping keeps up (a
DETACH holds the same lock as long); after a stall, the time to move the day's rows, up to the
service's statement timeout (``database.statement_timeout_seconds``, then a 503); then they find
the new partition. The move is held to that timeout too: a backlog larger than it can move fails
every round (``Done.failed``) until a round with a longer timeout moves it (docs/OPERATIONS.md).

A lock that makes traffic queue behind it while it is waited for -- those two, and the same on
the parent that a DETACH takes (``DETACH ... CONCURRENTLY`` refuses a table with a DEFAULT
partition) -- is waited for only ``TRAFFIC_LOCK_TIMEOUT`` at a time, ``ATTEMPTS`` times a round
with jittered pauses between, so a query meets at most that much delay per attempt; a long query
on the table defers the step to a later round (``Done.deferred``). Waits that queue nobody (the
advisory lock that makes processes take turns, dropping a table already detached) keep
``LOCK_TIMEOUT``.

Every step runs in its own transaction and is safe to run twice or from two processes at once:
a partition is created only if missing (a concurrent creator's duplicate is ignored), and
dropped only if still attached. A step that fails otherwise is logged and reported in
``Done.failed``, and the round goes on with the others: one table's trouble stops neither the
other tables nor retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from yuekang.db import database_unavailable

log = logging.getLogger("yuekang")

PARTITIONED: dict[str, str] = {
    "health_codes": "expires_at",
    "revocations": "expires_at",
    "scan_records": "scanned_at",
}
"""Each partitioned table and its partition key."""

WIDENED: dict[str, tuple[str, ...]] = {
    "uq_health_codes_idempotency": ("resident_id", "idempotency_key", "expires_at"),
    "uq_scan_records_scan": ("checkpoint_id", "scan_id", "scanned_at"),
}
"""The unique constraints that carry the partition key on PostgreSQL (a partitioned table's
unique constraints must); the models declare SQLite's, without it."""

_NAME = re.compile(r"^(?P<table>[a-z_]+?)_(?:p(?P<day>\d{8})|before_(?P<before>\d{8})|default)$")

LOCK_TIMEOUT = "2s"
"""How long partition DDL waits for a lock that queues nobody behind it while waited for (the
advisory lock, a detached table's) before giving up until the next round."""

TRAFFIC_LOCK_TIMEOUT = "50ms"
"""How long one attempt waits for a lock that queues the table's traffic behind it while waited
for (measured before: a 3 ms lookup took 1.8 s behind a DETACH waiting out 2 s)."""

ATTEMPTS = 4
"""Attempts at such a lock per step and round, ``PAUSE`` seconds apart (jittered)."""

PAUSE = (0.1, 0.4)


def partition_of(name: str) -> str | None:
    """The partitioned table whose partition ``name`` would be, by the naming of this module."""
    found = _NAME.match(name)
    if found is None or found["table"] not in PARTITIONED:
        return None
    return found["table"]


def _upper_bound(name: str) -> dt.datetime | None:
    """Where a dated partition's range ends (None for the DEFAULT partition)."""
    found = _NAME.match(name)
    if found is None:
        return None
    if found["day"]:
        return _midnight(found["day"]) + dt.timedelta(days=1)
    if found["before"]:
        return _midnight(found["before"])
    return None


def _midnight(digits: str) -> dt.datetime:
    return dt.datetime.strptime(digits, "%Y%m%d").replace(tzinfo=dt.UTC)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter for comparing the models with a database: a partition, and its indexes,
    are the migration's and housekeeping's, not the models'; and the unique constraints that
    must carry the partition key on PostgreSQL are left to the migration (0012), which the
    partition tests check (tests/test_partitions_postgresql.py)."""
    if type_ == "table" and reflected and name is not None and partition_of(name):
        return False
    table = getattr(obj, "table", None)
    if type_ == "index" and reflected and table is not None and partition_of(table.name):
        return False
    return not (type_ == "unique_constraint" and name in WIDENED)


async def is_partitioned(engine: AsyncEngine) -> bool:
    """Whether this database has the partitioned tables (PostgreSQL after migration 0012)."""
    if engine.dialect.name != "postgresql":
        return False
    async with engine.connect() as connection:
        kind = await connection.scalar(
            text("SELECT relkind::text FROM pg_class WHERE oid = to_regclass('health_codes')")
        )
    return bool(kind == "p")


@dataclasses.dataclass(frozen=True)
class Partition:
    table: str
    name: str
    upper: dt.datetime | None
    attached: bool


async def partitions(engine: AsyncEngine) -> list[Partition]:
    """The partitions of the history tables by this module's naming, attached or left detached
    by a round that stopped between detaching and dropping."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT c.relname, i.inhparent::regclass::text AS parent "
                "FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid "
                "WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace"
            )
        )
        found = []
        for name, parent in rows:
            table = partition_of(name)
            if table is None or parent not in (None, table):
                continue
            found.append(Partition(table, name, _upper_bound(name), parent is not None))
    return sorted(found, key=lambda p: (p.table, p.name))


def _day_literal(day: dt.date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"


DDL_LOCK = 0x5950_4152
"""The advisory lock (``YPAR``) that makes two processes' partition changes take turns."""

_LOCKED = ("55P03", "40P01")
"""lock_not_available, deadlock_detected: the lock is tried again, or in the next round."""

_RACED = ("42P07", "42710", "23505", "42P01")
"""Created (42P07, 42710, 23505) or dropped (42P01) by someone not taking turns."""

_T = TypeVar("_T")


@dataclasses.dataclass
class Done:
    created: list[str] = dataclasses.field(default_factory=list)
    moved: int = 0
    dropped: list[str] = dataclasses.field(default_factory=list)
    removed: dict[str, int] = dataclasses.field(default_factory=dict)
    """Rows gone past retention by table: in the partitions dropped, or deleted from DEFAULT."""
    deferred: list[str] = dataclasses.field(default_factory=list)
    """Partitions not created or dropped for want of a lock (a long query): the next round's."""
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    """Steps that failed otherwise, by partition, with the error; the round went on."""


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state if isinstance(state, str) else None


async def _ddl(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[_T]],
    *,
    name: str,
    done: Done,
    unless: str | None = None,
    traffic: bool = True,
) -> _T | None:
    """``work`` in one transaction, after any other process's partition change (an advisory
    lock), under ``TRAFFIC_LOCK_TIMEOUT`` (``traffic``: its locks queue queries while waited for)
    or ``LOCK_TIMEOUT``, tried ``ATTEMPTS`` times; not at all when the table ``unless`` exists by
    then. None when it did not run: no lock in time (``name`` is then in ``done.deferred``), or
    a concurrent round did the same first."""
    rng = random.Random()  # noqa: S311 -- jitter, not a secret
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with engine.begin() as connection:
                await connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK}
                )
                if unless is not None and await connection.scalar(
                    text("SELECT to_regclass(:name) IS NOT NULL"), {"name": unless}
                ):
                    return None
                if traffic:
                    await connection.execute(
                        text(f"SET LOCAL lock_timeout = '{TRAFFIC_LOCK_TIMEOUT}'")
                    )
                return await work(connection)
        except DBAPIError as exc:
            state = _sqlstate(exc)
            if state in _RACED:
                log.warning("partition %s: done by another process meanwhile: %s", name, exc.orig)
                return None
            if state not in _LOCKED:
                raise
            if attempt == ATTEMPTS:
                log.warning("partition %s deferred to the next round: %s", name, exc.orig)
                done.deferred.append(name)
                return None
        # Apart and at random, so that the queries queued behind an attempt drain and two
        # processes' attempts do not keep meeting.
        await asyncio.sleep(rng.uniform(*PAUSE))
    return None


@contextlib.asynccontextmanager
async def reported(done: Done, name: str) -> AsyncIterator[None]:
    """A step whose failure is logged and kept in ``done.failed`` while the round goes on; an
    unavailable database still stops the round (every later step would meet it too)."""
    try:
        yield
    except Exception as exc:
        if database_unavailable(exc):
            raise
        log.exception("partition step %s failed; the round goes on without it", name)
        done.failed[name] = str(getattr(exc, "orig", None) or exc)


async def _columns(connection: AsyncConnection, table: str) -> str:
    """The columns of ``table`` a row is copied by, named: ``SELECT *`` would depend on the
    order of each table's columns (and on none having been dropped) being the same."""
    names = await connection.scalars(
        text(
            "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum"
        ),
        {"t": table},
    )
    return ", ".join(names)


async def create_ahead(engine: AsyncEngine, *, now: dt.datetime, days: int, done: Done) -> None:
    """A partition for today and each of the next ``days`` days of every history table. Rows the
    DEFAULT partition took for such a day move into it in the same transaction, under locks
    that keep writers out meanwhile (the module's docstring)."""
    today = now.astimezone(dt.UTC).date()
    existing = {p.name for p in await partitions(engine)}
    for table in PARTITIONED:
        for offset in range(days + 1):
            day = today + dt.timedelta(days=offset)
            name = f"{table}_p{day:%Y%m%d}"
            if name in existing:
                continue
            async with reported(done, name):
                stray = await _ddl(engine, _attach(table, day), name=name, done=done, unless=name)
                if stray is not None:
                    done.created.append(name)
                    done.moved += stray


def _attach(table: str, day: dt.date) -> Callable[[AsyncConnection], Awaitable[int]]:
    """The transaction that makes ``day``'s partition of ``table``, moves its rows out of DEFAULT
    into it and attaches it; it returns how many rows moved."""
    name, key = f"{table}_p{day:%Y%m%d}", PARTITIONED[table]
    low, high = _day_literal(day), _day_literal(day + dt.timedelta(days=1))
    within = f"{key} >= {low} AND {key} < {high}"

    async def work(connection: AsyncConnection) -> int:
        # The parent, ACCESS EXCLUSIVE, before DEFAULT (which ATTACH needs so): every query
        # locks the parent first, so one waiting here holds nothing this transaction will want.
        # Any weaker lock on the parent lets a transaction read DEFAULT and then wait to write
        # (an upload checks its scan ids first) while this one waits for DEFAULT: a deadlock
        # that, under steady uploads, cost nearly every attempt (tested).
        await connection.execute(text(f"LOCK TABLE ONLY {table} IN ACCESS EXCLUSIVE MODE"))
        await connection.execute(text(f"LOCK TABLE {table}_default IN ACCESS EXCLUSIVE MODE"))
        # Created beside the table and filled before it is attached: CREATE ... PARTITION OF
        # would refuse while DEFAULT holds the day's rows, and they need a table to move to.
        like = "INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
        await connection.execute(text(f"CREATE TABLE {name} (LIKE {table} {like})"))
        # The constraint lets ATTACH skip its scan of the new table.
        await connection.execute(
            text(f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK ({within})")
        )
        columns = await _columns(connection, table)
        moved = await connection.execute(
            text(
                f"WITH moved AS (DELETE FROM {table}_default WHERE {within} "  # noqa: S608
                f"RETURNING {columns}) INSERT INTO {name} ({columns}) SELECT {columns} FROM moved"
            )
        )
        await connection.execute(
            text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})")
        )
        await connection.execute(text(f"ALTER TABLE {name} DROP CONSTRAINT {name}_range"))
        return int(getattr(moved, "rowcount", 0) or 0)

    return work


async def drop_past(engine: AsyncEngine, *, before: dict[str, dt.datetime], done: Done) -> None:
    """Detaches and drops every dated partition of ``table`` whose whole range ends at or before
    ``before[table]``; drops partitions a stopped round left detached; deletes the rows past
    ``before[table]`` that a DEFAULT partition took. ``done.removed`` counts the rows by table."""
    for partition in await partitions(engine):
        if partition.upper is None or partition.upper > before[partition.table]:
            continue
        async with reported(done, partition.name):
            await _drop(engine, partition, done)
    # Rows the DEFAULT partition took for a day that never got its partition: few, deleted.
    for table, key in PARTITIONED.items():
        async with reported(done, f"{table}_default"):
            async with engine.begin() as connection:
                result = await connection.execute(
                    text(f"DELETE FROM {table}_default WHERE {key} < :before"),  # noqa: S608
                    {"before": before[table]},
                )
            purged = int(getattr(result, "rowcount", 0) or 0)
            done.removed[table] = done.removed.get(table, 0) + purged


def _statement(sql: str) -> Callable[[AsyncConnection], Awaitable[bool]]:
    async def work(connection: AsyncConnection) -> bool:
        await connection.execute(text(sql))
        return True

    return work


async def _drop(engine: AsyncEngine, partition: Partition, done: Done) -> None:
    # Counted for the round's report, before and outside the DDL's locks.
    async with engine.connect() as connection:
        rows = int(
            await connection.scalar(text(f"SELECT count(*) FROM {partition.name}"))  # noqa: S608
            or 0
        )

    detach = f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name}"
    if partition.attached and not await _ddl(
        engine, _statement(detach), name=partition.name, done=done
    ):
        return
    # Detached, the table is nobody's: dropping it takes no lock anyone waits for.
    drop = f"DROP TABLE IF EXISTS {partition.name}"
    if await _ddl(engine, _statement(drop), name=partition.name, done=done, traffic=False):
        done.dropped.append(partition.name)
        done.removed[partition.table] = done.removed.get(partition.table, 0) + rows
