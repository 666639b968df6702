"""Issuing health codes and serving their images.

Issuance signs and stores; it never renders (a QR render costs ~25 ms of pure Python). Images are
rendered on first request by the owner and kept in a per-process LRU cache: an image is a pure
function of the stored code, so a cache miss on another process costs time, never correctness.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import tracing
from yuekang.clock import epoch, from_epoch
from yuekang.codec.errors import CodeTooLarge
from yuekang.codec.healthcode import HealthCodeClaims
from yuekang.codec.keys import is_b64url_id
from yuekang.exceptions import Conflict, NotFound, ServiceUnavailable
from yuekang.exchange.conditions import start_of_day
from yuekang.exchange.models import Conversion
from yuekang.health_codes import qr
from yuekang.health_codes.models import HealthCode, Revocation
from yuekang.health_status import service as health_status
from yuekang.health_status.models import HealthStatus
from yuekang.keyring.ring import KeyRing
from yuekang.residents import assurance as identity_assurance
from yuekang.residents.models import Identity
from yuekang.rules import RuleSet, negative_within_hours
from yuekang.rules.facts import as_status

CODE_ID_BYTES = 16
_SHORTEST = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Issued:
    code: HealthCode
    replayed: bool
    reused: bool = False
    """The resident's live code, answered again rather than a new one (:func:`reusable`)."""


REUSE_SHARE = 0.5
"""A live code with more than this share of a full lifetime left is answered again: asking again
and again gets the same code, so a resident makes at most one new code per half-lifetime (30
minutes by default) unless their status or identity changes -- each code is a row, and a
revocation every checkpoint downloads if the status worsens."""


def reusable_query(resident_ids: set[uuid.UUID], now: dt.datetime, lifetime: dt.timedelta) -> Any:
    """The unrevoked codes of ``resident_ids`` with most of their life left, newest first."""
    live_after = now + lifetime * REUSE_SHARE
    # The revocation's partition key twice: equal to the code's (one day's partition per code)
    # and bounded as the codes are (a constant the planner prunes with: without it, PostgreSQL
    # hashed every day's revocations for each batch).
    revoked = (
        select(Revocation.code_id)
        .where(
            Revocation.code_id == HealthCode.code_id,
            Revocation.expires_at == HealthCode.expires_at,
            Revocation.expires_at > live_after,
        )
        .exists()
    )
    return (
        select(
            HealthCode.code_id,
            HealthCode.resident_id,
            HealthCode.kid,
            HealthCode.status,
            HealthCode.qr_text,
            HealthCode.issued_at,
            HealthCode.expires_at,
        )
        .where(
            HealthCode.resident_id.in_(resident_ids),
            HealthCode.expires_at > live_after,
            ~revoked,
        )
        .order_by(HealthCode.issued_at.desc())
    )


async def reusable(
    code: Any,
    *,
    status: str,
    decided_at: dt.datetime,
    bound_at: dt.datetime,
    proofed_at: dt.datetime | None,
    keyring: KeyRing,
    now: dt.datetime,
) -> HealthCode | None:
    """``code`` (a row of :func:`reusable_query`) as the answer, when it shows exactly what a new
    code would: issued after the status row and the identity were last decided (so its status,
    test and doses are the current ones), and signed by the key a new code would get (a retired
    or compromised key's codes are not handed out again)."""
    if code is None or code.status != status:
        return None
    # Strictly after: a code's time is in whole seconds, so one issued in the second of a
    # decision may have been signed before it.
    if code.issued_at <= decided_at or code.issued_at <= max(bound_at, proofed_at or bound_at):
        return None
    key = await keyring.signing_key_for(expires_at=code.expires_at, now=now)
    if key is None or key.kid != code.kid:
        return None
    return HealthCode(
        code_id=code.code_id,
        resident_id=code.resident_id,
        kid=code.kid,
        status=code.status,
        qr_text=code.qr_text,
        issued_at=code.issued_at,
        expires_at=code.expires_at,
    )


class StatusFacts(Protocol):
    """What a code shows of a status row (an ORM row or a plain result row)."""

    status: str
    valid_until: dt.datetime | None
    nat_sampled_at: dt.datetime | None
    nat_result: str | None
    vaccine_doses: int


