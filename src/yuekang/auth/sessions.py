"""Resident sessions: a short access token renewed by a rotating refresh token, and the ways a
session ends.

A sign-in starts a session row. The access token (HS256, ``session.ttl_seconds``, 15 minutes
by default) names it in ``sid``; the refresh token ``ykr1.<session>.<secret>`` renews both, and
each renewal replaces the refresh token (kept as a keyed hash, with the one before it). A
refresh token that was already replaced coming back means two parties hold it -- a copy was
taken -- so the session ends for both (OAuth 2.0 Security BCP, refresh token rotation).

Ending a session (sign-out, sign-out everywhere, a replayed refresh token) refuses its access
tokens at once in the process that ended it and within ``session.revocation_poll_seconds`` in
every other: each process keeps the set of sessions ended recently enough that their access
tokens may still be live (:class:`EndedSessions`), read again from the database when it is
older than that. A phone's cached-image request needs no database, and keeps needing none.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang.auth.models import ResidentSession
from yuekang.auth.service import issue_session_token
from yuekang.config import SessionSettings
from yuekang.db import database_unavailable
from yuekang.exceptions import Refusal, Unauthorized

log = logging.getLogger("yuekang")

REFRESH_PREFIX = "ykr1"
# A read that takes longer is abandoned for the last list: a frozen database must not hold every
# resident request (the read normally takes a millisecond).
_READ_BUDGET_SECONDS = 1.0
_SECRET_BYTES = 32


@dataclass(frozen=True)
class SessionTokens:
    session_id: uuid.UUID
    access_token: str
    expires_in: int
    refresh_token: str
    session_expires_at: dt.datetime


def _refresh_hash(secret: str, raw: bytes) -> bytes:
    return hmac.new(secret.encode(), b"refresh:" + raw, hashlib.sha256).digest()


def _new_refresh(session_id: uuid.UUID, secret: str) -> tuple[str, bytes]:
    raw = secrets.token_bytes(_SECRET_BYTES)
    text = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{REFRESH_PREFIX}.{session_id.hex}.{text}", _refresh_hash(secret, raw)


def parse_refresh_token(token: str) -> tuple[uuid.UUID, bytes] | None:
    """The session id and secret of a well-formed refresh token; None for anything else."""
    prefix, _, rest = token.partition(".")
    session_hex, _, text = rest.partition(".")
    if prefix != REFRESH_PREFIX or len(session_hex) != 32 or len(text) != 43:
        return None
    try:
        session_id = uuid.UUID(hex=session_hex)
        raw = base64.urlsafe_b64decode(text + "=")
    except (ValueError, binascii.Error):
        return None
    # One spelling per token: the last character's unused bits must be zero.
    if session_id.hex != session_hex or base64.urlsafe_b64encode(raw).rstrip(b"=") != text.encode():
        return None
    return session_id, raw


def _session_end(started: dt.datetime, now: dt.datetime, settings: SessionSettings) -> dt.datetime:
    return min(
        now + dt.timedelta(seconds=settings.idle_seconds),
        started + dt.timedelta(seconds=settings.max_seconds),
    )


def _tokens(
    row: ResidentSession,
    refresh_token: str,
    *,
    settings: SessionSettings,
    secret: str,
    issuer: str,
    now: dt.datetime,
) -> SessionTokens:
    ttl = min(settings.ttl_seconds, max(int((row.expires_at - now).total_seconds()), 1))
    access = issue_session_token(
        resident_id=row.resident_id,
        session_id=row.id,
        secret=secret,
        issuer=issuer,
        ttl_seconds=ttl,
        now=now,
    )
    return SessionTokens(row.id, access, ttl, refresh_token, row.expires_at)


async def start(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    settings: SessionSettings,
    secret: str,
    issuer: str,
    now: dt.datetime,
) -> SessionTokens:
    session_id = uuid.uuid4()
    refresh_token, digest = _new_refresh(session_id, secret)
    row = ResidentSession(
        id=session_id,
        resident_id=resident_id,
        refresh_hash=digest,
        created_at=now,
        refreshed_at=now,
        expires_at=_session_end(now, now, settings),
    )
    session.add(row)
    await session.flush()
    return _tokens(row, refresh_token, settings=settings, secret=secret, issuer=issuer, now=now)


INVALID_REFRESH = "invalid refresh token; sign in again"


async def renew(
    session: AsyncSession,
    *,
    refresh_token: str,
    settings: SessionSettings,
    secret: str,
    issuer: str,
    now: dt.datetime,
    ended: EndedSessions,
) -> SessionTokens | Refusal:
    """New tokens for the session of ``refresh_token``, which stops working. A replayed token
    ends the session: a :class:`Refusal`, so that the ending is kept."""
    parsed = parse_refresh_token(refresh_token)
    if parsed is None:
        raise Unauthorized(INVALID_REFRESH, code="invalid_refresh_token")
    session_id, raw = parsed
    row = await session.get(ResidentSession, session_id, with_for_update=True)
    if row is None:
        raise Unauthorized(INVALID_REFRESH, code="invalid_refresh_token")
    presented = _refresh_hash(secret, raw)
    if row.revoked_at is not None:
        raise Unauthorized("this session was ended; sign in again", code="session_ended")
    if row.previous_hash is not None and hmac.compare_digest(presented, row.previous_hash):
        # The token this one replaced: whoever renewed it first and whoever sends it now are
        # two holders of one session. Neither is known to be the owner; end it for both.
        row.revoked_at, row.revoked_reason = now, "replayed"
        ended.note([row.id])
        log.warning("refresh token replayed; session %s ended", row.id)
        return Refusal(
            Unauthorized(
                "this sign-in was used from elsewhere and has been ended; sign in again",
                code="session_ended",
            )
        )
    if not hmac.compare_digest(presented, row.refresh_hash):
        raise Unauthorized(INVALID_REFRESH, code="invalid_refresh_token")
    if now >= row.expires_at:
        raise Unauthorized("the session has run out; sign in again", code="session_expired")
    new_token, digest = _new_refresh(row.id, secret)
    row.previous_hash, row.refresh_hash = row.refresh_hash, digest
    row.refreshed_at = now
    row.expires_at = _session_end(row.created_at, now, settings)
    await session.flush()
    return _tokens(row, new_token, settings=settings, secret=secret, issuer=issuer, now=now)


async def end(
    session: AsyncSession,
    *,
    resident_id: uuid.UUID,
    session_ids: list[uuid.UUID] | None,
    now: dt.datetime,
    ended: EndedSessions,
) -> list[uuid.UUID]:
    """End the resident's live sessions named (all of them with None: sign-out everywhere);
    returns those ended."""
    reason = "everywhere" if session_ids is None else "signed_out"
    statement = (
        update(ResidentSession)
        .where(
            ResidentSession.resident_id == resident_id,
            ResidentSession.revoked_at.is_(None),
            ResidentSession.expires_at > now,
        )
        .values(revoked_at=now, revoked_reason=reason)
        .returning(ResidentSession.id)
    )
    if session_ids is not None:
        statement = statement.where(ResidentSession.id.in_(session_ids))
    done = list((await session.execute(statement)).scalars())
    ended.note(done)
    return done


async def live(
    session: AsyncSession, *, resident_id: uuid.UUID, now: dt.datetime
) -> list[ResidentSession]:
    """The resident's sessions that can still be renewed, newest first."""
    return list(
        (
            await session.execute(
                select(ResidentSession)
                .where(
                    ResidentSession.resident_id == resident_id,
                    ResidentSession.revoked_at.is_(None),
                    ResidentSession.expires_at > now,
                )
                .order_by(ResidentSession.created_at.desc())
            )
        ).scalars()
    )


