from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request

from yuekang.auth import service
from yuekang.auth.schemas import OtpRequest, OtpSent, TokenRequest, TokenResponse
from yuekang.deps import Context, Now, SessionDep
from yuekang.openapi import errors

router = APIRouter(prefix="/v1/auth", tags=["sign-in"])


def client_address(request: Request) -> str:
    """The address rate limits are counted against: the connection's peer. Behind a proxy,
    uvicorn's ``proxy_headers`` (``trust_forwarded_for``) rewrites it from ``X-Forwarded-For``
    only for trusted proxy addresses; reading the header here would let any client pick a fresh
    bucket per request."""
    candidate = request.client.host if request.client else ""
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return "invalid"


@router.post("/otp", response_model=OtpSent, responses=errors(422, 429, 503))
async def request_otp(
    body: OtpRequest, request: Request, session: SessionDep, context: Context, now: Now
) -> OtpSent:
    """Send a one-time sign-in code to a phone by SMS.

    Rate-limited per phone and per client address (429 with `Retry-After`). In development
    mode the response also carries the code as `dev_code`.
    """
    phone = service.normalize_phone(body.phone)
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
        expires_at=issued.expires_at,
        dev_code=issued.code if context.settings.is_dev else None,
    )


@router.post("/token", response_model=TokenResponse, responses=errors(401, 422))
async def exchange_code(
    body: TokenRequest, session: SessionDep, context: Context, now: Now
) -> TokenResponse:
    """Exchange a phone and its one-time code for a resident session token.

    401 `otp_invalid` (wrong or no code), `otp_expired`, `otp_attempts_exceeded` (after 5 wrong
    guesses the code is dead; request another).
    """
    phone = service.normalize_phone(body.phone)
    index = await service.verify_otp(
        session,
        phone=phone,
        code=body.code,
        settings=context.settings.otp,
        otp_secret=context.secrets.otp_secret,
        blind_index=context.blind_index,
        now=now,
    )
    resident = await service.get_or_create_resident(
        session, phone=phone, index=index, pii=context.pii, now=now
    )
    ttl = context.settings.session.ttl_seconds
    token = service.issue_session_token(
        resident_id=resident.id,
        secret=context.secrets.session_secret,
        issuer=context.settings.issuer,
        ttl_seconds=ttl,
        now=now,
    )
    return TokenResponse(access_token=token, expires_in=ttl)
