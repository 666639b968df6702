"""Phone sign-in with one-time codes, and resident session tokens.

One-time codes are stored as HMAC-SHA256 under a server secret (a plain hash of six digits is
reversed by trying a million values). A challenge allows ``max_attempts`` guesses, counted with an
atomic conditional UPDATE so parallel guesses on several processes cannot exceed it; a wrong guess
is committed even though the request fails.

Session tokens are HS256 JWTs with audience ``yuekang:session`` under their own secret. Health
codes are ES256/EdDSA JWS with no audience under keys from the key ring: neither verifier accepts
the other's tokens (different prefix, algorithm family, key and audience).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Final

import jwt
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang import ratelimit
from yuekang.auth.models import OtpChallenge
from yuekang.auth.sms import SmsDeliveryError, SmsSender
from yuekang.clock import epoch
from yuekang.config import OtpSettings
from yuekang.db import after_commit
from yuekang.exceptions import Refusal, ServiceUnavailable, Unauthorized, ValidationFailed
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.residents.models import Resident

SESSION_AUDIENCE = "yuekang:session"
SESSION_ALGORITHM = "HS256"
# [0-9], not \d: \d also matches full-width and other scripts' digits, which would give one
# number many spellings, each with its own account and rate-limit bucket.
PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}$")
CN_MOBILE_RE = re.compile(r"^\+861[3-9][0-9]{9}$")


REGION_CODES: Final = {"CN": "86", "MO": "853", "HK": "852"}
"""Where a domestic number is from: the country code its region's numbers take."""
_DOMESTIC: Final = {
    "CN": re.compile(r"1[3-9][0-9]{9}"),
    "MO": re.compile(r"6[0-9]{7}"),
    "HK": re.compile(r"[4-9][0-9]{7}"),
}


def normalize_phone(raw: str, region: str | None = None) -> str:
    """The E.164 form of a mobile number as people type it: with ``+``, ``00`` or ``86`` in
    front, or as dialled at home -- an 11-digit mainland mobile as it is, an 8-digit Macao or
    Hong Kong one with its ``region`` (the two look alike) -- with spaces, dashes, dots,
    brackets and full-width digits. Mainland numbers must be mobiles (SMS reaches nothing
    else)."""
    phone = re.sub(r"[\s\-().]", "", unicodedata.normalize("NFKC", raw))
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not phone.startswith("+"):
        if region is not None and _DOMESTIC[region].fullmatch(phone):
            phone = f"+{REGION_CODES[region]}{phone}"
        elif region in (None, "CN") and _DOMESTIC["CN"].fullmatch(phone):
            phone = "+86" + phone
        elif region in (None, "CN") and phone.startswith("86"):
            phone = "+" + phone
        elif region is None and (
            _DOMESTIC["MO"].fullmatch(phone) or _DOMESTIC["HK"].fullmatch(phone)
        ):
            raise ValidationFailed(
                "an 8-digit number may be a Macao or a Hong Kong one: give its region",
                fields=[
                    {
                        "field": "region",
                        "reason": "region_required",
                        "message": "choose MO (Macao) or HK (Hong Kong) for an 8-digit number",
                    }
                ],
            )
    if not phone:
        raise ValidationFailed(
            "phone: a number is required",
            fields=[{"field": "phone", "reason": "missing", "message": "empty"}],
        )
    if not PHONE_RE.match(phone) or (phone.startswith("+86") and not CN_MOBILE_RE.match(phone)):
        raise ValidationFailed(
            "phone must be an E.164 mobile number such as +8613800138000",
            fields=[
                {"field": "phone", "reason": "format", "message": "not an E.164 mobile number"}
            ],
        )
    return phone


def phone_index(blind_index: BlindIndex, phone: str) -> bytes:
    return blind_index("phone", phone)


