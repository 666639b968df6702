"""Staff accounts for the admin API: operators, epidemiologists and admins, each with a bearer
token ``yko_<id>_<secret>`` stored as a SHA-256 hash."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys
from yuekang.audit import service as audit
from yuekang.operators.models import Operator
from yuekang.principals import Actor, OperatorPrincipal, Role

TOKEN_PREFIX = "yko_"


async def create_operator(
    session: AsyncSession, *, name: str, role: Role, actor: Actor, now: dt.datetime
) -> tuple[Operator, str]:
    operator_id = uuid.uuid4()
    token, token_hash = apikeys.new_key(TOKEN_PREFIX, operator_id)
    operator = Operator(
        id=operator_id, name=name, role=role.value, token_hash=token_hash, created_at=now
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
    return operator, token


async def authenticate(session: AsyncSession, token: str) -> OperatorPrincipal | None:
    operator = await apikeys.holder(
        session, Operator, TOKEN_PREFIX, token, stored_hash=lambda o: o.token_hash
    )
    if operator is None:
        return None
    return OperatorPrincipal(id=operator.id, name=operator.name, role=Role(operator.role))
