from __future__ import annotations

import ipaddress
import uuid

from fastapi import APIRouter, Request, Response, status

from yuekang.auth import service, sessions
from yuekang.auth.schemas import (
    OtpRequest,
    OtpSent,
    RefreshRequest,
    SessionRead,
    SessionsEnded,
    TokenRequest,
    TokenResponse,
)
from yuekang.deps import Context, CurrentSession, Now, SessionDep
from yuekang.exceptions import NotFound, Refusal
from yuekang.openapi import errors

router = APIRouter(prefix="/v1/auth", tags=["sign-in"])
# IPv6 forms that carry a client's IPv4 address in their last 32 bits (SIIT/NAT64's well-known
# prefix, IPv4-translated and IPv4-compatible addresses): counted as that IPv4 address, not as
# one /64 shared by every such client.
_EMBEDDED_IPV4 = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("64:ff9b::/96", "::ffff:0:0:0/96", "::/96")
)
me = APIRouter(prefix="/v1/me/sessions", tags=["sign-in"])


def client_address(request: Request) -> str:
    """The address rate limits are counted against: the connection's peer. Behind a proxy,
    uvicorn's ``proxy_headers`` (``trust_forwarded_for``) rewrites it from ``X-Forwarded-For``
    only for trusted proxy addresses; reading the header here would let any client pick a fresh
    bucket per request.

    An IPv6 client is counted by its /64: one subscriber is routinely given a whole /64, so
    counting single addresses would hand them 2^64 buckets."""
    candidate = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return "invalid"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if not address.is_loopback and any(address in net for net in _EMBEDDED_IPV4):
            return str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@router.post("/otp", response_model=OtpSent, responses=errors(422, 429, 503))
async def request_otp(
    body: OtpRequest, request: Request, session: SessionDep, context: Context, now: Now
) -> OtpSent:
    """Send a one-time sign-in code to a phone by SMS.

    Each request makes its own challenge: send its `challenge_id` back with the code. Asking
    again for the same phone does not spoil codes already sent. 429 `otp_resend_wait` before
    `resend_at` (one code a minute per phone and address), `rate_limited` past the phone's or
    the address's hourly allowance; both carry `Retry-After`. In development mode the response
    also carries the code as `dev_code`.
    """
    phone = service.normalize_phone(body.phone, body.region)
    issued = await service.request_otp(
        session,
        phone=phone,
        client_address=client_address(request),
        settings=context.settings.otp,
        otp_secret=context.secrets.otp_secret,
        blind_index=context.blind_index,
        sms=context.sms,
        now=now,
    )
    return OtpSent(
        challenge_id=issued.challenge_id,
        expires_at=issued.expires_at,
        resend_at=issued.resend_at,
        resend_in=max(int((issued.resend_at - now).total_seconds()), 0),
        dev_code=issued.code if context.settings.is_dev else None,
    )


def _token_response(tokens: sessions.SessionTokens) -> TokenResponse:
    return TokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
        session_expires_at=tokens.session_expires_at,
    )


@router.post("/token", response_model=TokenResponse, responses=errors(401, 422, 429))
async def exchange_code(
    body: TokenRequest, request: Request, session: SessionDep, context: Context, now: Now
) -> TokenResponse | Response:
    """Exchange a phone, its challenge and the code it received for a session.

    401 `otp_invalid` (wrong code, or no such challenge for this phone), `otp_expired`,
    `otp_attempts_exceeded` (after 5 wrong guesses the challenge is dead; request another);
    429 past the address's allowance of checks.
    """
    phone = service.normalize_phone(body.phone, body.region)
    index = await service.verify_otp(
        session,
        phone=phone,
        challenge_id=body.challenge_id,
        code=body.code,
        client_address=client_address(request),
        settings=context.settings.otp,
        otp_secret=context.secrets.otp_secret,
        blind_index=context.blind_index,
        now=now,
    )
    if isinstance(index, Refusal):
        return index.response()
    resident = await service.get_or_create_resident(
        session, phone=phone, index=index, pii=context.pii, now=now
    )
    tokens = await sessions.start(
        session,
        resident_id=resident.id,
        settings=context.settings.session,
        secret=context.secrets.session_secret,
        issuer=context.settings.issuer,
        now=now,
    )
    return _token_response(tokens)


@router.post("/refresh", response_model=TokenResponse, responses=errors(401, 422))
async def refresh(
    body: RefreshRequest, session: SessionDep, context: Context, now: Now
) -> TokenResponse | Response:
    """Renew a session: a new access token and a new refresh token, which replaces the one sent.

    401 `invalid_refresh_token`, `session_expired`, `session_ended` (signed out; or the refresh
    token had already been replaced, so someone else holds a copy: the session is ended for
    both, and the phone signs in again).
    """
    tokens = await sessions.renew(
        session,
        refresh_token=body.refresh_token,
        settings=context.settings.session,
        secret=context.secrets.session_secret,
        issuer=context.settings.issuer,
        now=now,
        ended=context.ended_sessions,
    )
    if isinstance(tokens, Refusal):
        return tokens.response()
    return _token_response(tokens)


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(401),
)
async def logout(claims: CurrentSession, session: SessionDep, context: Context, now: Now) -> None:
    """Sign out: the session's access and refresh tokens stop working at once."""
    await sessions.end(
        session,
        resident_id=claims.resident_id,
        session_ids=[claims.session_id],
        now=now,
        ended=context.ended_sessions,
    )


@me.get("", response_model=list[SessionRead], responses=errors(401))
async def list_sessions(claims: CurrentSession, session: SessionDep, now: Now) -> list[SessionRead]:
    """The phones signed in to this account, newest first."""
    rows = await sessions.live(session, resident_id=claims.resident_id, now=now)
    return [
        SessionRead(
            id=row.id,
            created_at=row.created_at,
            refreshed_at=row.refreshed_at,
            expires_at=row.expires_at,
            current=row.id == claims.session_id,
        )
        for row in rows
    ]


@me.delete("", response_model=SessionsEnded, responses=errors(401))
async def end_all_sessions(
    claims: CurrentSession, session: SessionDep, context: Context, now: Now
) -> SessionsEnded:
    """Sign out everywhere, this phone included: for a lost or stolen phone."""
    done = await sessions.end(
        session,
        resident_id=claims.resident_id,
        session_ids=None,
        now=now,
        ended=context.ended_sessions,
    )
    return SessionsEnded(ended=len(done))


@me.delete(
    "/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(401, 404),
)
async def end_session(
    session_id: uuid.UUID, claims: CurrentSession, session: SessionDep, context: Context, now: Now
) -> None:
    """Sign out one phone. 404 `session_not_found` for a session that is not this account's
    or has already ended."""
    done = await sessions.end(
        session,
        resident_id=claims.resident_id,
        session_ids=[session_id],
        now=now,
        ended=context.ended_sessions,
    )
    if not done:
        raise NotFound("no such session", code="session_not_found")
