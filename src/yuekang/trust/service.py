"""The trust anchor and the checkpoint trust bundles it signs.

A bundle is built from what is in the database -- published signing keys with their states and
windows, unexpired revocations, the checkpoint policies -- and stored with a version. Every
process serves the latest stored bundle; a new version is made only when the content changed or
the latest has used up half its lifetime, so checkpoints re-sync long before a bundle expires.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.clock import epoch, from_epoch
from yuekang.codec.bundle import (
    BundleKey,
    TrustBundle,
    bucket,
    sign_bundle,
)
from yuekang.codec.keys import PrivateKey, SigningKey, private_key_from_pem, private_key_to_pem
from yuekang.exceptions import ServiceUnavailable
from yuekang.exchange import partners
from yuekang.health_codes.models import Revocation
from yuekang.keyring import service as keys
from yuekang.keyring.models import SigningKeyRecord
from yuekang.keyring.pkcs11 import Token, TokenError, is_token_key, label_of, uri
from yuekang.rules.policy import default_policies
from yuekang.trust.models import AnchorKey, TrustBundleRecord

# A delta lists revocations made since its base was built, with this overlap: a revocation whose
# transaction began before the base was built but committed after is not missed (sets merge).
DELTA_OVERLAP = dt.timedelta(minutes=5)


_anchors: dict[str, SigningKey] = {}
"""Anchor keys decrypted by this process, by key id. Every bundle sync asks for the anchor, and
decrypting its PKCS#8 (a deliberately slow key derivation) was most of the cost of a 304."""


async def anchor_key(
    session: AsyncSession,
    *,
    passphrase: str,
    now: dt.datetime,
    create: bool,
    token: Token | None = None,
) -> SigningKey | None:
    """The anchor signing key; made on first use when ``create`` (development, or the
    ``yuekang keys anchor`` command) -- inside ``token`` when one is given. An anchor held in a
    token is found there by its label; one this process cannot reach is a 503."""
    record = (
        await session.execute(select(AnchorKey).order_by(AnchorKey.created_at.desc()).limit(1))
    ).scalar_one_or_none()
    if record is not None:
        key = _anchors.get(record.kid)
        if key is None:
            key = SigningKey.from_private_key(_private_half(record, passphrase, token))
            _anchors[record.kid] = key
        return key
    if not create:
        return None
    if token is None:
        key = SigningKey.generate("ES256")
        private = private_key_to_pem(key.private_key, passphrase.encode("utf-8"))
    else:
        key = SigningKey.from_private_key(keys.token_generate(token, "ES256"))
        private = uri(token.label, key.kid)
    session.add(
        AnchorKey(
            kid=key.kid,
            alg=key.alg,
            public_jwk=json.dumps(key.public().to_jwk()),
            private_pem=private,
            created_at=now,
        )
    )
    await session.flush()
    return key


def _private_half(record: AnchorKey, passphrase: str, token: Token | None) -> PrivateKey:
    if not is_token_key(record.private_pem):
        return private_key_from_pem(record.private_pem, passphrase.encode("utf-8"))
    if token is None:
        raise ServiceUnavailable(
            f"the trust anchor {record.kid} is held in a PKCS#11 token and this process has none "
            "(keys.backend=file)",
            code="unavailable",
        )
    try:
        return token.private_key(label_of(record.private_pem), "ES256")
    except TokenError as exc:
        raise ServiceUnavailable(
            f"the signing token cannot sign now ({exc})", code="unavailable"
        ) from None


async def latest(session: AsyncSession) -> TrustBundleRecord | None:
    return (
        await session.execute(
            select(TrustBundleRecord).order_by(TrustBundleRecord.version.desc()).limit(1)
        )
    ).scalar_one_or_none()