async def new_code(
    *,
    resident_id: uuid.UUID,
    status: StatusFacts,
    masked_name: str,
    assurance: str,
    source: Conversion | None,
    keyring: KeyRing,
    issuer: str,
    lifetime: dt.timedelta,
    rules: RuleSet,
    now: dt.datetime,
    idempotency_key: str | None = None,
) -> HealthCode:
    """A signed code for a status already read (and locked) in the caller's transaction; the
    caller stores it. Shared by single issuance and the batches of :mod:`.batch`."""
    # Whole seconds: the token carries integer seconds and the stored times must say the same.
    issued_at = from_epoch(epoch(now))
    expires_at = issued_at + lifetime
    if status.valid_until is not None:
        # A code never outlives the decision it shows: when a window ends or an override
        # expires the status may get worse with no feed and nobody reading it, and a code that
        # said otherwise would stay valid at the gates.
        expires_at = min(
            expires_at, max(from_epoch(epoch(status.valid_until)), issued_at + _SHORTEST)
        )
    key = await keyring.signing_key_for(expires_at=expires_at, now=now)
    if key is None:
        raise ServiceUnavailable(
            "no signing key can cover a new code; an operator must activate a key",
            code="no_signing_key",
        )
    nat_sampled_at, nat_result = status.nat_sampled_at, status.nat_result
    src = None
    if source is not None:
        assert source.source_issuer
        assert source.source_kid
        assert source.source_digest
        src = (source.source_issuer, source.source_kid, source.source_digest)
        # The converted code carries the date of the partner's negative test (the 2020 rule);
        # our own, if newer, still wins.
        assert source.nat_sampled_on is not None
        partner_nat = start_of_day(source.nat_sampled_on, rules.utc_offset_hours)
        if nat_sampled_at is None or partner_nat > nat_sampled_at:
            nat_sampled_at, nat_result = partner_nat, "negative"
    claims = HealthCodeClaims(
        iss=issuer,
        jti=secrets.token_urlsafe(CODE_ID_BYTES),
        iat=epoch(issued_at),
        exp=epoch(expires_at),
        st=as_status(status.status),
        nm=masked_name,
        nt=negative_within_hours(
            nat_sampled_at, nat_result, now=now, buckets=rules.nat_display_hours
        ),
        vx=status.vaccine_doses or None,
        src=src,
        ia=identity_assurance.claim(assurance),
    )
    try:
        with tracing.span("yuekang.sign", kid=key.kid, alg=key.alg):
            qr_text = await keyring.sign(claims, key)
    except CodeTooLarge as exc:
        raise ServiceUnavailable(str(exc), code="code_too_large") from exc
    return HealthCode(
        code_id=claims.jti,
        resident_id=resident_id,
        kid=key.kid,
        status=claims.st,
        qr_text=qr_text,
        issued_at=issued_at,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
    )


async def issue_code(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    idempotency_key: str | None,
    keyring: KeyRing,
    issuer: str,
    lifetime: dt.timedelta,
    rules: RuleSet,
    now: dt.datetime,
    reuse: bool = True,
) -> Issued:
    if idempotency_key is not None:
        previous = await _by_idempotency_key(session, resident_id, idempotency_key)
        if previous is not None:
            return Issued(await _replayable(session, previous, now), replayed=True)
    # One round trip for what every issuance needs: the masked name, the status row (locked
    # like a status decision locks it: a change waits for this issuance to commit and then
    # revokes the new code, or this issuance waits for the change and signs the new status) and
    # whether a conversion from a partner may apply.
    row = (
        await session.execute(
            select(
                HealthStatus,
                Identity.masked_name,
                Identity.assurance,
                Identity.bound_at,
                Identity.proofed_at,
                CONVERTED.label("converted"),
            )
            .join(Identity, Identity.resident_id == HealthStatus.resident_id)
            .where(HealthStatus.resident_id == resident_id)
            .with_for_update(of=HealthStatus)
            .execution_options(populate_existing=True)
            .params(now=now)
        )
    ).one_or_none()
    if row is None or not identity_assurance.may_have_codes(row.assurance):
        identity = await session.get(Identity, resident_id)
        if identity is None:
            raise Conflict(
                "bind an identity document before asking for a code", code="identity_required"
            )
        if not identity_assurance.may_have_codes(identity.assurance):
            raise Conflict(
                "the identity bound to this account was never proved: prove it against the "
                "registry (PUT /v1/me/identity) or at a service counter before asking for a code",
                code="identity_unverified",
            )
        raise Conflict("no status is recorded for this resident", code="status_missing")
    if idempotency_key is not None:
        # Again, now that the status row is locked: a retry that raced this one and got the lock
        # first has committed its code. On PostgreSQL this is what keeps one code per key: the
        # unique constraint there must hold the partition key, (resident_id, idempotency_key,
        # expires_at), and two retries a second apart get two expiry times.
        previous = await _by_idempotency_key(session, resident_id, idempotency_key)
        if previous is not None:
            return Issued(await _replayable(session, previous, now), replayed=True)
    status = await health_status.current(
        session, resident_id, rules=rules, now=now, locked=row.HealthStatus
    )
    assert status is not None  # it was found above
    source = (
        await _converted_from(session, resident_id, now)
        if row.converted and status.status == "green"
        else None
    )
    if reuse:
        live = (
            await session.execute(reusable_query({resident_id}, now, lifetime).limit(1))
        ).first()
        # A code made after the conversion in force carries its provenance, as a new one would.
        decided_at = status.updated_at
        if source is not None and source.completed_at is not None:
            decided_at = max(decided_at, source.completed_at)
        again = await reusable(
            live,
            status=status.status,
            decided_at=decided_at,
            bound_at=row.bound_at,
            proofed_at=row.proofed_at,
            keyring=keyring,
            now=now,
        )
        if again is not None:
            return Issued(again, replayed=False, reused=True)
    code = await new_code(
        resident_id=resident_id,
        status=status,
        masked_name=row.masked_name,
        assurance=row.assurance,
        source=source,
        keyring=keyring,
        issuer=issuer,
        lifetime=lifetime,
        rules=rules,
        now=now,
        idempotency_key=idempotency_key,
    )
    if idempotency_key is None:
        session.add(code)  # written with the commit: nothing here can collide
        return Issued(code, replayed=False)
    try:
        async with session.begin_nested():
            session.add(code)
    except IntegrityError:
        # A concurrent retry with the same Idempotency-Key won the race: answer with its code.
        previous = await _by_idempotency_key(session, resident_id, idempotency_key)
        if previous is None:
            raise
        return Issued(await _replayable(session, previous, now), replayed=True)
    return Issued(code, replayed=False)


