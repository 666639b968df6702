"""Keys: Macao's own (code signing, exchange signing and encryption; generated into its database,
published in its key document, rotated by the operator) and Guangdong's (its key document,
fetched and reused for a while). EXCHANGE.md section 1."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.ext.asyncio import AsyncSession

from yuekang.codec.errors import InvalidKey
from yuekang.codec.exchange import (
    MAX_LIFETIME,
    EncryptionKey,
    EncryptionPublicKey,
)
from yuekang.codec.keys import (
    PrivateKey,
    SigningKey,
    VerificationKey,
    private_key_from_pem,
    private_key_to_pem,
)
from yuekang_reference.macao import store
from yuekang_reference.macao.deps import MacaoDeps
from yuekang_reference.macao.store import KeyRecord

MIN_FORCED_REFRESH_SECONDS: Final = 5.0
"""An unknown sender key makes us refetch Guangdong's keys at most this often: a rotation there
is picked up at once, and junk kids cannot turn us into a request amplifier."""

# --- ours ----------------------------------------------------------------------------------------


class MacaoKeys:
    """Our private keys: generated into the database encrypted under the passphrase, decrypted
    once per process."""

    def __init__(self, passphrase: bytes, code_key_validity_seconds: int) -> None:
        self._passphrase = passphrase
        self._validity = code_key_validity_seconds
        self._loaded: dict[str, PrivateKey] = {}

    def create(self, purpose: str, use: str, now: int) -> KeyRecord:
        private: PrivateKey
        if use == "enc":
            encryption = EncryptionKey.generate()
            kid, private = encryption.kid, encryption.private_key
        else:
            signing = SigningKey.generate("ES256")
            kid, private = signing.kid, signing.private_key
        self._loaded[kid] = private
        code = purpose == "code"
        return KeyRecord(
            kid=kid,
            purpose=purpose,
            use=use,
            private_pem=private_key_to_pem(private, self._passphrase),
            state="active",
            created_at=now,
            retired_at=None,
            not_before=now if code else None,
            not_after=now + self._validity if code else None,
        )

    def _private(self, record: KeyRecord) -> PrivateKey:
        key = self._loaded.get(record.kid)
        if key is None:
            key = private_key_from_pem(record.private_pem, self._passphrase)
            self._loaded[record.kid] = key
        return key

    def signing_key(self, record: KeyRecord) -> SigningKey:
        return SigningKey.from_private_key(self._private(record))

    def encryption_key(self, record: KeyRecord) -> EncryptionKey:
        key = self._private(record)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise InvalidKey(f"key {record.kid} is not an encryption key")
        return EncryptionKey.from_private_key(key)

    def public_jwk(self, record: KeyRecord) -> dict[str, Any]:
        jwk = (
            self.encryption_key(record).public().to_jwk()
            if record.use == "enc"
            else self.signing_key(record).public().to_jwk()
        )
        jwk.update({"purpose": record.purpose, "state": record.state})
        if record.not_before is not None:
            jwk["nbf"] = record.not_before
        if record.not_after is not None:
            jwk["exp"] = record.not_after
        return jwk

    def verification_key(self, record: KeyRecord, issuer: str) -> VerificationKey:
        return dataclasses.replace(
            self.signing_key(record).public(),
            issuer=issuer,
            not_before=record.not_before,
            not_after=record.not_after,
            # A retired code key's codes are judged key_not_valid (EXCHANGE.md section 1).
            compromised=record.state != "active",
        )


KEY_KINDS: Final = (("code", "sig"), ("exchange", "sig"), ("exchange", "enc"))


def _active(records: Sequence[KeyRecord], purpose: str, use: str) -> KeyRecord | None:
    matching = [r for r in records if r.purpose == purpose and r.use == use and r.state == "active"]
    return matching[-1] if matching else None


class OwnKeys:
    """Macao's keys in its database: made when missing, published, rotated, and handed to the
    parts that sign, verify and open."""

    def __init__(self, deps: MacaoDeps, keyring: MacaoKeys) -> None:
        self.deps = deps
        self.keyring = keyring

    async def ensure(self) -> None:
        """Make any missing kind of key; fails if the passphrase cannot open the stored ones."""
        async with self.deps.sessionmaker() as session, session.begin():
            records = await store.keys(session)
            for purpose, use in KEY_KINDS:
                if _active(records, purpose, use) is None:
                    session.add(self.keyring.create(purpose, use, self.deps.now()))
            # Fails here, at start, if the passphrase cannot open the stored keys.
            for record in records:
                self.keyring.public_jwk(record)

    async def key_document(self) -> dict[str, Any]:
        async with self.deps.sessionmaker() as session:
            records = await store.keys(session)
        order = {kind: i for i, kind in enumerate(KEY_KINDS)}
        records = sorted(
            records,
            key=lambda r: (order.get((r.purpose, r.use), 9), r.state != "active", -r.created_at),
        )
        return {
            "issuer": self.deps.issuer,
            "format": "MO1",
            "keys": [self.keyring.public_jwk(r) for r in records],
        }

    async def rotate(self, purpose: str) -> dict[str, list[str]]:
        now = self.deps.now()
        retired: list[str] = []
        created: list[str] = []
        async with self.deps.sessionmaker() as session, session.begin():
            records = await store.keys(session)
            for kind_purpose, use in KEY_KINDS:
                if kind_purpose != purpose:
                    continue
                for record in records:
                    if (record.purpose, record.use, record.state) == (purpose, use, "active"):
                        record.state, record.retired_at = "retired", now
                        retired.append(record.kid)
                new = self.keyring.create(purpose, use, now)
                session.add(new)
                created.append(new.kid)
        return {"retired": retired, "active": created}

    async def code_key(self, session: AsyncSession, now: int, exp: int) -> SigningKey:
        """The newest active code key, joined by a fresh one when it may not sign a code
        expiring at ``exp``: a key never signs a code that outlives it. The old key stays
        active (not retired, which would void its live codes) and its ``exp`` ends it."""
        records = await store.keys(session)
        record = _active(records, "code", "sig")
        if record is None or (record.not_after is not None and record.not_after < exp):
            record = self.keyring.create("code", "sig", now)
            session.add(record)
        return self.keyring.signing_key(record)

    async def code_verification_keys(self, session: AsyncSession) -> dict[str, VerificationKey]:
        """Every code key we made, retired ones judged key_not_valid."""
        return {
            r.kid: self.keyring.verification_key(r, self.deps.issuer)
            for r in await store.keys(session)
            if (r.purpose, r.use) == ("code", "sig")
        }

    async def exchange_signer(self, session: AsyncSession) -> SigningKey:
        record = _active(await store.keys(session), "exchange", "sig")
        if record is None:
            raise RuntimeError("no active exchange signing key: the service was not started")
        return self.keyring.signing_key(record)

    async def decryption_keys(self, now: int) -> dict[str, EncryptionKey]:
        """The active encryption key and those retired less than a package lifetime ago, so that
        packages sealed just before a rotation still open."""
        async with self.deps.sessionmaker() as session:
            records = await store.keys(session)
        return {
            r.kid: self.keyring.encryption_key(r)
            for r in records
            if r.use == "enc" and (r.state == "active" or (r.retired_at or 0) + MAX_LIFETIME >= now)
        }


# --- Guangdong's key document --------------------------------------------------------------------


class GuangdongUnavailable(Exception):
    """Guangdong's key document could not be fetched or used."""


