"""Request dependencies: the database session (committed once, at the edge) and the callers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import apikeys, headers
from yuekang.auth.service import SessionClaims, read_session_token
from yuekang.checkpoints import registration
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


class _BearerScheme(HTTPBearer):
    """The bearer scheme as OpenAPI documents it; the token itself is read by
    ``headers.bearer_token``, as the direct handlers (``fastlane``) read it."""

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        return headers.bearer_token(request.scope)


_bearer = _BearerScheme(auto_error=False, description="A bearer token", scheme_name="HTTPBearer")


def _token(token: str | None) -> str:
    if token is None:
        raise Unauthorized("a bearer token is required", code="missing_token")
    return token


Bearer = Annotated[str | None, Depends(_bearer)]


async def session_claims(token: str | None, context: AppContext, now: dt.datetime) -> SessionClaims:
    """The session a bearer token names, or the route's 401; shared with the direct handlers."""
    claims = read_session_token(
        _token(token),
        secret=context.secrets.session_secret,
        issuer=context.settings.issuer,
        now=now,
    )
    if await context.ended_sessions.is_ended(claims.session_id, now):
        raise Unauthorized("you signed out of this session; sign in again", code="session_ended")
    return claims


async def current_session(token: Bearer, context: Context, now: Now) -> SessionClaims:
    return await session_claims(token, context, now)


CurrentSession = Annotated[SessionClaims, Depends(current_session)]


async def current_resident(claims: CurrentSession) -> uuid.UUID:
    return claims.resident_id


CurrentResident = Annotated[uuid.UUID, Depends(current_resident)]


BAD_CHECKPOINT_KEY = "unknown or disabled checkpoint key"


async def current_checkpoint(token: Bearer, session: SessionDep) -> CheckpointPrincipal:
    principal = await checkpoints.authenticate(session, _token(token))
    if principal is None:
        raise Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
    return principal


CurrentCheckpoint = Annotated[CheckpointPrincipal, Depends(current_checkpoint)]


def parse_checkpoint_key(token: str | None) -> tuple[uuid.UUID, str] | None:
    """A checkpoint key's id and secret, not yet checked against the database (online
    verification checks it with the scan's own batch: ``checkpoints.online``); None when there
    is no token or it is not a checkpoint key. Shared with the direct handler of a scan."""
    return None if token is None else apikeys.parse(registration.KEY_PREFIX, token)


async def checkpoint_key(token: Bearer) -> tuple[uuid.UUID, str]:
    parsed = parse_checkpoint_key(_token(token))
    if parsed is None:
        raise Unauthorized(BAD_CHECKPOINT_KEY, code="invalid_checkpoint_key")
    return parsed


CheckpointKey = Annotated[tuple[uuid.UUID, str], Depends(checkpoint_key)]


async def current_operator(token: Bearer, session: SessionDep) -> OperatorPrincipal:
    principal = await operators.authenticate(session, _token(token))
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


async def current_feed_client(token: Bearer, context: Context) -> FeedPrincipal:
    # A read session of its own: on SQLite, the request's session would take the write lock
    # here and hold it while the batch body uploads.
    async with context.read_sessionmaker() as session:
        principal = await feeds.authenticate(session, _token(token))
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