def _bundle_keys(records: Sequence[SigningKeyRecord], issuer: str) -> tuple[BundleKey, ...]:
    published = sorted((r for r in records if r.state != "compromised"), key=lambda r: r.kid)
    return tuple(
        BundleKey(
            key=keys.verification_key(record, issuer),
            state="active" if record.state == "active" else record.state,  # type: ignore[arg-type]
            not_before=epoch(record.published_at),
            not_after=epoch(record.not_after),
        )
        for record in published
    )


async def _revoked(
    session: AsyncSession, *, now: dt.datetime, since: dt.datetime | None = None
) -> dict[int, frozenset[str]]:
    query = select(Revocation.code_id, Revocation.expires_at).where(Revocation.expires_at > now)
    if since is not None:
        query = query.where(Revocation.revoked_at > since)
    groups: dict[int, set[str]] = {}
    for code_id, expires_at in (await session.execute(query)).all():
        groups.setdefault(bucket(epoch(expires_at)), set()).add(code_id)
    return {until: frozenset(ids) for until, ids in groups.items()}


async def _content(
    session: AsyncSession,
    *,
    records: Sequence[SigningKeyRecord],
    issuer: str,
    grace: dt.timedelta,
    now: dt.datetime,
    revoked_since: dt.datetime | None = None,
) -> TrustBundle:
    """Keys, revocations and policies as they are now; version and times are the caller's."""
    return TrustBundle(
        issuer=issuer,
        version=0,
        issued_at=0,
        expires_at=1,
        grace=int(grace.total_seconds()),
        keys=_bundle_keys(records, issuer),
        revoked=await _revoked(session, now=now, since=revoked_since),
        policies=default_policies().document(),
        issuers=await partners.bundle_issuers(session),
    )


