"""Housekeeping: what would otherwise grow for ever, deleted once it can serve no one.

Every server process runs :func:`run_forever`; they take turns through one lease row
(``maintenance_leases``), claimed with a conditional UPDATE like the outbox's messages, so one
process does a round per ``maintenance.interval_seconds`` however many there are, and a process
that dies mid-round leaves a lease that runs out. Each step deletes in batches of
``maintenance.batch_rows``, each batch its own short transaction, so a large backlog never holds
locks for long. ``yuekang maintenance run`` does a round now.

What goes, with its setting (`YUEKANG_MAINTENANCE__*`; docs/ARCHITECTURE.md, "Housekeeping"):

- scan records older than ``scans.retention_days``; on PostgreSQL, where they are partitioned by
  day with codes and revocations (:mod:`yuekang.partitions`), whole days' partitions past it are
  dropped instead -- codes and revocations ``scans.retention_days`` after they expire -- and
  ``maintenance.partitions_ahead_days`` of partitions are created ahead;
- exchange nonces that can no longer be replayed;
- rate-limit counters whose window ended ``maintenance.rate_limit_days`` ago;
- sign-in challenges expired ``maintenance.otp_days`` ago;
- sessions ended or run out ``maintenance.session_days`` ago;
- superseded trust bundles: their signed text at once (only the latest is served; a delta needs
  only its base's version and time), their rows after ``maintenance.trust_bundle_days``;
- residents' daily counts of their own reads after ``maintenance.self_read_days``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import ColumnElement, String, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from yuekang import partitions as daily
from yuekang.audit.models import SelfRead
from yuekang.auth.models import OtpChallenge, RateLimitCounter, ResidentSession
from yuekang.clock import Clock, epoch
from yuekang.config import Settings
from yuekang.db import Base, UTCDateTime, database_unavailable, dialect_name
from yuekang.exchange.models import ExchangeNonce
from yuekang.scans.models import ScanRecord
from yuekang.trust.models import TrustBundleRecord

log = logging.getLogger("yuekang")

TASK = "housekeeping"


class MaintenanceLease(Base):
    """Which process does the next round of a task, until when, and when the last one ended."""

    __tablename__ = "maintenance_leases"

    task: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(32), nullable=True)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_run_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


async def claim(
    session: AsyncSession,
    *,
    now: dt.datetime,
    token: str,
    lease: dt.timedelta,
    interval: dt.timedelta | None,
) -> bool:
    """Take the round if no one holds it and (unless ``interval`` is None) the last one ended at
    least ``interval`` ago."""
    dialect = sqlite if dialect_name(session) == "sqlite" else postgresql
    await session.execute(
        dialect.insert(MaintenanceLease).values(task=TASK).on_conflict_do_nothing()
    )
    free = or_(MaintenanceLease.locked_until.is_(None), MaintenanceLease.locked_until < now)
    due: ColumnElement[bool] = free
    if interval is not None:
        due = free & or_(
            MaintenanceLease.last_run_at.is_(None), MaintenanceLease.last_run_at <= now - interval
        )
    taken = await session.execute(
        update(MaintenanceLease)
        .where(MaintenanceLease.task == TASK, due)
        .values(holder=token, locked_until=now + lease)
        .returning(MaintenanceLease.task)
    )
    return taken.first() is not None


async def _finish(session: AsyncSession, *, token: str, now: dt.datetime) -> None:
    await session.execute(
        update(MaintenanceLease)
        .where(MaintenanceLease.task == TASK, MaintenanceLease.holder == token)
        .values(holder=None, locked_until=None, last_run_at=now)
    )


Step = Callable[[AsyncSession, int], Awaitable[int]]


def _batched(model: Any, key: Any, condition: ColumnElement[bool]) -> Step:
    """A step deleting up to ``limit`` rows of ``model`` matching ``condition`` per call; ``key``
    is its primary key (a tuple for a composite one)."""

    async def step(session: AsyncSession, limit: int) -> int:
        chosen = select(*key).where(condition).limit(limit)
        target = tuple_(*key) if len(key) > 1 else key[0]
        result = await session.execute(delete(model).where(target.in_(chosen)))
        return int(getattr(result, "rowcount", 0) or 0)

    return step


def _steps(settings: Settings, now: dt.datetime, *, partitioned: bool) -> dict[str, Step]:
    keep = settings.maintenance

    def ago(days: int) -> dt.datetime:
        return now - dt.timedelta(days=days)

    async def superseded_texts(session: AsyncSession, limit: int) -> int:
        latest = select(func.max(TrustBundleRecord.version)).scalar_subquery()
        chosen = (
            select(TrustBundleRecord.version)
            .where(TrustBundleRecord.version < latest, TrustBundleRecord.text != "")
            .limit(limit)
        )
        # The text goes, the row stays: a checkpoint asking for a delta from this version is
        # answered from its time alone.
        result = await session.execute(
            update(TrustBundleRecord)
            .where(TrustBundleRecord.version.in_(chosen))
            .values(text="")
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    latest_version = select(func.max(TrustBundleRecord.version)).scalar_subquery()
    scans: dict[str, Step] = {}
    if not partitioned:
        scans["scan_records"] = _batched(
            ScanRecord, [ScanRecord.id], ScanRecord.scanned_at < ago(settings.scans.retention_days)
        )
    return {
        **scans,
        "exchange_nonces": _batched(
            ExchangeNonce,
            [ExchangeNonce.partner_id, ExchangeNonce.kind, ExchangeNonce.jti],
            ExchangeNonce.expires_at < now,
        ),
        "rate_limit_counters": _batched(
            RateLimitCounter,
            [RateLimitCounter.bucket, RateLimitCounter.window_start],
            RateLimitCounter.window_start < epoch(ago(keep.rate_limit_days)),
        ),
        "otp_challenges": _batched(
            OtpChallenge, [OtpChallenge.id], OtpChallenge.expires_at < ago(keep.otp_days)
        ),
        "resident_sessions": _batched(
            ResidentSession,
            [ResidentSession.id],
            or_(
                ResidentSession.expires_at < ago(keep.session_days),
                ResidentSession.revoked_at < ago(keep.session_days),
            ),
        ),
        "trust_bundle_texts": superseded_texts,
        "trust_bundles": _batched(
            TrustBundleRecord,
            [TrustBundleRecord.version],
            (TrustBundleRecord.issued_at < ago(keep.trust_bundle_days))
            & (TrustBundleRecord.version < latest_version),
        ),
        "self_reads": _batched(
            SelfRead,
            [SelfRead.resident_id, SelfRead.day, SelfRead.action],
            SelfRead.day < ago(keep.self_read_days).date(),
        ),
    }


@dataclasses.dataclass(frozen=True)
class Round:
    ran: bool
    deleted: dict[str, int]
    partitions: daily.Done = dataclasses.field(default_factory=daily.Done)
    """PostgreSQL: the partitions created and dropped, rows moved out of DEFAULT partitions, and
    the steps deferred or failed (the rest of the round went on without them)."""


async def _partitions(engine: AsyncEngine, settings: Settings, now: dt.datetime) -> daily.Done:
    """Partitions ahead first (an insert must find its day's), then the ones past retention. A
    step that fails is in ``failed`` and the rest go on: one table's partition that cannot be
    attached must not stop the drops, nor the round's other deletions, round after round."""
    done = daily.Done()
    async with daily.reported(done, "create_ahead"):
        await daily.create_ahead(
            engine, now=now, days=settings.maintenance.partitions_ahead_days, done=done
        )
    horizon = now - dt.timedelta(days=settings.scans.retention_days)
    async with daily.reported(done, "drop_past"):
        await daily.drop_past(engine, before=dict.fromkeys(daily.PARTITIONED, horizon), done=done)
    return done


async def run_once(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock,
    *,
    force: bool = False,
) -> Round:
    """One round, if it is this process's turn (``force``: whenever no one else holds it)."""
    keep = settings.maintenance
    token = secrets.token_hex(16)
    now = clock.now()
    async with sessionmaker() as session, session.begin():
        taken = await claim(
            session,
            now=now,
            token=token,
            lease=dt.timedelta(seconds=keep.lease_seconds),
            interval=None if force else dt.timedelta(seconds=keep.interval_seconds),
        )
    if not taken:
        return Round(False, {})
    engine: AsyncEngine = sessionmaker.kw["bind"]
    partitioned = await daily.is_partitioned(engine)
    history = daily.Done()
    if partitioned:
        history = await _partitions(engine, settings, now)
    # On PostgreSQL, what retention removed from the history tables, by whole days.
    deleted: dict[str, int] = dict(history.removed)
    for name, step in _steps(settings, now, partitioned=partitioned).items():
        total = 0
        while True:
            async with sessionmaker() as session, session.begin():
                done = await step(session, keep.batch_rows)
            total += done
            if done < keep.batch_rows:
                break
        deleted[name] = total
    async with sessionmaker() as session, session.begin():
        await _finish(session, token=token, now=clock.now())
    return Round(True, deleted, history)


async def run_forever(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, clock: Clock
) -> None:
    """Ask for the round every few minutes (with jitter, so processes started together do not
    ask together); one failing round never stops the loop."""
    keep = settings.maintenance
    rng = random.Random()  # noqa: S311 -- jitter, not a secret
    while True:
        await asyncio.sleep(keep.check_seconds * (0.5 + rng.random()))
        try:
            done = await run_once(sessionmaker, settings, clock)
        except Exception as exc:
            if database_unavailable(exc):
                log.warning("housekeeping skipped: the database is unavailable")
            else:
                log.exception("housekeeping failed; will try again")
            continue
        if done.ran and any(done.deleted.values()):
            log.info(
                "housekeeping: %s",
                ", ".join(f"{n} {name}" for name, n in done.deleted.items() if n),
            )
        history = done.partitions
        if history.created or history.dropped or history.moved:
            log.info(
                "housekeeping partitions: created %s, dropped %s, %d rows moved out of DEFAULT",
                ", ".join(history.created) or "none",
                ", ".join(history.dropped) or "none",
                history.moved,
            )
        if history.deferred or history.failed:
            log.warning(
                "housekeeping partitions left for the next round: deferred (a lock not had) %s; "
                "failed %s",
                ", ".join(history.deferred) or "none",
                "; ".join(f"{name}: {error}" for name, error in history.failed.items()) or "none",
            )
