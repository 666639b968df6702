"""Figures for the console: grouped queries over bounded periods, and the audit log by pages.

Days are local days in Guangdong (UTC+8, no daylight saving), because that is the day staff
mean when they ask "how many codes yesterday". Each database truncates to that day itself
(``LocalDay`` below), so a period costs one grouped query per figure whatever the row count.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, String, func, select
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from yuekang.audit.models import AuditEvent
from yuekang.checkpoints.models import Checkpoint
from yuekang.exchange.models import OutboxMessage, Partner
from yuekang.exchange.partners import circuit_open_until
from yuekang.feeds.models import FeedBatch, FeedClient
from yuekang.health_codes.models import HealthCode
from yuekang.health_status.models import HealthStatus, StatusChange
from yuekang.rules.policy import PLACE_KINDS, Policy, default_policies
from yuekang.scans.models import REVOKED, ScanRecord
from yuekang.stats.schemas import (
    AuditEventRead,
    AuditPage,
    BatchSummary,
    CheckpointScans,
    DayCodes,
    DayFeeds,
    DayPeople,
    FeedStats,
    OutboxStats,
    Overview,
    PartnerCircuit,
    PeopleStats,
    ScanTotals,
    TrustBundleState,
)
from yuekang.trust.models import TrustBundleRecord

LOCAL_OFFSET_HOURS = 8
LOCAL = dt.timezone(dt.timedelta(hours=LOCAL_OFFSET_HOURS))
STATUSES = ("green", "yellow", "red")
VERDICTS = ("valid", "invalid", "cannot_verify")
DECISIONS = ("allow", "deny", "manual_check", "decision_unknown", "allowed_revoked")
OUTBOX_STATES = ("pending", "delivered", "refused", "failed")
MAX_CHECKPOINTS = 50
LATEST_BATCHES = 10


class LocalDay(FunctionElement[str]):
    """``YYYY-MM-DD`` of a UTC timestamp column in UTC+8, computed by the database."""

    type = String()
    inherit_cache = True
    name = "local_day"


@compiles(LocalDay, "sqlite")
def _local_day_sqlite(element: LocalDay, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite holds naive UTC text (see db.UTCDateTime); date() reads it and shifts it.
    (column,) = element.clauses
    return f"date({compiler.process(column, **kw)}, '+{LOCAL_OFFSET_HOURS} hours')"


@compiles(LocalDay, "postgresql")
def _local_day_postgresql(element: LocalDay, compiler: SQLCompiler, **kw: Any) -> str:
    # AT TIME ZONE 'UTC' first, so the connection's TimeZone setting cannot move the day; a
    # fixed interval rather than a zone name, so the sign convention of '+08' cannot either.
    (column,) = element.clauses
    return (
        f"to_char(({compiler.process(column, **kw)} AT TIME ZONE 'UTC') "
        f"+ INTERVAL '{LOCAL_OFFSET_HOURS} hours', 'YYYY-MM-DD')"
    )


@compiles(LocalDay)
def _local_day_other(element: LocalDay, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError("local_day is written for SQLite and PostgreSQL only")


def local_midnight(day: dt.date) -> dt.datetime:
    """The UTC instant a local day begins."""
    return dt.datetime.combine(day, dt.time(), LOCAL).astimezone(dt.UTC)


def _day(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def _sum(column: ColumnElement[int] | InstrumentedAttribute[int]) -> ColumnElement[int]:
    return func.coalesce(func.sum(column), 0)


async def overview(session: AsyncSession, *, days: int, now: dt.datetime) -> Overview:
    """The dashboard's figures for the ``days`` local days ending today."""
    last_day = now.astimezone(LOCAL).date()
    first_day = last_day - dt.timedelta(days=days - 1)
    since = local_midnight(first_day)
    scans, truncated, totals = await _scans(session, since=since)
    return Overview(
        generated_at=now,
        days=days,
        utc_offset=f"+{LOCAL_OFFSET_HOURS:02d}:00",
        first_day=first_day,
        last_day=last_day,
        people=await _people(session, first_day=first_day, days=days),
        codes=await _codes(session, since=since, first_day=first_day, days=days),
        scans=scans,
        scans_truncated=truncated,
        scan_totals=totals,
        feeds=await _feeds(session, since=since, first_day=first_day, days=days),
        trust_bundle=await _trust_bundle(session, now=now),
        outbox=await _outbox(session, now=now),
    )


def _every_day(first_day: dt.date, days: int) -> list[dt.date]:
    return [first_day + dt.timedelta(days=n) for n in range(days)]