def _code_hash(secret: str, challenge_phone_index: bytes, code: str) -> bytes:
    return hmac.new(secret.encode(), challenge_phone_index + code.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class OtpIssued:
    challenge_id: uuid.UUID
    code: str
    expires_at: dt.datetime
    resend_at: dt.datetime


async def request_otp(
    session: AsyncSession,
    *,
    phone: str,
    client_address: str,
    settings: OtpSettings,
    otp_secret: str,
    blind_index: BlindIndex,
    sms: SmsSender,
    now: dt.datetime,
) -> OtpIssued:
    """A new challenge for ``phone``. Earlier ones stay live: a code someone else asks for
    cannot spoil the one the phone's owner is typing."""
    index = phone_index(blind_index, phone)
    # Limits are keyed by the blind index, never the number itself. The resend wait comes first
    # and is per phone and address: it paces one person's "send again" without letting a
    # stranger's request hold the owner back.
    resend_at = now
    if settings.resend_seconds:
        resend_at = await ratelimit.cooldown(
            session,
            bucket=f"otp:resend:{index.hex()[:24]}:{client_address[:48]}",
            seconds=settings.resend_seconds,
            now=now,
            what="codes for this phone",
            code="otp_resend_wait",
        )
    await ratelimit.hit(
        session,
        bucket=f"otp:phone-client:{index.hex()[:24]}:{client_address[:48]}",
        limit=settings.per_phone_client_limit,
        window_seconds=settings.per_phone_window_seconds,
        now=now,
        what="codes requested for this phone from this address",
        sliding=True,
    )
    await ratelimit.hit(
        session,
        bucket="otp:phone:" + index.hex()[:40],
        limit=settings.per_phone_limit,
        window_seconds=settings.per_phone_window_seconds,
        now=now,
        what="codes requested for this phone",
        sliding=True,
    )
    await ratelimit.hit(
        session,
        bucket="otp:client:" + client_address[:64],
        limit=settings.per_client_limit,
        window_seconds=settings.per_client_window_seconds,
        now=now,
        what="codes requested from this address",
    )
    code = f"{secrets.randbelow(10**settings.length):0{settings.length}d}"
    challenge = OtpChallenge(
        phone_index=index,
        code_hash=_code_hash(otp_secret, index, code),
        attempts=0,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=settings.ttl_seconds),
    )
    session.add(challenge)
    await session.flush()
    minutes = settings.ttl_seconds // 60
    text = f"【粤康码】验证码 {code}，{minutes} 分钟内有效。请勿告诉他人。"

    async def send() -> None:
        try:
            await sms.send(phone, text)
        except SmsDeliveryError as exc:
            raise ServiceUnavailable(
                "the code could not be sent; try again shortly", code="sms_unavailable"
            ) from exc

    # After the commit: the rate-limit rows stay locked only for the transaction, not for the
    # gateway's round trip. A failed send leaves a challenge nobody knows, which simply expires.
    after_commit(session, send)
    return OtpIssued(challenge.id, code, challenge.expires_at, resend_at)


async def verify_otp(
    session: AsyncSession,
    *,
    phone: str,
    challenge_id: uuid.UUID,
    code: str,
    client_address: str,
    settings: OtpSettings,
    otp_secret: str,
    blind_index: BlindIndex,
    now: dt.datetime,
) -> bytes | Refusal:
    """Consume the challenge ``challenge_id`` of ``phone`` if ``code`` is its code; returns the
    phone's blind index. Guesses count against that challenge only, and against the address;
    a wrong, late or spent code is a :class:`Refusal`, so that the guess stays counted."""
    await ratelimit.hit(
        session,
        bucket="otp:verify:" + client_address[:64],
        limit=settings.verify_per_client_limit,
        window_seconds=settings.verify_per_client_window_seconds,
        now=now,
        what="code checks from this address",
    )
    index = phone_index(blind_index, phone)
    challenge = await session.get(OtpChallenge, challenge_id)
    # Another phone's challenge is answered as no challenge at all.
    if challenge is None or challenge.phone_index != index or challenge.consumed_at is not None:
        return Refusal(
            Unauthorized("no code is pending for this request; request one", code="otp_invalid")
        )
    if now >= challenge.expires_at:
        return Refusal(Unauthorized("the code has expired; request a new one", code="otp_expired"))
    counted = await session.execute(
        update(OtpChallenge)
        .where(
            OtpChallenge.id == challenge.id,
            OtpChallenge.attempts < settings.max_attempts,
            OtpChallenge.consumed_at.is_(None),
        )
        .values(attempts=OtpChallenge.attempts + 1)
        .returning(OtpChallenge.attempts)
    )
    if counted.first() is None:
        return Refusal(
            Unauthorized("too many wrong codes; request a new one", code="otp_attempts_exceeded")
        )
    if not hmac.compare_digest(challenge.code_hash, _code_hash(otp_secret, index, code)):
        return Refusal(Unauthorized("wrong code", code="otp_invalid"))
    consumed = await session.execute(
        update(OtpChallenge)
        .where(OtpChallenge.id == challenge.id, OtpChallenge.consumed_at.is_(None))
        .values(consumed_at=now)
        .returning(OtpChallenge.id)
    )
    if consumed.first() is None:
        raise Unauthorized("the code was already used", code="otp_invalid")
    return index


