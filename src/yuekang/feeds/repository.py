"""Writing feed rows: COPY into a staging table and one set-based upsert on PostgreSQL, batched
upserts on SQLite. Both keep the last occurrence of a natural key within a batch, update a stored
fact only when a value changed (so a resent fact does not look new to an override), and stamp
each written row with the batch id so the batch can find whom it touched."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import Table, and_, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import regions
from yuekang.db import dialect_name
from yuekang.feeds.models import (
    CaseRecord,
    NatRecord,
    RiskAreaRecord,
    TravelRecord,
    VaccinationRecord,
)
from yuekang.feeds.rows import FeedKind
from yuekang.residents.models import Identity


@dataclass(frozen=True)
class Target:
    table: Table
    columns: tuple[str, ...]
    key: tuple[str, ...]
    pg_types: tuple[str, ...]
    improvement: str | None = None
    """SQL true when a resent row only makes things better: it keeps its received time, so an
    override granted since still covers it (a correction must not undo an accepted appeal)."""

    def received_at_sql(self) -> str:
        if self.improvement is None:
            return "excluded.received_at"
        table = self.table.name
        return (
            f"CASE WHEN {self.improvement.format(t=table)} THEN {table}.received_at "
            "ELSE excluded.received_at END"
        )

    @property
    def updatable(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.key)


TARGETS: dict[FeedKind, Target] = {
    FeedKind.CASES: Target(
        CaseRecord.__table__,  # type: ignore[arg-type]
        ("person", "category", "start_date", "end_date"),
        ("person", "category", "start_date"),
        ("bytea", "text", "date", "date"),
        # An episode given an end, or an earlier one.
        "excluded.end_date IS NOT NULL AND "
        "({t}.end_date IS NULL OR excluded.end_date < {t}.end_date)",
    ),
    FeedKind.NAT_RESULTS: Target(
        NatRecord.__table__,  # type: ignore[arg-type]
        ("person", "sampled_at", "result", "lab"),
        ("person", "sampled_at", "lab"),
        ("bytea", "timestamptz", "text", "text"),
        # A result corrected to negative.
        "excluded.result = 'negative'",
    ),
    FeedKind.VACCINATIONS: Target(
        VaccinationRecord.__table__,  # type: ignore[arg-type]
        ("person", "dose", "date", "product"),
        ("person", "dose"),
        ("bytea", "integer", "date", "text"),
    ),
    FeedKind.RISK_AREAS: Target(
        RiskAreaRecord.__table__,  # type: ignore[arg-type]
        ("region_code", "level", "valid_from", "valid_to"),
        ("region_code", "valid_from"),
        ("text", "text", "date", "date"),
    ),
    FeedKind.TRAVEL: Target(
        TravelRecord.__table__,  # type: ignore[arg-type]
        ("person", "region_code", "date"),
        ("person", "region_code", "date"),
        ("bytea", "text", "date"),
    ),
}

STAGE = "feed_stage"


SEGMENT_ROWS = 25_000
"""The most rows one direct COPY takes. They are kept until it ends, to be merged instead if it
meets a stored row: a bound on memory (two segments and a chunk), whatever ``max_rows`` allows."""


class _Segment:
    """The rows of one direct COPY, streamed to it as they are checked: an async iterable for
    asyncpg that waits for the next chunk when it has sent every row so far. The rows are kept
    until the COPY ends, in case they must be merged instead."""

    def __init__(self, start: int, extra: tuple[Any, ...]) -> None:
        self.start = start
        self._extra = extra
        self.chunks: list[Sequence[tuple[Any, ...]]] = []
        self.rows = 0
        self.complete = asyncio.Event()
        self._unsent: collections.deque[Sequence[tuple[Any, ...]]] = collections.deque()
        self._more = asyncio.Event()

    def put(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.chunks.append(rows)
        self.rows += len(rows)
        self._unsent.append(rows)
        self._more.set()

    def end(self) -> None:
        self.complete.set()
        self._more.set()

    def all_rows(self) -> list[tuple[Any, ...]]:
        return [row for chunk in self.chunks for row in chunk]

    async def __aiter__(self) -> AsyncIterator[tuple[Any, ...]]:
        unsent, extra = self._unsent, self._extra
        while True:
            while unsent:
                for row in unsent.popleft():
                    yield row + extra
            if self.complete.is_set():
                return
            self._more.clear()
            await self._more.wait()


class FactWriter:
    """Writes checked rows chunk by chunk.

    On PostgreSQL the database works on the rows (on its own core) while this process checks the
    next ones. Rows go into segments of up to :data:`SEGMENT_ROWS`, and one background task, the
    only user of the connection until :meth:`finish`, writes the segments in order:

    - each with one COPY straight into the fact table, inside a savepoint, fed chunk by chunk as
      the rows are checked. New facts, the usual case, take the bulk-load path at raw COPY speed.
      One COPY for many chunks, not one a chunk: between COPYs the database waits for this
      process to encode the next chunk, and this process for the database to finish the last
      (together 2-3 us a row, measured). The next segment's COPY starts as soon as the last one
      ends, while checking goes on; :meth:`write` waits only when two segments are unwritten;
    - if a COPY meets a row already stored (a resend, or the same key twice in it), the savepoint
      is rolled back, and its rows and every later segment go through a temporary staging table
      and one ``INSERT ... SELECT DISTINCT ON ... ON CONFLICT`` merge instead, which keeps the
      last row of a key and updates a stored row only when a value changed.

    Every row is sent with the batch id and the received time. Column defaults read from
    transaction-local settings would spare this process about 1 us a row, but cost PostgreSQL
    0.5-1 us more (parsing the time for every row), measured: no gain here, and a loss where the
    database, the one part that does not scale out, is the limit.

    :meth:`close` must run before the transaction ends, whatever happened.
    """

    def __init__(
        self, session: AsyncSession, kind: FeedKind, *, batch_id: uuid.UUID, now: dt.datetime
    ) -> None:
        self.session = session
        self.target = TARGETS[kind]
        self.batch_id = batch_id
        self.now = now
        self.postgres = dialect_name(session) == "postgresql"
        self._ordinal = 0
        self._driver: Any = None
        self._staged = False
        self._direct = True
        self._writer: asyncio.Task[None] | None = None
        self._segments: asyncio.Queue[_Segment | None] = asyncio.Queue()
        self._filling: _Segment | None = None
        self._unwritten = 0
        self._progress = asyncio.Event()
        self._stopping = False

    async def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if not self.postgres:
            await self._upsert(rows)
            return
        if self._writer is None:
            await self._start()
        segment = self._filling
        if segment is None:
            while self._unwritten >= 2:
                await self._written_one()
            segment = self._filling = _Segment(self._ordinal, (self.batch_id, self.now))
            self._unwritten += 1
            self._segments.put_nowait(segment)
        self._ordinal += len(rows)
        segment.put(rows)
        if segment.rows >= SEGMENT_ROWS:
            segment.end()
            self._filling = None
        self._check_writer()
        # Let the COPY encode and send these rows now. Checking rows never waits while the body
        # is already here, so without this the COPY ran only when the body ran dry, and the
        # database, idle meanwhile, ended a batch far behind (measured).
        await asyncio.sleep(0)

    async def finish(self) -> None:
        if self._writer is None:
            return
        self._end()
        await self._writer

    async def close(self) -> None:
        """Let the writing task end (its error, if any, is the caller's to have seen)."""
        if self._writer is None:
            return
        self._stopping = True
        self._end()
        with contextlib.suppress(BaseException):
            await self._writer

    async def _start(self) -> None:
        connection = await (await self.session.connection()).get_raw_connection()
        self._driver = connection.driver_connection
        self._writer = asyncio.create_task(self._write_segments())

    def _end(self) -> None:
        if self._filling is not None:
            self._filling.end()
            self._filling = None
        self._segments.put_nowait(None)

    def _check_writer(self) -> None:
        assert self._writer is not None
        if self._writer.done():
            self._writer.result()  # its error
            raise RuntimeError("the feed writer ended before the batch did")

    async def _written_one(self) -> None:
        assert self._writer is not None
        self._progress.clear()
        progress = asyncio.ensure_future(self._progress.wait())
        try:
            await asyncio.wait({progress, self._writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            progress.cancel()
        self._check_writer()

    async def _write_segments(self) -> None:
        while (segment := await self._segments.get()) is not None:
            try:
                if not self._stopping:
                    await self._write_segment(segment)
            finally:
                self._unwritten -= 1
                self._progress.set()

    async def _write_segment(self, segment: _Segment) -> None:
        if self._direct:
            try:
                async with self._driver.transaction():  # a savepoint: the request's is open
                    await self._driver.copy_records_to_table(
                        self.target.table.name,
                        records=segment,
                        columns=(*self.target.columns, "batch_id", "received_at"),
                    )
                return
            except asyncpg.UniqueViolationError:
                self._direct = False
        await segment.complete.wait()
        await self._stage_and_merge(segment.start, segment.all_rows())

    async def _stage_and_merge(self, start: int, rows: Sequence[tuple[Any, ...]]) -> None:
        # The ordinal is only the merge's, to keep the last row of a key.
        target = self.target
        records = [(start + i, *row) for i, row in enumerate(rows)]
        if not self._staged:
            definition = ", ".join(
                f"{name} {kind}" for name, kind in zip(target.columns, target.pg_types, strict=True)
            )
            await self._driver.execute(
                f"CREATE TEMP TABLE {STAGE} (ordinal bigint, {definition}) ON COMMIT DROP"
            )
            self._staged = True
        await self._driver.copy_records_to_table(
            STAGE, records=records, columns=("ordinal", *target.columns)
        )
        await self._driver.execute(_merge_sql(target), self.batch_id, self.now)
        await self._driver.execute(f"TRUNCATE {STAGE}")

    async def _upsert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        target = self.target
        table = target.table
        statement = sqlite_insert(table)
        if target.updatable:
            excluded = statement.excluded
            statement = statement.on_conflict_do_update(
                index_elements=list(target.key),
                set_={
                    **{c: excluded[c] for c in target.updatable},
                    "batch_id": excluded.batch_id,
                    "received_at": text(target.received_at_sql()),
                },
                where=or_(*(table.c[c].is_distinct_from(excluded[c]) for c in target.updatable)),
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=list(target.key))
        extra = {"batch_id": self.batch_id, "received_at": self.now}
        await self.session.execute(
            statement, [{**dict(zip(target.columns, row, strict=True)), **extra} for row in rows]
        )


def _merge_sql(target: Target) -> str:
    columns = ", ".join(target.columns)
    key = ", ".join(target.key)
    table = target.table.name
    if target.updatable:
        changed = " OR ".join(
            f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in target.updatable
        )
        assignments = ", ".join(
            [f"{c} = EXCLUDED.{c}" for c in (*target.updatable, "batch_id")]
            + [f"received_at = {target.received_at_sql()}"]
        )
        action = f"DO UPDATE SET {assignments} WHERE {changed}"
    else:
        action = "DO NOTHING"
    # DISTINCT ON keeps the last row of each key: one statement may not update a row twice.
    return (
        f"INSERT INTO {table} ({columns}, batch_id, received_at) "  # noqa: S608
        f"SELECT DISTINCT ON ({key}) {columns}, $1, $2 FROM {STAGE} "
        f"ORDER BY {key}, ordinal DESC ON CONFLICT ({key}) {action}"
    )


# Travel and risk-area batches each decide people from the other's rows: two of them committing
# side by side could each miss the other's. One transaction-scoped advisory lock orders them.
_TRAVEL_AND_AREAS_LOCK = 0x796B_7472


async def hold_decision_locks(session: AsyncSession, kind: FeedKind) -> None:
    """Before finding whom a batch touched (PostgreSQL; SQLite has one writer at a time):

    - a SHARE lock on ``identities`` waits for identity bindings in flight and holds new ones
      until this batch commits, so a person who binds meanwhile is either found here or decided
      by their binding with this batch's facts visible;
    - travel and risk-area batches take turns (see above).
    """
    if dialect_name(session) != "postgresql":
        return
    await session.execute(text("LOCK TABLE identities IN SHARE MODE"))
    if kind in (FeedKind.TRAVEL, FeedKind.RISK_AREAS):
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _TRAVEL_AND_AREAS_LOCK}
        )


async def touched_residents(
    session: AsyncSession, kind: FeedKind, *, batch_id: uuid.UUID, window_days: int, today: dt.date
) -> list[uuid.UUID]:
    """The registered residents whose facts this batch changed; for a risk-area batch, those who
    travelled in the cities it names, on or after an area started, within ``window_days``."""
    if kind is not FeedKind.RISK_AREAS:
        table = TARGETS[kind].table
        rows = await session.execute(
            select(Identity.resident_id)
            .distinct()
            .join(table, table.c.person == Identity.doc_index)
            .where(table.c.batch_id == batch_id)
        )
        return list(rows.scalars())
    areas = (
        await session.execute(
            select(RiskAreaRecord.region_code, RiskAreaRecord.valid_from).where(
                RiskAreaRecord.batch_id == batch_id
            )
        )
    ).all()
    earliest_travel = today - dt.timedelta(days=window_days)
    starts: dict[str, dt.date] = {}
    for region_code, valid_from in areas:
        city = regions.city_prefix(region_code)
        starts[city] = min(starts.get(city, valid_from), valid_from)
    found: set[uuid.UUID] = set()
    for city, valid_from in starts.items():
        rows = await session.execute(
            select(Identity.resident_id)
            .distinct()
            .join(TravelRecord, TravelRecord.person == Identity.doc_index)
            .where(
                and_(
                    TravelRecord.region_code.startswith(city, autoescape=True),
                    TravelRecord.date >= max(valid_from, earliest_travel),
                )
            )
        )
        found.update(rows.scalars())
    return sorted(found)


async def restamp(
    session: AsyncSession,
    kind: FeedKind,
    *,
    batch_id: uuid.UUID,
    persons: Sequence[bytes],
    written_at: dt.datetime,
    received_at: dt.datetime,
) -> None:
    """Mark this batch's facts about ``persons`` as received at ``received_at``: those it wrote
    as new (stamped ``written_at``), not corrections for the better, which keep their time."""
    table = TARGETS[kind].table
    if kind is FeedKind.RISK_AREAS:
        # Areas belong to no one person: a batch has few, stamp them all.
        scope = table.c.batch_id == batch_id
    elif persons:
        scope = and_(table.c.batch_id == batch_id, table.c.person.in_(list(persons)))
    else:
        return
    await session.execute(
        update(table)
        .where(scope, table.c.received_at == written_at)
        .values(received_at=received_at)
    )
