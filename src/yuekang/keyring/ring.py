"""The key ring a server process works with: the database's key states, held for at most
``ring_refresh_seconds`` so issuance and online verification don't query keys on every request,
and decrypted private keys, cached by key id because decrypting PKCS#8 is deliberately slow. A
key held in a PKCS#11 token (``keyring/pkcs11.py``) is looked up in the process's token by its
label instead, and cached the same way: the cache then holds a handle, never the private value.

The database stays the source of truth: a rotation or retirement made by one process (or the CLI)
is seen by every other process within the refresh interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from yuekang.codec.healthcode import HealthCodeClaims, sign_health_code
from yuekang.codec.jwks import build_jwks
from yuekang.codec.keys import SigningKey, VerificationKey, private_key_from_pem
from yuekang.db import database_unavailable
from yuekang.exceptions import ServiceUnavailable
from yuekang.exchange import partners
from yuekang.keyring import service
from yuekang.keyring.models import SigningKeyRecord
from yuekang.keyring.pkcs11 import Token, TokenError, held_in_token, is_token_key
from yuekang.verifier import PartnerIssuer, Verifier


@dataclass(frozen=True)
class RingView:
    """One consistent snapshot of the key states."""

    loaded_at: dt.datetime
    records: tuple[SigningKeyRecord, ...]
    verification_keys: Mapping[str, VerificationKey]
    verifier: Verifier
    """The offline verifier over these keys, built once per snapshot for online verification."""
    jwks: dict[str, object]
    jwks_etag: str


log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
"""After a refresh met an unavailable database, how long the last snapshot serves before the
next try."""
REFRESH_WAIT_SECONDS = 0.5
"""How long a request waits for a reload of the keys while an older snapshot exists."""


@dataclass
class KeyRing:
    sessionmaker: async_sessionmaker[AsyncSession]
    issuer: str
    passphrase: str
    max_code_lifetime: dt.timedelta
    refresh_seconds: float
    leeway: int
    token: Token | None = None
    """The PKCS#11 token holding this process's HSM keys (``keys.backend=pkcs11``)."""
    _view: RingView | None = None
    _view_monotonic: float = 0.0
    _private: dict[str, SigningKey] = field(default_factory=dict)
    _refreshing: asyncio.Future[RingView] | None = None
    _generation: int = 0
    """Moved by :meth:`invalidate`: a reload begun before a change must not become the view."""

    async def view(self, now: dt.datetime) -> RingView:
        """The current snapshot, reloaded when older than the refresh interval.

        While the database cannot be reached, the last snapshot goes on serving (JWKS, online
        verification's keys): keys change only through the database, so nothing newer exists
        to miss. A reload that is slow (a frozen database) is waited for at most
        :data:`REFRESH_WAIT_SECONDS` while a snapshot exists -- it goes on in the background,
        and requests take the last snapshot -- and one that fails is tried again a second
        later."""
        if (
            self._view is not None
            and time.monotonic() - self._view_monotonic < self.refresh_seconds
        ):
            return self._view
        if self._view is None or self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh(now))
            # Read, so that a failure nobody waited for is not reported as never retrieved.
            self._refreshing.add_done_callback(
                lambda done: None if done.cancelled() else done.exception()
            )
        refreshing = self._refreshing
        if self._view is None:
            return await asyncio.shield(refreshing)
        done, _ = await asyncio.wait({refreshing}, timeout=REFRESH_WAIT_SECONDS)
        if done and not refreshing.cancelled() and refreshing.exception() is None:
            return refreshing.result()
        return self._view

    async def _refresh(self, now: dt.datetime) -> RingView:
        generation = self._generation
        try:
            view = await self._load(now)
        except Exception as exc:
            if self._view is None or not database_unavailable(exc):
                raise
            log.warning("key ring not refreshed (database unavailable); serving the last")
            self._view_monotonic = time.monotonic() - self.refresh_seconds + RETRY_SECONDS
            return self._view
        else:
            if generation == self._generation:
                self._view = view
                self._view_monotonic = time.monotonic()
            return view
        finally:
            if generation == self._generation:
                self._refreshing = None

    def invalidate(self) -> None:
        """Forget the snapshot (after this process changed a key)."""
        self._view = None
        self._refreshing = None
        self._generation += 1

    async def _load(self, now: dt.datetime) -> RingView:
        async with self.sessionmaker() as session:
            records = tuple(
                await service.trusted_records(
                    session, now=now, max_code_lifetime=self.max_code_lifetime
                )
            )
            # Partner issuers whose own codes online verification recognises (EXCHANGE.md).
            issuers = await partners.bundle_issuers(session)
        partner_issuers = [PartnerIssuer.from_bundle(p) for p in issuers]
        keys = {r.kid: service.verification_key(r, self.issuer) for r in records}
        published = [keys[r.kid] for r in records if r.state != "compromised"]
        published.sort(key=lambda k: k.kid)
        jwks = build_jwks(self.issuer, published)
        state = "|".join(f"{r.kid}.{r.state}" for r in sorted(records, key=lambda r: r.kid))
        return RingView(
            loaded_at=now,
            records=records,
            verification_keys=keys,
            verifier=Verifier(keys, leeway=self.leeway, partners=partner_issuers),
            jwks=jwks,
            jwks_etag='"' + hashlib.sha256(state.encode()).hexdigest()[:32] + '"',
        )

    async def signing_key_for(
        self, *, expires_at: dt.datetime, now: dt.datetime
    ) -> SigningKey | None:
        """The active key that outlives ``expires_at``, or None: a key never signs a code that
        would outlive it."""
        view = await self.view(now)
        candidates = [
            r
            for r in view.records
            if r.state == "active" and r.not_after >= expires_at and r.published_at <= now
        ]
        if not candidates:
            return None
        record = max(candidates, key=lambda r: r.activated_at or r.published_at)
        key = self._private.get(record.kid)
        if key is None:
            key = await asyncio.to_thread(self.private_half, record)
            self._private[record.kid] = key
        return key

    async def sign(self, claims: HealthCodeClaims, key: SigningKey) -> str:
        """``sign_health_code(claims, key)`` where it costs least: in line for a key in memory
        (tens of microseconds), in a worker thread for a key in a token, whose call may wait on
        a device or a network while the event loop serves other requests (docs/PERFORMANCE.md:
        a millisecond per call in line more than halved issuance)."""
        if held_in_token(key):
            return await asyncio.to_thread(sign_health_code, claims, key)
        return sign_health_code(claims, key)

    def private_half(self, record: SigningKeyRecord) -> SigningKey:
        """The key of ``record`` ready to sign: decrypted from its PEM, or found in the token.
        A token key this process cannot reach is a 503, as an unavailable database is."""
        if is_token_key(record.private_pem):
            if self.token is None:
                raise ServiceUnavailable(
                    f"key {record.kid} is held in a PKCS#11 token and this process has none "
                    "(keys.backend=file)",
                    code="unavailable",
                )
            try:
                private = self.token.private_key(record.kid, service.algorithm(record))
            except TokenError as exc:
                raise ServiceUnavailable(
                    f"the signing token cannot sign now ({exc})", code="unavailable"
                ) from None
        else:
            private = private_key_from_pem(record.private_pem, self.passphrase.encode("utf-8"))
        key = SigningKey.from_private_key(private)
        if key.kid != record.kid:
            raise RuntimeError(f"stored key {record.kid} does not match its private half")
        return key