async def _codes(
    session: AsyncSession, *, since: dt.datetime, first_day: dt.date, days: int
) -> list[DayCodes]:
    day = LocalDay(HealthCode.issued_at)
    rows = await session.execute(
        select(day, HealthCode.status, func.count())
        # A code expires after it is issued: the second condition says nothing new, but it is
        # the partition key on PostgreSQL, where it leaves out the days before ``since``.
        .where(HealthCode.issued_at >= since, HealthCode.expires_at >= since)
        .group_by(day, HealthCode.status)
    )
    counts: dict[dt.date, dict[str, int]] = {
        d: dict.fromkeys(STATUSES, 0) for d in _every_day(first_day, days)
    }
    for value, status, count in rows:
        parsed = _day(value)
        # A code stamped after "now" (another process's clock) has no column: left out.
        if parsed in counts and status in STATUSES:
            counts[parsed][status] += count
    return [DayCodes(day=d, **by_status) for d, by_status in counts.items()]


async def _people(session: AsyncSession, *, first_day: dt.date, days: int) -> PeopleStats:
    """Residents by current status, and by status at the end of each day of the period: the
    current counts with every later change undone (a change from none only takes away)."""
    current = dict.fromkeys(STATUSES, 0)
    for status, count in await session.execute(
        select(HealthStatus.status, func.count()).group_by(HealthStatus.status)
    ):
        if status in STATUSES:
            current[status] = count
    day = LocalDay(StatusChange.at)
    changes = await session.execute(
        select(day, StatusChange.old_status, StatusChange.new_status, func.count())
        .where(StatusChange.at >= local_midnight(first_day + dt.timedelta(days=1)))
        .group_by(day, StatusChange.old_status, StatusChange.new_status)
    )
    # Per local day, the net change in each status that day's changes made.
    net: dict[dt.date, dict[str, int]] = {}
    for value, old, new, count in changes:
        parsed = _day(value)
        if parsed is None:
            continue
        moved = net.setdefault(parsed, dict.fromkeys(STATUSES, 0))
        if new in moved:
            moved[new] += count
        if old in moved:
            moved[old] -= count
    every = _every_day(first_day, days)
    counts = dict(current)
    listed: list[DayPeople] = []
    # From today backwards: the end of day d is the end of day d+1 less what d+1 changed. A
    # change stamped after today (another process's clock) is undone at today's end as well.
    later = [d for d in net if d > every[-1]]
    for d in later:
        counts = {s: counts[s] - net[d][s] for s in STATUSES}
    for d in reversed(every):
        listed.append(DayPeople(day=d, **{s: max(0, counts[s]) for s in STATUSES}))
        undone = net.get(d)
        if undone:
            counts = {s: counts[s] - undone[s] for s in STATUSES}
    return PeopleStats(current=current, days=listed[::-1])


def _status_decision(policy: Policy, status: str) -> str | None:
    """The decision of ``policy`` on a valid code of ``status``, or None when the clause that
    would decide it also asks about the code's test, doses or assurance, which a scan record
    does not keep."""
    for clause in policy.clauses:
        when = clause.when
        if when.status is not None and status not in when.status:
            continue
        facts = (when.negative_test_within_hours, when.min_doses, when.assurance)
        return clause.verdict if facts == (None, None, None) else None
    return policy.default.verdict


def _decision(
    kind: str, verdict: str, status: str | None, stored: str | None, reason: str | None = None
) -> str:
    """What the checkpoint decided on a scan: the decision its record keeps (migration 0010);
    for an older record, or an upload from a device that does not send it, as far as the record
    tells -- every verdict but `valid` is denied (verifier.policy_decision), a valid one as its
    place's policy says when the code's status alone decides it. A pass given offline to a code
    the server had revoked before the scan (scans.models.REVOKED) is counted apart, never as a
    good `allow`."""
    decided = stored if stored in DECISIONS else None
    if verdict == "valid" and reason == REVOKED and decided in ("allow", None):
        return "allowed_revoked"
    if decided is not None:
        return decided
    if verdict != "valid":
        return "deny"
    if status is None or kind not in PLACE_KINDS:
        return "decision_unknown"
    policy = default_policies().for_place(kind)
    return _status_decision(policy, status) or "decision_unknown"


async def _scans(
    session: AsyncSession, *, since: dt.datetime
) -> tuple[list[CheckpointScans], bool, ScanTotals]:
    grouped = (
        ScanRecord.checkpoint_id,
        Checkpoint.name,
        Checkpoint.kind,
        ScanRecord.verdict,
        HealthCode.status,
        ScanRecord.decision,
        ScanRecord.reason,
    )
    rows = await session.execute(
        select(*grouped, func.count())
        .join(Checkpoint, Checkpoint.id == ScanRecord.checkpoint_id)
        # The code's status as issued is the status its holder showed at the gate.
        .outerjoin(HealthCode, HealthCode.code_id == ScanRecord.code_id)
        .where(ScanRecord.scanned_at >= since)
        .group_by(*grouped)
    )
    places: dict[uuid.UUID, dict[str, Any]] = {}
    for checkpoint_id, name, kind, verdict, status, stored, reason, count in rows:
        place = places.setdefault(
            checkpoint_id,
            {
                "checkpoint_id": checkpoint_id,
                "name": name,
                "kind": kind,
                **dict.fromkeys(VERDICTS, 0),
                **dict.fromkeys(DECISIONS, 0),
            },
        )
        if verdict in VERDICTS:
            place[verdict] += count
            place[_decision(kind, verdict, status, stored, reason)] += count
    ordered = sorted(
        places.values(),
        key=lambda p: (-sum(p[v] for v in VERDICTS), p["name"], str(p["checkpoint_id"])),
    )
    # The totals are summed here, over every place: a client adding up the 50 it is sent
    # would be short for a province with more.
    totals = {key: sum(p[key] for p in ordered) for key in (*VERDICTS, *DECISIONS)}
    return (
        [CheckpointScans.model_validate(p) for p in ordered[:MAX_CHECKPOINTS]],
        len(ordered) > MAX_CHECKPOINTS,
        ScanTotals(places=len(ordered), **totals),
    )


