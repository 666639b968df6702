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
the next round moves it. The price: ``DETACH ... CONCURRENTLY`` refuses a table with a DEFAULT
partition, so a drop takes the parent's ACCESS EXCLUSIVE lock for the few milliseconds of a
catalogue change, under ``lock_timeout`` so that it gives up (and tries again next round) rather
than queue traffic behind a long query.

Every DDL statement runs under a short ``lock_timeout`` in its own transaction and is safe to
run twice or from two processes at once: a partition is created only if missing (a concurrent
creator's duplicate is ignored), and dropped only if still attached.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

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
"""How long a partition's DDL waits for its locks before giving up until the next round."""


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


async def _ddl(engine: AsyncEngine, *statements: str, unless: str | None = None) -> bool:
    """Runs ``statements`` in one transaction under the lock timeout, after any other process's
    partition change (an advisory lock); not at all when the table ``unless`` exists by then.
    False when they did not run: a lock was not had in time (the next round does it), or a
    concurrent round did the same first."""
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK})
            if unless is not None and await connection.scalar(
                text("SELECT to_regclass(:name) IS NOT NULL"), {"name": unless}
            ):
                return False
            for statement in statements:
                await connection.execute(text(statement))
    except DBAPIError as exc:
        state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        # 55P03 lock_not_available, 40P01 deadlock_detected: the next round does the work;
        # 42P07, 42710 and 23505 (created) or 42P01 (dropped) by someone not taking turns.
        if state in ("55P03", "40P01", "42P07", "42710", "23505", "42P01"):
            log.warning("partition DDL skipped until the next round: %s", exc.orig)
            return False
        raise
    return True


@dataclasses.dataclass
class Done:
    created: list[str] = dataclasses.field(default_factory=list)
    moved: int = 0
    dropped: list[str] = dataclasses.field(default_factory=list)
    removed: dict[str, int] = dataclasses.field(default_factory=dict)
    """Rows gone past retention by table: in the partitions dropped, or deleted from DEFAULT."""


async def create_ahead(engine: AsyncEngine, *, now: dt.datetime, days: int, done: Done) -> None:
    """A partition for today and each of the next ``days`` days of every history table. Rows the
    DEFAULT partition took for such a day move into it in the same transaction (the new
    partition could not be attached over them)."""
    today = now.astimezone(dt.UTC).date()
    existing = {p.name for p in await partitions(engine)}
    for table, key in PARTITIONED.items():
        for offset in range(days + 1):
            day = today + dt.timedelta(days=offset)
            name = f"{table}_p{day:%Y%m%d}"
            if name in existing:
                continue
            low, high = _day_literal(day), _day_literal(day + dt.timedelta(days=1))
            within = f"{key} >= {low} AND {key} < {high}"
            # Created beside the table and then attached: ATTACH takes only a SHARE UPDATE
            # EXCLUSIVE lock on the parent (reads and inserts go on), where CREATE ... PARTITION
            # OF would take ACCESS EXCLUSIVE.
            async with engine.connect() as connection:
                stray = int(
                    await connection.scalar(
                        text(f"SELECT count(*) FROM {table}_default WHERE {within}")  # noqa: S608
                    )
                    or 0
                )
            statements = [
                f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)",
                # The constraint lets ATTACH skip its scan of the new table.
                f"ALTER TABLE {name} ADD CONSTRAINT {name}_range CHECK ({within})",
            ]
            if stray:
                statements += [
                    f"INSERT INTO {name} SELECT * FROM {table}_default WHERE {within}",  # noqa: S608
                    f"DELETE FROM {table}_default WHERE {within}",  # noqa: S608
                ]
            statements += [
                f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({low}) TO ({high})",
                f"ALTER TABLE {name} DROP CONSTRAINT {name}_range",
            ]
            if await _ddl(engine, *statements, unless=name):
                done.created.append(name)
                done.moved += stray


async def drop_past(engine: AsyncEngine, *, before: dict[str, dt.datetime], done: Done) -> None:
    """Detaches and drops every dated partition of ``table`` whose whole range ends at or before
    ``before[table]``; drops partitions a stopped round left detached; deletes the rows past
    ``before[table]`` that a DEFAULT partition took. ``done.removed`` counts the rows by table."""
    for partition in await partitions(engine):
        if partition.upper is None or partition.upper > before[partition.table]:
            continue
        # Counted for the round's report, before and outside the DDL's locks.
        async with engine.connect() as connection:
            rows = int(
                await connection.scalar(text(f"SELECT count(*) FROM {partition.name}"))  # noqa: S608
                or 0
            )
        if partition.attached and not await _ddl(
            engine, f"ALTER TABLE {partition.table} DETACH PARTITION {partition.name}"
        ):
            continue
        # Detached, the table is nobody's: dropping it takes no lock anyone waits for.
        if await _ddl(engine, f"DROP TABLE IF EXISTS {partition.name}"):
            done.dropped.append(partition.name)
            done.removed[partition.table] = done.removed.get(partition.table, 0) + rows
    # Rows the DEFAULT partition took for a day that never got its partition: few, deleted.
    for table, key in PARTITIONED.items():
        async with engine.begin() as connection:
            result = await connection.execute(
                text(f"DELETE FROM {table}_default WHERE {key} < :before"),  # noqa: S608
                {"before": before[table]},
            )
        purged = int(getattr(result, "rowcount", 0) or 0)
        done.removed[table] = done.removed.get(table, 0) + purged
