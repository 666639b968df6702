"""The reference identity registry's database: the population register, the carriers' real-name
subscriber registrations, the nonces it has seen and its own log of the checks it answered.

The schema is made with ``metadata.create_all`` at start and is not migrated: this is a test
double whose database is thrown away, and a schema change here means deleting the data
directory. Records come in as NDJSON (``samples.ndjson`` shows the format) through
:meth:`RegistryStore.load`; nothing here ever hands a record to a caller outside the registry,
which answers match / no match only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Final

from sqlalchemy import BigInteger, MetaData, String, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from yuekang.clock import Clock, SystemClock, epoch
from yuekang.codec import proofing as wire
from yuekang.db import BIGINT_PK, NAMING_CONVENTION, create_engine
from yuekang.residents.documents import DocType, DocumentError, local_date, validate_document

log = logging.getLogger("yuekang_reference.registry")

DATABASE_FILE: Final = "registry.db"
NAME_LIMIT: Final = 64
"""The longest name the wire format carries (``person.name``)."""
CARRIER_LIMIT: Final = 64
NONCE_PURGE_SECONDS: Final = 60
_PHONE_RE: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_ISO_DATE_RE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PERSON_FIELDS: Final = frozenset({"kind", "name", "doc_type", "doc_number", "birth_date"})
_SUBSCRIPTION_FIELDS: Final = frozenset(
    {"kind", "phone", "doc_type", "doc_number", "name", "carrier"}
)
_DELETE_FIELDS: Final = frozenset({"kind", "phone", "action"})
_WRITE_CHUNK: Final = 500
_DOC_TYPES: Final = frozenset(DocType)


class RegistryBase(DeclarativeBase):
    # Times are UTC seconds: 64 bits, or they overflow in 2038 on PostgreSQL.
    type_annotation_map: ClassVar[dict[Any, Any]] = {int: BigInteger}
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class PersonRecord(RegistryBase):
    """A person in the population register, by document."""

    __tablename__ = "people"

    doc_type: Mapped[str] = mapped_column(String(24), primary_key=True)
    doc_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LIMIT))
    birth_date: Mapped[str] = mapped_column(String(10))  # ISO 8601
    updated_at: Mapped[int]


class SubscriptionRecord(RegistryBase):
    """A carrier's real-name registration: one holder per number."""

    __tablename__ = "subscriptions"

    phone: Mapped[str] = mapped_column(String(16), primary_key=True)  # E.164
    doc_type: Mapped[str] = mapped_column(String(24))
    doc_number: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(NAME_LIMIT))
    carrier: Mapped[str | None] = mapped_column(String(CARRIER_LIMIT))
    updated_at: Mapped[int]


class SeenNonce(RegistryBase):
    """A request nonce, kept until any request carrying it would be refused as stale anyway."""

    __tablename__ = "nonces"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[int] = mapped_column(index=True)


class CheckLog(RegistryBase):
    """The registry's side of the audit trail: who asked what kind of check and what was answered,
    by the caller's check id. No personal data: the answer is all that is kept."""

    __tablename__ = "checks"

    # A client retries a check under the same id (a new nonce each time), so the id repeats.
    id: Mapped[int] = mapped_column(BIGINT_PK, primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(String(36), index=True)
    client: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(16))
    identity: Mapped[str] = mapped_column(String(16))
    phone: Mapped[str] = mapped_column(String(16))
    at: Mapped[int]


@dataclass(frozen=True, slots=True)
class LoadError:
    """A line that was not loaded: its 1-based number and why (never its content)."""

    line: int
    message: str


@dataclass(slots=True)
class LoadReport:
    """What a load wrote: people and subscriptions (a deleted number counts as a subscription
    written), and the lines refused."""

    people: int = 0
    subscriptions: int = 0
    errors: list[LoadError] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "people": self.people,
            "subscriptions": self.subscriptions,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
        }


class _BadLine(Exception):
    pass


@dataclass
class _Batch:
    """The last word on every key in a load. A later line about the same document or number
    replaces an earlier one, so only the last is written: one statement per key, in any order."""

    people: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any] | None] = field(default_factory=dict)