async def _fingerprint(
    session: AsyncSession, records: Sequence[SigningKeyRecord], issuer: str, grace: dt.timedelta
) -> str:
    """What the bundle's content depends on, without reading it: key states and windows, the
    policies' version, and how many revocations there are and the newest. Every sync asks, so
    it costs one aggregate query instead of loading every revocation."""
    count, newest = (
        await session.execute(select(func.count(), func.max(Revocation.revoked_at)))
    ).one()
    state = {
        "issuer": issuer,
        "grace": int(grace.total_seconds()),
        "keys": sorted(
            (r.kid, r.state, epoch(r.published_at), epoch(r.not_after))
            for r in records
            if r.state != "compromised"
        ),
        "policies": default_policies().version,
        "revocations": [count, None if newest is None else newest.isoformat()],
        "partners": await partners.fingerprint(session),
        "mapping": partners.tables(),
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Served:
    """A stored bundle as it is served: its version, signed text and times."""

    version: int
    text: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    etag: str = field(init=False)
    """The version as an ETag: ``"v<version>"``."""
    body: bytes = field(init=False)
    """``text`` as sent, encoded once for every sync that gets it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "etag", f'"v{self.version}"')
        object.__setattr__(self, "body", self.text.encode())

    @classmethod
    def of(cls, record: TrustBundleRecord) -> Served:
        return cls(record.version, record.text, record.issued_at, record.expires_at)


@dataclass
class BundleCache:
    """The bundle this process served last, served again for ``seconds`` without asking the
    database whether it is still the latest. Nearly every sync is a 304, and finding the latest
    bundle takes five queries (key states, a count over every revocation, partners, the anchor,
    the latest version); within ``seconds`` a sync costs none beyond its checkpoint's key. So a
    revocation or a key change made by any process reaches the bundles every process serves at
    most ``seconds`` late -- checkpoints sync minutes apart."""

    seconds: float
    monotonic: Callable[[], float] = time.monotonic
    max_deltas: int = 64
    _served: Served | None = None
    _checked_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _deltas_of: int | None = None
    _deltas: OrderedDict[int, str | None] = field(default_factory=OrderedDict)

    async def delta(
        self, served: Served, since: int, build: Callable[[], Awaitable[str | None]]
    ) -> str | None:
        """The delta from ``since`` to ``served``, built once per pair. A version's content does
        not change (a new revocation is a new version), so every checkpoint on version ``since``
        gets the same signed bytes, and building and signing one -- 34 ms with 4,000 revocations
        -- happens once per version and base, not once per sync."""
        if self._deltas_of != served.version:
            self._deltas.clear()
            self._deltas_of = served.version
        if since in self._deltas:
            self._deltas.move_to_end(since)
            return self._deltas[since]
        text = await build()
        if self._deltas_of == served.version:
            self._deltas[since] = text
            while len(self._deltas) > self.max_deltas:
                self._deltas.popitem(last=False)
        return text

    async def latest(self, find: Callable[[], Awaitable[Served]]) -> Served:
        """The cached bundle, or the one ``find`` answers if it is older than ``seconds``; one
        request finds it, the others wait for its answer."""
        if self.seconds <= 0:
            return await find()
        if self._fresh():
            assert self._served is not None
            return self._served
        async with self._lock:
            if not self._fresh():
                self._served = await find()
                self._checked_at = self.monotonic()
        assert self._served is not None
        return self._served

    def fresh(self) -> Served | None:
        """The cached bundle while it is within ``seconds``: a sync answered from it needs no
        database session at all (opening and closing one was a sixth of a 304's time)."""
        return self._served if self._fresh() else None

    def _fresh(self) -> bool:
        return self._served is not None and self.monotonic() - self._checked_at < self.seconds


async def delta(
    session: AsyncSession,
    *,
    anchor: SigningKey,
    latest_record: Served,
    since: int,
    issuer: str,
    grace: dt.timedelta,
    now: dt.datetime,
    max_code_lifetime: dt.timedelta,
) -> str | None:
    """The latest bundle as a delta on top of version ``since`` (keys and policies whole, only
    the revocations made since), or None when ``since`` is not a version we made."""
    base = await session.get(TrustBundleRecord, since)
    if base is None or since >= latest_record.version:
        return None
    records = await keys.trusted_records(session, now=now, max_code_lifetime=max_code_lifetime)
    content = await _content(
        session,
        records=records,
        issuer=issuer,
        grace=grace,
        now=now,
        revoked_since=base.issued_at - DELTA_OVERLAP,
    )
    return sign_bundle(
        dataclasses.replace(
            content,
            version=latest_record.version,
            issued_at=epoch(latest_record.issued_at),
            expires_at=epoch(latest_record.expires_at),
            base=since,
        ),
        anchor,
    )


async def current(
    session: AsyncSession,
    *,
    anchor: SigningKey,
    issuer: str,
    now: dt.datetime,
    lifetime: dt.timedelta,
    grace: dt.timedelta,
    max_code_lifetime: dt.timedelta,
) -> TrustBundleRecord:
    """The bundle to serve now, made (and stored) if the content changed or it needs re-signing."""
    records = await keys.trusted_records(session, now=now, max_code_lifetime=max_code_lifetime)
    digest = await _fingerprint(session, records, issuer, grace)
    last = await latest(session)
    if (
        last is not None
        and last.digest == digest
        and now < last.issued_at + (last.expires_at - last.issued_at) / 2
    ):
        return last
    content = await _content(session, records=records, issuer=issuer, grace=grace, now=now)
    issued_at = from_epoch(epoch(now))
    record = TrustBundleRecord(
        version=1 if last is None else last.version + 1,
        digest=digest,
        issued_at=issued_at,
        expires_at=issued_at + lifetime,
        text="",
    )
    signed = dataclasses.replace(
        content,
        version=record.version,
        issued_at=epoch(issued_at),
        expires_at=epoch(record.expires_at),
    )
    record.text = sign_bundle(signed, anchor)
    try:
        async with session.begin_nested():
            session.add(record)
    except IntegrityError:
        # Another process made this version at the same moment: serve theirs.
        theirs = await latest(session)
        assert theirs is not None
        return theirs
    return record
