"""What the reference Macao system does: issue MO1 codes, convert them to Guangdong codes, and
turn Guangdong's conversion packages into MO1 codes (docs/EXCHANGE.md, sections 2-4 and 7).

HTTP stays in ``app.py``; here every refusal is a :class:`PartnerError` carrying the status and
error code of EXCHANGE.md section 7.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from yuekang.clock import Clock, epoch
from yuekang.codec.errors import InvalidCode, InvalidKey
from yuekang.codec.exchange import (
    MAX_LIFETIME,
    REQUEST_WINDOW,
    EncryptionKey,
    EncryptionPublicKey,
    ExchangeError,
    UnknownSenderKey,
    new_jti,
    open_package,
    seal_package,
    sign_request,
    verify_request,
)
from yuekang.codec.healthcode import read_health_code
from yuekang.codec.keys import (
    PrivateKey,
    SigningKey,
    VerificationKey,
    b64url_encode,
    private_key_from_pem,
    private_key_to_pem,
)
from yuekang.codec.macao import (
    CTI_BYTES,
    MacaoCodeClaims,
    MacaoColour,
    read_macao_code,
    sign_macao_code,
    source_digest,
)
from yuekang.exchange import messages
from yuekang.exchange.mapping import Unmapped, load_table
from yuekang.pii import BlindIndex, PiiCipher
from yuekang.residents.documents import DocType, DocumentError, local_date, validate_document
from yuekang.residents.masking import mask_name
from yuekang_reference.macao import store
from yuekang_reference.macao.schemas import CONSENT_FIELDS, ConversionIn, DeclarationIn
from yuekang_reference.macao.settings import MacaoSecrets, MacaoSettings
from yuekang_reference.macao.store import (
    Code,
    Consent,
    Conversion,
    Declaration,
    IdempotentAnswer,
    KeyRecord,
    Person,
)

T = TypeVar("T")

LEEWAY: Final = 60
INBOUND_PATH: Final = "/v1/exchange/macao/inbound"
MIN_FORCED_REFRESH_SECONDS: Final = 5.0
"""An unknown sender key makes us refetch Guangdong's keys at most this often: a rotation there
is picked up at once, and junk kids cannot turn us into a request amplifier."""
_UTC8: Final = dt.timezone(dt.timedelta(hours=8))
_OTHER_DOCUMENT: Final = re.compile(r"[0-9A-Z/-]{1,32}")
_IDEMPOTENCY_KEY: Final = re.compile(r"[\x21-\x7e]{1,255}")


class PartnerError(Exception):
    """A refusal, rendered as ``{"error": {"code", "message", ...}}`` plus ``extra`` members."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Sequence[Mapping[str, str]] = (),
        detail: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)
        self.detail = dict(detail) if detail else None
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        if self.detail:
            error["detail"] = self.detail
        return {**self.extra, "error": error}


def _exchange_refusal(exc: ExchangeError) -> PartnerError:
    return PartnerError(exc.status, exc.code, exc.detail)


def _malformed(message: str) -> PartnerError:
    return PartnerError(400, "package_malformed", message)


def _sha256(data: bytes) -> str:
    return b64url_encode(hashlib.sha256(data).digest())


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


# --- keys ----------------------------------------------------------------------------------------


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


