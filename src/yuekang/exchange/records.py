"""What both directions of the exchange record about a conversion."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.exchange.models import Conversion
from yuekang.principals import Actor


async def audit_conversion(
    session: AsyncSession,
    *,
    actor: Actor,
    action: str,
    conversion: Conversion,
    consent: str | None,
    now: dt.datetime,
    extra: dict[str, Any] | None = None,
) -> None:
    """One audit event about a conversion, either way: who, what, and the fields consented to;
    the subject is the resident once known, else the conversion."""
    await audit.record(
        session,
        actor=actor,
        action=action,
        subject_type="resident" if conversion.resident_id else "conversion",
        subject_id=str(conversion.resident_id or conversion.id),
        now=now,
        detail={
            "conversion": str(conversion.id),
            "direction": conversion.direction,
            "partner": conversion.partner_id,
            "fields": json.loads(conversion.fields),
            "consent": consent,
            **(extra or {}),
        },
    )