CONVERTED = (
    select(Conversion.id)
    .where(
        Conversion.resident_id == HealthStatus.resident_id,
        Conversion.direction == "inbound",
        Conversion.state == "completed",
        Conversion.valid_until > bindparam("now"),
    )
    .exists()
)
"""Whether :func:`_converted_from` may find anything: most residents never converted a code."""


async def _converted_from(
    session: AsyncSession, resident_id: uuid.UUID, now: dt.datetime
) -> Conversion | None:
    """The conversion from a partner whose provenance the resident's codes carry now: from the
    conversion until its test leaves the window (docs/EXCHANGE.md)."""
    return (
        await session.execute(
            select(Conversion)
            .where(
                Conversion.resident_id == resident_id,
                Conversion.direction == "inbound",
                Conversion.state == "completed",
                Conversion.valid_until > now,
            )
            .order_by(Conversion.created_at.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _replayable(session: AsyncSession, code: HealthCode, now: dt.datetime) -> HealthCode:
    """A retry gets the first answer only while that answer is still a usable code."""
    revoked = select(Revocation.code_id).where(
        Revocation.code_id == code.code_id, Revocation.expires_at == code.expires_at
    )
    if code.expires_at <= now or (await session.execute(revoked)).first() is not None:
        raise Conflict(
            "the code issued for this Idempotency-Key has since expired or been revoked; "
            "ask again with a new key",
            code="idempotency_key_stale",
        )
    return code


async def _by_idempotency_key(
    session: AsyncSession, resident_id: uuid.UUID, key: str
) -> HealthCode | None:
    result = await session.execute(
        select(HealthCode).where(
            HealthCode.resident_id == resident_id, HealthCode.idempotency_key == key
        )
    )
    return result.scalar_one_or_none()


async def get_owned_code(
    session: AsyncSession, *, resident_id: uuid.UUID, code_id: str
) -> HealthCode:
    """The code if ``resident_id`` owns it. Someone else's code is "not found", not "forbidden":
    the answer must not confirm that a code id exists."""
    code = await session.get(HealthCode, code_id) if is_b64url_id(code_id) else None
    if code is None or code.resident_id != resident_id:
        raise NotFound("no such code", code="code_not_found")
    return code


ImageFormat = Literal["png", "svg"]


@dataclass(frozen=True)
class CachedImage:
    image: bytes
    owner: uuid.UUID
    expires_at: dt.datetime


class ImageCache:
    """A bounded LRU of rendered QR images, keyed by code id and format, with the owner and
    expiry of the code beside each: a hit is answered without touching the database."""

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str], CachedImage] = OrderedDict()

    def get(self, code_id: str, fmt: str) -> CachedImage | None:
        entry = self._items.get((code_id, fmt))
        if entry is not None:
            self._items.move_to_end((code_id, fmt))
        return entry

    def put(self, code_id: str, fmt: str, entry: CachedImage) -> None:
        if self._max == 0:
            return
        self._items[(code_id, fmt)] = entry
        self._items.move_to_end((code_id, fmt))
        while len(self._items) > self._max:
            self._items.popitem(last=False)


async def render_image(code: HealthCode, fmt: ImageFormat, cache: ImageCache) -> CachedImage:
    cached = cache.get(code.code_id, fmt)
    if cached is not None:
        return cached
    render = qr.render_png if fmt == "png" else qr.render_svg
    # Off the event loop: a render holds the CPU for a few milliseconds.
    image = await asyncio.to_thread(render, code.qr_text, code.status)
    entry = CachedImage(image=image, owner=code.resident_id, expires_at=code.expires_at)
    cache.put(code.code_id, fmt, entry)
    return entry