class RegistryStore:
    """The registry's records and bookkeeping on one engine. :meth:`start` before use."""

    def __init__(self, engine: AsyncEngine, *, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock: Clock = clock or SystemClock()
        self._start_lock = asyncio.Lock()
        self._started = False
        self._next_purge = 0

    async def start(self) -> None:
        """Create the tables that are missing; safe to call again, and from two processes at
        once on one SQLite file (each transaction there takes the write lock as it begins)."""
        async with self._start_lock:
            if self._started:
                return
            try:
                await self._create_schema()
            except DBAPIError:
                # Another process created the same tables between our look and our CREATE
                # (PostgreSQL, where the look takes no lock): it has done our work.
                await self._create_schema()
            self._started = True

    async def _create_schema(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(RegistryBase.metadata.create_all)

    async def close(self) -> None:
        await self.engine.dispose()

    # --- the register -------------------------------------------------------------------------

    async def person(self, doc_type: str, doc_number: str) -> wire.Person | None:
        """The register's record of a document, or None."""
        async with self.engine.connect() as connection:
            return await _person(connection, doc_type, doc_number)

    async def subscription(self, phone: str) -> wire.Subscription | None:
        """The carrier's registration of ``phone``, or None."""
        async with self.engine.connect() as connection:
            return await _subscription(connection, phone)

    async def answer(
        self, request: wire.CheckRequest, *, client: str, now: int, nonce: str | None = None
    ) -> wire.CheckAnswer | None:
        """The registry's answer to ``client``'s ``request`` (:func:`wire.judge` over the
        records), logged; None when ``nonce`` was seen already (a replay). One transaction."""
        person = request.person
        async with self.engine.begin() as connection:
            if nonce is not None and not await self._remember_nonce(
                connection, client, nonce, now=now
            ):
                return None
            record = await _person(connection, person.doc_type, person.doc_number)
            subscription = (
                None if request.phone is None else await _subscription(connection, request.phone)
            )
            identity, phone = wire.judge(request, record, subscription)
            await connection.execute(
                insert(CheckLog).values(
                    check_id=request.check_id,
                    client=client,
                    purpose=request.purpose,
                    identity=identity,
                    phone=phone,
                    at=now,
                )
            )
        return wire.CheckAnswer(request.check_id, identity, phone, now)

    async def log_check(
        self, *, check_id: str, client: str, purpose: str, identity: str, phone: str, at: int
    ) -> None:
        """Record an answer given to ``client``."""
        async with self.engine.begin() as connection:
            await connection.execute(
                insert(CheckLog).values(
                    check_id=check_id,
                    client=client,
                    purpose=purpose,
                    identity=identity,
                    phone=phone,
                    at=at,
                )
            )

    # --- nonces -------------------------------------------------------------------------------

    async def remember_nonce(self, client: str, nonce: str, *, now: int) -> bool:
        """Record a request's nonce; False when it was seen and is still remembered (a replay).
        A remembered nonce that has expired is taken again: any request that reused it within
        :data:`wire.NONCE_TTL_SECONDS` was refused as stale."""
        async with self.engine.begin() as connection:
            return await self._remember_nonce(connection, client, nonce, now=now)

    async def _remember_nonce(
        self, connection: AsyncConnection, client: str, nonce: str, *, now: int
    ) -> bool:
        expires_at = now + wire.NONCE_TTL_SECONDS
        if now >= self._next_purge:
            self._next_purge = now + NONCE_PURGE_SECONDS
            await connection.execute(delete(SeenNonce).where(SeenNonce.expires_at < now))
        new = _insert(connection, SeenNonce).values(
            client=client, nonce=nonce, expires_at=expires_at
        )
        # One statement, so two processes that see the same nonce at once cannot both win.
        statement = new.on_conflict_do_update(
            index_elements=["client", "nonce"],
            set_={"expires_at": expires_at},
            where=SeenNonce.expires_at < now,
        )
        result = await connection.execute(statement)
        return bool(result.rowcount == 1)

    # --- loading ------------------------------------------------------------------------------

    async def load(
        self, lines: Iterable[str | bytes], *, all_or_nothing: bool = False
    ) -> LoadReport:
        """Load NDJSON records (see ``samples.ndjson``): people and subscriptions upserted, a
        ``"action": "delete"`` subscription dropped. Every line is checked on its own; a bad one
        is reported by its number and the others are loaded, all in one transaction -- or, with
        ``all_or_nothing``, none of them."""
        batch, report = self._parse(lines)
        if report.errors and all_or_nothing:
            return LoadReport(errors=report.errors)
        async with self.engine.begin() as connection:
            await self._write(connection, batch)
        return report

    async def seed_samples(self) -> LoadReport | None:
        """Load the sample people (``samples.ndjson``) into an empty register; None when the
        register already holds someone."""
        text = resources.files(__package__).joinpath("samples.ndjson").read_bytes()
        batch, report = self._parse(text.splitlines())
        async with self.engine.begin() as connection:
            if await connection.scalar(select(PersonRecord.doc_number).limit(1)) is not None:
                return None
            await self._write(connection, batch)
        if report.errors:
            log.error("the sample records do not load: %s", report.errors)
        return report

    def _parse(self, lines: Iterable[str | bytes]) -> tuple[_Batch, LoadReport]:
        today = local_date(self.clock.now())
        batch = _Batch()
        report = LoadReport()
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            except UnicodeDecodeError:
                report.errors.append(LoadError(number, "the line is not UTF-8"))
                continue
            if not text.strip():
                continue
            try:
                entry = _entry(text)
                kind = entry.get("kind")
                if kind == "person":
                    person = _person_values(entry, today)
                    batch.people[(person["doc_type"], person["doc_number"])] = person
                    report.people += 1
                elif kind == "subscription":
                    phone, values = _subscription_values(entry, today)
                    batch.subscriptions[phone] = values
                    report.subscriptions += 1
                else:
                    raise _BadLine('kind must be "person" or "subscription"')
            except _BadLine as exc:
                report.errors.append(LoadError(number, str(exc)))
        return batch, report

    async def _write(self, connection: AsyncConnection, batch: _Batch) -> None:
        now = epoch(self.clock.now())
        people = [{**values, "updated_at": now} for values in batch.people.values()]
        upserts = [
            {**values, "updated_at": now}
            for values in batch.subscriptions.values()
            if values is not None
        ]
        gone = [phone for phone, values in batch.subscriptions.items() if values is None]
        for rows, table, keys in (
            (people, PersonRecord, ["doc_type", "doc_number"]),
            (upserts, SubscriptionRecord, ["phone"]),
        ):
            upsert = _insert(connection, table)
            statement = upsert.on_conflict_do_update(
                index_elements=keys,
                set_={
                    c.name: upsert.excluded[c.name]
                    for c in table.__table__.columns
                    if c.name not in keys
                },
            )
            for start in range(0, len(rows), _WRITE_CHUNK):
                await connection.execute(statement, rows[start : start + _WRITE_CHUNK])
        for start in range(0, len(gone), _WRITE_CHUNK):
            chunk = gone[start : start + _WRITE_CHUNK]
            await connection.execute(
                delete(SubscriptionRecord).where(SubscriptionRecord.phone.in_(chunk))
            )


def open_store(
    data_dir: Path, database_url: str | None = None, *, clock: Clock | None = None
) -> RegistryStore:
    """A store on ``database_url``, by default SQLite at ``<data_dir>/registry.db``. The data
    directory is made readable by this user only: it holds the register and the secrets."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    url = database_url or f"sqlite+aiosqlite:///{data_dir / DATABASE_FILE}"
    # yuekang.db's engine: on SQLite, WAL and a busy timeout, so the CLI's writes and a server
    # (or the main service's development mode) reading the same file wait for each other.
    return RegistryStore(create_engine(url, serial=True), clock=clock)


def _insert(
    connection: AsyncConnection, table: type[RegistryBase]
) -> postgresql.Insert | sqlite.Insert:
    match connection.dialect.name:
        case "postgresql":
            return postgresql.insert(table)
        case "sqlite":
            return sqlite.insert(table)
        case other:
            raise NotImplementedError(f"the registry runs on SQLite or PostgreSQL, not {other}")


async def _person(
    connection: AsyncConnection, doc_type: str, doc_number: str
) -> wire.Person | None:
    row = (
        await connection.execute(
            select(PersonRecord.name, PersonRecord.birth_date).where(
                PersonRecord.doc_type == doc_type, PersonRecord.doc_number == doc_number
            )
        )
    ).first()
    if row is None:
        return None
    return wire.Person(row.name, doc_type, doc_number, dt.date.fromisoformat(row.birth_date))


async def _subscription(connection: AsyncConnection, phone: str) -> wire.Subscription | None:
    row = (
        await connection.execute(
            select(
                SubscriptionRecord.doc_type, SubscriptionRecord.doc_number, SubscriptionRecord.name
            ).where(SubscriptionRecord.phone == phone)
        )
    ).first()
    if row is None:
        return None
    return wire.Subscription(phone, row.doc_type, row.doc_number, row.name)


# --- one NDJSON line -------------------------------------------------------------------------


def _entry(text: str) -> dict[str, Any]:
    try:
        entry = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _BadLine("the line is not JSON") from exc
    if not isinstance(entry, dict):
        raise _BadLine("the line is not a JSON object")
    return entry


def _only(entry: Mapping[str, Any], allowed: frozenset[str]) -> None:
    # A misspelt field would otherwise be dropped without a word.
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise _BadLine(f"unknown field {unknown[0]!r}")


def _text(entry: Mapping[str, Any], name: str, limit: int) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _BadLine(f"{name} must be a non-empty string")
    value = value.strip()
    if len(value) > limit or not value.isprintable():
        raise _BadLine(f"{name} must be at most {limit} printable characters")
    return value


def _phone(entry: Mapping[str, Any]) -> str:
    phone = entry.get("phone")
    if not isinstance(phone, str) or not _PHONE_RE.fullmatch(phone):
        raise _BadLine("phone must be an E.164 number such as +8613800138000")
    return phone


def _document(
    entry: Mapping[str, Any], today: dt.date, birth_date: dt.date | None = None
) -> tuple[str, str]:
    doc_type = entry.get("doc_type")
    if not isinstance(doc_type, str) or doc_type not in _DOC_TYPES:
        raise _BadLine(f"doc_type must be one of {', '.join(DocType)}")
    raw = entry.get("doc_number")
    if not isinstance(raw, str):
        raise _BadLine("doc_number must be a string")
    try:
        number = validate_document(DocType(doc_type), raw, birth_date, today=today)
    except DocumentError as exc:
        raise _BadLine(f"{exc.field}: {exc.message}") from exc
    return doc_type, number


def _person_values(entry: Mapping[str, Any], today: dt.date) -> dict[str, Any]:
    _only(entry, _PERSON_FIELDS)
    name = _text(entry, "name", NAME_LIMIT)
    text = entry.get("birth_date")
    try:
        if not isinstance(text, str) or not _ISO_DATE_RE.fullmatch(text):
            raise ValueError(text)
        birth_date = dt.date.fromisoformat(text)
    except ValueError as exc:
        raise _BadLine("birth_date must be a date written YYYY-MM-DD") from exc
    doc_type, number = _document(entry, today, birth_date)
    return {
        "doc_type": doc_type,
        "doc_number": number,
        "name": name,
        "birth_date": birth_date.isoformat(),
    }


def _subscription_values(
    entry: Mapping[str, Any], today: dt.date
) -> tuple[str, dict[str, Any] | None]:
    """The number and its registration, or None for a number given back to the carrier."""
    if "action" in entry:
        if entry["action"] != "delete":
            raise _BadLine('action must be "delete" (or absent, to add or replace)')
        _only(entry, _DELETE_FIELDS)
        return _phone(entry), None
    _only(entry, _SUBSCRIPTION_FIELDS)
    phone = _phone(entry)
    name = _text(entry, "name", NAME_LIMIT)
    carrier = _text(entry, "carrier", CARRIER_LIMIT) if entry.get("carrier") is not None else None
    doc_type, number = _document(entry, today)
    return phone, {
        "phone": phone,
        "doc_type": doc_type,
        "doc_number": number,
        "name": name,
        "carrier": carrier,
    }
