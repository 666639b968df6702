"""Issuance for the requests that arrive together, in one transaction.

Each issuance reads and locks the person's status row, signs, and inserts the code: one request
at a time that is four round trips, a commit and the ORM's bookkeeping, and under a morning's
load the event loop spends its time there rather than on signatures. So requests are issued in
batches: the requests that arrive while one batch is in the database wait for the next, and each
batch is one transaction -- one SELECT that locks every status row of the batch (in resident-id
order, so two batches in two processes cannot deadlock each other), one multi-row INSERT, one
commit. Under light load a batch is a single request.

A resident whose live code has most of its life left gets that code again (``service.reusable``),
found for the whole batch by one more SELECT. Only the ordinary case is batched: a bound, proved
identity, a status row decided under the rule set in force and not lapsed, no partner conversion, no
Idempotency-Key. Anything else -- and any error of the batch -- answers None, and the caller issues
through ``service.issue_code``, which handles it and gives the documented errors. Nothing is cached:
every code shows the status read, locked, after its request arrived, exactly as a single issuance
does.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from yuekang.batching import Batches
from yuekang.config import Settings
from yuekang.db import database_unavailable
from yuekang.exceptions import YuekangError
from yuekang.health_codes.models import HealthCode
from yuekang.health_codes.service import (
    CONVERTED,
    REUSE_SHARE,
    Issued,
    new_code,
    reusable,
    reusable_query,
)
from yuekang.health_status.models import HealthStatus
from yuekang.health_status.rulebook import RuleBook
from yuekang.keyring.ring import KeyRing
from yuekang.residents.assurance import may_have_codes
from yuekang.residents.models import Identity

log = logging.getLogger(__name__)

_COLUMNS = ("code_id", "resident_id", "kid", "status", "qr_text", "issued_at", "expires_at")


@dataclass(slots=True)
class _Request:
    resident_id: uuid.UUID
    now: dt.datetime


class Issuance:
    """Issues codes in batches; one per process, built with the application context."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keyring: KeyRing,
        rulebook: RuleBook,
        settings: Settings,
        max_batch: int = 200,
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._rulebook = rulebook
        self._settings = settings
        self._batches = Batches(self._answer, max_batch=max_batch)

    async def issue(self, resident_id: uuid.UUID, now: dt.datetime) -> Issued | None:
        """A code, committed (new, or the live one again); None when this request is not the
        ordinary case (see the module's docstring) and must go through ``service.issue_code``."""
        return await self._batches.submit(_Request(resident_id, now))

    async def close(self) -> None:
        await self._batches.close()

    async def _answer(self, batch: list[_Request]) -> list[Issued | None]:
        try:
            return await self._commit(batch)
        except Exception as exc:
            if database_unavailable(exc) and not getattr(exc, "connection_invalidated", False):
                # Refused, frozen past a timeout, read-only: asking again one by one would wait
                # out the same timeouts, so every request of the batch is answered 503 now.
                raise
            # A deadlock with a status decision, a pooled connection found dead: each request
            # is tried again on its own, which gives the documented answer if it fails again.
            log.warning(
                "an issuance batch of %d failed; issuing singly",
                len(batch),
                exc_info=not database_unavailable(exc),
            )
            return [None] * len(batch)

    async def _commit(self, batch: list[_Request]) -> list[Issued | None]:
        rules = await self._rulebook.current()
        lifetime = dt.timedelta(seconds=self._settings.codes.lifetime_seconds)
        async with self._engine.begin() as connection:
            rows = await connection.execute(
                select(
                    HealthStatus.resident_id,
                    HealthStatus.status,
                    HealthStatus.valid_until,
                    HealthStatus.rule_set_version,
                    HealthStatus.nat_sampled_at,
                    HealthStatus.nat_result,
                    HealthStatus.vaccine_doses,
                    HealthStatus.updated_at,
                    Identity.masked_name,
                    Identity.assurance,
                    Identity.bound_at,
                    Identity.proofed_at,
                    CONVERTED.label("converted"),
                )
                .join(Identity, Identity.resident_id == HealthStatus.resident_id)
                .where(HealthStatus.resident_id.in_({r.resident_id for r in batch}))
                .order_by(HealthStatus.resident_id)
                .with_for_update(of=HealthStatus)
                # The earliest time of the batch: a conversion still valid then sends the
                # request down the single path, which looks at it properly.
                .params(now=min(r.now for r in batch))
            )
            found = {row.resident_id: row for row in rows}
            earliest = min(r.now for r in batch)
            live: dict[uuid.UUID, Any] = {}
            for code_row in await connection.execute(
                reusable_query(set(found), earliest, lifetime)
            ):
                live.setdefault(code_row.resident_id, code_row)  # the newest of each
            answers: list[Issued | None] = []
            for request in batch:
                row = found.get(request.resident_id)
                if (
                    row is None
                    or not may_have_codes(row.assurance)
                    or row.converted
                    or row.rule_set_version != rules.version
                    or (row.valid_until is not None and row.valid_until <= request.now)
                ):
                    answers.append(None)
                    continue
                again = await reusable(
                    live.get(request.resident_id),
                    status=row.status,
                    decided_at=row.updated_at,
                    bound_at=row.bound_at,
                    proofed_at=row.proofed_at,
                    keyring=self._keyring,
                    now=request.now,
                )
                if (
                    again is not None
                    and self._settings.codes.reuse
                    and again.expires_at > request.now + lifetime * REUSE_SHARE
                ):
                    answers.append(Issued(again, replayed=False, reused=True))
                    continue
                try:
                    code = await new_code(
                        resident_id=request.resident_id,
                        status=row,
                        masked_name=row.masked_name,
                        assurance=row.assurance,
                        source=None,
                        keyring=self._keyring,
                        issuer=self._settings.issuer,
                        lifetime=lifetime,
                        rules=rules,
                        now=request.now,
                    )
                except YuekangError:
                    answers.append(None)  # no signing key: the single path says so
                    continue
                answers.append(Issued(code, replayed=False))
            codes = [a.code for a in answers if a is not None and not a.reused]
            if codes:
                await connection.execute(
                    insert(HealthCode),
                    [{column: getattr(code, column) for column in _COLUMNS} for code in codes],
                )
        return answers