class EndedSessions:
    """The sessions ended recently enough that an access token of theirs may still be live.

    Read from the database at most every ``poll_seconds`` (one indexed query per process, not
    one per request); a session this process ends is known at once. When the database does not
    answer, the last list read keeps being used and the next read is tried after another
    interval (a read is given a second): requests that need the database fail anyway, and a
    phone's cached code image keeps showing (docs/RELIABILITY.md)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        poll_seconds: float,
        horizon_seconds: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._poll = poll_seconds
        self._horizon = dt.timedelta(seconds=horizon_seconds)
        self._ended: frozenset[uuid.UUID] = frozenset()
        self._noted: dict[uuid.UUID, float] = {}
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    def note(self, session_ids: list[uuid.UUID]) -> None:
        noted_at = time.monotonic()
        for session_id in session_ids:
            self._noted[session_id] = noted_at

    def fresh(self) -> bool:
        return self._read_at is not None and time.monotonic() - self._read_at < self._poll

    def known_ended(self, session_id: uuid.UUID) -> bool:
        """What the last read (and this process) knows, without reading."""
        return session_id in self._ended or session_id in self._noted

    async def is_ended(self, session_id: uuid.UUID, now: dt.datetime) -> bool:
        if not self.fresh():
            await self._read(now)
        return self.known_ended(session_id)

    async def _read(self, now: dt.datetime) -> None:
        async with self._lock:
            if self.fresh():
                return
            started = time.monotonic()
            try:
                self._ended = await asyncio.wait_for(self._query(now), _READ_BUDGET_SECONDS)
                # Kept as long as the tokens they refuse may live: a read may come before the
                # ending is committed.
                stale = started - self._horizon.total_seconds()
                self._noted = {k: v for k, v in self._noted.items() if v > stale}
            except (Exception, TimeoutError) as exc:
                if not isinstance(exc, TimeoutError) and not database_unavailable(exc):
                    raise
                log.warning("could not read ended sessions; using the list of the last read")
            self._read_at = started

    async def _query(self, now: dt.datetime) -> frozenset[uuid.UUID]:
        async with self._sessionmaker() as session:
            rows = await session.execute(
                select(ResidentSession.id).where(ResidentSession.revoked_at >= now - self._horizon)
            )
            return frozenset(rows.scalars())
