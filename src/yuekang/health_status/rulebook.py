"""The rule set in force: stored in the database, cached per process for a bounded time.

Activating a rule set writes a row; every process picks it up within ``refresh_seconds`` (5 s by
default), and a status decided under another version is decided again the next time it is read.
Without any activated row the rule set shipped in the package is in force.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang.audit import service as audit
from yuekang.db import database_unavailable
from yuekang.exceptions import Conflict, ValidationFailed
from yuekang.health_status.models import RuleSetRecord
from yuekang.keyring.ring import REFRESH_WAIT_SECONDS, RETRY_SECONDS
from yuekang.principals import Actor
from yuekang.rules import RuleSet, RuleSetError, default_rule_set, parse_rule_set

log = logging.getLogger(__name__)


@dataclass
class RuleBook:
    sessionmaker: async_sessionmaker[AsyncSession]
    refresh_seconds: float
    _current: RuleSet | None = None
    _loaded_monotonic: float = 0.0
    _refreshing: asyncio.Future[RuleSet] | None = None
    _generation: int = 0

    async def current(self) -> RuleSet:
        """The rule set in force, read again when older than ``refresh_seconds``. As the key
        ring does: while the database cannot be reached the last one read goes on serving
        (rule sets change only through the database), a slow reload is waited for at most
        half a second, and a failed one is tried again a second later."""
        if self._current is not None and self._fresh():
            return self._current
        if self._current is None or self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
            # Read, so that a failure nobody waited for is not reported as never retrieved.
            self._refreshing.add_done_callback(
                lambda done: None if done.cancelled() else done.exception()
            )
        refreshing = self._refreshing
        if self._current is None:
            return await asyncio.shield(refreshing)
        done, _ = await asyncio.wait({refreshing}, timeout=REFRESH_WAIT_SECONDS)
        if done and not refreshing.cancelled() and refreshing.exception() is None:
            return refreshing.result()
        return self._current

    def invalidate(self) -> None:
        self._current = None
        self._refreshing = None
        self._generation += 1

    def _fresh(self) -> bool:
        return time.monotonic() - self._loaded_monotonic < self.refresh_seconds

    async def _refresh(self) -> RuleSet:
        generation = self._generation
        try:
            loaded = await self._load()
        except Exception as exc:
            if self._current is None or not database_unavailable(exc):
                raise
            log.warning("rule set not refreshed (database unavailable); using the last")
            self._loaded_monotonic = time.monotonic() - self.refresh_seconds + RETRY_SECONDS
            return self._current
        else:
            if generation == self._generation:
                self._current = loaded
                self._loaded_monotonic = time.monotonic()
            return loaded
        finally:
            if generation == self._generation:
                self._refreshing = None

    async def _load(self) -> RuleSet:
        async with self.sessionmaker() as session:
            record = await active_record(session)
        if record is None:
            return default_rule_set()
        if self._current is not None and self._current.version == record.version:
            return self._current
        try:
            return parse_rule_set(record.document)
        except RuleSetError:
            # Stored rule sets were valid when activated; one that no longer parses (after an
            # upgrade tightened the grammar) must not take the service down with it.
            log.exception(
                "active rule set %s no longer validates; keeping the previous one", record.version
            )
            return self._current or default_rule_set()


async def active_record(session: AsyncSession) -> RuleSetRecord | None:
    result = await session.execute(
        select(RuleSetRecord)
        .where(RuleSetRecord.activated_at.is_not(None))
        .order_by(RuleSetRecord.activated_at.desc(), RuleSetRecord.version.desc())
        .limit(1)
    )
    return result.scalar_one_or_none()


async def version_in_force(session: AsyncSession) -> str:
    """The version every process will be using within its refresh time."""
    record = await active_record(session)
    return default_rule_set().version if record is None else record.version


def validated(document: str | bytes | dict[str, Any], *, fmt: str) -> RuleSet:
    """The rule set, or a 422 listing every problem."""
    try:
        return parse_rule_set(document, fmt=fmt)
    except RuleSetError as exc:
        raise ValidationFailed(
            str(exc),
            code="invalid_rule_set",
            fields=[{"field": "rule_set", "reason": "invalid", "message": p} for p in exc.problems],
        ) from exc


async def activate(
    session: AsyncSession, *, rules: RuleSet, actor: Actor, now: dt.datetime
) -> RuleSetRecord:
    """Store ``rules`` (validated) and put it in force. Uploading a version again with the same
    content re-activates it; the same version with other content is refused."""
    canonical = rules.canonical_json()
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    record = await session.get(RuleSetRecord, rules.version, with_for_update=True)
    if record is not None and record.sha256 != digest:
        raise Conflict(
            f"rule set version {rules.version!r} exists with other content; bump the version",
            code="rule_set_version_exists",
        )
    if record is None:
        record = RuleSetRecord(
            version=rules.version,
            document=rules.document(),
            sha256=digest,
            uploaded_at=now,
            uploaded_by=actor.label,
        )
        session.add(record)
    # Activations are ordered by time; a process whose clock is behind (or a fixed test clock)
    # must still put the rule set it was asked for in force, so never stamp at or before the
    # latest activation.
    latest = await active_record(session)
    if latest is not None and latest.activated_at is not None and latest.activated_at >= now:
        record.activated_at = latest.activated_at + dt.timedelta(microseconds=1)
    else:
        record.activated_at = now
    await audit.record(
        session,
        actor=actor,
        action="rules.activate",
        subject_type="rule_set",
        subject_id=rules.version,
        now=now,
        detail={"sha256": digest},
    )
    await session.flush()
    return record