async def get_or_create_resident(
    session: AsyncSession,
    *,
    phone: str,
    index: bytes,
    pii: PiiCipher,
    now: dt.datetime,
) -> Resident:
    existing = (
        await session.execute(select(Resident).where(Resident.phone_index == index))
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    resident_id = uuid.uuid4()
    ciphertext, key_id = pii.encrypt(phone, context=f"residents.phone:{resident_id}")
    resident = Resident(
        id=resident_id, phone_index=index, phone_ct=ciphertext, phone_key_id=key_id, created_at=now
    )
    try:
        async with session.begin_nested():
            session.add(resident)
    except IntegrityError:
        # Another process signed the same phone in first; use its resident.
        return (
            await session.execute(select(Resident).where(Resident.phone_index == index))
        ).scalar_one()
    return resident


def issue_session_token(
    *,
    resident_id: uuid.UUID,
    session_id: uuid.UUID,
    secret: str,
    issuer: str,
    ttl_seconds: int,
    now: dt.datetime,
) -> str:
    iat = epoch(now)
    claims = {
        "iss": issuer,
        "aud": SESSION_AUDIENCE,
        "sub": str(resident_id),
        "sid": session_id.hex,
        "iat": iat,
        "exp": iat + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=SESSION_ALGORITHM)


@dataclass(frozen=True, slots=True)
class SessionClaims:
    resident_id: uuid.UUID
    session_id: uuid.UUID


def read_session_token(token: str, *, secret: str, issuer: str, now: dt.datetime) -> SessionClaims:
    """The resident and session of a valid, unexpired access token; 401 otherwise. Whether the
    session was ended is the caller's to ask (:class:`yuekang.auth.sessions.EndedSessions`)."""
    claims, exp = _verified_session(token, secret, issuer)
    if not isinstance(exp, int) or epoch(now) >= exp:
        raise Unauthorized("session expired; sign in again", code="token_expired")
    return claims


@functools.lru_cache(maxsize=16_384)
def _verified_session(token: str, secret: str, issuer: str) -> tuple[SessionClaims, object]:
    """A token's claims once its signature and claims are checked. Remembered: a phone sends
    the same token with every request, and checking it was a third of the work of answering a
    cached image. Only a good token is remembered (a refusal raises), and what is remembered
    depends on nothing but the token and the secret; the expiry is still compared with the
    clock on every request."""
    try:
        # PyJWT reads the wall clock for exp; ours is injected, so exp is checked by the caller.
        claims = jwt.decode(
            token,
            secret,
            algorithms=[SESSION_ALGORITHM],
            audience=SESSION_AUDIENCE,
            issuer=issuer,
            options={
                "require": ["exp", "iat", "sub", "sid", "aud", "iss"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("invalid session token", code="invalid_token") from exc
    try:
        sid = claims["sid"]
        if not isinstance(sid, str) or len(sid) != 32:
            raise ValueError(sid)
        return SessionClaims(uuid.UUID(claims["sub"]), uuid.UUID(hex=sid)), claims["exp"]
    except (ValueError, TypeError, AttributeError) as exc:
        raise Unauthorized("invalid session token", code="invalid_token") from exc
