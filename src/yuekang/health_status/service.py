"""The status record: decided by the rules engine from the facts, changed by operators through
overrides, explained to the resident.

One write path, :func:`decide`: load the facts, evaluate the active rule set, store the decision,
keep the history, and -- when a status gets worse -- revoke every unexpired code of that person in
the same transaction, so online verification answers ``revoked`` the moment the change commits.
A decision holds until its ``valid_until`` (a window ends) or until another rule set is in force;
:func:`current` decides again when a reader finds it past either.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import metrics
from yuekang.audit import service as audit
from yuekang.clock import rfc3339
from yuekang.db import after_commit
from yuekang.exceptions import NotFound
from yuekang.health_codes.models import HealthCode, Revocation
from yuekang.health_status import repository, rulebook
from yuekang.health_status.models import HealthStatus, StatusChange, StatusOverride
from yuekang.principals import Actor
from yuekang.residents.models import Identity
from yuekang.rules import SEVERITY, Decision, Finding, RuleSet, Status, evaluate
from yuekang.rules.facts import as_status

StatusValue = Status
CHUNK = 500


@dataclass(frozen=True)
class Recomputed:
    persons: int = 0
    changed: int = 0
    revoked: int = 0

    def __add__(self, other: Recomputed) -> Recomputed:
        return Recomputed(
            self.persons + other.persons, self.changed + other.changed, self.revoked + other.revoked
        )


AfterLock = Callable[[AsyncSession, Mapping[uuid.UUID, bytes]], Awaitable[dt.datetime]]
"""Runs once a chunk's status rows are locked; returns the time to decide at. A feed batch uses
it to stamp its facts as received *now*: an override granted before this moment could not have
seen them (they were not committed), one granted after waits for this transaction."""


async def decide(
    session: AsyncSession,
    *,
    resident_ids: Iterable[uuid.UUID],
    rules: RuleSet,
    now: dt.datetime,
    actor: Actor,
    after_lock: AfterLock | None = None,
) -> Recomputed:
    """Decide again the status of each resident (who has bound an identity) from their facts."""
    total = Recomputed()
    ordered = sorted(set(resident_ids))
    for start in range(0, len(ordered), CHUNK):
        total += await _decide_chunk(
            session,
            ordered[start : start + CHUNK],
            rules=rules,
            now=now,
            actor=actor,
            after_lock=after_lock,
        )
    return total


async def _decide_chunk(
    session: AsyncSession,
    resident_ids: Sequence[uuid.UUID],
    *,
    rules: RuleSet,
    now: dt.datetime,
    actor: Actor,
    after_lock: AfterLock | None,
) -> Recomputed:
    people = await repository.persons(session, resident_ids)
    if not people:
        return Recomputed()
    # Locked in id order (as issuance locks one row): concurrent recomputations cannot deadlock,
    # and an issuance waits for the decision (or the decision for the issuance, then revokes).
    statuses = {
        record.resident_id: record
        for record in (
            await session.execute(
                select(HealthStatus)
                .where(HealthStatus.resident_id.in_(list(people)))
                .order_by(HealthStatus.resident_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).scalars()
    }
    if after_lock is not None:
        now = await after_lock(session, people)
    facts = await repository.load_facts(session, people, now=now)
    changed = revoked = 0
    for resident_id in people:
        decision = evaluate(facts[resident_id], now=now, rules=rules)
        was_changed, codes = await _store(
            session, statuses.get(resident_id), resident_id, decision, now=now, actor=actor
        )
        changed += was_changed
        revoked += codes
    await session.flush()
    return Recomputed(len(people), changed, revoked)


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule_id,
        "reason": finding.reason,
        "status": finding.status,
        "since": rfc3339(finding.since),
        "until": None if finding.until is None else rfc3339(finding.until),
        "params": dict(finding.params),
    }


async def _store(
    session: AsyncSession,
    record: HealthStatus | None,
    resident_id: uuid.UUID,
    decision: Decision,
    *,
    now: dt.datetime,
    actor: Actor,
) -> tuple[bool, int]:
    findings = [_finding(f) for f in decision.findings]
    override = next((f for f in decision.findings if f.rule_id == "override"), None)
    reason_text = None if override is None else str(override.params["reason"])
    old = None if record is None else record.status
    old_codes = None if record is None else list(record.reason_codes)
    if record is None:
        record = HealthStatus(resident_id=resident_id)
        session.add(record)
    record.status = decision.status
    record.reason_codes = decision.reason_codes
    record.reason_text = reason_text
    record.source = "override" if override is not None else "rules"
    record.updated_at = now
    record.updated_by = actor.label
    record.findings = findings
    record.valid_until = decision.valid_until
    record.rule_set_version = decision.rule_set_version
    record.nat_sampled_at = decision.nat.latest_sampled_at
    record.nat_result = decision.nat.latest_result
    record.vaccine_doses = decision.vaccine_doses
    record.vaccinated_on = decision.last_vaccinated_on
    if old == decision.status and old_codes == decision.reason_codes:
        return False, 0
    session.add(
        StatusChange(
            resident_id=resident_id,
            old_status=old,
            new_status=decision.status,
            reason_text=reason_text,
            detail={
                "reason_codes": decision.reason_codes,
                "rule_set_version": decision.rule_set_version,
                "findings": findings,
            },
            actor=actor.label,
            at=now,
        )
    )
    revoked = 0
    if old is not None and SEVERITY[decision.status] > SEVERITY[as_status(old)]:
        revoked = await revoke_unexpired_codes(
            session, resident_id=resident_id, reason="status_worsened", now=now
        )
    return True, revoked


async def current(
    session: AsyncSession,
    resident_id: uuid.UUID,
    *,
    rules: RuleSet,
    now: dt.datetime,
    locked: HealthStatus | None = None,
    lock: bool = True,
) -> HealthStatus | None:
    """The resident's status row, locked, decided again first if it has lapsed (``valid_until``
    passed) or was decided under a rule set no longer in force. ``locked`` is the row when the
    caller has already read it ``FOR UPDATE`` in this transaction. ``lock=False`` is for a
    reader that writes nothing: the row is locked only if it must be decided again (``decide``
    locks and refreshes it)."""
    record = locked or await session.get(
        HealthStatus, resident_id, with_for_update=lock, populate_existing=True
    )
    if record is None:
        return None
    lapsed = record.valid_until is not None and record.valid_until <= now
    # Another version is either newer (decide again) or this process's cache is behind for a
    # few seconds (keep the record: deciding it back under the old rules would flap).
    outdated = (
        not lapsed
        and record.rule_set_version != rules.version
        and await rulebook.version_in_force(session) == rules.version
    )
    if lapsed or outdated:
        await decide(
            session, resident_ids=[resident_id], rules=rules, now=now, actor=Actor.system("rules")
        )
    return record


class StatusFacts(Protocol):
    """What a reader of a status needs: a ``HealthStatus`` row, or the same columns as a Core
    row (:func:`settled`)."""

    @property
    def status(self) -> str: ...
    @property
    def reason_codes(self) -> list[str]: ...
    @property
    def findings(self) -> list[dict[str, Any]]: ...
    @property
    def valid_until(self) -> dt.datetime | None: ...
    @property
    def updated_at(self) -> dt.datetime: ...
    @property
    def rule_set_version(self) -> str | None: ...
    @property
    def nat_sampled_at(self) -> dt.datetime | None: ...
    @property
    def nat_result(self) -> str | None: ...
    @property
    def vaccine_doses(self) -> int: ...
    @property
    def vaccinated_on(self) -> dt.date | None: ...


STATUS_ROW = select(HealthStatus.__table__).where(
    HealthStatus.__table__.c.resident_id == bindparam("resident_id")
)
"""A resident's status row, as a Core row (:class:`StatusFacts`); ``resident_id`` is its
parameter."""


def standing(row: StatusFacts, *, rules: RuleSet, now: dt.datetime) -> bool:
    """Whether ``row`` is the resident's status as read, with no decision to make again: not
    lapsed, and decided under the rules in force here (else :func:`current` decides)."""
    lapsed = row.valid_until is not None and row.valid_until <= now
    return not lapsed and row.rule_set_version == rules.version


async def set_status(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    status: StatusValue,
    reason: str,
    expires_at: dt.datetime | None = None,
    appeal_id: uuid.UUID | None = None,
    rules: RuleSet,
    actor: Actor,
    now: dt.datetime,
) -> tuple[HealthStatus, int]:
    """An operator's decision: ``status`` replaces what the facts known now say, until
    ``expires_at``. Returns the new record and how many codes were revoked."""
    record = await session.get(
        HealthStatus, resident_id, with_for_update=True, populate_existing=True
    )
    if record is None:
        raise NotFound(
            "this resident has no status yet (no identity bound)", code="resident_not_found"
        )
    old = record.status
    person = (
        await session.execute(select(Identity.doc_index).where(Identity.resident_id == resident_id))
    ).scalar_one()
    session.add(
        StatusOverride(
            resident_id=resident_id,
            person=person,
            status=status,
            reason=reason,
            granted_at=now,
            expires_at=expires_at,
            granted_by=actor.label,
            appeal_id=appeal_id,
        )
    )
    await session.flush()
    outcome = await decide(session, resident_ids=[resident_id], rules=rules, now=now, actor=actor)
    await audit.record(
        session,
        actor=actor,
        action="status.set",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={
            "old": old,
            "new": record.status,
            "reason": reason,
            "expires_at": None if expires_at is None else rfc3339(expires_at),
            "appeal_id": None if appeal_id is None else str(appeal_id),
            "codes_revoked": outcome.revoked,
        },
    )
    return record, outcome.revoked


async def revoke_unexpired_codes(
    session: AsyncSession, *, resident_id: uuid.UUID, reason: str, now: dt.datetime
) -> int:
    # Only unexpired codes are looked at, so only their revocations: on PostgreSQL the bound
    # is the partition key, and the days before today are not read.
    already = select(Revocation.code_id).where(
        Revocation.resident_id == resident_id, Revocation.expires_at > now
    )
    rows = (
        await session.execute(
            select(HealthCode.code_id, HealthCode.expires_at).where(
                HealthCode.resident_id == resident_id,
                HealthCode.expires_at > now,
                HealthCode.code_id.not_in(already),
            )
        )
    ).all()
    for code_id, expires_at in rows:
        session.add(
            Revocation(
                code_id=code_id,
                resident_id=resident_id,
                reason=reason,
                revoked_at=now,
                expires_at=expires_at,
            )
        )
    if rows:
        after_commit(session, functools.partial(metrics.revocations(reason).inc, len(rows)))
    return len(rows)


def stored_findings(record: StatusFacts) -> list[Finding]:
    """The findings kept with a decision, as the engine produced them."""
    return [
        Finding(
            rule_id=str(item["rule"]),
            reason=str(item["reason"]),
            status=as_status(str(item["status"])),
            since=dt.datetime.fromisoformat(item["since"]),
            until=None if item["until"] is None else dt.datetime.fromisoformat(item["until"]),
            received_at=dt.datetime.fromisoformat(item["since"]),
            params=item.get("params", {}),
        )
        for item in record.findings
    ]


async def history(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    actor: Actor,
    reason: str,
    now: dt.datetime,
    limit: int,
) -> Sequence[StatusChange]:
    """A resident's status history, newest first. Health data: the reading is audited."""
    if await session.get(HealthStatus, resident_id) is None:
        raise NotFound("no status is recorded for this resident", code="resident_not_found")
    rows = await session.execute(
        select(StatusChange)
        .where(StatusChange.resident_id == resident_id)
        .order_by(StatusChange.at.desc(), StatusChange.id.desc())
        .limit(limit)
    )
    await audit.record(
        session,
        actor=actor,
        action="status.history.read",
        subject_type="resident",
        subject_id=str(resident_id),
        now=now,
        detail={"reason": reason},
    )
    return rows.scalars().all()
