"""The database side of online verification, shared by the scans that arrive together.

An online scan needs three things from the database: that the checkpoint's key is still good,
whether the code was revoked, and its scan record written. One request at a time, that is three
round trips and a commit per scan, and under a border queue's load the event loop spends its time
in the ORM and the connection pool rather than on the signatures. So scans are judged in
batches: the scans that arrive while one batch is in the database wait for the next, and each
batch is one transaction. On PostgreSQL that is a single statement (key check, revocations and
the INSERT of the scan records, ``_JUDGE``); on SQLite, two SELECTs and an INSERT. Under light
load a batch is a single scan; under heavy load the database cost of a scan falls with the size
of the batch.

Nothing is cached. Every answer is read from the database after its request arrived, so a key
rotated or disabled, or a code revoked, through any process holds for the next scan; and no
verdict is sent before its scan record is committed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from yuekang import apikeys
from yuekang.batching import Batches
from yuekang.checkpoints.models import Checkpoint
from yuekang.clock import from_epoch
from yuekang.db import database_unavailable
from yuekang.health_codes.models import Revocation
from yuekang.principals import CheckpointPrincipal
from yuekang.rules.policy import as_place_kind
from yuekang.scans.models import ScanRecord
from yuekang.verifier import Verdict

Judged = tuple[CheckpointPrincipal, Verdict]


@dataclass(slots=True)
class _Scan:
    checkpoint_id: uuid.UUID
    secret: str
    verdict: Verdict
    scanned_at: dt.datetime
    decisions: Mapping[str, str]
    """The decision at each kind of place: the checkpoint's kind is known only to the batch's
    statement, which records the one of its kind (a revoked code is denied anywhere)."""


# One round trip, atomic as any single statement: the scans of the batch, the checkpoints whose
# key and state let them in, whether each valid code is revoked, and the scan records written
# with the verdict the checkpoint is answered with (a revoked code: invalid, reason "revoked", as
# Verdict.revoked() says). The key hashes are compared by the database: they are SHA-256 of
# 256-bit secrets, so what a timing difference could tell is worthless. A revocation carries its
# code's expiry, which the code's `exp` claim says to the second: on PostgreSQL, where
# revocations are partitioned by that day, the lookup reads one day's partition, not every one;
# and $12, the batch's earliest expiry, lets the planner leave out the days before it (planning
# every day's partition cost more than the lookup).
_JUDGE = """
WITH scan AS (
    SELECT * FROM unnest($1::int4[], $2::uuid[], $3::bytea[], $4::text[], $5::text[],
                         $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::text[],
                         $11::timestamptz[])
        AS s(n, checkpoint_id, key_hash, code_id, verdict, reason, scanned_at,
             at_venue, at_transport, at_border, expires_at)
), judged AS (
    SELECT s.*, c.name, c.kind,
           s.verdict = 'valid'
               AND EXISTS (SELECT 1 FROM revocations r
                           WHERE r.code_id = s.code_id AND r.expires_at = s.expires_at
                             AND r.expires_at >= $12)
               AS revoked
    FROM scan s
    JOIN checkpoints c
      ON c.id = s.checkpoint_id AND c.key_hash = s.key_hash AND c.disabled_at IS NULL
), recorded AS (
    INSERT INTO scan_records
        (checkpoint_id, scan_id, code_id, scanned_at, verdict, reason, source, received_at,
         decision)
    SELECT checkpoint_id, 'online-' || replace(gen_random_uuid()::text, '-', ''), code_id,
           scanned_at,
           CASE WHEN revoked THEN 'invalid' ELSE verdict END,
           CASE WHEN revoked THEN 'revoked' ELSE reason END,
           'online', scanned_at,
           CASE WHEN revoked THEN 'deny'
                WHEN kind = 'border' THEN at_border
                WHEN kind = 'transport' THEN at_transport
                ELSE at_venue END
    FROM judged
)
SELECT n, name, kind, revoked FROM judged
"""


class OnlineScans:
    """Judges online scans in batches; one per process, built with the application context."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 500) -> None:
        self._engine = engine
        self._batches = Batches(self._commit, max_batch=max_batch)

    async def judge(
        self,
        *,
        checkpoint_id: uuid.UUID,
        secret: str,
        verdict: Verdict,
        now: dt.datetime,
        decisions: Mapping[str, str],
    ) -> Judged | None:
        """The checkpoint and the final verdict (revoked if the code is on the list), once the
        scan record is committed; None when the key is unknown, wrong or disabled (nothing is
        recorded then). A database error reaches every scan of the batch, and each is judged
        once more in a later batch, unless the database is unavailable: asking again would wait
        out the same timeouts, so that is raised at once (``503 database_unavailable``).
        ``decisions``: the verdict's decision at each kind of place, the record's by the
        checkpoint's kind."""
        scan = _Scan(checkpoint_id, secret, verdict, now, decisions)
        try:
            return await self._batches.submit(scan)
        except Exception as exc:
            if database_unavailable(exc) and not getattr(exc, "connection_invalidated", False):
                raise
            # A pooled connection found dead (it is dropped now), a concurrent statement: the
            # second answer is the request's, whatever it is.
            return await self._batches.submit(scan)

    async def close(self) -> None:
        await self._batches.close()

    async def _commit(self, batch: list[_Scan]) -> list[Judged | None]:
        if self._engine.dialect.name == "postgresql":
            return await self._commit_postgresql(batch)
        return await self._commit_portable(batch)

    async def _commit_postgresql(self, batch: list[_Scan]) -> list[Judged | None]:
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [], [], [], [])
        for n, scan in enumerate(batch):
            verdict = scan.verdict
            for column, value in zip(
                columns,
                (
                    n,
                    scan.checkpoint_id,
                    apikeys.secret_hash(scan.secret),
                    verdict.code_id,
                    verdict.verdict,
                    verdict.reasons[0].value if verdict.reasons else None,
                    scan.scanned_at,
                    scan.decisions["venue"],
                    scan.decisions["transport"],
                    scan.decisions["border"],
                    None if verdict.expires_at is None else from_epoch(verdict.expires_at),
                ),
                strict=True,
            ):
                column.append(value)
        expiries = [e for e in columns[10] if e is not None]
        earliest = min(expiries) if expiries else batch[0].scanned_at
        # One statement is its own transaction: autocommit spares the BEGIN and COMMIT round
        # trips.
        async with self._engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            rows = (await autocommit.exec_driver_sql(_JUDGE, (*columns, earliest))).all()
        answers: list[Judged | None] = [None] * len(batch)
        for row in rows:
            scan = batch[row.n]
            answers[row.n] = (
                CheckpointPrincipal(
                    id=scan.checkpoint_id, name=row.name, kind=as_place_kind(row.kind)
                ),
                scan.verdict.revoked() if row.revoked else scan.verdict,
            )
        return answers

    async def _commit_portable(self, batch: list[_Scan]) -> list[Judged | None]:
        async with self._engine.begin() as connection:
            rows = await connection.execute(
                select(Checkpoint.id, Checkpoint.name, Checkpoint.kind, Checkpoint.key_hash).where(
                    Checkpoint.id.in_({scan.checkpoint_id for scan in batch}),
                    Checkpoint.disabled_at.is_(None),
                )
            )
            checkpoints = {row.id: row for row in rows}
            codes = {scan.verdict.code_id for scan in batch if scan.verdict.valid}
            codes.discard(None)
            revoked: set[str] = set()
            if codes:
                revoked = set(
                    (
                        await connection.execute(
                            select(Revocation.code_id).where(Revocation.code_id.in_(codes))
                        )
                    ).scalars()
                )
            answers: list[Judged | None] = []
            records: list[dict[str, Any]] = []
            for scan in batch:
                row = checkpoints.get(scan.checkpoint_id)
                if row is None or not apikeys.matches(row.key_hash, scan.secret):
                    answers.append(None)
                    continue
                verdict = scan.verdict
                decision = scan.decisions[row.kind]
                if verdict.valid and verdict.code_id in revoked:
                    verdict = verdict.revoked()
                    decision = "deny"
                # The scan record: code id, checkpoint, time, verdict -- nothing else about
                # the person.
                records.append(
                    {
                        "checkpoint_id": row.id,
                        "scan_id": f"online-{uuid.uuid4().hex}",
                        "code_id": verdict.code_id,
                        "scanned_at": scan.scanned_at,
                        "verdict": verdict.verdict,
                        "reason": verdict.reasons[0].value if verdict.reasons else None,
                        "source": "online",
                        "received_at": scan.scanned_at,
                        "decision": decision,
                    }
                )
                answers.append(
                    (
                        CheckpointPrincipal(id=row.id, name=row.name, kind=as_place_kind(row.kind)),
                        verdict,
                    )
                )
            if records:
                await connection.execute(insert(ScanRecord), records)
        return answers
