"""Checking a person by their identity document instead of a code (刷证核验).

For people without a phone -- children, the elderly, anyone whose phone is flat -- a checkpoint
types the document number or reads it from the card, and gets the same verdict model as a
scanned code: the masked name, the status, and the place's policy decision. The answer is no
oracle: a document nobody bound, one whose binding was never proved, and one whose family-member
record still waits for consent all answer exactly like a document with no valid code. Each
lookup is rate-limited per checkpoint and kept as a scan record (the document's blind index in
place of a code id, so that contact tracing finds it beside the person's code scans).
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import ratelimit
from yuekang.checkpoints.service import apply_policy
from yuekang.clock import epoch
from yuekang.codec.reasons import Reason
from yuekang.config import DocumentCheckSettings
from yuekang.dependants.models import Guardianship
from yuekang.health_status import service as health_status
from yuekang.pii import BlindIndex
from yuekang.principals import CheckpointPrincipal
from yuekang.residents import assurance
from yuekang.residents.documents import DocType, local_date
from yuekang.residents.models import Identity
from yuekang.residents.service import doc_index, validated_number
from yuekang.rules import RuleSet, negative_within_hours
from yuekang.rules.facts import as_status
from yuekang.rules.policy import Decision
from yuekang.scans.models import ScanRecord
from yuekang.verifier import Verdict

ORIGIN = "document_check"


async def check_document(
    session: AsyncSession,
    *,
    checkpoint: CheckpointPrincipal,
    doc_type: DocType,
    doc_number: str,
    blind_index: BlindIndex,
    rules: RuleSet,
    issuer: str,
    lifetime: dt.timedelta,
    settings: DocumentCheckSettings,
    now: dt.datetime,
) -> tuple[Verdict, Decision]:
    """The verdict for a document, and the checkpoint's policy decision on it; recorded."""
    await ratelimit.hit(
        session,
        bucket=f"docchk:{checkpoint.id}",
        limit=settings.per_checkpoint_limit,
        window_seconds=settings.per_checkpoint_window_seconds,
        now=now,
        what="document checks from this checkpoint",
    )
    # A mistyped number is the officer's to correct, and says nothing about any person.
    number = validated_number(doc_type, doc_number, None, today=local_date(now))
    index = doc_index(blind_index, doc_type, number)
    verdict = await _judge(session, index, rules=rules, issuer=issuer, lifetime=lifetime, now=now)
    decision = apply_policy(verdict, kind=checkpoint.kind)
    session.add(
        ScanRecord(
            checkpoint_id=checkpoint.id,
            scan_id="document-" + secrets.token_hex(16),
            code_id=None,
            scanned_at=now,
            verdict=verdict.verdict,
            reason=verdict.reasons[0].value if verdict.reasons else None,
            source="online",
            received_at=now,
            method="document",
            subject_index=index,
            decision=decision.verdict,
        )
    )
    return verdict, decision


_NO_VALID_CODE = Verdict(verdict="invalid", reasons=(Reason.NO_VALID_CODE,), origin=ORIGIN)


async def _judge(
    session: AsyncSession,
    index: bytes,
    *,
    rules: RuleSet,
    issuer: str,
    lifetime: dt.timedelta,
    now: dt.datetime,
) -> Verdict:
    identity = (
        await session.execute(select(Identity).where(Identity.doc_index == index))
    ).scalar_one_or_none()
    if identity is None or not assurance.may_have_codes(identity.assurance):
        return _NO_VALID_CODE
    if identity.assurance == assurance.DEPENDANT:
        state = (
            await session.execute(
                select(Guardianship.state).where(Guardianship.dependant_id == identity.resident_id)
            )
        ).scalar_one_or_none()
        if state != "active":
            return _NO_VALID_CODE
    status = await health_status.current(
        session, identity.resident_id, rules=rules, now=now, lock=False
    )
    if status is None:
        return _NO_VALID_CODE
    # What a code issued now would say, for as long as such a code would hold.
    expires_at = now + lifetime
    if status.valid_until is not None:
        expires_at = min(expires_at, status.valid_until)
    return Verdict(
        verdict="valid",
        status=as_status(status.status),
        issuer=issuer,
        masked_name=identity.masked_name,
        issued_at=epoch(now),
        expires_at=epoch(expires_at),
        negative_within_hours=negative_within_hours(
            status.nat_sampled_at, status.nat_result, now=now, buckets=rules.nat_display_hours
        ),
        doses=status.vaccine_doses or None,
        origin=ORIGIN,
        assurance=assurance.level(identity.assurance),
    )
