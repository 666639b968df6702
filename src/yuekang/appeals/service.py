"""Appeals: a resident contests a red or yellow status; an operator accepts (an override with an
expiry and a reason) or rejects (a reason the resident reads). Every step is audited."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.appeals.models import Appeal
from yuekang.audit import service as audit
from yuekang.exceptions import Conflict, NotFound
from yuekang.health_status import service as health_status
from yuekang.pii import PiiCipher
from yuekang.principals import Actor
from yuekang.residents import service as residents
from yuekang.rules import RuleSet


def _context(appeal_id: uuid.UUID) -> str:
    return f"appeals.text:{appeal_id}"


async def file(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    text: str,
    pii: PiiCipher,
    rules: RuleSet,
    now: dt.datetime,
) -> Appeal:
    status = await health_status.current(session, resident_id, rules=rules, now=now)
    if status is None:
        await residents.require_proved(session, resident_id)
        raise NotFound("bind an identity document first", code="identity_not_bound")
    if status.status == "green":
        raise Conflict("only a red or yellow status can be contested", code="status_not_contested")
    pending = await session.execute(
        select(Appeal.id).where(Appeal.resident_id == resident_id, Appeal.state == "pending")
    )
    if pending.first() is not None:
        raise Conflict("an appeal is already waiting for review", code="appeal_pending")
    appeal_id = uuid.uuid4()
    ciphertext, key_id = pii.encrypt(text, context=_context(appeal_id))
    appeal = Appeal(
        id=appeal_id,
        resident_id=resident_id,
        status_at_filing=status.status,
        reason_codes=list(status.reason_codes),
        text_ct=ciphertext,
        key_id=key_id,
        state="pending",
        filed_at=now,
    )
    session.add(appeal)
    await audit.record(
        session,
        actor=Actor.resident(resident_id),
        action="appeal.file",
        subject_type="appeal",
        subject_id=str(appeal_id),
        now=now,
        detail={"status": status.status, "reason_codes": list(status.reason_codes)},
    )
    await session.flush()
    return appeal


ANY_APPEAL = (
    select(Appeal.__table__.c.id)
    .where(Appeal.__table__.c.resident_id == bindparam("resident_id"))
    .limit(1)
)
"""A row when the resident has filed an appeal: nearly always none, and the page asks at every
load and poll (``fastlane.nothing_to_list``)."""


async def mine(session: AsyncSession, resident_id: uuid.UUID) -> Sequence[Appeal]:
    result = await session.execute(
        select(Appeal).where(Appeal.resident_id == resident_id).order_by(Appeal.filed_at.desc())
    )
    return result.scalars().all()


async def mine_with_words(
    session: AsyncSession, resident_id: uuid.UUID, *, pii: PiiCipher, now: dt.datetime
) -> list[tuple[Appeal, str]]:
    """The resident's appeals with what they wrote, for them: their own data, so the read is
    counted among their daily reads as any other (``audit.record``)."""
    appeals = await mine(session, resident_id)
    if appeals:
        await audit.record(
            session,
            actor=Actor.resident(resident_id),
            action="appeal.list",
            subject_type="resident",
            subject_id=str(resident_id),
            now=now,
        )
    return [(a, pii.decrypt(a.text_ct, key_id=a.key_id, context=_context(a.id))) for a in appeals]


async def listing(
    session: AsyncSession,
    *,
    state: str | None,
    limit: int,
    actor: Actor,
    now: dt.datetime,
) -> Sequence[Appeal]:
    """Appeals, oldest first. They name residents and their health reasons: audited."""
    query = select(Appeal).order_by(Appeal.filed_at).limit(limit)
    if state is not None:
        query = query.where(Appeal.state == state)
    appeals = (await session.execute(query)).scalars().all()
    await audit.record(
        session,
        actor=actor,
        action="appeal.list",
        subject_type="appeal",
        subject_id="*",
        now=now,
        detail={"state": state, "count": len(appeals)},
    )
    return appeals


async def read(
    session: AsyncSession, *, appeal_id: uuid.UUID, pii: PiiCipher, actor: Actor, now: dt.datetime
) -> tuple[Appeal, str]:
    """The appeal with the resident's words; the reading is audited."""
    appeal = await session.get(Appeal, appeal_id)
    if appeal is None:
        raise NotFound("no such appeal", code="appeal_not_found")
    text = pii.decrypt(appeal.text_ct, key_id=appeal.key_id, context=_context(appeal_id))
    await audit.record(
        session,
        actor=actor,
        action="appeal.read",
        subject_type="appeal",
        subject_id=str(appeal_id),
        now=now,
        detail={"resident_id": str(appeal.resident_id)},
    )
    return appeal, text


async def decide(
    session: AsyncSession,
    *,
    appeal_id: uuid.UUID,
    accept: bool,
    reason: str,
    status: health_status.StatusValue,
    valid_for: dt.timedelta,
    rules: RuleSet,
    actor: Actor,
    now: dt.datetime,
) -> Appeal:
    appeal = await session.get(Appeal, appeal_id, with_for_update=True, populate_existing=True)
    if appeal is None:
        raise NotFound("no such appeal", code="appeal_not_found")
    if appeal.state != "pending":
        raise Conflict(f"this appeal was already {appeal.state}", code="appeal_already_decided")
    appeal.state = "accepted" if accept else "rejected"
    appeal.decided_at = now
    appeal.decided_by = actor.label
    appeal.decision_reason = reason
    if accept:
        current = await health_status.current(session, appeal.resident_id, rules=rules, now=now)
        if current is not None and (
            current.status != appeal.status_at_filing
            or list(current.reason_codes) != list(appeal.reason_codes)
        ):
            # The reviewer judged the reasons the resident contested; an override now would also
            # hide whatever arrived since.
            raise Conflict(
                f"the status changed since the appeal was filed (now {current.status}: "
                f"{', '.join(current.reason_codes) or 'no reasons'}); reject this appeal so the "
                "resident can contest the new status",
                code="appeal_outdated",
            )
        appeal.override_status = status
        appeal.override_expires_at = now + valid_for
        await health_status.set_status(
            session,
            resident_id=appeal.resident_id,
            status=status,
            reason=reason,
            expires_at=appeal.override_expires_at,
            appeal_id=appeal.id,
            rules=rules,
            actor=actor,
            now=now,
        )
    await audit.record(
        session,
        actor=actor,
        action=f"appeal.{appeal.state.removesuffix('ed')}",
        subject_type="appeal",
        subject_id=str(appeal_id),
        now=now,
        detail={"reason": reason, "resident_id": str(appeal.resident_id)},
    )
    await session.flush()
    return appeal
