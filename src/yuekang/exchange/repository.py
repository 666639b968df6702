"""The exchange's own rows as both directions look them up: nonces, conversions, messages.

Idempotency either way rests on these (a request signature or a package id seen once, a
conversion found by its Idempotency-Key), so each query is written once, here, and the flows
name them rather than the schema.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.exchange.models import Conversion, ExchangeNonce, OutboxMessage, Partner


async def record_nonce(
    session: AsyncSession, *, partner_id: str, kind: str, jti: str, expires_at: dt.datetime
) -> bool:
    """Record a package or request id; False if it was seen before (on any process)."""
    try:
        async with session.begin_nested():
            session.add(
                ExchangeNonce(partner_id=partner_id, kind=kind, jti=jti, expires_at=expires_at)
            )
    except IntegrityError:
        return False
    return True


async def conversion_by_key(
    session: AsyncSession, partner_id: str, direction: str, idempotency_key: str
) -> Conversion | None:
    """The conversion made under this Idempotency-Key with this partner, this way, if any."""
    return (
        await session.execute(
            select(Conversion).where(
                Conversion.partner_id == partner_id,
                Conversion.direction == direction,
                Conversion.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()


async def message_of(session: AsyncSession, conversion_id: uuid.UUID) -> OutboxMessage | None:
    """The outbox message carrying a conversion, if it has one (only an outbound one does)."""
    return (
        await session.execute(
            select(OutboxMessage).where(OutboxMessage.conversion_id == conversion_id)
        )
    ).scalar_one_or_none()


async def list_conversions(session: AsyncSession, *, resident_id: uuid.UUID) -> list[Conversion]:
    """A resident's newest conversions, both ways."""
    return list(
        (
            await session.execute(
                select(Conversion)
                .where(Conversion.resident_id == resident_id)
                .order_by(Conversion.created_at.desc())
                .limit(50)
            )
        ).scalars()
    )


async def outbox_backlog(
    session: AsyncSession,
) -> list[tuple[str, int, dt.datetime | None, dt.datetime | None]]:
    """Each partner's waiting messages (``/metrics``): partner id, how many, when the oldest was
    written, and until when its circuit is open (as stored: it may lie in the past)."""
    waiting = (OutboxMessage.partner_id == Partner.id) & (OutboxMessage.state == "pending")
    rows = await session.execute(
        select(
            Partner.id,
            func.count(OutboxMessage.id),
            func.min(OutboxMessage.created_at),
            Partner.circuit_open_until,
        )
        .outerjoin(OutboxMessage, waiting)
        .group_by(Partner.id, Partner.circuit_open_until)
        .order_by(Partner.id)
    )
    return [(partner, int(count), oldest, until) for partner, count, oldest, until in rows]
