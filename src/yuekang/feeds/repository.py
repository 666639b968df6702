"""Writing feed rows: COPY into a staging table and one set-based upsert on PostgreSQL, batched
upserts on SQLite. Both keep the last occurrence of a natural key within a batch, update a stored
fact only when a value changed (so a resent fact does not look new to an override), and stamp
each written row with the batch id so the batch can find whom it touched."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, or_, select, text
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

    @property
    def updatable(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in self.key)


TARGETS: dict[FeedKind, Target] = {
    FeedKind.CASES: Target(
        CaseRecord.__table__,  # type: ignore[arg-type]
        ("person", "category", "start_date", "end_date"),
        ("person", "category", "start_date"),
        ("bytea", "text", "date", "date"),
    ),
    FeedKind.NAT_RESULTS: Target(
        NatRecord.__table__,  # type: ignore[arg-type]
        ("person", "sampled_at", "result", "lab"),
        ("person", "sampled_at", "lab"),
        ("bytea", "timestamptz", "text", "text"),
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


class FactWriter:
    """Buffers nothing itself: each :meth:`write` sends one chunk of checked rows."""

    def __init__(
        self, session: AsyncSession, kind: FeedKind, *, batch_id: uuid.UUID, now: dt.datetime
    ) -> None:
        self.session = session
        self.target = TARGETS[kind]
        self.batch_id = batch_id
        self.now = now
        self.postgres = dialect_name(session) == "postgresql"
        self._ordinal = 0
        self._staged = False

    async def write(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        if self.postgres:
            await self._copy(rows)
        else:
            await self._upsert(rows)

    async def finish(self) -> None:
        if not (self.postgres and self._staged):
            return
        target = self.target
        columns = ", ".join(target.columns)
        key = ", ".join(target.key)
        changed = " OR ".join(
            f"{target.table.name}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in target.updatable
        )
        action = (
            "DO NOTHING"
            if not target.updatable
            else "DO UPDATE SET "
            + ", ".join(
                f"{c} = EXCLUDED.{c}" for c in (*target.updatable, "batch_id", "received_at")
            )
            + f" WHERE {changed}"
        )
        # DISTINCT ON keeps the last row of each key: one statement may not update a row twice.
        await self.session.execute(
            text(
                f"INSERT INTO {target.table.name} ({columns}, batch_id, received_at) "  # noqa: S608
                f"SELECT DISTINCT ON ({key}) {columns}, :batch_id, :received_at FROM {STAGE} "
                f"ORDER BY {key}, ordinal DESC ON CONFLICT ({key}) {action}"
            ),
            {"batch_id": self.batch_id, "received_at": self.now},
        )
        await self.session.execute(text(f"DROP TABLE {STAGE}"))

    async def _copy(self, rows: Sequence[tuple[Any, ...]]) -> None:
        connection = await (await self.session.connection()).get_raw_connection()
        driver = connection.driver_connection
        assert driver is not None
        if not self._staged:
            definition = ", ".join(
                f"{name} {kind}"
                for name, kind in zip(self.target.columns, self.target.pg_types, strict=True)
            )
            await driver.execute(
                f"CREATE TEMP TABLE {STAGE} (ordinal bigint, {definition}) ON COMMIT DROP"
            )
            self._staged = True
        start = self._ordinal
        self._ordinal += len(rows)
        await driver.copy_records_to_table(
            STAGE,
            records=[(start + i, *row) for i, row in enumerate(rows)],
            columns=("ordinal", *self.target.columns),
        )

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
                    "received_at": excluded.received_at,
                },
                where=or_(*(table.c[c].is_distinct_from(excluded[c]) for c in target.updatable)),
            )
        else:
            statement = statement.on_conflict_do_nothing(index_elements=list(target.key))
        extra = {"batch_id": self.batch_id, "received_at": self.now}
        await self.session.execute(
            statement, [{**dict(zip(target.columns, row, strict=True)), **extra} for row in rows]
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