async def _feeds(
    session: AsyncSession, *, since: dt.datetime, first_day: dt.date, days: int
) -> FeedStats:
    day = LocalDay(FeedBatch.received_at)
    rows = await session.execute(
        select(day, func.count(), _sum(FeedBatch.rows_accepted), _sum(FeedBatch.rows_rejected))
        .where(FeedBatch.received_at >= since)
        .group_by(day)
    )
    per_day = {d: [0, 0, 0] for d in _every_day(first_day, days)}
    for value, batches, accepted, rejected in rows:
        parsed = _day(value)
        if parsed in per_day:
            per_day[parsed] = [int(batches), int(accepted), int(rejected)]
    # Named columns only: a batch's error list can be thousands of entries long.
    latest = await session.execute(
        select(
            FeedBatch.id,
            FeedBatch.kind,
            FeedClient.name.label("client"),
            FeedBatch.received_at,
            FeedBatch.rows_total,
            FeedBatch.rows_accepted,
            FeedBatch.rows_rejected,
            FeedBatch.errors_truncated,
        )
        .join(FeedClient, FeedClient.id == FeedBatch.client_id)
        .order_by(FeedBatch.received_at.desc(), FeedBatch.id)
        .limit(LATEST_BATCHES)
    )
    return FeedStats(
        days=[
            DayFeeds(day=d, batches=b, rows_accepted=a, rows_rejected=r)
            for d, (b, a, r) in per_day.items()
        ],
        latest=[BatchSummary.model_validate(row._mapping) for row in latest],
    )


async def _trust_bundle(session: AsyncSession, *, now: dt.datetime) -> TrustBundleState | None:
    # Not trust.service.latest: that loads the signed text, which can be large.
    row = (
        await session.execute(
            select(
                TrustBundleRecord.version,
                TrustBundleRecord.issued_at,
                TrustBundleRecord.expires_at,
            )
            .order_by(TrustBundleRecord.version.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    version, issued_at, expires_at = row
    if now >= expires_at:
        freshness = "expired"
    elif now >= issued_at + (expires_at - issued_at) / 2:
        freshness = "aging"
    else:
        freshness = "fresh"
    return TrustBundleState(
        version=version,
        issued_at=issued_at,
        expires_at=expires_at,
        age_seconds=max(0, int((now - issued_at).total_seconds())),
        freshness=freshness,
    )


async def _outbox(session: AsyncSession, *, now: dt.datetime) -> OutboxStats:
    states = dict.fromkeys(OUTBOX_STATES, 0)
    for state, count in await session.execute(
        select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
    ):
        states[state] = count
    rows = await session.execute(
        select(Partner.id, Partner.circuit_failures, Partner.circuit_open_until).order_by(
            Partner.id
        )
    )
    partners = []
    for partner_id, failures, open_until in rows:
        until = circuit_open_until(open_until, now)
        partners.append(
            PartnerCircuit(
                partner=partner_id,
                circuit="closed" if until is None else "open",
                failures=failures,
                open_until=until,
            )
        )
    return OutboxStats(
        states=states,
        partners=partners,
        circuits_open=sum(p.circuit == "open" for p in partners),
    )


async def audit_page(
    session: AsyncSession,
    *,
    limit: int,
    before_id: int | None,
    action: str | None,
    actor_types: Sequence[str] | None = None,
) -> AuditPage:
    """The audit log newest first, ``limit`` events older than ``before_id``. ``action`` is an
    exact action, or a prefix when it ends with a dot (``appeal.`` for every appeal event);
    ``actor_types``, when given, keeps the events by those kinds of actor only."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    if action is not None:
        query = query.where(
            AuditEvent.action.startswith(action, autoescape=True)
            if action.endswith(".")
            else AuditEvent.action == action
        )
    if actor_types:
        query = query.where(AuditEvent.actor_type.in_(sorted(set(actor_types))))
    events = list((await session.execute(query)).scalars())
    more = len(events) > limit
    events = events[:limit]
    return AuditPage(
        events=[AuditEventRead.model_validate(e, from_attributes=True) for e in events],
        next_before_id=events[-1].id if more else None,
    )
