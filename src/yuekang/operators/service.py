"""Staff accounts for the admin API: operators, epidemiologists and admins, each with a bearer
token ``yko_<id>_<secret>`` stored as a SHA-256 hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.audit import service as audit
from yuekang.checkpoints.service import parse_api_key
from yuekang.operators.models import Operator
from yuekang.principals import Actor, OperatorPrincipal, Role

TOKEN_PREFIX = "yko_"


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


async def create_operator(
    session: AsyncSession, *, name: str, role: Role, actor: Actor, now: dt.datetime
) -> tuple[Operator, str]:
    operator_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)
    operator = Operator(
        id=operator_id, name=name, role=role.value, token_hash=_hash(secret), created_at=now
    )
    session.add(operator)
    await audit.record(
        session,
        actor=actor,
        action="operator.create",
        subject_type="operator",
        subject_id=str(operator_id),
        now=now,
        detail={"name": name, "role": role.value},
    )
    await session.flush()
    return operator, f"{TOKEN_PREFIX}{operator_id.hex}_{secret}"


async def authenticate(session: AsyncSession, token: str) -> OperatorPrincipal | None:
    parsed = parse_api_key(TOKEN_PREFIX, token)
    if parsed is None:
        return None
    operator_id, secret = parsed
    operator = await session.get(Operator, operator_id)
    if operator is None or operator.disabled_at is not None:
        return None
    if not hmac.compare_digest(operator.token_hash, _hash(secret)):
        return None
    return OperatorPrincipal(id=operator.id, name=operator.name, role=Role(operator.role))