@dataclass(frozen=True)
class GuangdongKeys:
    issuer: str
    code_keys: Mapping[str, VerificationKey]
    sig_keys: Mapping[str, VerificationKey]
    retired_sig_kids: frozenset[str]
    enc_key: EncryptionPublicKey | None


def parse_key_document(document: Any) -> GuangdongKeys:
    """A partner's key document (EXCHANGE.md section 1). Entries of other purposes or uses are
    skipped; a malformed key of a known kind fails the whole document, since dropping it would
    turn everything it signed into unknown_sender_key with no hint why."""
    if not isinstance(document, dict):
        raise GuangdongUnavailable("the key document is not a JSON object")
    issuer, entries = document.get("issuer"), document.get("keys")
    if not isinstance(issuer, str) or not issuer or not isinstance(entries, list):
        raise GuangdongUnavailable("the key document needs an issuer and a list of keys")
    code_keys: dict[str, VerificationKey] = {}
    sig_keys: dict[str, VerificationKey] = {}
    retired: set[str] = set()
    enc_key: EncryptionPublicKey | None = None
    for jwk in entries[:64]:
        if not isinstance(jwk, dict):
            raise GuangdongUnavailable("a key is not a JSON object")
        purpose, use, state = jwk.get("purpose"), jwk.get("use"), jwk.get("state")
        if state not in ("active", "retired"):
            raise GuangdongUnavailable("a key's state is neither active nor retired")
        try:
            if purpose == "code" and use == "sig":
                key = VerificationKey.from_jwk(jwk, issuer=issuer)
                code_keys[key.kid] = dataclasses.replace(
                    key,
                    not_before=_optional_time(jwk.get("nbf")),
                    not_after=_optional_time(jwk.get("exp")),
                    compromised=state == "retired",
                )
            elif purpose == "exchange" and use == "sig":
                key = VerificationKey.from_jwk(jwk, issuer=issuer)
                sig_keys[key.kid] = key
                if state == "retired":
                    retired.add(key.kid)
            elif purpose == "exchange" and use == "enc" and state == "active" and enc_key is None:
                enc_key = EncryptionPublicKey.from_jwk(jwk)
        except InvalidKey as exc:
            raise GuangdongUnavailable(f"a key is malformed: {exc.detail}") from exc
    return GuangdongKeys(issuer, code_keys, sig_keys, frozenset(retired), enc_key)


def _optional_time(value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise GuangdongUnavailable("nbf and exp must be integer UTC seconds")
    return value


class GuangdongDirectory:
    """Guangdong's key document, fetched from the URL the operator configured and reused for a
    while. (The Guangdong side pins partner keys by an operator's command; this test double
    trusts its configured URL, which is what a test against a local Guangdong needs.)"""

    def __init__(self, http: httpx.AsyncClient, base_url: str, ttl: float) -> None:
        self._http = http
        self._url = f"{base_url}/v1/exchange/keys"
        self._ttl = ttl
        self._cached: GuangdongKeys | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def keys(self, *, refresh: bool = False) -> GuangdongKeys:
        async with self._lock:
            age = time.monotonic() - self._fetched
            fresh = age < (MIN_FORCED_REFRESH_SECONDS if refresh else self._ttl)
            if self._cached is not None and age < self._ttl and fresh:
                return self._cached
            try:
                response = await self._http.get(self._url, headers={"Accept": "application/json"})
            except httpx.HTTPError as exc:
                raise GuangdongUnavailable(
                    f"cannot fetch {self._url}: {type(exc).__name__}"
                ) from exc
            if response.status_code != 200:
                raise GuangdongUnavailable(f"{self._url} answered {response.status_code}")
            try:
                document = response.json()
            except ValueError as exc:
                raise GuangdongUnavailable("the key document is not JSON") from exc
            self._cached = parse_key_document(document)
            self._fetched = time.monotonic()
            return self._cached