# --- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedCode:
    person_id: str
    code: str
    colour: str
    expires_at: int

    def answer(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "code": self.code,
            "colour": self.colour,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class BrowserHandoff:
    conversion_id: str
    action: str
    package: str


@dataclass(frozen=True)
class Subject:
    name: str
    doc_type: str
    doc_number: str
    birth_date: str
    phone: str | None


class MacaoService:
    def __init__(
        self,
        settings: MacaoSettings,
        secrets: MacaoSecrets,
        *,
        engine: AsyncEngine,
        clock: Clock,
        http: httpx.AsyncClient,
    ) -> None:
        self.settings = settings
        self.issuer = settings.issuer
        self.admin_token = secrets.admin_token
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self.clock = clock
        self.http = http
        self.table = load_table()
        self.cipher = PiiCipher({secrets.pii_key_id: secrets.pii_key}, secrets.pii_key_id)
        self.blind_index = BlindIndex(secrets.blind_index_key)
        self.keyring = MacaoKeys(secrets.key_passphrase, settings.code_key_validity_days * 86400)
        self.guangdong = GuangdongDirectory(
            http, settings.guangdong_url, settings.guangdong_keys_ttl_seconds
        )
        self._started = False
        self._start_lock = asyncio.Lock()

    def now(self) -> int:
        return epoch(self.clock.now())

    def today(self) -> dt.date:
        return local_date(self.clock.now())

    async def start(self) -> None:
        """Create the schema and any missing key; safe to call again."""
        async with self._start_lock:
            if self._started:
                return
            await store.create_schema(self.engine)
            async with self.sessionmaker() as session, session.begin():
                records = await store.keys(session)
                for purpose, use in KEY_KINDS:
                    if _active(records, purpose, use) is None:
                        session.add(self.keyring.create(purpose, use, self.now()))
                # Fails here, at start, if the passphrase cannot open the stored keys.
                for record in records:
                    self.keyring.public_jwk(record)
            self._started = True

    # --- keys --------------------------------------------------------------------------------

    async def key_document(self) -> dict[str, Any]:
        async with self.sessionmaker() as session:
            records = await store.keys(session)
        order = {kind: i for i, kind in enumerate(KEY_KINDS)}
        records = sorted(
            records,
            key=lambda r: (order.get((r.purpose, r.use), 9), r.state != "active", -r.created_at),
        )
        return {
            "issuer": self.issuer,
            "format": "MO1",
            "keys": [self.keyring.public_jwk(r) for r in records],
        }

    async def rotate(self, purpose: str) -> dict[str, list[str]]:
        now = self.now()
        retired: list[str] = []
        created: list[str] = []
        async with self.sessionmaker() as session, session.begin():
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

    async def _code_key(self, session: AsyncSession, now: int, exp: int) -> SigningKey:
        """The newest active code key, joined by a fresh one when it may not sign a code
        expiring at ``exp``: a key never signs a code that outlives it. The old key stays
        active (not retired, which would void its live codes) and its ``exp`` ends it."""
        records = await store.keys(session)
        record = _active(records, "code", "sig")
        if record is None or (record.not_after is not None and record.not_after < exp):
            record = self.keyring.create("code", "sig", now)
            session.add(record)
        return self.keyring.signing_key(record)

    async def _own_code_keys(self, session: AsyncSession) -> dict[str, VerificationKey]:
        return {
            r.kid: self.keyring.verification_key(r, self.issuer)
            for r in await store.keys(session)
            if (r.purpose, r.use) == ("code", "sig")
        }

    # --- persons and codes ---------------------------------------------------------------------

    def _encrypt(self, person: Person, field: str, value: str) -> bytes:
        ciphertext, key_id = self.cipher.encrypt(value, context=f"persons.{field}:{person.id}")
        person.pii_key_id = key_id
        return ciphertext

    def _decrypt(self, person: Person, field: str, value: bytes) -> str:
        return self.cipher.decrypt(
            value, key_id=person.pii_key_id, context=f"persons.{field}:{person.id}"
        )

    async def _upsert_person(
        self, session: AsyncSession, subject: Subject, tdoc: str, now: int
    ) -> Person:
        index = self.blind_index("macao.person.document", f"{tdoc}:{subject.doc_number}")
        person = await store.person_by_index(session, index)
        if person is None:
            person = Person(id=str(uuid.uuid4()), document_index=index, tdoc=tdoc, created_at=now)
            session.add(person)
        elif self._decrypt(person, "birth_date", person.birth_date) != subject.birth_date:
            raise PartnerError(
                409, "identity_mismatch", "this document is known with another birth date"
            )
        else:
            # The stored phone stays when a transfer did not send one.
            subject = dataclasses.replace(
                subject,
                phone=subject.phone
                or (self._decrypt(person, "phone", person.phone) if person.phone else None),
            )
        # Every field is encrypted again, so the row moves to the active PII key as a whole.
        person.name = self._encrypt(person, "name", subject.name)
        person.doc_number = self._encrypt(person, "doc_number", subject.doc_number)
        person.birth_date = self._encrypt(person, "birth_date", subject.birth_date)
        person.phone = self._encrypt(person, "phone", subject.phone) if subject.phone else None
        person.updated_at = now
        return person

    def _subject(self, person: Person) -> Subject:
        return Subject(
            name=self._decrypt(person, "name", person.name),
            doc_type=person.tdoc,
            doc_number=self._decrypt(person, "doc_number", person.doc_number),
            birth_date=self._decrypt(person, "birth_date", person.birth_date),
            phone=self._decrypt(person, "phone", person.phone) if person.phone else None,
        )

    async def _issue(
        self,
        session: AsyncSession,
        person: Person,
        *,
        name: str,
        colour: MacaoColour,
        nat_negative_on: str | None,
        travel_14d: bool,
        now: int,
        conversion_id: str | None = None,
        source: tuple[str, str, str] | None = None,
    ) -> Code:
        exp = now + self.settings.code_lifetime_seconds
        key = await self._code_key(session, now, exp)
        claims = MacaoCodeClaims(
            iss=self.issuer,
            cti=b64url_encode(os.urandom(CTI_BYTES)),
            iat=now,
            exp=exp,
            cor=colour,
            nome=mask_name(name),
            tdoc=person.tdoc,
            tan=nat_negative_on,
        )
        code = Code(
            cti=claims.cti,
            person_id=person.id,
            text=sign_macao_code(claims, key),
            kid=key.kid,
            colour=colour,
            iat=now,
            exp=exp,
            nat_negative_on=nat_negative_on,
            travel_14d=travel_14d,
            origin="conversion" if source else "declaration",
            conversion_id=conversion_id,
            source_issuer=source[0] if source else None,
            source_kid=source[1] if source else None,
            source_digest=source[2] if source else None,
        )
        session.add(code)
        return code

    async def declare(self, declaration: DeclarationIn) -> IssuedCode:
        today, now = self.today(), self.now()
        problems = []
        if not dt.date(1900, 1, 1) <= declaration.birth_date <= today:
            problems.append(("birth_date", "date", "must be a past date after 1900"))
        if declaration.nat_negative_on is not None and declaration.nat_negative_on > today:
            problems.append(("nat_negative_on", "date", "must not be in the future"))
        if problems:
            raise PartnerError(
                422,
                "validation_error",
                "; ".join(f"{f}: {m}" for f, _, m in problems),
                fields=[{"field": f, "reason": r, "message": m} for f, r, m in problems],
            )
        subject = Subject(
            name=" ".join(declaration.name.split()),
            doc_type=declaration.doc_type,
            doc_number=self._macao_document(declaration, today),
            birth_date=declaration.birth_date.isoformat(),
            phone=declaration.phone,
        )
        colour: MacaoColour = (
            "vermelho"
            if declaration.contact_14d
            else "amarelo"
            if declaration.fever or declaration.travel_14d
            else "verde"
        )
        nat = declaration.nat_negative_on.isoformat() if declaration.nat_negative_on else None

        async def work(session: AsyncSession) -> IssuedCode:
            person = await self._upsert_person(session, subject, declaration.doc_type, now)
            session.add(
                Declaration(
                    id=str(uuid.uuid4()),
                    person_id=person.id,
                    fever=declaration.fever,
                    contact_14d=declaration.contact_14d,
                    travel_14d=declaration.travel_14d,
                    nat_negative_on=nat,
                    colour=colour,
                    created_at=now,
                )
            )
            code = await self._issue(
                session,
                person,
                name=subject.name,
                colour=colour,
                nat_negative_on=nat,
                travel_14d=declaration.travel_14d,
                now=now,
            )
            return IssuedCode(person.id, code.text, colour, code.exp)

        return await self._transaction(work)

    def _macao_document(self, declaration: DeclarationIn, today: dt.date) -> str:
        try:
            doc_type = self.table.doc_type_from_macao(declaration.doc_type)
        except Unmapped:
            # "Other" documents have no known format: accepted for a Macao code, never converted.
            number = "".join(declaration.doc_number.split()).upper()
            if not _OTHER_DOCUMENT.fullmatch(number):
                raise _document_error(
                    DocumentError("doc_number", "format", "The document number is not well formed.")
                ) from None
            return number
        try:
            return validate_document(
                doc_type, declaration.doc_number, declaration.birth_date, today=today
            )
        except DocumentError as exc:
            raise _document_error(exc) from exc

    async def current_code(self, person_id: uuid.UUID) -> IssuedCode:
        async with self.sessionmaker() as session:
            code = await store.latest_code(session, str(person_id))
        if code is None:
            raise PartnerError(404, "not_found", "no code was issued to this person")
        return IssuedCode(code.person_id, code.text, code.colour, code.exp)

    async def _transaction(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction, once more if a concurrent request inserted the same
        person first (the second run finds it)."""
        for attempt in range(2):
            try:
                async with self.sessionmaker() as session, session.begin():
                    return await work(session)
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    # --- Macao -> Guangdong ----------------------------------------------------------------------

    async def convert_to_guangdong(
        self, request: ConversionIn
    ) -> tuple[int, dict[str, Any]] | BrowserHandoff:
        consent = request.consent
        if not consent.accepted:
            raise PartnerError(422, "consent_insufficient", "the person did not accept")
        now = self.now()
        async with self.sessionmaker() as session:
            person = await session.get(Person, str(request.person_id))
            if person is None:
                raise PartnerError(404, "not_found", "no such person")
            code = await store.latest_code(session, person.id)
            own_keys = await self._own_code_keys(session)
        if code is None:
            raise PartnerError(422, "no_current_code", "the person has no Macao code")
        try:
            read_macao_code(code.text, own_keys, now=now, leeway=0)
        except InvalidCode as exc:
            raise PartnerError(
                422,
                "no_current_code",
                "the person's Macao code is no longer valid: declare again",
                detail={"reason": exc.reason.value},
            ) from exc
        try:
            doc_type = self.table.doc_type_from_macao(person.tdoc)
        except Unmapped as exc:
            raise PartnerError(422, "unmapped_document_type", str(exc)) from exc
        subject = self._subject(person)
        guangdong = await self._guangdong_keys()
        if guangdong.enc_key is None:
            raise PartnerError(
                503, "partner_not_configured", "Guangdong publishes no active encryption key"
            )
        if subject.phone is None:
            # Guangdong opens an account with it (EXCHANGE.md section 2); every declaration
            # and every transfer here carries one, so only an old record can lack it.
            raise PartnerError(422, "phone_missing", "declare again with a phone number")
        sent = set(messages.FIELDS)
        if consent.recipient != guangdong.issuer or not sent <= set(consent.fields):
            raise PartnerError(
                422,
                "consent_insufficient",
                f"the consent must name {guangdong.issuer} and cover {', '.join(sorted(sent))}",
            )

        conversion_id, consent_id = str(uuid.uuid4()), str(uuid.uuid4())
        fields = [f for f in CONSENT_FIELDS if f in consent.fields]
        async with self.sessionmaker() as session, session.begin():
            session.add(
                Conversion(
                    id=conversion_id,
                    person_id=person.id,
                    direction="outbound",
                    partner=guangdong.issuer,
                    delivery=request.delivery,
                    state="handed_over" if request.delivery == "browser" else "sending",
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                Consent(
                    id=consent_id,
                    conversion_id=conversion_id,
                    person_id=person.id,
                    direction="outbound",
                    recipient=guangdong.issuer,
                    purpose=messages.PURPOSE,
                    text_version=consent.text_version,
                    fields=json.dumps(fields),
                    granted_at=now,
                )
            )
            signer = self.keyring.signing_key(
                _require(_active(await store.keys(session), "exchange", "sig"))
            )
        message = messages.ConversionRequest(
            cid=conversion_id,
            subject=messages.Subject(
                name=subject.name,
                doc_type=doc_type.value,
                doc_number=subject.doc_number,
                birth_date=dt.date.fromisoformat(subject.birth_date),
                phone=subject.phone,
            ),
            source=messages.Source(code=code.text),
            nat=(
                messages.Nat(
                    sampled_on=dt.date.fromisoformat(code.nat_negative_on), result="negative"
                )
                if code.nat_negative_on
                else None
            ),
            travel=messages.Travel(outside_region_14d=code.travel_14d),
            consent=messages.Consent(
                id=consent_id,
                granted_at=now,
                recipient=guangdong.issuer,
                purpose=messages.PURPOSE,
                text_version=consent.text_version,
                fields=fields,
            ),
        )
        claims = messages.conversion_claims(
            message,
            iss=self.issuer,
            aud=guangdong.issuer,
            iat=now,
            exp=now + self.settings.package_lifetime_seconds,
            jti=new_jti(),
        )
        package = seal_package(claims, signer=signer, recipient=guangdong.enc_key)
        action = f"{self.settings.guangdong_url}{INBOUND_PATH}"
        if request.delivery == "browser":
            return BrowserHandoff(conversion_id, action, package)
        return await self._deliver(conversion_id, action, package, signer)

    async def _deliver(
        self, conversion_id: str, url: str, package: str, signer: SigningKey
    ) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"package": package}).encode()
        proof = sign_request(
            signer=signer,
            issuer=self.issuer,
            method="POST",
            path=httpx.URL(url).raw_path.decode("ascii"),
            body=body,
            idempotency_key=conversion_id,
            now=self.now(),
        )
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Idempotency-Key": conversion_id,
            "Yuekang-Signature": proof,
        }
        try:
            response = await self.http.post(url, content=body, headers=headers)
            answer = response.json() if response.content else {}
        except (httpx.HTTPError, ValueError) as exc:
            await self._conversion_state(conversion_id, "failed", "guangdong_unreachable")
            raise _unreachable(
                conversion_id, f"Guangdong did not answer: {type(exc).__name__}"
            ) from exc
        if response.status_code >= 500 or not isinstance(answer, dict):
            await self._conversion_state(conversion_id, "failed", "guangdong_unreachable")
            raise _unreachable(conversion_id, f"Guangdong answered {response.status_code}")
        if response.is_success:
            partner_id = answer.get("conversion_id")
            await self._conversion_state(
                conversion_id,
                "completed",
                None,
                partner_id if isinstance(partner_id, str) else None,
            )
            return 201, {"conversion_id": conversion_id, "state": "completed", "guangdong": answer}
        error = answer.get("error", answer)
        code = error.get("code") if isinstance(error, dict) else None
        await self._conversion_state(
            conversion_id, "refused", code if isinstance(code, str) else "refused"
        )
        status = 409 if response.status_code == 409 else 422
        return status, {"conversion_id": conversion_id, "state": "refused", "error": error}

    async def _conversion_state(
        self, conversion_id: str, state: str, error: str | None, partner_id: str | None = None
    ) -> None:
        async with self.sessionmaker() as session, session.begin():
            conversion = await session.get(Conversion, conversion_id)
            if conversion is not None:
                conversion.state, conversion.error_code = state, (error or "")[:64] or None
                conversion.partner_conversion_id = partner_id
                conversion.updated_at = self.now()

    async def _guangdong_keys(self, *, refresh: bool = False) -> GuangdongKeys:
        try:
            return await self.guangdong.keys(refresh=refresh)
        except GuangdongUnavailable as exc:
            raise PartnerError(
                502, "guangdong_unreachable", f"Guangdong's keys are unavailable: {exc}"
            ) from exc

    # --- Guangdong -> Macao ----------------------------------------------------------------------

    async def receive_from_guangdong(
        self,
        *,
        body: bytes,
        method: str,
        target: str,
        idempotency_key: str | None,
        proof: str | None,
    ) -> tuple[int, dict[str, Any]]:
        if not idempotency_key:
            raise PartnerError(400, "idempotency_key_required", "send an Idempotency-Key header")
        if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise PartnerError(
                400, "idempotency_key_invalid", "an Idempotency-Key is 1-255 printable characters"
            )
        now = self.now()

        async def verified(guangdong: GuangdongKeys) -> tuple[GuangdongKeys, str, int]:
            checked = verify_request(
                proof,
                keys=guangdong.sig_keys,
                retired_kids=guangdong.retired_sig_kids,
                method=method,
                path=target,
                body=body,
                idempotency_key=idempotency_key,
                now=now,
            )
            return guangdong, checked.jti, checked.iat

        guangdong, request_jti, request_iat = await self._with_guangdong_keys(verified)
        body_hash = _sha256(body)
        async with self.sessionmaker() as session:
            stored = await store.idempotent_answer(session, guangdong.issuer, idempotency_key)
        if stored is not None and stored.body_hash == body_hash:
            return 200, stored.answer_json()

        async with self.sessionmaker() as session:
            fresh = await store.remember_jti(
                session,
                kind="request",
                issuer=guangdong.issuer,
                jti=request_jti,
                expires_at=request_iat + 2 * REQUEST_WINDOW,
                now=now,
            )
        if not fresh:
            raise PartnerError(409, "request_replayed", "this request signature was used before")

        package = _package_of(body)
        decryption_keys = await self._decryption_keys(now)

        async def opened(keys: GuangdongKeys) -> Mapping[str, Any]:
            return open_package(
                package,
                decryption_keys=decryption_keys,
                sender_keys=keys.sig_keys,
                retired_sender_kids=keys.retired_sig_kids,
                issuer=keys.issuer,
                audience=self.issuer,
                now=now,
                leeway=LEEWAY,
            ).claims

        claims = await self._with_guangdong_keys(opened)
        async with self.sessionmaker() as session:
            fresh = await store.remember_jti(
                session,
                kind="package",
                issuer=guangdong.issuer,
                jti=claims["jti"],
                expires_at=claims["exp"] + LEEWAY,
                now=now,
            )
        if not fresh:
            raise PartnerError(409, "package_replayed", "this package was accepted before")

        request = _conversion_request(claims)
        message_hash = _sha256(_canonical({"cid": request.cid, "subject": claims["subject"]}))
        if stored is not None:
            # Guangdong's outbox seals a fresh package (new jti, new source code) for every
            # attempt under one Idempotency-Key: the same conversion of the same person gets
            # the answer already given, anything else under that key is a client bug.
            return _repeat(stored, message_hash)
        return await self._convert_from_guangdong(
            guangdong,
            request,
            now=now,
            key=idempotency_key,
            body_hash=body_hash,
            message_hash=message_hash,
        )

    async def _with_guangdong_keys(self, check: Callable[[GuangdongKeys], Awaitable[T]]) -> T:
        """``check`` with Guangdong's keys; once more with a fresh copy if it names a key we do
        not know (Guangdong may have rotated since we fetched)."""
        try:
            try:
                return await check(await self.guangdong.keys())
            except UnknownSenderKey:
                return await check(await self.guangdong.keys(refresh=True))
        except ExchangeError as exc:
            raise _exchange_refusal(exc) from exc
        except GuangdongUnavailable as exc:
            raise PartnerError(
                503, "partner_not_configured", f"Guangdong's keys are unavailable: {exc}"
            ) from exc

    async def _decryption_keys(self, now: int) -> dict[str, EncryptionKey]:
        """The active encryption key and those retired less than a package lifetime ago, so that
        packages sealed just before a rotation still open."""
        async with self.sessionmaker() as session:
            records = await store.keys(session)
        return {
            r.kid: self.keyring.encryption_key(r)
            for r in records
            if r.use == "enc" and (r.state == "active" or (r.retired_at or 0) + MAX_LIFETIME >= now)
        }

    async def _convert_from_guangdong(
        self,
        guangdong: GuangdongKeys,
        request: messages.ConversionRequest,
        *,
        now: int,
        key: str,
        body_hash: str,
        message_hash: str,
    ) -> tuple[int, dict[str, Any]]:
        consent, sent = request.consent, _sent(request)
        if (
            consent.recipient != self.issuer
            or consent.purpose != messages.PURPOSE
            or not sent <= set(consent.fields)
        ):
            raise PartnerError(
                422,
                "consent_insufficient",
                f"the consent must name {self.issuer} and cover {', '.join(sorted(sent))}",
            )
        try:
            source = read_health_code(request.source.code, guangdong.code_keys, now=now)
        except InvalidCode as exc:
            raise PartnerError(
                422,
                "source_code_invalid",
                f"the Guangdong code does not verify: {exc.detail}",
                detail={"reason": exc.reason.value},
            ) from exc
        if source.claims.st != "green":
            raise PartnerError(422, "source_not_green", "only a green code is converted")
        self._check_nat(request.nat, now)
        if request.travel.outside_region_14d:
            raise PartnerError(
                422, "travel_outside_region", "the person was outside the region in 14 days"
            )
        subject = Subject(
            name=request.subject.name,
            doc_type=request.subject.doc_type,
            doc_number=request.subject.doc_number,
            birth_date=request.subject.birth_date.isoformat(),
            phone=request.subject.phone,
        )
        try:
            # Any exchange type the table maps is taken, OUTRO included (a PRC ID becomes an
            # "other document" here); only the way back to Guangdong is closed for OUTRO.
            tdoc = self.table.doc_type_to_macao(subject.doc_type)
        except Unmapped as exc:
            raise PartnerError(422, "unmapped_document_type", str(exc)) from exc
        try:
            number = validate_document(
                DocType(subject.doc_type),
                subject.doc_number,
                dt.date.fromisoformat(subject.birth_date),
                today=self.today(),
            )
        except DocumentError as exc:
            raise _document_error(exc) from exc
        subject = dataclasses.replace(subject, doc_number=number)
        nat = request.nat.sampled_on.isoformat() if request.nat else None
        digest = source_digest(request.source.code)

        async def work(session: AsyncSession) -> tuple[int, dict[str, Any]]:
            person = await self._upsert_person(session, subject, tdoc, now)
            conversion_id = str(uuid.uuid4())
            session.add(
                Conversion(
                    id=conversion_id,
                    person_id=person.id,
                    direction="inbound",
                    partner=guangdong.issuer,
                    delivery="direct",
                    state="completed",
                    partner_conversion_id=request.cid,
                    created_at=now,
                    updated_at=now,
                )
            )
            await session.flush()
            session.add(
                Consent(
                    id=str(uuid.uuid4()),
                    external_id=consent.id,
                    conversion_id=conversion_id,
                    person_id=person.id,
                    direction="inbound",
                    recipient=consent.recipient,
                    purpose=consent.purpose,
                    text_version=consent.text_version,
                    fields=json.dumps(sorted(consent.fields)),
                    granted_at=consent.granted_at,
                )
            )
            code = await self._issue(
                session,
                person,
                name=subject.name,
                colour=self.table.colour_of(source.claims.st),
                nat_negative_on=nat,
                travel_14d=False,
                now=now,
                conversion_id=conversion_id,
                source=(source.claims.iss, source.kid, digest),
            )
            answer = {
                "conversion_id": conversion_id,
                "code": code.text,
                "colour": code.colour,
                "expires_at": code.exp,
            }
            session.add(
                IdempotentAnswer(
                    issuer=guangdong.issuer,
                    key=key,
                    body_hash=body_hash,
                    message_hash=message_hash,
                    status=201,
                    answer=json.dumps(answer),
                    created_at=now,
                )
            )
            return 201, answer

        try:
            return await self._transaction(work)
        except IntegrityError:
            # The same Idempotency-Key answered by a concurrent request: its answer is ours.
            async with self.sessionmaker() as session:
                stored = await store.idempotent_answer(session, guangdong.issuer, key)
            if stored is None:
                raise
            return _repeat(stored, message_hash)

    def _check_nat(self, nat: messages.Nat | None, now: int) -> None:
        if nat is None:
            raise PartnerError(422, "nat_missing", "no nucleic-acid test was sent")
        if nat.result != "negative":
            raise PartnerError(422, "nat_not_negative", "the latest test is not negative")
        sampled = nat.sampled_on
        if sampled > self.today():
            raise _malformed("the test was sampled in the future")
        # Only the day is known: the test counts from that day's start in Macao (UTC+8), the
        # reading under which it can only be younger than judged.
        start = dt.datetime.combine(sampled, dt.time(0), tzinfo=_UTC8)
        if now - epoch(start) > self.settings.nat_window_hours * 3600:
            raise PartnerError(
                422,
                "nat_too_old",
                f"the test is older than {self.settings.nat_window_hours} hours",
            )


# --- parsing what Guangdong sent ----------------------------------------------------------------


def _package_of(body: bytes) -> str:
    try:
        return messages.package_of(body)
    except messages.MessageMalformed as exc:
        raise PartnerError(400, exc.code, str(exc)) from exc


def _conversion_request(claims: Mapping[str, Any]) -> messages.ConversionRequest:
    """The members of a conversion request, checked for shape only (EXCHANGE.md section 2)."""
    try:
        return messages.parse_request(claims)
    except messages.MessageMalformed as exc:
        raise PartnerError(400, "package_malformed", str(exc), fields=exc.fields) from exc


def _sent(request: messages.ConversionRequest) -> frozenset[str]:
    """The fields a request carries, as a consent names them: a test only when there is one."""
    return frozenset(f for f in messages.FIELDS if f != "nat" or request.nat is not None)


def _repeat(stored: IdempotentAnswer, message_hash: str) -> tuple[int, dict[str, Any]]:
    if stored.message_hash != message_hash:
        raise PartnerError(
            409, "idempotency_key_reused", "this Idempotency-Key was used with another package"
        )
    return 200, stored.answer_json()


def _document_error(exc: DocumentError) -> PartnerError:
    return PartnerError(
        422,
        "invalid_document",
        exc.message,
        fields=[{"field": exc.field, "reason": exc.reason, "message": exc.message}],
    )


def _unreachable(conversion_id: str, message: str) -> PartnerError:
    return PartnerError(
        502, "guangdong_unreachable", message, extra={"conversion_id": conversion_id}
    )


def _require(record: KeyRecord | None) -> KeyRecord:
    if record is None:
        raise RuntimeError("no active exchange signing key: the service was not started")
    return record
