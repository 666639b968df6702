"""Scan records, their retention, and the contact-tracing queries over them.

A record holds the code id, the checkpoint, the time and the verdict: nothing else about the
person. Resolving a code to a person is a separate, audited step that needs a case reference, and
only epidemiologists may take it (or run any query here).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.clock import rfc3339
from yuekang.db import dialect_name
from yuekang.exceptions import NotFound
from yuekang.health_codes.models import HealthCode, Revocation
from yuekang.principals import Actor
from yuekang.residents.models import Identity
from yuekang.scans.models import REVOKED, ScanRecord


@dataclass(frozen=True, slots=True)
class Scan:
    scan_id: str
    code_id: str | None
    scanned_at: dt.datetime
    verdict: str
    reason: str | None
    decision: str | None = None


async def upload(
    session: AsyncSession, *, checkpoint_id: uuid.UUID, scans: Sequence[Scan], now: dt.datetime
) -> list[tuple[str, str | None]]:
    """Store scans made offline; one already stored (same checkpoint and scan id) is skipped, so
    an upload can be repeated safely. Returns the verdict and decision of each new one."""
    if not scans:
        return []
    revoked = await _revoked_when_scanned(session, scans)
    rows = [
        {
            "checkpoint_id": checkpoint_id,
            "scan_id": scan.scan_id,
            "code_id": scan.code_id,
            "scanned_at": scan.scanned_at,
            "verdict": scan.verdict,
            # The device's verdict and decision are kept as it made them; a code the server had
            # already revoked when it was scanned (the device's bundle was behind) gets the
            # server's reason beside them, and is not counted as a good pass (stats).
            "reason": REVOKED if scan.scan_id in revoked else scan.reason,
            "source": "offline",
            "received_at": now,
            "decision": scan.decision,
        }
        for scan in {s.scan_id: s for s in scans}.values()
    ]
    if dialect_name(session) == "sqlite":
        statement = (
            sqlite_insert(ScanRecord)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["checkpoint_id", "scan_id"])
            .returning(ScanRecord.verdict, ScanRecord.decision)
        )
        return [(verdict, decision) for verdict, decision in await session.execute(statement)]
    # PostgreSQL partitions the records by day, and a partitioned table's unique constraint
    # must hold the partition key: (checkpoint_id, scan_id, scanned_at) would take the same scan
    # id again with another time (a device whose clock was corrected, a repeated upload after
    # midnight with the time rounded otherwise). So uploads from one checkpoint take turns
    # (a transaction-level lock on its id) and the scan ids it already stored, on any day, are
    # left out before the INSERT; the constraint still stops what the check could not see.
    await session.execute(
        select(func.pg_advisory_xact_lock(UPLOAD_LOCK, func.hashtext(str(checkpoint_id))))
    )
    stored = set(
        (
            await session.execute(
                select(ScanRecord.scan_id).where(
                    ScanRecord.checkpoint_id == checkpoint_id,
                    ScanRecord.scan_id.in_([row["scan_id"] for row in rows]),
                )
            )
        ).scalars()
    )
    rows = [row for row in rows if row["scan_id"] not in stored]
    if not rows:
        return []
    statement = (
        pg_insert(ScanRecord)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["checkpoint_id", "scan_id", "scanned_at"])
        .returning(ScanRecord.verdict, ScanRecord.decision)
    )
    return [(verdict, decision) for verdict, decision in await session.execute(statement)]


UPLOAD_LOCK = 0x5943_414E
"""The first key of the advisory locks uploads take per checkpoint (``YCAN``), so that no other
use of ``pg_advisory_xact_lock`` with the same second key waits on them."""


async def _revoked_when_scanned(session: AsyncSession, scans: Sequence[Scan]) -> set[str]:
    """The scan ids of valid verdicts given to codes revoked at or before their scan. A
    revocation is kept until its code expires, after which no device accepts the code anyway."""
    valid = [s for s in scans if s.verdict == "valid" and s.code_id is not None]
    if not valid:
        return set()
    # A code given a valid verdict had not expired when scanned, so its revocation (which
    # carries the code's expiry) expires after the earliest scan: on PostgreSQL that leaves out
    # the partitions of older days. A day's margin for the devices' clocks.
    earliest = min(s.scanned_at for s in valid) - dt.timedelta(days=1)
    revoked_at = dict(
        (
            await session.execute(
                select(Revocation.code_id, Revocation.revoked_at).where(
                    Revocation.code_id.in_({s.code_id for s in valid}),
                    Revocation.expires_at > earliest,
                )
            )
        ).all()
    )
    return {
        s.scan_id
        for s in valid
        if s.code_id in revoked_at and revoked_at[s.code_id] <= s.scanned_at
    }


async def at_checkpoint(
    session: AsyncSession,
    *,
    checkpoint_id: uuid.UUID,
    start: dt.datetime,
    end: dt.datetime,
    case_reference: str,
    actor: Actor,
    now: dt.datetime,
    retention: dt.timedelta,
) -> Sequence[ScanRecord]:
    """Which codes were scanned at a checkpoint in a time window (audited), within
    ``retention`` of ``now``."""
    rows = (
        (
            await session.execute(
                select(ScanRecord)
                .where(
                    ScanRecord.checkpoint_id == checkpoint_id,
                    ScanRecord.scanned_at >= max(start, now - retention),
                    ScanRecord.scanned_at < end,
                )
                .order_by(ScanRecord.scanned_at)
                .limit(10_000)
            )
        )
        .scalars()
        .all()
    )
    await audit.record(
        session,
        actor=actor,
        action="scans.at_checkpoint",
        subject_type="checkpoint",
        subject_id=str(checkpoint_id),
        now=now,
        detail={
            "case_reference": case_reference,
            "from": rfc3339(start),
            "to": rfc3339(end),
            "results": len(rows),
        },
    )
    return rows


async def _owner(session: AsyncSession, code_id: str) -> uuid.UUID:
    owner = (
        await session.execute(select(HealthCode.resident_id).where(HealthCode.code_id == code_id))
    ).scalar_one_or_none()
    if owner is None:
        raise NotFound("no such code", code="code_not_found")
    return owner


async def of_person(
    session: AsyncSession,
    *,
    code_id: str,
    case_reference: str,
    actor: Actor,
    now: dt.datetime,
    retention: dt.timedelta,
) -> Sequence[ScanRecord]:
    """Where the holder of ``code_id`` had any of their codes scanned, or their document
    checked instead of a code (audited), within ``retention`` of ``now``."""
    owner = await _owner(session, code_id)
    codes = select(HealthCode.code_id).where(HealthCode.resident_id == owner)
    document = select(Identity.doc_index).where(Identity.resident_id == owner).scalar_subquery()
    rows = (
        (
            await session.execute(
                select(ScanRecord)
                .where(
                    or_(
                        ScanRecord.code_id.in_(codes),
                        and_(ScanRecord.method == "document", ScanRecord.subject_index == document),
                    ),
                    # PostgreSQL drops records by whole days, up to a day after retention: until
                    # then they are not found. (Also the partition key: older days are skipped.)
                    ScanRecord.scanned_at >= now - retention,
                )
                .order_by(ScanRecord.scanned_at)
                .limit(10_000)
            )
        )
        .scalars()
        .all()
    )
    await audit.record(
        session,
        actor=actor,
        action="scans.of_person",
        subject_type="resident",
        subject_id=str(owner),
        now=now,
        detail={"case_reference": case_reference, "code_id": code_id, "results": len(rows)},
    )
    return rows


async def resolve(
    session: AsyncSession, *, code_id: str, case_reference: str, actor: Actor, now: dt.datetime
) -> uuid.UUID:
    """The resident holding ``code_id`` (audited with the case reference)."""
    owner = await _owner(session, code_id)
    await audit.record(
        session,
        actor=actor,
        action="scans.resolve_code",
        subject_type="resident",
        subject_id=str(owner),
        now=now,
        detail={"case_reference": case_reference, "code_id": code_id},
    )
    return owner
