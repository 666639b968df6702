"""Request dependencies: the database session (committed once, at the edge) and the callers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys
from yuekang.auth.service import SessionClaims, read_session_token
from yuekang.checkpoints import service as checkpoints
from yuekang.context import AppContext
from yuekang.db import transaction
from yuekang.exceptions import Forbidden, Unauthorized
from yuekang.feeds import service as feeds
from yuekang.feeds.service import FeedPrincipal
from yuekang.operators import service as operators
from yuekang.principals import CheckpointPrincipal, OperatorPrincipal, Role


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(context: Context) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns (an answer, or a
    :class:`~yuekang.exceptions.Refusal` it renders), rolled back when it raises."""
    async with transaction(context.sessionmaker) as session:
        yield session


# scope="function": the transaction ends when the endpoint returns, before the response is sent,
# so a client never sees a 201 for something that is not yet committed (or that fails to commit).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_now(context: Context) -> dt.datetime:
    return context.clock.now()


Now = Annotated[dt.datetime, Depends(get_now)]

_bearer = HTTPBearer(auto_error=False, description="A bearer token")


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("a bearer token is required", code="missing_token")
    return credentials.credentials


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_session(credentials: Bearer, context: Context, now: Now) -> SessionClaims:
    claims = read_session_token(
        _token(credentials),
        secret=context.secrets.session_secret,
        issuer=context.settings.issuer,
        now=now,
    )
    if await context.ended_sessions.is_ended(claims.session_id, now):
        raise Unauthorized("you signed out of this session; sign in again", code="session_ended")
    return claims


CurrentSession = Annotated[SessionClaims, Depends(current_session)]


async def current_resident(claims: CurrentSession) -> uuid.UUID:
    return claims.resident_id


CurrentResident = Annotated[uuid.UUID, Depends(current_resident)]


BAD_CHECKPOINT_KEY = "unknown or disabled checkpoint key"


async def current_checkpoint(credentials: Bearer, session: SessionDep) -> CheckpointPrincipal:
    principal = await checkpoints.authenticate(session, _token(credentials))
    if principal is None:
        raise Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
    return principal


CurrentCheckpoint = Annotated[CheckpointPrincipal, Depends(current_checkpoint)]


async def checkpoint_key(credentials: Bearer) -> tuple[uuid.UUID, str]:
    """A checkpoint key's id and secret, not yet checked against the database (online
    verification checks it with the scan's own batch: ``checkpoints.online``)."""
    parsed = apikeys.parse(checkpoints.KEY_PREFIX, _token(credentials))
    if parsed is None:
        raise Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
    return parsed


CheckpointKey = Annotated[tuple[uuid.UUID, str], Depends(checkpoint_key)]


async def current_operator(credentials: Bearer, session: SessionDep) -> OperatorPrincipal:
    principal = await operators.authenticate(session, _token(credentials))
    if principal is None:
        raise Unauthorized("unknown or disabled operator token", code="invalid_operator_token")
    return principal


def require_role(*roles: Role) -> Callable[..., Awaitable[OperatorPrincipal]]:
    async def dependency(
        operator: Annotated[OperatorPrincipal, Depends(current_operator)],
    ) -> OperatorPrincipal:
        if operator.role not in roles:
            raise Forbidden(
                f"this action needs the role {' or '.join(r.value for r in roles)}",
                code="role_required",
            )
        return operator

    return dependency


async def current_feed_client(credentials: Bearer, context: Context) -> FeedPrincipal:
    # A read session of its own: on SQLite, the request's session would take the write lock
    # here and hold it while the batch body uploads.
    async with context.read_sessionmaker() as session:
        principal = await feeds.authenticate(session, _token(credentials))
    if principal is None:
        raise Unauthorized("unknown or disabled feed credential", code="invalid_feed_key")
    return principal


CurrentFeedClient = Annotated[FeedPrincipal, Depends(current_feed_client)]

AdminOperator = Annotated[OperatorPrincipal, Depends(require_role(Role.ADMIN))]
AppealReviewer = Annotated[OperatorPrincipal, Depends(require_role(Role.OPERATOR))]
Epidemiologist = Annotated[OperatorPrincipal, Depends(require_role(Role.EPIDEMIOLOGIST))]
"""Writes the rules and does contact tracing."""
AnyStaff = Annotated[
    OperatorPrincipal,
    Depends(require_role(Role.OPERATOR, Role.EPIDEMIOLOGIST, Role.ADMIN)),
]
StaffOperator = Annotated[OperatorPrincipal, Depends(require_role(Role.OPERATOR, Role.ADMIN))]
